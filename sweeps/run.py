"""Sweep one architecture (or `all`): python sweeps/run.py ARCH [options]; --help lists them."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from mnist_dist.cli import entry  # noqa: E402

if __name__ == "__main__":
    entry(["sweep", *sys.argv[1:]])
