"""--final-seeds K: retrain the best config, and the source's baseline config, with K other
seeds each; report the test accuracy of each as mean +/- std.

One seed's accuracy is one sample; the spread over seeds says how much of a difference
between two configs (or architectures) is noise. The baseline gets the same seeds so that
"the sweep beat the source's config" is a claim about configs, not about one lucky seed."""
from __future__ import annotations

import shutil
from pathlib import Path

from ... import layout
from ...evaluation import beats_over_seeds
from ...layout import write_csv
from ..execution.plan import make_trainable, reuses_processes, trial_checkpoints
from .estimate import epochs_expected
from ..execution.events import EventLog
from ..outputs.results import evaluate_model, fetch_model, mark_interrupted, trial_row
from ..outputs.summary import FinalSeeds, SeedStats
from ..spec import baseline_point
from ..execution.signals import fit

BEST, BASELINE = "best", "baseline"


def final_configs(spec, best_config: dict, base: dict) -> dict[str, dict]:
    """{role: searched params}; every config names the same keys (a key one of them does not
    search takes the shared value), so a trial's config says which role it is."""
    configs = {BEST: dict(best_config)}
    if spec.baseline_first:
        configs[BASELINE] = baseline_point(spec)
    keys = sorted({k for c in configs.values() for k in c})
    full = {role: {k: c.get(k, base.get(k)) for k in keys} for role, c in configs.items()}
    if full.get(BASELINE) == full[BEST]:  # the baseline won: its seeds are the best's
        del full[BASELINE]
    return full


def role_of(config: dict | None, configs: dict[str, dict]) -> str | None:
    """Which retrained config a trial is; None for a trial that never started (Ctrl-C)."""
    if not config:
        return None
    return next(role for role, c in configs.items() if all(config.get(k) == v for k, v in c.items()))


def model_dir(out: Path, role: str, seed: int) -> Path:
    return out / (layout.SEED_MODEL if role == BEST else layout.BASELINE_SEED_MODEL).format(seed=seed)


def seed_tuner(spec, opts, sweep_dir: Path, base: dict, configs: dict, seeds: list, concurrency: int):
    """One trial per (role, seed): each preset config is crossed with the seed grid."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from .console import SweepProgress

    out = sweep_dir / layout.FINAL
    search = BasicVariantGenerator(points_to_evaluate=list(configs.values()))
    callbacks = [EventLog(out / layout.EVENTS)]
    if opts.verbose and not opts.ray_logs:  # six 30-epoch trainings took 44 min on 2 cores
        callbacks.append(SweepProgress(len(configs) * len(seeds), spec.metric, spec.mode,
                                       epochs_left=epochs_expected(spec, asha=False), desc="final seeds"))
    return tune.Tuner(
        make_trainable(opts, sweep_dir, base),
        param_space={**{k: None for k in configs[BEST]}, "seed": tune.grid_search(seeds)},
        tune_config=tune.TuneConfig(search_alg=search, num_samples=len(configs),
                                    reuse_actors=reuses_processes(opts.scaling), max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(name=layout.FINAL, storage_path=str(sweep_dir), verbose=0,
                                  checkpoint_config=trial_checkpoints(), callbacks=callbacks))


def run_final_seeds(spec, opts, sweep_dir: Path, best_config: dict | None, base: dict,
                    concurrency: int) -> FinalSeeds:
    """Retrain `best_config` (and the baseline config) with the seeds, evaluate each model."""
    if not best_config:
        return FinalSeeds(error="no best config to retrain")
    seeds = [spec.seed + 1000 * (i + 1) for i in range(opts.final_seeds)]
    configs = final_configs(spec, best_config, base)
    out = sweep_dir / layout.FINAL
    shutil.rmtree(out, ignore_errors=True)  # a resumed sweep retrains them afresh
    tuner = seed_tuner(spec, opts, sweep_dir, base, configs, seeds, concurrency)
    (out / layout.HISTORIES).mkdir(parents=True, exist_ok=True)
    rows = []
    for result in fit(tuner):
        role = role_of(result.config, configs)
        if role is None:  # interrupted before it started: nothing to report
            continue
        rows.append({**trial_row(result, out / layout.HISTORIES), "role": role})  # its seed: config/seed
    # a seed run cut short (or never started) is left out of the means; --resume trains them all again
    cut = mark_interrupted(rows, out / layout.EVENTS)
    accs = {role: {} for role in configs}
    for row in rows:
        if row["status"] in layout.USABLE and row["checkpoint_path"]:
            role, seed = row["role"], row["config/seed"]
            ev = evaluate_model(fetch_model(row["checkpoint_path"], model_dir(out, role, seed)), base)
            row["test_acc"] = accs[role][seed] = ev["accuracy"]
    write_csv(rows, out / layout.TRIALS_CSV)
    return seed_figures(spec, seeds, accs, best_config,
                        incomplete=bool(cut) or len(rows) < len(configs) * len(seeds))


def seed_figures(spec, seeds: list[int], accs: dict[str, dict[int, float]], best_config: dict,
                 incomplete: bool) -> FinalSeeds:
    """Both configs' statistics over the same seeds, and whether the best beats the baseline."""
    best = SeedStats.measure(seeds, accs[BEST], best_config)
    if not spec.baseline_first:
        return FinalSeeds(best=best, incomplete=incomplete)
    # a baseline that won the search was not retrained apart: its seeds are the best's
    baseline = SeedStats.measure(seeds, accs.get(BASELINE, accs[BEST]), baseline_point(spec))
    gain = beats = None
    if best.test_acc_mean is not None and baseline.test_acc_mean is not None:
        gain, beats = beats_over_seeds(best.test_acc_mean, best.test_acc_std, baseline.test_acc_mean,
                                       baseline.test_acc_std)
    return FinalSeeds(best=best, baseline=baseline, gain_over_baseline=gain, beats_baseline=beats,
                      incomplete=incomplete)
