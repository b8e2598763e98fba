"""The same search through `sweeps/run.py` and as plain Optuna in one process, side by side.

    python benchmarks/sweep_vs_optuna.py mlp --trials 8 [--dataset mnist] [--json out.json]

Same search both ways: the architecture's YAML space, TPE with the YAML's seed and the same
start-up trials, the source baseline (and the YAML's points) evaluated first, and successive
halving with the YAML's grace period and reduction factor (ASHA in Tune, Optuna's
SuccessiveHalvingPruner in plain Optuna). The sweep runs as a user runs it: a fresh process,
an embedded Ray, the default concurrency (one trial per core). Plain Optuna runs one trial
at a time in this process, with the data loaded once and the project's own training loop.
Run it on an otherwise idle machine: it is a timing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from mnist_dist.config import TrainConfig
from mnist_dist.tuning.options import SweepOptions, base_config
from mnist_dist.tuning.spec import initial_points, load_spec, sample
from mnist_dist.training.loop import EpochRun, Trainer, load_data, select_device

REPO = Path(__file__).resolve().parents[1]


def run_sweep_cli(arch: str, trials: int, dataset: str | None, out: Path) -> dict:
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), arch, "--trials", str(trials),
           "--results-dir", str(out), "--name", "sweep", "--quiet"] + (["--dataset", dataset] if dataset else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    s = json.loads((out / "sweep" / "summary.json").read_text())
    # summary.json's wall time is the search itself; the rest is Ray's start, imports and the
    # final evaluation of the best model
    return {"wall_s": total, "search_s": s["wall_time_s"], "outside_search_s": total - s["wall_time_s"],
            "train_s": s["train_time_s"], "overhead_per_trial_s": s["overhead_per_trial_s"],
            "overhead_per_reused_trial_s": s["overhead_per_reused_trial_s"], "processes": s["trial_processes"],
            "best_val_acc": s.get("best_val_acc"), "trials": s["trials_run"],
            "pruned": s["stopped_by_scheduler"]}


def run_plain_optuna(arch: str, trials: int, dataset: str | None) -> dict:
    t_start = time.perf_counter()
    spec = load_spec(arch, overrides={"trials": trials, "dataset": dataset})
    base = base_config(spec, SweepOptions())
    data = load_data(TrainConfig.from_dict(base))  # once, as a hand-written script would
    device = select_device()
    study = optuna.create_study(
        direction="maximize" if spec.mode == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=min(5, trials)),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.scheduler.grace_period,
                                                      reduction_factor=spec.scheduler.reduction_factor))
    for point in initial_points(spec):
        study.enqueue_trial(point)
    per_trial = []

    def objective(trial: optuna.Trial) -> float:
        t0 = time.perf_counter()
        cfg = TrainConfig.from_dict({**base, **sample(trial, spec.space)})
        run, epoch_s = EpochRun(cfg, Trainer(cfg, device, data)), 0.0
        try:
            while not run.done:
                m = run.step()
                epoch_s += m["epoch_seconds"]
                trial.report(m[spec.metric], m["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return m[spec.metric]
        finally:
            per_trial.append((time.perf_counter() - t0, epoch_s))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    search = time.perf_counter() - t0
    return {"wall_s": time.perf_counter() - t_start, "search_s": search,
            "outside_search_s": time.perf_counter() - t_start - search,
            "train_s": sum(e for _, e in per_trial),
            "overhead_per_trial_s": statistics.mean(w - e for w, e in per_trial),
            "overhead_per_reused_trial_s": statistics.mean(w - e for w, e in per_trial[1:]) if trials > 1 else None,
            # a trial's best epoch, as the sweep's best_val_acc (pruned trials included)
            "best_val_acc": (max if spec.mode == "max" else min)(
                (max if spec.mode == "max" else min)(t.intermediate_values.values())
                for t in study.trials if t.intermediate_values),
            "trials": len(study.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--dataset")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = run_sweep_cli(a.arch, a.trials, a.dataset, Path(tmp))
    plain = run_plain_optuna(a.arch, a.trials, a.dataset)
    rows = [("wall time, whole command", "wall_s", "{:.1f} s"), ("  the search itself", "search_s", "{:.1f} s"),
            ("  start-up + final evaluation", "outside_search_s", "{:.1f} s"),
            ("summed epoch time", "train_s", "{:.1f} s"), ("overhead per trial", "overhead_per_trial_s", "{:.2f} s"),
            ("  in a reused trial process", "overhead_per_reused_trial_s", "{:.2f} s"),
            ("trials (pruned)", None, None), ("best validation accuracy", "best_val_acc", "{:.4f}")]
    print(f"{a.arch}, {a.trials} trials, {time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]}")
    print("| | sweeps/run.py (Ray Tune) | plain Optuna, one process |")
    print("|---|---|---|")
    for label, key, fmt in rows:
        if key is None:
            print(f"| {label} | {sweep['trials']} ({sweep['pruned']}) | {plain['trials']} ({plain['pruned']}) |")
        else:
            print(f"| {label} | {fmt.format(sweep[key])} | {fmt.format(plain[key])} |")
    print(f"wall-time ratio sweep / plain Optuna: {sweep['wall_s'] / plain['wall_s']:.2f}x whole command, "
          f"{sweep['search_s'] / plain['search_s']:.2f}x search only")
    if a.json:
        Path(a.json).write_text(json.dumps({"sweep": sweep, "plain_optuna": plain}, indent=2))


if __name__ == "__main__":
    main()
