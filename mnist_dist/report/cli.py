"""`mnist-dist report [RESULTS_DIR]`: write RESULTS_DIR/report/ (index.html, comparison.md/.csv, figures).

Reads every sweep folder (summary.json) and training run (run.json) under
RESULTS_DIR; broken folders are named in a warning and left out. Re-run it after
more sweeps: the whole report is rebuilt."""
from __future__ import annotations

import sys
import time


def add_arguments(p) -> None:
    p.add_argument("results_dir", nargs="?", default="results",
                   help="folder holding sweep and run folders (default: results)")
    p.add_argument("--out", help="where to write the report (default: RESULTS_DIR/report)")
    p.add_argument("--data-dir", help="datasets folder for the image figures (default: $MNIST_DIST_DATA_DIR, "
                                      "else the one each run was trained from)")


def run(args) -> int:
    from .build import NothingToReport, build_report

    t0 = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr if msg.startswith("warning") else sys.stdout,  # noqa: E731
                            flush=True)
    try:
        rep = build_report(args.results_dir, args.out, args.data_dir, log=log)
    except NothingToReport as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_figs = sum(1 for f in rep.files if f.suffix == ".png")
    print(f"report of {len(rep.sources)} sweeps/runs ({len(rep.best)} architecture x dataset pairs), "
          f"{n_figs} figures, {len(rep.warnings)} warnings, in {time.perf_counter() - t0:.1f}s")
    print(f"wrote {rep.out_dir / 'index.html'} (open it in a browser), comparison.md, comparison.csv")
    return 0
