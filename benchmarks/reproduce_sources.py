"""Train each architecture with its source's baseline config on the full dataset and
print a README table beside the published numbers.

    python benchmarks/reproduce_sources.py [ARCH ...] [--results-dir results]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from mnist_dist.cli import main as cli
from mnist_dist.models import get_entry

DEFAULT = ["mlp", "ffn", "lenet5", "cnn_minimal", "cnn_regularized", "fashion_cnn", "cnn_bn"]


def table(results_dir: Path, archs: list[str]) -> str:
    rows = ["| arch | dataset | epochs run | test acc | test loss | train time | img/s | params | published |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arch in archs:
        f = results_dir / f"reproduce-{arch}" / "run.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        rows.append(f"| `{arch}` | {r['dataset']} | {r['epochs_run']} ({r['status']}) | "
                    f"{100 * r['test_acc']:.2f}% | {r['test_loss']:.4f} | {r['train_time_s']:.0f} s | "
                    f"{r['images_per_sec']:,.0f} | {r['parameters']:,} | {get_entry(arch).published} |")
    return "\n".join(rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("archs", nargs="*", default=DEFAULT)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    if not a.table_only:
        for arch in a.archs:
            cli(["train", arch, "--results-dir", a.results_dir, "--name", f"reproduce-{arch}"])
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    print(table(Path(a.results_dir), a.archs))
