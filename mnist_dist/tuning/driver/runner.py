"""Run a sweep: Ray Tune + an Optuna sampler (TPE unless the sweep names another) choosing
configs, each trial a reused trial process (or a Ray Train DDP run), ASHA stopping poor
trials early; then collect everything under results/<name>/ and, with --final-seeds,
retrain the best config with more seeds.

The one place that puts the pieces together: options (what the sweep is), ray_setup (the
Ray it runs on), execution (how trials run), searcher and scheduler, results and final
(what it leaves behind). None of them imports this module."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from ... import layout
from ...config import ConfigError
from ...layout import save_json
from .. import internals, warmstart
from ..outputs.summary import EnsembleResult, SweepSummary, read_summary, write_summary
from ..execution.plan import (concurrency, make_trainable, resolve_gpus, reuses_processes, trial_checkpoints,
                        trials_per_gpu, trials_that_fit, tune_failures)
from ..options import SweepOptions, base_config, smoke_tested, sweep_name
from ..execution.ray_setup import DRIVER_ENV, init_ray, sessions_folder, wait_for_trial_processes
from ..execution import recovery
from ..spec import DefineByRun, SweepSpec, initial_points, max_epochs
from ..execution.signals import fit, held_while_ray_starts, restore_sigterm, stop_on_sigterm
from ..execution.storage import mask_url, open_storage, seal, write_ahead

class SweepLock:
    """Holds a sweep folder for the life of one driver: an OS lock on `.lock` inside it,
    which the kernel drops when the process ends, however it ends (so a crashed driver
    never leaves the folder stuck, and `--resume` can take it over at once). The file
    names the holder so a second driver's error can say who has it."""

    def __init__(self, sweep_dir: Path):
        import fcntl
        import socket

        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.file = layout.open_no_follow(sweep_dir / layout.LOCK, "r+")  # a planted symlink is refused
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"{sweep_dir} is in use by a running sweep ({holder}); wait for it to "
                              "finish, or pass --name to start a separate sweep") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.close()  # closing the file releases the lock


def prepare_dir(spec: SweepSpec, opts: SweepOptions) -> tuple[Path, SweepLock]:
    """Check the sweep's folder holds what the options say, claim it, then check again
    under the lock (another driver may have started a sweep there meanwhile). The first
    check comes before the folder is made: a failed one leaves nothing behind."""
    sweep_dir = (Path(opts.results_dir) / sweep_name(spec, opts)).resolve()
    check_dir(sweep_dir, opts)
    lock = SweepLock(sweep_dir)
    try:
        check_dir(sweep_dir, opts)
    except ConfigError:
        lock.release()
        raise
    return sweep_dir, lock


def check_dir(sweep_dir: Path, opts: SweepOptions) -> None:
    tune_dir = sweep_dir / layout.TUNE
    if opts.resume and not tune_dir.exists():
        raise ConfigError(f"--resume: {sweep_dir} holds no sweep to resume")
    if not opts.resume and tune_dir.exists():
        raise ConfigError(f"{sweep_dir} already holds a sweep; pass --resume to continue it, "
                          "or --name to start a new one")


def make_searcher(spec: SweepSpec, storage, name: str, points: list[dict] | None = None):
    """Optuna on the sweep's study: a new study's searcher tries `points` first (the baseline,
    the YAML's points); a continuation's joins the study its earlier runs filled."""
    from ..execution.searcher import BudgetAwareOptunaSearch
    from .samplers import make_sampler

    names, modes = zip(*spec.directions())
    several = len(names) > 1  # Tune's OptunaSearch takes lists for a multi-objective study
    return BudgetAwareOptunaSearch(
        space=DefineByRun(spec.space), metric=list(names) if several else names[0],
        mode=list(modes) if several else modes[0],
        points_to_evaluate=points or None, sampler=make_sampler(spec),
        study_name=name, storage=storage)


def make_scheduler(spec: SweepSpec, sweep_dir: Path):
    from ray.tune.schedulers import FIFOScheduler

    from ..execution.scheduler import ResumableASHA

    if spec.scheduler.type == "none":
        return FIFOScheduler()
    return ResumableASHA(sweep_dir / layout.ASHA_STATE, compare_within=spec.scheduler.compare_within,
                         time_attr="training_iteration",
                         metric=spec.metric, mode=spec.mode,
                         max_t=max_epochs(spec), grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)


def new_tuner(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path, ray, base: dict, storage, run: int = 1,
              trials: int | None = None):
    """The Tuner of the sweep's Tune run number `run` (its searcher writing to `storage`): 1
    starts the sweep, a later one continues it with `trials` more."""
    from ray import tune

    from ..execution.scheduler import ResumableASHA

    first = run == 1
    trials = spec.trials if first else trials
    ResumableASHA.resuming = not first  # a continuation's trials join the rungs the earlier runs filled
    if spec.scheduler.type == "pbt":  # Tune's PBT takes no search algorithm: its own population
        from ..execution.pbt import make_pbt, make_search, param_space

        searcher, scheduler, space = make_search(spec), make_pbt(spec), param_space(spec)
    else:  # a continuation's sampler gets a seed of its own: the sweep's would draw the first run's again
        searcher = make_searcher(spec if first else replace(spec, seed=spec.seed + 1000 * (run - 1)), storage,
                                 sweep_name(spec, opts), initial_points(spec) if first else None)
        scheduler, space = make_scheduler(spec, sweep_dir), None
    return tune.Tuner(
        make_trainable(opts, sweep_dir, base), param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            num_samples=trials, reuse_actors=reuses_processes(opts.scaling),
            max_concurrent_trials=concurrency(ray, opts.scaling, opts.max_concurrent or spec.max_concurrent,
                                              autoscaling=bool(opts.address))),
        run_config=tune.RunConfig(
            name=layout.TUNE if first else layout.TUNE_MORE.format(n=run), storage_path=str(sweep_dir),
            verbose=1 if opts.ray_logs and opts.verbose else 0,
            failure_config=tune.FailureConfig(max_failures=tune_failures(opts.scaling)),
            checkpoint_config=trial_checkpoints(3 if spec.scheduler.type == "pbt" else 1),
            callbacks=callbacks(spec, opts, sweep_dir, trials)))


def restored_tuner(opts: SweepOptions, sweep_dir: Path, base: dict, ended: frozenset[str]):
    """The sweep's latest Tune run as --resume restores it (`ended`: the trials it keeps ended,
    from recovery.read)."""
    from ray import tune

    from ..execution.scheduler import ResumableASHA

    ResumableASHA.resuming = True  # the restored scheduler reads its saved rungs back
    return tune.Tuner.restore(str(layout.tune_runs(sweep_dir)[-1]), trainable=make_trainable(opts, sweep_dir, base, ended),
                              resume_errored=True)


def callbacks(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path, trials: int) -> list:
    from .console import SweepProgress
    from .estimate import epochs_expected
    from ..execution.events import EventLog

    found = [EventLog(sweep_dir / layout.EVENTS)]
    if opts.verbose and not opts.ray_logs:
        found.append(SweepProgress(trials, spec.metric, spec.mode, epochs_left=epochs_expected(spec)))
    return found


def planned_trials(sweep_dir: Path) -> int:
    """How many trials the sweep's Tune runs were given, together (config.json; a run recorded
    there whose folder Tune never made, the driver killed in between, never ran)."""
    saved = json.loads((sweep_dir / layout.CONFIG_JSON).read_text())
    return sum(n for folder, n in saved_runs(saved).items() if (sweep_dir / folder).is_dir())


def saved_runs(saved: dict) -> dict[str, int]:
    """config.json's trials per Tune run folder (a sweep saved before continuations: one run)."""
    return saved.get("tune_runs", {layout.TUNE: saved["sweep"]["trials"]})


def run_sweep(spec: SweepSpec, opts: SweepOptions) -> dict:
    """Run (or resume) the sweep and write its results; returns summary.json's contents."""
    # a resumed sweep is the one it saved, smoke-tested already if it was
    spec = smoke_tested(spec) if opts.smoke_test and not opts.resume else spec
    sweep_dir, lock = prepare_dir(spec, opts)
    try:
        return _run(spec, opts, sweep_dir)
    finally:
        restore_sigterm()
        lock.release()


def _run(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path) -> dict:
    base = base_config(spec, opts)  # what every trial shares, computed once
    ray, opts = _start_ray(spec, opts, base, sweep_dir)  # opts as this run's Ray decided them
    summary = _search(spec, opts, sweep_dir, ray, base)
    if not summary.incomplete:
        summary = _after_search(summary, spec, opts, sweep_dir, ray, base)
    return summary.to_dict()


def _start_ray(spec: SweepSpec, opts: SweepOptions, base: dict, sweep_dir: Path):
    """Ray up, the estimate printed, GPUs decided and the resolved sweep saved. Returns Ray and
    a copy of `opts` with what this run decided (GPUs per trial); `opts` stays as given."""
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    internals.check()  # each private part of Ray and Optuna still there, or its feature off
    stop_on_sigterm()  # as Ctrl-C: see execution/signals.py
    with held_while_ray_starts():
        ray = init_ray(opts)
    # Timed while Ray's trial processes import torch: they run at nice 15 and take only the
    # CPU time these steps leave (lenet5's epoch estimated at 8.9 s so, 8.8 s before Ray's
    # start, 3 runs each on 2 cores: within the runs' spread of 0.9 s)
    if opts.verbose and not opts.resume and not opts.smoke_test:  # a smoke test takes seconds anyway
        print(preflight(spec, opts, base)["message"], flush=True)
    decided = replace(opts, scaling=resolve_gpus(opts.scaling, ray.cluster_resources()))
    if opts.verbose and decided.scaling.gpus_per_worker:
        print(f"GPU: {decided.scaling.gpus_per_worker:g} per trial worker (--gpus-per-worker to change)", flush=True)
    if not opts.resume:  # once the GPUs are decided
        save_resolved(spec, opts, base, sweep_dir, decided.scaling)
    return ray, decided


def _search(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path, ray, base: dict) -> SweepSummary:
    """Tune's run, from the first trial to the last, then the results of all the sweep's runs
    collected. --resume restores the latest run, then, when the sweep now has more trials than
    its runs were given, continues it in a new run on the same Optuna study and ASHA rungs."""
    from ..outputs.results import collect

    earlier = previous_wall_time(sweep_dir) if opts.resume else 0.0
    if not opts.address:  # an embedded Ray: its first trials' processes were started ahead
        wait_for_trial_processes(concurrency(ray, opts.scaling, opts.max_concurrent or spec.max_concurrent))
    t0 = time.time()
    storage = None
    if opts.resume:
        found = _recover(spec, opts, sweep_dir)
        results = [*finished_runs(sweep_dir), *fit(restored_tuner(opts, sweep_dir, base, found.ended))]
        more = spec.trials - planned_trials(sweep_dir)
        if more > 0 and not cut_short(sweep_dir, results):
            storage = open_storage(opts.storage, sweep_dir)  # the study the earlier runs filled
            run = len(layout.tune_runs(sweep_dir)) + 1
            record_run(sweep_dir, spec, layout.TUNE_MORE.format(n=run), more)
            if opts.verbose:
                print(f"continuing {sweep_dir.name}: {more} more trials, {spec.trials} in all; the sampler "
                      "starts from every earlier trial, ASHA from its saved rungs", flush=True)
            results += fit(new_tuner(spec, opts, sweep_dir, ray, base, storage, run, more))
    else:
        recovery.start_fresh()
        storage = open_storage(opts.storage, sweep_dir)
        ws = warmstart.saved(sweep_dir)
        if ws is not None and ws.kind == warmstart.HISTORY:  # into the study before its searcher loads it
            warmstart.add_history(ws, spec, storage, sweep_name(spec, opts))
        results = list(fit(new_tuner(spec, opts, sweep_dir, ray, base, storage)))
    if not opts.storage:
        seal(sweep_dir, storage)
    return collect(results, spec, opts, sweep_dir, base, wall_time=earlier + time.time() - t0)


def finished_runs(sweep_dir: Path) -> list:
    """The results of the sweep's Tune runs before its latest (a continued sweep's): each ran
    to its end before the next began, so Tune's saved state of each is final."""
    from ray import tune

    return [r for run in layout.tune_runs(sweep_dir)[:-1] for r in tune.ResultGrid(tune.ExperimentAnalysis(str(run)))]


def cut_short(sweep_dir: Path, results: list) -> bool:
    """The latest run stopped before its end (Ctrl-C, SIGTERM): a trial it started never
    ended, or it has fewer trials than it was given. A continuation waits for the next --resume."""
    from ..execution.events import ended_trials

    return bool({(r.metrics or {}).get("trial_id") for r in results} - ended_trials(sweep_dir / layout.EVENTS)) \
        or len(results) < planned_trials(sweep_dir)


def record_run(sweep_dir: Path, spec: SweepSpec, folder: str, trials: int) -> None:
    """config.json (and .yaml) say the sweep now has `spec.trials` trials, `trials` of them in
    the Tune run `folder`: a later --resume continues to that many."""
    saved = json.loads((sweep_dir / layout.CONFIG_JSON).read_text())
    saved["tune_runs"] = {**saved_runs(saved), folder: trials}
    saved["sweep"]["trials"] = spec.trials
    save_json(saved, sweep_dir / layout.CONFIG_JSON)
    _write_yaml(saved, sweep_dir / layout.CONFIG_YAML)


def _recover(spec: SweepSpec, opts: SweepOptions, sweep_dir: Path) -> recovery.Recovery:
    """What the stopped driver left, read once before Tune restores the sweep."""
    if not opts.storage:
        write_ahead(sweep_dir)
    reader = open_storage(opts.storage, sweep_dir)
    try:
        found = recovery.read(sweep_dir, reader, sweep_name(spec, opts), sessions_folder())
    finally:
        reader.engine.dispose()
    for name in found.repaired:
        print(f"--resume: {name} was truncated by the kill; restored from Ray's staging copy", flush=True)
    return found


def _after_search(summary: SweepSummary, spec: SweepSpec, opts: SweepOptions, sweep_dir: Path, ray,
                  base: dict) -> SweepSummary:
    """The ensemble of the best trials and, with --final-seeds, the seed runs: summary.json
    is written again as each ends, so an interrupted seed run still leaves the ensemble there."""
    if summary.best is not None:
        ensemble = _ensemble(summary, spec, sweep_dir, base)
        if ensemble is not None:
            summary = replace(summary, ensemble=ensemble)
            write_summary(summary, sweep_dir)
    if opts.final_seeds:
        from .final import run_final_seeds

        limit = concurrency(ray, opts.scaling, opts.max_concurrent or spec.max_concurrent)
        t0 = time.time()
        final = run_final_seeds(spec, opts, sweep_dir, summary.best and summary.best.best_config, base, limit)
        summary = replace(summary, final_seeds=replace(final, wall_time_s=time.time() - t0))
        write_summary(summary, sweep_dir)
    return summary


def _ensemble(summary: SweepSummary, spec: SweepSpec, sweep_dir: Path, base: dict) -> EnsembleResult | None:
    """The ensemble of the best trials; None with fewer than two, its error if it failed."""
    from ..outputs.ensemble import build_ensemble
    from ..outputs.results import read_rows

    try:
        return build_ensemble(read_rows(sweep_dir / layout.TRIALS_CSV), spec, sweep_dir, base, summary.best.test_acc)
    except (OSError, RuntimeError, ValueError) as e:  # the sweep's results stand without it
        print(f"warning: no ensemble: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return EnsembleResult(error=f"no ensemble: {type(e).__name__}: {e}")


def save_resolved(spec: SweepSpec, opts: SweepOptions, base: dict, sweep_dir: Path, scaling) -> None:
    """config.json/.yaml: the sweep (what --resume runs), the options as given, the config
    trials share, and apart from them what this run decided once Ray was up."""
    options = {**asdict(opts), "storage": mask_url(opts.storage)}  # files a user shares: no password
    resolved = {"sweep": spec.to_dict(), "options": options, "base_config": base,
                "decided_at_start": {"scaling": asdict(scaling)}, "tune_runs": {layout.TUNE: spec.trials}}
    if opts.warm_start:  # what the earlier sweep gave, as read now: the sweep's record of it
        resolved["warm_start"] = warmstart.read(opts.warm_start, spec).to_dict()
    save_json(resolved, sweep_dir / layout.CONFIG_JSON)
    _write_yaml(resolved, sweep_dir / layout.CONFIG_YAML)


def previous_wall_time(sweep_dir: Path) -> float:
    """The search time a resumed sweep had already spent (its last summary.json; a driver
    killed before writing one leaves 0), so summary.json's wall time covers the whole search."""
    try:
        return float(read_summary(sweep_dir).wall_time_s)
    except (OSError, ValueError):
        return 0.0


def preflight(spec: SweepSpec, opts: SweepOptions, base: dict) -> dict:
    """Time a few steps of the baseline here and estimate the sweep."""
    from .estimate import describe, estimate, local_gpus

    # as many trials as this machine's CPUs and GPUs hold (a GPU shared as the sweep will)
    resources = {"CPU": os.cpu_count() or 1, "GPU": local_gpus()}
    scaling = resolve_gpus(opts.scaling, resources)
    slots = max(1, trials_that_fit(scaling, resources))
    limit = opts.max_concurrent or spec.max_concurrent
    slots = min(slots, limit) if limit else slots
    # each trial's device, and its CPU threads: Ray sets a trial's OMP_NUM_THREADS to its CPUs
    device = "cuda" if scaling.gpus_per_worker and resources["GPU"] else "cpu"
    threads = max(1, int(scaling.cpus_per_worker))
    est = estimate(spec, base, slots, sharing=min(trials_per_gpu(scaling), slots), device=device, threads=threads)
    return {**est, "message": describe(est, spec.arch)}


def _write_yaml(obj: dict, path: Path) -> None:
    import yaml

    layout.write_text(path, yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False))
