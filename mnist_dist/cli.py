"""`mnist-dist` command line: one subcommand per module, imported only when used
(importing Ray takes seconds; `mnist-dist models` should not pay for it)."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with add_arguments(parser) and run(args) -> exit code, one-line help)
COMMANDS = {
    "models": ("mnist_dist.models.cli", "list the architectures, their inputs and parameter counts"),
    "train": ("mnist_dist.training.cli", "train one architecture locally and evaluate it on the test set"),
    "sweep": ("mnist_dist.tuning.driver.cli", "hyperparameter sweep: Ray Tune + Optuna, trials in reused processes or Ray Train"),
    "sweeps": ("mnist_dist.tuning.driver.configs_cli", "list the shipped sweep configs (YAML) and where they are"),
    "report": ("mnist_dist.report.cli", "tables, plots and an HTML report over everything in results/"),
    "dashboard": ("mnist_dist.tuning.outputs.dashboard", "serve a sweep's Optuna study in optuna-dashboard on 127.0.0.1"),
    "predict": ("mnist_dist.inference.predict_cli", "predict the class of image files with a trained model"),
    "evaluate": ("mnist_dist.inference.evaluate_cli", "evaluate a trained model on a dataset or image folder"),
    "export": ("mnist_dist.inference.export", "export a trained model (TorchScript, ONNX) for deployment"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="mnist-dist", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])  # only the one that runs
    p = argparse.ArgumentParser(prog=f"mnist-dist {argv[0]}", description=COMMANDS[argv[0]][1])
    module.add_arguments(p)
    return run_command(module.run, p.parse_args(argv[1:]))


def run_command(fn, args) -> int:
    """Turn the errors a user can fix, and failures of the disk, into one clear line and the
    exit status errors.EXIT_CODES gives them; Ctrl-C that a command did not handle is 130."""
    from .errors import INTERRUPTED, USAGE, UserError, os_error_line
    from .models.registry import UnknownModelError

    try:
        return int(fn(args) or 0)
    except (UserError, UnknownModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # `mnist-dist models | head`: the reader has all it wanted (entry())
        raise
    except OSError as e:
        line, code = os_error_line(e)
        print(f"error: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


def entry(argv: list[str] | None = None) -> None:
    """The program (`mnist-dist`, `python sweeps/run.py`): main(), then a quick exit.

    Python's own teardown after a sweep (unloading torch, Ray, Optuna, freeing the data)
    takes about 2 s on 2 CPU cores, with nothing left to do: every file is written
    atomically and closed by then. So Ray is shut down, every stream flushed, and the
    process ends without it. Tests call main(), which returns as usual."""
    import gc
    import logging
    import os

    try:
        code = main(argv)
    except BrokenPipeError:  # `mnist-dist models | head`: the reader has all it wanted
        os._exit(141)  # what a shell reports for SIGPIPE
    if sys.modules.get("ray") is not None:  # Ray was imported (None: it was blocked)
        from .tuning.execution.ray_setup import stop_ray

        stop_ray()
    gc.collect()  # a file object left to the garbage collector is flushed and closed
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
