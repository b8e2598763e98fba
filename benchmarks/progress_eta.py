"""Replay a finished sweep's progress: at points of its search, the time left that the
display says (epochs expected under ASHA, at the rate seen) and what the count of finished
trials would say (tqdm's), against the time that was in fact left.

    python benchmarks/progress_eta.py results/NAME [--at 0.05 0.2 0.4 0.6 0.9]

Reads the sweep's events.jsonl (trial starts and ends) and each trial's per-epoch
timestamps (Tune's progress.csv).
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import yaml

from mnist_dist import layout
from mnist_dist.progress import format_seconds
from mnist_dist.tuning.driver.estimate import epochs_ahead, epochs_expected
from mnist_dist.tuning.spec import load_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweep", type=Path, help="a finished sweep's folder (results/NAME)")
    p.add_argument("--at", type=float, nargs="+", default=[0.05, 0.2, 0.3, 0.4, 0.6, 0.9],
                   help="points of the search, as fractions of its wall time")
    a = p.parse_args()
    resolved = yaml.safe_load((a.sweep / "config.yaml").read_text())["sweep"]  # as the sweep ran
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump({k: v for k, v in resolved.items() if k != "arch"}))
        spec = load_spec(resolved["arch"], path)
    events = [json.loads(line) for line in (a.sweep / layout.EVENTS).read_text().splitlines()]
    t0 = min(e["queued"] for e in events if e.get("queued"))
    end = max(e["time"] for e in events)
    ended_at = {e["trial_id"]: e["time"] for e in events if e["event"] != "start"}
    started_at = {e["trial_id"]: e["time"] for e in events if e["event"] == "start"}
    epochs_at: dict[str, list[tuple[float, int]]] = {}
    for f in (a.sweep / layout.TUNE).glob("*/progress.csv"):
        rows = list(csv.DictReader(f.open()))
        if rows:
            epochs_at[rows[0]["trial_id"]] = [(float(r["timestamp"]), int(r["epoch"])) for r in rows]
    left = epochs_expected(spec)
    print(f"{a.sweep.name}: search {format_seconds(end - t0)}, "
          f"{sum(v[-1][1] for v in epochs_at.values())} epochs, {spec.trials} trials")
    print("| elapsed | by epochs (now) | by trial count (before) | in fact left |")
    for frac in a.at:
        now = t0 + frac * (end - t0)
        started = {t for t, ts in started_at.items() if ts <= now}
        ended = {t for t, ts in ended_at.items() if ts <= now}
        epochs = {t: max([e for ts, e in epochs_at.get(t, []) if ts <= now], default=0) for t in started}
        trained = sum(epochs.values())
        to_go = epochs_ahead(epochs, ended, spec.trials, left)  # as the display counts them
        rate = trained / (now - t0)
        by_epochs = f"{format_seconds(to_go / rate)} ({trained} of ~{trained + to_go:.0f})" if rate else "?"
        by_count = format_seconds((spec.trials - len(ended)) * (now - t0) / len(ended)) if ended else "?"
        print(f"| {format_seconds(now - t0)} | {by_epochs} | {by_count} | {format_seconds(end - now)} |")


if __name__ == "__main__":
    main()
