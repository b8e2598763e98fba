"""Sweeps on one GPU with 1 and 4 trials sharing it: wall time, per-trial overhead, epoch
times.

    python benchmarks/gpu_sweeps.py [--arch lenet5 cnn_bn] [--shares 1 0.25] [--trials 8]
        [--epochs 4] [--out FILE.json]

Each run is `python sweeps/run.py ARCH` over the shipped YAML's search space, with
`--gpus-per-worker SHARE` (1: one trial at a time; 0.25: four at once) and, to keep the
measurement short, `fixed.epochs` cut to --epochs and ASHA's first cut at half of it. The
same TPE seed and trial count for every share. Each run starts its own embedded Ray, as a
user's command does; the command's wall time includes it, `summary.json`'s does not.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_dist.tuning.spec import CONFIGS_DIR  # noqa: E402


def short_yaml(arch: str, epochs: int, folder: Path) -> Path:
    raw = yaml.safe_load((CONFIGS_DIR / f"{arch}.yaml").read_text())
    raw["fixed"] = {**raw.get("fixed", {}), "epochs": epochs}
    raw["scheduler"] = {**raw.get("scheduler", {}), "grace_period": max(1, epochs // 2)}
    path = folder / f"{arch}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one(arch: str, share: float, trials: int, spec: Path, results: Path) -> dict:
    name = f"{arch}-gpu{share:g}"
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "sweeps" / "run.py"), arch, "--config", str(spec),
                           "--trials", str(trials), "--gpus-per-worker", str(share), "--name", name,
                           "--results-dir", str(results), "--quiet"], capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return {"arch": arch, "gpus_per_trial": share, "error": proc.returncode}
    folder = results / name
    summary = json.loads((folder / "summary.json").read_text())
    with open(folder / "trials.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["epochs_run"] and int(r["epochs_run"]) > 0]
    epoch_s = [float(r["train_time_s"]) / int(r["epochs_run"]) for r in rows]
    return {"arch": arch, "gpus_per_trial": share, "trials": len(rows), "command_wall_s": round(wall, 1),
            "sweep_wall_s": round(summary["wall_time_s"], 1), "train_time_s": round(summary["train_time_s"], 1),
            "epochs": sum(int(r["epochs_run"]) for r in rows),
            "overhead_per_trial_s": round(summary["overhead_per_trial_s"], 2),
            "overhead_per_reused_trial_s": summary.get("overhead_per_reused_trial_s"),
            "trial_processes": summary.get("trial_processes"),
            "epoch_s_median": round(statistics.median(epoch_s), 2),
            "epoch_s_range": [round(min(epoch_s), 2), round(max(epoch_s), 2)],
            "best_val_acc": summary["best_val_acc"], "test_acc": summary["test_acc"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", nargs="+", default=["lenet5", "cnn_bn"])
    p.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", help="append one JSON line per run here")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for arch in a.arch:
            spec = short_yaml(arch, a.epochs, folder)
            for share in a.shares:
                row = one(arch, share, a.trials, spec, folder / "results")
                print(json.dumps(row), flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
