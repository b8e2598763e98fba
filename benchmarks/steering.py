"""Steering a sweep: continuing one, warm-starting one, and the samplers, each against a cold sweep.

    python benchmarks/steering.py continue ARCH --trials 20 --more 20 --seeds 0 1 2
    python benchmarks/steering.py warm ARCH --source-arch A --trials 20 --seeds 0 1 2
    python benchmarks/steering.py samplers ARCH --trials 20 --seeds 0 1 2 --samplers tpe gp cmaes random
    common: [--results-dir D] [--train-limit N] [--epochs E] [--data-dir D] [--every K] [--json F] [--dry-run]

Every sweep runs as a user runs it (`python sweeps/run.py ARCH ...`, a fresh process, one
after another), its output in NAME.log beside its folder; the figures come from the folders
it leaves. A sweep's curve is its best validation accuracy so far after each of its own
trials, in the order they were created: trials a warm start copied in (status `imported`)
are not this sweep's, and a failed trial or one without a finite value adds nothing.

- continue: per seed, a sweep of --trials grown to --trials + --more with `--resume --trials`
  (the same Optuna study), against a cold sweep of --trials + --more with the same seed. The
  continued arm's wall time is its summary.json after the resume, which covers both runs.
- warm: one source sweep of --source-arch (seed 0, --source-trials trials, the same for
  every seed), then per seed a sweep of ARCH with `--warm-start` from it against a cold one.
  Same architecture and data: the source's trials are the sampler's history; another
  architecture: its best 3 configs are tried right after the baseline. Also: how many
  trials the warm sweep needed to reach the cold sweep's final best.
- samplers: per seed and sampler, one sweep of --trials.

--train-limit and --epochs write a reduced copy of sweeps/ARCH.yaml into the results folder
(fixed.train_limit, fixed.epochs; epochs no longer searched, ASHA's grace period and any
warm-up cut to fit) and pass it as --config: a measurement a small machine can afford,
which is not the shipped sweep's. The accuracies are then those of the reduced sweep.
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = "sweeps/run.py"  # relative to REPO, where the sweeps run
METRIC = "best_val_acc"
IMPORTED = "imported"  # a warm start's copy of an earlier sweep's trial, not run by this sweep
FAILED = "failed"


# --- the figures: pure functions of a sweep's rows ---

def value_of(row: dict) -> float | None:
    """A row's best validation accuracy, or None for a failed trial or a missing, non-numeric
    or non-finite value."""
    if row.get("status") == FAILED:
        return None
    try:
        value = float(row.get(METRIC))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def own_rows(rows: list[dict]) -> list[dict]:
    """The trials this sweep ran, in the order they were created (imported ones left out)."""
    return [r for r in rows if r.get("status") != IMPORTED]


def best_so_far(rows: list[dict]) -> list[float | None]:
    """After each of the sweep's own trials (1, 2, ...), the best value so far; None until a
    trial has one."""
    curve, best = [], None
    for row in own_rows(rows):
        value = value_of(row)
        if value is not None and (best is None or value > best):
            best = value
        curve.append(best)
    return curve


def at(curve: list[float | None], trials: int) -> float | None:
    """The best after `trials` trials; None if the sweep ran fewer."""
    return curve[trials - 1] if 0 < trials <= len(curve) else None


def checkpoints(total: int, every: int = 5, extra: tuple[int, ...] = ()) -> list[int]:
    """Trial counts to report: every `every` trials up to `total`, `total` itself, and `extra`."""
    points = set(range(every, total + 1, every)) | {total} | {e for e in extra if 0 < e <= total}
    return sorted(p for p in points if p > 0)


def trials_to_reach(curve: list[float | None], target: float | None) -> int | None:
    """The first trial count at which the curve reaches `target` (>=); None if it never does."""
    if target is None:
        return None
    for i, best in enumerate(curve, start=1):
        if best is not None and best >= target:
            return i
    return None


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation of the values that are there, and how many were."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None, 0
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else None), len(present)


def pct(value: float | None, std: float | None = None) -> str:
    """An accuracy as a percentage with two decimals, '-' when missing."""
    if value is None:
        return "-"
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def mean_cell(values: list[float | None], with_std: bool = False) -> str:
    """The mean over seeds of an accuracy (± std), with '(k/n)' when only k of n seeds have one."""
    mean, std, n = mean_std(values)
    cell = pct(mean, std if with_std else None)
    return cell if n in (0, len(values)) else f"{cell} ({n}/{len(values)})"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table, first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def curve_rows(arms: dict[str, list[list[float | None]]], points: list[int]) -> list[list]:
    """One table row per trial count: the mean over seeds of each arm's best so far."""
    return [[n] + [mean_cell([at(c, n) for c in curves]) for curves in arms.values()] for n in points]


def derive_spec(raw: dict, train_limit: int | None = None, epochs: int | None = None) -> dict:
    """A sweep YAML's content with fixed.train_limit and fixed.epochs set. With epochs fixed,
    `epochs` is no longer searched (dropped from space and points, a point left empty
    dropped), ASHA's grace period (and PBT's perturbation interval) is at most `epochs`, and a
    warm-up the run no longer fits (warmup_epochs >= epochs) is no longer drawn."""
    spec = copy.deepcopy(raw)
    fixed = spec.setdefault("fixed", {}) or {}
    spec["fixed"] = fixed
    if train_limit is not None:
        fixed["train_limit"] = int(train_limit)
    if epochs is None:
        return spec
    epochs = int(epochs)
    fixed["epochs"] = epochs
    space = spec.get("space") or {}
    points = spec.get("points") or []
    space.pop("epochs", None)
    for point in points:
        point.pop("epochs", None)
    warmup = space.get("warmup_epochs")
    if isinstance(warmup, dict) and "choice" in warmup:
        fits = [w for w in warmup["choice"] if float(w) < epochs]
        if fits:
            warmup["choice"] = fits
        else:
            space.pop("warmup_epochs")
        for point in points:
            if "warmup_epochs" in point and point["warmup_epochs"] not in fits:
                point.pop("warmup_epochs")
    elif isinstance(warmup, dict):  # a range [low, high]: high cut to half the run if it does not fit
        kind = next(k for k in warmup if k != "when")
        low, high = (float(v) for v in warmup[kind])
        high = high if high < epochs else epochs / 2
        if low < high:
            warmup[kind] = [low, high]
        else:
            space.pop("warmup_epochs")
        for point in points:
            if float(point.get("warmup_epochs", 0.0)) >= epochs:
                point.pop("warmup_epochs", None)
    if "warmup_epochs" in fixed and float(fixed["warmup_epochs"]) >= epochs:
        fixed["warmup_epochs"] = 0.0
    if "points" in spec:
        spec["points"] = [p for p in points if p]
    scheduler = spec.get("scheduler") or {}
    for key in ("grace_period", "perturbation_interval"):
        if key in scheduler:
            scheduler[key] = max(1, min(int(scheduler[key]), epochs))
    return spec


def write_derived_config(arch: str, folder: Path, train_limit: int | None, epochs: int | None) -> Path:
    """sweeps/ARCH.yaml reduced by derive_spec, written to folder/ARCH-reduced.yaml."""
    import yaml

    raw = yaml.safe_load((REPO / "sweeps" / f"{arch}.yaml").read_text())
    path = folder / f"{arch}-reduced.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    header = (f"# sweeps/{arch}.yaml reduced by benchmarks/steering.py: "
              f"train_limit {train_limit}, epochs {epochs}\n")
    path.write_text(header + yaml.safe_dump(derive_spec(raw, train_limit, epochs), sort_keys=False))
    return path


# --- running sweeps ---

class Runner:
    """Builds, shows and runs the sweep commands of one benchmark."""

    def __init__(self, args):
        self.args = args
        self.dry_run = args.dry_run
        if args.results_dir:
            self.results = Path(args.results_dir).expanduser().resolve()
        elif self.dry_run:
            self.results = Path(tempfile.gettempdir()) / "steering-RESULTS"
        else:
            self.results = Path(tempfile.mkdtemp(prefix="steering-"))
        self.configs: dict[str, str | None] = {}
        self.commands: list[str] = []

    def config_for(self, arch: str) -> str | None:
        """The --config for `arch`: the reduced YAML when --train-limit or --epochs is given."""
        if arch not in self.configs:
            a = self.args
            if a.train_limit is None and a.epochs is None:
                self.configs[arch] = None
            elif self.dry_run:
                self.configs[arch] = str(self.results / f"{arch}-reduced.yaml")
            else:
                self.configs[arch] = str(write_derived_config(arch, self.results, a.train_limit, a.epochs))
        return self.configs[arch]

    def base(self, arch: str, name: str, seed: int, sampler: str | None = None) -> list[str]:
        cmd = [arch, "--results-dir", str(self.results), "--name", name, "--seed", str(seed), "--quiet"]
        config = self.config_for(arch)
        if config:
            cmd += ["--config", config]
        if sampler:
            cmd += ["--sampler", sampler]
        if self.args.data_dir:
            cmd += ["--data-dir", self.args.data_dir]
        return cmd

    def sweep(self, name: str, argv: list[str]) -> Path:
        """Runs `python sweeps/run.py ARGV` (or, with --dry-run, only prints it); the folder."""
        shown = "python " + shlex.join([RUN, *argv])
        self.commands.append(shown)
        if self.dry_run:
            print(shown, flush=True)
            return self.results / name
        print(f"running: {shown}", file=sys.stderr, flush=True)
        self.results.mkdir(parents=True, exist_ok=True)
        log = self.results / f"{name}.log"
        with open(log, "a") as out:
            code = subprocess.run([sys.executable, RUN, *argv], cwd=REPO, stdout=out,
                                  stderr=subprocess.STDOUT).returncode
        if code != 0:
            tail = log.read_text(errors="replace").splitlines()[-20:]
            sys.exit(f"exit status {code} from: {shown}\n" + "\n".join(tail) + f"\n(the whole output: {log})")
        return self.results / name


def read_sweep(folder: Path) -> tuple[list[dict], float | None]:
    """A finished sweep's trials.csv rows (in creation order) and summary.json's wall_time_s."""
    with open(folder / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        wall = json.loads((folder / "summary.json").read_text()).get("wall_time_s")
    except (OSError, ValueError):
        wall = None
    return rows, wall


def total_wall(walls: list[float | None]) -> str:
    known = [w for w in walls if w is not None]
    return f"{sum(known):.1f}" if known else "-"


# --- the three comparisons ---

def bench_continue(args, run: Runner) -> dict:
    total = args.trials + args.more
    arms = {"continued": [], "cold": []}
    walls = {"continued": [], "cold": []}
    for seed in args.seeds:
        cont, cold = f"continue-{args.arch}-s{seed}", f"cold-{args.arch}-{total}-s{seed}"
        run.sweep(cont, run.base(args.arch, cont, seed) + ["--trials", str(args.trials)])
        run.sweep(cont, run.base(args.arch, cont, seed) + ["--resume", "--trials", str(total)])
        run.sweep(cold, run.base(args.arch, cold, seed) + ["--trials", str(total)])
        if run.dry_run:
            continue
        for arm, name in (("continued", cont), ("cold", cold)):
            rows, wall = read_sweep(run.results / name)
            arms[arm].append(best_so_far(rows))
            walls[arm].append(wall)  # the resumed sweep's covers both of its runs
    if run.dry_run:
        return {}
    points = checkpoints(total, args.every, (args.trials,))
    rows = curve_rows(arms, points)
    rows.append(["final best (± std)"] + [mean_cell([c[-1] if c else None for c in arms[a]], True) for a in arms])
    rows.append(["wall time, s (all seeds)"] + [total_wall(walls[a]) for a in arms])
    table = markdown_table(["trials", f"continued ({args.trials} + {args.more})", f"cold ({total})"], rows)
    return {"table": table, "curves": arms, "wall_time_s": walls}


def bench_warm(args, run: Runner) -> dict:
    source = f"source-{args.source_arch}-s0"
    run.sweep(source, run.base(args.source_arch, source, 0) + ["--trials", str(args.source_trials or args.trials)])
    arms = {"warm": [], "cold": []}
    walls = {"warm": [], "cold": []}
    for seed in args.seeds:
        warm, cold = f"warm-{args.arch}-s{seed}", f"cold-{args.arch}-{args.trials}-s{seed}"
        run.sweep(warm, run.base(args.arch, warm, seed) + ["--trials", str(args.trials),
                                                           "--warm-start", str(run.results / source)])
        run.sweep(cold, run.base(args.arch, cold, seed) + ["--trials", str(args.trials)])
        if run.dry_run:
            continue
        for arm, name in (("warm", warm), ("cold", cold)):
            rows, wall = read_sweep(run.results / name)
            arms[arm].append(best_so_far(rows))
            walls[arm].append(wall)
    if run.dry_run:
        return {}
    source_wall = read_sweep(run.results / source)[1]
    rows = curve_rows(arms, checkpoints(args.trials, args.every))
    rows.append(["final best (± std)"] + [mean_cell([c[-1] if c else None for c in arms[a]], True) for a in arms])
    rows.append(["wall time, s (all seeds)"] + [total_wall(walls[a]) for a in arms])
    table = markdown_table(["trials", f"warm from {args.source_arch}", "cold"], rows)
    reach_rows, reached = [], []
    for seed, warm_curve, cold_curve in zip(args.seeds, arms["warm"], arms["cold"]):
        target = cold_curve[-1] if cold_curve else None
        n = trials_to_reach(warm_curve, target)
        reached.append(n)
        reach_rows.append([seed, pct(target), pct(warm_curve[-1] if warm_curve else None), n if n else "-"])
    got = [n for n in reached if n is not None]
    reach_rows.append(["mean", "", "", (f"{statistics.fmean(got):.1f}" if got else "-")
                       + ("" if len(got) == len(reached) else f" ({len(got)}/{len(reached)} reached)")])
    reach = markdown_table(["seed", "cold final best", "warm final best",
                            "warm trials to reach cold's final best"], reach_rows)
    note = (f"Source: one sweep of {args.source_arch}, seed 0, {args.source_trials or args.trials} trials, "
            f"{total_wall([source_wall])} s, shared by every seed's warm sweep.")
    return {"table": table + "\n\n" + reach + "\n\n" + note, "curves": arms, "wall_time_s": walls,
            "trials_to_reach": reached, "source_wall_time_s": source_wall}


def bench_samplers(args, run: Runner) -> dict:
    arms = {s: [] for s in args.samplers}
    walls = {s: [] for s in args.samplers}
    for seed in args.seeds:
        for sampler in args.samplers:
            name = f"{sampler}-{args.arch}-s{seed}"
            run.sweep(name, run.base(args.arch, name, seed, sampler) + ["--trials", str(args.trials)])
            if not run.dry_run:
                rows, wall = read_sweep(run.results / name)
                arms[sampler].append(best_so_far(rows))
                walls[sampler].append(wall)
    if run.dry_run:
        return {}
    rows = curve_rows(arms, checkpoints(args.trials, args.every))
    rows.append(["final best (± std)"] + [mean_cell([c[-1] if c else None for c in arms[s]], True) for s in arms])
    rows.append(["wall time, s (all seeds)"] + [total_wall(walls[s]) for s in arms])
    return {"table": markdown_table(["trials", *arms], rows), "curves": arms, "wall_time_s": walls}


BENCHES = {"continue": bench_continue, "warm": bench_warm, "samplers": bench_samplers}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("arch", help="architecture to sweep (sweeps/ARCH.yaml)")
    common.add_argument("--trials", type=int, default=20, help="trials per sweep (default 20)")
    common.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one comparison per seed")
    common.add_argument("--results-dir", help="where the sweeps go (default: a new temporary folder, kept)")
    common.add_argument("--train-limit", type=int, help="reduced sweep: this many training images")
    common.add_argument("--epochs", type=int, help="reduced sweep: this many epochs per trial")
    common.add_argument("--data-dir", help="passed to every sweep")
    common.add_argument("--every", type=int, default=5, help="report the best so far every K trials (default 5)")
    common.add_argument("--json", help="write the figures here too")
    common.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                        help="print the sweep commands, run nothing")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the sweep commands, run nothing")
    sub = p.add_subparsers(dest="bench", required=True)
    c = sub.add_parser("continue", parents=[common], help="a sweep continued with --resume --trials vs a cold one")
    c.add_argument("--more", type=int, default=20, help="trials added by the continuation (default 20)")
    w = sub.add_parser("warm", parents=[common], help="a sweep warm-started from another vs a cold one")
    w.add_argument("--source-arch", required=True, help="architecture of the source sweep")
    w.add_argument("--source-trials", type=int, help="trials of the source sweep (default: --trials)")
    s = sub.add_parser("samplers", parents=[common], help="the samplers side by side")
    s.add_argument("--samplers", nargs="+", default=["tpe", "gp", "cmaes", "random"],
                   choices=["tpe", "gp", "cmaes", "random"])
    args = p.parse_args(argv)
    for flag in ("trials", "more", "source_trials", "train_limit", "epochs", "every"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = Runner(args)
    started = datetime.datetime.now()
    result = BENCHES[args.bench](args, run)
    if args.dry_run:
        return
    command = "python benchmarks/steering.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    reduced = "" if args.train_limit is None and args.epochs is None else \
        f" Reduced sweeps: train_limit {args.train_limit}, epochs {args.epochs}."
    print(f"\n### {args.bench}: {args.arch}, seeds {' '.join(map(str, args.seeds))}\n")
    print("Best validation accuracy (%) so far, mean over seeds, after each count of the sweep's own trials."
          + reduced + "\n")
    print(result["table"])
    print(f"\nCommand: `{command}`  \nMachine: {machine}  \nDate: {started:%Y-%m-%d %H:%M}  \n"
          f"Results: {run.results}\n\nSweeps run:\n```")
    print("\n".join(run.commands) + "\n```")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "machine": machine,
                                               "date": started.isoformat(timespec="minutes"),
                                               "results_dir": str(run.results),
                                               "sweeps": run.commands, **result}, indent=2))


if __name__ == "__main__":
    main()
