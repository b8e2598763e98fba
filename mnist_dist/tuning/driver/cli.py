"""`mnist-dist sweep ARCH` and `python sweeps/run.py ARCH`: the sweep command line.

Everything is parsed and validated (architecture, YAML keys, values) before
Ray starts, so a typo costs a second, not a cluster start-up."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ... import layout
from ...models import list_models
from ...config import (ConfigError, check_value, config_flag, non_negative_float, non_negative_int,
                       positive_float, positive_int)
from ..execution.storage import ENV_STORAGE, mask_url, take_storage_url
from ..spec import RANGES, SAMPLERS, TYPES, load_spec, schedule_warning


def gpus(s: str) -> float | None:
    """--gpus-per-worker: auto (None: decided once Ray sees the GPUs), a fraction below 1 (trials
    sharing a GPU) or a whole number; Ray refuses fractions above 1."""
    if s.strip().lower() == "auto":
        return None
    value = non_negative_float(s)
    if value > 1 and not value.is_integer():
        raise argparse.ArgumentTypeError(f"{value} must be auto, a fraction below 1 (trials sharing "
                                         "a GPU) or a whole number of GPUs")
    return value


def sweep_flag(key: str):
    """An argparse `type=` for a flag that sets a top-level key of the sweep YAML: checked
    against that key's range (spec.RANGES) as it is parsed, as config_flag does for training
    fields, so a bad value is argparse's one-line error."""
    def parse(text: str):
        try:
            return check_value(text, TYPES[key], RANGES[key])
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = key
    return parse


def add_arguments(p) -> None:
    p.add_argument("arch", help=f"architecture to sweep, or 'all': {', '.join(list_models())}")
    p.add_argument("--config", help="sweep YAML (default: sweeps/ARCH.yaml)")
    p.add_argument("--dataset", type=config_flag("dataset"), help="mnist, fashion-mnist or kmnist (default: the YAML's)")
    p.add_argument("--trials", type=positive_int, help="number of trials (default: the YAML's)")
    p.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers (DDP) per trial")
    p.add_argument("--cpus-per-worker", type=positive_float, default=1.0, help="CPUs per worker")
    p.add_argument("--gpus-per-worker", type=gpus, default=None, metavar="G",
                   help="GPUs per worker; fractions let several single-worker trials share a GPU. "
                   "Default auto: none on a machine or cluster without GPUs; with GPUs, 0.25 per "
                   "single-worker trial (four small trials share one GPU) and 1 per DDP worker")
    p.add_argument("--max-concurrent", type=positive_int, help="cap on trials running at once")
    p.add_argument("--address", help="Ray cluster to join ('auto' after `ray up`); default: "
                   "an embedded local Ray sized to this machine")
    p.add_argument("--results-dir", default="results", help="where results/<name>/ goes (may be shared storage)")
    p.add_argument("--name", help="sweep folder name (default: ARCH-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in its folder; "
                   "with --trials N, grow a sweep (finished or not) to N trials")
    p.add_argument("--seed", type=config_flag("seed"), help="seed for the sampler and every trial's training")
    p.add_argument("--sampler", type=sweep_flag("sampler"), metavar="{" + ",".join(SAMPLERS) + "}",
                   help="search algorithm: Optuna's TPE, Gaussian process, CMA-ES or random search "
                   "(default: the YAML's, else tpe)")
    p.add_argument("--warm-start", metavar="SWEEP_DIR",
                   help="start from an earlier sweep's trials: as the sampler's history when it swept the same "
                   "architecture, data and metric, else its best 3 configs tried right after the baseline")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, 2 trials, 1 epoch (about 20 s)")
    p.add_argument("--data-dir", help="folder of IDX datasets (default: $MNIST_DIST_DATA_DIR, then download)")
    p.add_argument("--images", metavar="DIR", help="sweep over your own image folder (DIR/train/ and DIR/test/, "
                   "files {label}_{index}.png or {label}/ subfolders) instead of --dataset")
    p.add_argument("--storage", help="Optuna storage URL (default: $MNIST_DIST_STORAGE, else sqlite in the sweep "
                   "folder); a password in it is shown and saved as ***")
    p.add_argument("--final-seeds", type=non_negative_int, default=0, metavar="K",
                   help="retrain the best config and the source's baseline config with K more seeds each; "
                   "report test mean +/- std of both")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--estimate-only", action="store_true",
                   help="time a few training steps here, print how long the sweep would take, and exit")
    p.add_argument("--ray-logs", action="store_true",
                   help="also show Ray's worker logs and Tune's status tables (they are always on disk)")


def validate_gpu_sharing(args) -> None:
    from ...config import ConfigError

    if args.workers > 1 and args.gpus_per_worker is not None and 0 < args.gpus_per_worker < 1:
        raise ConfigError("--gpus-per-worker below 1 with --workers > 1 puts two DDP ranks on one GPU, "
                          "which NCCL rejects ('Duplicate GPU detected'); share GPUs across "
                          "single-worker trials (--workers 1) instead")


def check_pbt_workers(args, spec) -> None:
    """PBT hands a trial another trial's checkpoint mid-run: single-worker trials only."""
    if spec.scheduler.type == "pbt" and args.workers > 1:
        raise ConfigError(f"--workers {args.workers} with scheduler.type pbt ({spec.arch}): PBT trials run in one "
                          "process each; use --workers 1, or type: asha for DDP trials")


def check_image_folder(path: str) -> None:
    """Before Ray starts: the folder and its two splits exist (reading every image waits
    for the trials)."""
    from pathlib import Path

    from ...config import ConfigError

    root = Path(path).expanduser()
    missing = [split for split in ("train", "test") if not (root / split).is_dir()]
    if missing:
        raise ConfigError(f"images {root}: expected subfolders train/ and test/; missing {', '.join(missing)}/")


def check_data_folder(dataset: str, data_dir: str | None) -> None:
    """Before Ray starts: a data folder that is set holds the dataset. Otherwise every
    trial fails on it, each with a traceback, after Ray's start. Only on this machine: a
    cluster's workers may see the folder where this driver does not."""
    from ...data.datasets import ENV_DATA_DIR, locate

    if data_dir or os.environ.get(ENV_DATA_DIR):
        locate(dataset, data_dir, download=False)  # a DataError names the folder and the files


def build(args, arch: str):
    from ..options import Scaling, SweepOptions

    spec = load_spec(arch, args.config, {"dataset": args.dataset, "trials": args.trials, "seed": args.seed,
                                         "sampler": args.sampler})
    check_pbt_workers(args, spec)
    if args.images:
        spec.fixed["images"] = args.images
    if spec.fixed.get("images"):
        check_image_folder(spec.fixed["images"])
    elif not args.address:
        check_data_folder(spec.dataset, args.data_dir)
    opts = SweepOptions(
        results_dir=args.results_dir, name=args.name if args.arch != "all" else None,
        scaling=Scaling(args.workers, args.cpus_per_worker, args.gpus_per_worker),
        max_concurrent=args.max_concurrent, address=args.address, resume=args.resume,
        smoke_test=args.smoke_test, data_dir=args.data_dir, storage=args.storage,
        final_seeds=args.final_seeds, verbose=0 if args.quiet else 1,
        warm_start=str(Path(args.warm_start).expanduser().resolve()) if args.warm_start else None,
        ray_logs=args.ray_logs or os.environ.get("MNIST_DIST_RAY_LOGS") == "1")
    if args.resume:
        return resumed_spec(args, spec, opts), opts
    return warm_started(spec, opts), opts


def warm_started(spec, opts):
    """A new sweep with --warm-start: the source read and checked now, before Ray starts. Its
    starting points (from a sweep that does not compare) go right after the baseline; its
    history goes into the study when the sweep starts (runner)."""
    if not opts.warm_start:
        return spec
    from .. import warmstart

    if spec.scheduler.type == "pbt":
        raise ConfigError(f"--warm-start with scheduler.type pbt ({spec.arch}): PBT draws its population at random "
                          "and steers it itself; warm-start a sweep with type: asha or none")
    ws = warmstart.read(opts.warm_start, spec)
    spec.points[:0] = ws.points()
    if opts.verbose:
        print(f"{spec.arch}: {ws.describe()}", flush=True)
    return spec


# What a sweep is fixed when it starts; --resume with one of these set to another value would
# run a sweep other than the one it continues (--trials may grow it: resumed_spec)
SWEEP_FLAGS = {"seed": "seed", "dataset": "dataset", "sampler": "sampler"}


def resumed_spec(args, spec, opts):
    """--resume runs the sweep its folder saved (config.json), not the YAML as it is now, with
    more trials if --trials asks for them. A flag asking for another sweep (another seed,
    fewer trials) is an error, not ignored."""
    from ...config import ConfigError
    from ..options import sweep_name
    from ..spec import saved_spec

    config_json = Path(opts.results_dir).expanduser() / sweep_name(spec, opts) / layout.CONFIG_JSON
    if not config_json.is_file():
        return spec  # nothing started there: the runner says there is nothing to resume
    saved = saved_spec(spec.arch, config_json)
    for flag, key in SWEEP_FLAGS.items():
        given = getattr(args, flag, None)
        if given is not None and given != getattr(saved, key):
            raise ConfigError(f"--{flag} {given} with --resume: the sweep in {config_json.parent} was started "
                              f"with {key} {getattr(saved, key)!r}, and --resume continues it as it started; "
                              "start a new sweep (another --name) for other settings")
    given, started = opts.warm_start, _saved_warm_start(config_json)
    if given is not None and given != started:
        raise ConfigError(f"--warm-start {args.warm_start} with --resume: the sweep in {config_json.parent} started "
                          f"{'from ' + started if started else 'cold'}, and a warm start applies when a sweep starts; "
                          "start a new sweep (another --name) to warm-start it")
    if args.trials is not None and args.trials < saved.trials:
        raise ConfigError(f"--trials {args.trials} with --resume: the sweep in {config_json.parent} already has "
                          f"{saved.trials} trials; --trials can only add to them (pass a number above {saved.trials})")
    if args.trials is not None and args.trials > saved.trials and saved.scheduler.type == "pbt":
        raise ConfigError(f"--trials {args.trials} with --resume: the sweep in {config_json.parent} is a PBT "
                          "population, which cannot grow once it has trained; start a new sweep with more trials")
    if args.trials is not None:
        saved.trials = args.trials  # the runner continues the sweep in a new Tune run up to this many
    return saved


def _saved_warm_start(config_json: Path) -> str | None:
    import json

    try:
        return json.loads(config_json.read_text()).get("options", {}).get("warm_start")
    except (OSError, ValueError, AttributeError):
        return None


def run(args) -> int:
    plans = checked_plans(args)
    from ..execution.ray_setup import token_auth

    token_auth()  # before Ray is imported: releases before 2.60 read their auth mode then
    if args.estimate_only:
        from ..options import base_config, smoke_tested
        from .runner import preflight

        for spec, opts in plans:
            spec = smoke_tested(spec) if opts.smoke_test else spec
            print(preflight(spec, opts, base_config(spec, opts))["message"])
        return 0
    failed = 0
    for spec, opts in plans:
        code, summary = run_one(args, spec, opts)
        if code is not None:
            return code
        failed += "error" in summary
    return 1 if failed else 0


def checked_plans(args) -> list:
    """Every sweep the command names, validated (and its warnings said) before Ray starts."""
    if args.name is not None:
        layout.check_name(args.name)
    layout.check_results_dir(args.results_dir)
    args.storage = take_storage_url(args.storage)
    validate_gpu_sharing(args)
    archs = list_models() if args.arch == "all" else [args.arch]
    plans = [build(args, a) for a in archs]
    from .samplers import fallback_note

    for spec, opts in plans:
        warning = None if opts.smoke_test else schedule_warning(spec)  # a smoke test has no ASHA
        # said once here: Optuna's own warning, per parameter and trial, is off (samplers.py)
        for line in (warning, fallback_note(spec)):
            if line:
                print(f"{spec.arch}: {line}", file=sys.stderr, flush=True)
    return plans


def run_one(args, spec, opts) -> tuple[int | None, dict]:
    """One sweep run and its closing lines: (the exit status if the command stops here, its summary)."""
    from ..execution.signals import exit_code, set_resume_command, signalled
    from ..outputs.results import read_rows
    from ..outputs.summary import SweepSummary
    from .console import final_message
    from ..options import sweep_name
    from .runner import run_sweep

    set_resume_command(resume_command(args, sweep_name(spec, opts)))
    try:
        summary = run_sweep(spec, opts)
    except (KeyboardInterrupt, Exception) as e:
        # Ctrl-C outside Tune's runs (before the first trial, at the ensemble), or any error
        # after a signal (Ray's processes may have had it too: see execution/signals.py)
        if not (isinstance(e, KeyboardInterrupt) or signalled()):
            raise
        if not isinstance(e, KeyboardInterrupt):
            print(f"after the signal: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        name = sweep_name(spec, opts)
        started = (Path(opts.results_dir).resolve() / name / layout.TUNE).is_dir()
        print("\ninterrupted: " + (f"the finished trials are kept. Resume with:\n  {resume_command(args, name)}"
                                   if started else "before the first trial; nothing to resume"), flush=True)
        return exit_code(), {}
    result = SweepSummary.from_dict(summary)
    sweep_dir = Path(opts.results_dir).resolve() / result.name
    print(final_message(result, read_rows(sweep_dir / layout.TRIALS_CSV), sweep_dir,
                        resume_command(args, result.name)), flush=True)
    if result.unfinished or signalled():
        return exit_code(), summary  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    return None, summary


def resume_command(args, name: str) -> str:
    """The command that continues this sweep: the one given, for this sweep, plus --resume."""
    argv = [a for a in sys.argv[1:] if a != "--resume"]
    argv = argv[1:] if argv[:1] == ["sweep"] else argv  # `mnist-dist sweep ...`
    if args.arch == "all":  # continue just the interrupted one
        argv = [name.split("-")[0] if a == "all" else a for a in argv] + ["--name", name]
    return " ".join(["python", "sweeps/run.py", *map(shown_arg, argv), "--resume"])


def shown_arg(arg: str) -> str:
    """An argument as a printed command shows it: shell-quoted, and a storage URL holding a
    password as "$MNIST_DIST_STORAGE", which the user sets to it (the sweep reads it there)."""
    if mask_url(arg) == arg:
        return shlex.quote(arg)
    flag = arg.split("=", 1)[0] + "=" if arg.startswith("--") and "=" in arg.split("://", 1)[0] else ""
    return f'{flag}"${ENV_STORAGE}"'
