"""--final-seeds K: retrain the best config with K other seeds, report test mean +/- std.

One seed's accuracy is one sample; the spread over seeds says how much of a
difference between two configs (or architectures) is noise."""
from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from .. import layout
from ..layout import write_csv
from .execution import make_trainable, reuses_processes, trial_checkpoints
from .results import evaluate_model, fetch_model, trial_row


def run_final_seeds(spec, opts, sweep_dir: Path, summary: dict, base: dict, concurrency: int) -> dict:
    from ray import tune

    if "best_config" not in summary:
        return {"error": "no best config to retrain"}
    seeds = [spec.seed + 1000 * (i + 1) for i in range(opts.final_seeds)]
    out = sweep_dir / layout.FINAL
    shutil.rmtree(out, ignore_errors=True)  # a resumed sweep retrains them afresh
    params = {**summary["best_config"], "seed": tune.grid_search(seeds)}
    tuner = tune.Tuner(
        make_trainable(opts, sweep_dir, base),
        param_space=params,
        tune_config=tune.TuneConfig(reuse_actors=reuses_processes(opts.scaling), max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name=layout.FINAL, storage_path=str(sweep_dir), verbose=0,
                                  checkpoint_config=trial_checkpoints()))
    (out / layout.HISTORIES).mkdir(parents=True, exist_ok=True)
    rows, accs = [], []
    for result in tuner.fit():
        row = trial_row(result, out / layout.HISTORIES)
        if row["status"] in layout.USABLE and row["checkpoint_path"]:
            seed = result.config["seed"]
            ev = evaluate_model(fetch_model(row["checkpoint_path"], out / f"seed-{seed}"), base)
            row["test_acc"] = ev["accuracy"]
            accs.append(ev["accuracy"])
        rows.append(row)
    write_csv(rows, out / layout.TRIALS_CSV)
    return {"seeds": seeds, "test_acc": accs,
            "test_acc_mean": statistics.mean(accs) if accs else None,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
