"""The fence: every use of a private part of Ray or Optuna, and nowhere else.

A private part is anything under `ray._private`, an `_internal` module, a name starting
with `_`, an undocumented module variable, or a file layout of theirs. The sweep needs a
few of them for speed or for repairs no public API offers. Each is one `Hook` below: what
it touches, why, the releases it was checked on, and what a user loses without it.

`check()` runs when a sweep starts (never at import: `mnist-dist models` must not import
Ray). A hook whose internal is gone, or that `MNIST_DIST_DISABLE_HOOKS` names (a
comma-separated list of hook names, or `all`), is switched off with one warning line and
its feature falls back to plain public behaviour: the sweep still runs. Every accessor
below works with its hook off.
"""
from __future__ import annotations

import contextlib
import inspect
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

CHECKED_ON = "Ray 2.58.0, 2.59.0, 2.60.0; Optuna 5.0.0"
DISABLE_ENV = "MNIST_DIST_DISABLE_HOOKS"


@dataclass(frozen=True)
class Hook:
    name: str
    touches: str  # the private names or layout it relies on
    why: str
    without: str  # what a user loses when it is off
    present: Callable[[], bool]


def _has(module: str, *names: str) -> bool:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    return all(hasattr(mod, n) for n in names)


def _source_mentions(obj, *names: str) -> bool:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return False
    return all(n in source for n in names)


def _raylet_knows(key: bytes) -> bool:
    """A Ray system-config key is compiled into the raylet library, not a Python name."""
    import ray._raylet

    try:
        with open(ray._raylet.__file__, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(key) >= 0
    except (OSError, ValueError):
        return False


def _process_groups_present() -> bool:
    return _has("ray._private.services", "ConsolePopen") and _has("ray._private.utils", "detect_fate_sharing_support")


def _node_present() -> bool:
    import ray._private.node as node

    return _has("ray._private.worker", "_global_node") and _source_mentions(node.Node.__init__, "self.all_processes") \
        and all(callable(getattr(node.Node, n, None)) for n in ("get_session_dir_path", "kill_monitor"))


def _preload_present() -> bool:
    from ray._private.workers import default_worker

    return _raylet_knows(b"preload_python_modules") and _source_mentions(default_worker, "worker_preload_modules")


def _tune_env_present() -> bool:
    from ray.tune.execution import class_cache

    return isinstance(getattr(class_cache, "DEFAULT_ENV_VARS", None), dict)


def _trainable_present() -> bool:
    from ray.tune import Trainable

    return _source_mentions(Trainable.__init__, "self._storage", "self._iteration") and \
        _has("ray.train._internal.storage", "StorageContext")


def _training_result_present() -> bool:
    return _has("ray.train._internal.checkpoint_manager", "_TrainingResult")


def _asha_present() -> bool:
    from ray.tune.schedulers import ASHAScheduler

    try:
        asha = ASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
        bracket = asha._brackets[0]
        return isinstance(asha._trial_info, dict) and isinstance(asha._num_stopped, int) and \
            all(isinstance(r[1], dict) for r in bracket._rungs)
    except (AttributeError, TypeError, IndexError):
        return False


def _optuna_search_present() -> bool:
    from ray.tune.search.optuna import OptunaSearch

    return _source_mentions(OptunaSearch, "self._ot_trials", "self._ot_study", "self._completed_trials")


def _optuna_ids_present() -> bool:
    import optuna

    return _source_mentions(optuna.trial.FrozenTrial, "self._trial_id") and \
        _source_mentions(optuna.trial.Trial.__init__, "self._trial_id") and \
        _source_mentions(optuna.Study.__init__, "self._storage")


def _snapshot_layout_present() -> bool:
    from ray.train._internal import storage
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.search_generator import SearchGenerator
    from ray.tune.search.searcher import Searcher

    names = (TuneController.CKPT_FILE_TMPL, SearchGenerator.CKPT_FILE_TMPL, Searcher.CKPT_FILE_TMPL)
    return names == tuple(p.replace("*", "{}") for p in SNAPSHOT_FILES) and \
        _source_mentions(storage, '"driver_artifacts"')


def _checkpoint_names_present() -> bool:
    from ray.train._internal.storage import StorageContext

    return _source_mentions(StorageContext, 'f"checkpoint_{index:06d}"')


# Tune's snapshot of a sweep, one set per driver, and where a driver stages it first
SNAPSHOT_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")
STAGED_SNAPSHOT = "session_*/artifacts/*/{experiment}/driver_artifacts/{file}"

HOOKS = {h.name: h for h in (
    Hook("process-groups", "ray._private.services.ConsolePopen, ray._private.utils.detect_fate_sharing_support",
         "Ray's processes start in process groups of their own, so SIGTERM to the sweep's group "
         "(timeout, batch schedulers) reaches only the driver, which stops as on Ctrl-C",
         "SIGTERM to the whole process group also hits Ray's processes: the sweep may end with "
         "exit 143 from the watchdog (or 1) instead of a clean summary", _process_groups_present),
    Hook("sigterm-while-starting", "ray._private.utils.set_sigterm_handler",
         "a SIGTERM while Ray starts waits until it has, then stops the sweep as Ctrl-C does",
         "a SIGTERM in the first seconds may end the command with Ray's handler (exit 15, no word)",
         lambda: _has("ray._private.utils", "set_sigterm_handler")),
    Hook("ray-node", "ray._private.worker._global_node (all_processes, get_session_dir_path, kill_monitor)",
         "Ray's temp folder for repairing a hard-killed sweep's snapshot; the watchdog that sees a "
         "signal reach Ray's processes; a shutdown 1 s faster",
         "`--resume` after a kill during Tune's snapshot copy cannot repair it; a signal to every "
         "process of a job may hang the sweep; each command ends 1 s later", _node_present),
    Hook("worker-preload", "ray.init(_system_config={'preload_python_modules': ...})",
         "the workers Ray starts with the cluster import torch and the trial code before the "
         "first trial (about 4 s of each trial process's start)",
         "the first trials in each process pay torch's import", _preload_present),
    Hook("tune-actor-env", "ray.tune.execution.class_cache.DEFAULT_ENV_VARS['PL_DISABLE_FORK']",
         "Tune gives every trial actor a runtime_env (a PyTorch Lightning workaround), which makes "
         "Ray start a new worker for it instead of a prestarted one",
         "each trial process starts from scratch (about 4 s more per process)", _tune_env_present),
    Hook("trainable-state", "Trainable._storage.trial_fs_path, Trainable._iteration",
         "a resumed trial finds its newest checkpoint in its own folder and Tune's epoch count "
         "follows the restored state",
         "`--resume` after a hard kill may retrain a trial that had ended, or count epochs twice",
         _trainable_present),
    Hook("training-result", "ray.train._internal.checkpoint_manager._TrainingResult",
         "restore a trial from the newest checkpoint when Tune's snapshot names one replaced since",
         "`--resume` after a hard kill restarts such a trial from its first epoch", _training_result_present),
    Hook("asha-rungs", "ASHAScheduler._brackets, _trial_info, _num_stopped; _Bracket._rungs",
         "ASHA's rungs saved beside the sweep and restored on `--resume`; `compare_within` "
         "gives each kind of trial rungs of its own",
         "a resumed sweep's ASHA starts with empty rungs (stops nothing until they refill); "
         "`compare_within` is ignored", _asha_present),
    Hook("optuna-search", "OptunaSearch._ot_trials, _ot_study, _completed_trials",
         "trials ASHA stopped are told to Optuna as PRUNED, not COMPLETE with a 1-epoch value; "
         "a resumed sweep keeps Optuna's and Tune's trials one to one",
         "TPE learns from stopped trials' early values as if final; a resumed sweep may re-ask "
         "configs", _optuna_search_present),
    Hook("optuna-ids", "optuna FrozenTrial._trial_id, Trial(study, trial_id), Study._storage",
         "find trials a killed driver left RUNNING and ask the storage whether a trial has ended",
         "a resumed sweep leaves such trials RUNNING in the study", _optuna_ids_present),
    Hook("checkpoint-folders", "Tune's trial folder names (NAME_TRIALID_...) and checkpoint_NNNNNN folders in them",
         "find a trial's newest checkpoint when Tune's record names one replaced since (a driver "
         "killed between the two, or a DDP trial stopped mid-epoch)",
         "such a trial restarts from its first epoch on `--resume`, or its best model is not "
         "copied out", _checkpoint_names_present),
    Hook("tune-snapshot", "Tune's snapshot file names and its driver_artifacts staging folder",
         "a snapshot file truncated by a hard kill is replaced by the whole copy Ray staged",
         "`--resume` after such a kill fails with a clear error instead", _snapshot_layout_present),
)}

_state: dict[str, bool] = {}  # hook name -> on, once checked


def _disabled_by_env() -> set[str]:
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return set(HOOKS) if "all" in names else names


def check(warn: Callable[[str], None] | None = None) -> dict[str, bool]:
    """Check every hook once per process; warn (one line each) about those switched off."""
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    for name in HOOKS:
        if name not in _state:
            on, reason = _probe(name)
            _state[name] = on
            if not on:
                warn(f"warning: {reason}: {HOOKS[name].without}")
    return dict(_state)


def _probe(name: str) -> tuple[bool, str]:
    if name in _disabled_by_env():
        return False, f"{name} switched off by {DISABLE_ENV}"
    try:
        found = HOOKS[name].present()
    except Exception:  # noqa: BLE001 - any failure to find a private name means it is not usable
        found = False
    return found, f"{name} off ({HOOKS[name].touches} not found in this Ray/Optuna release)"


def on(name: str) -> bool:
    """The hook is usable (checked now, silently, if the sweep's start did not)."""
    if name not in _state:
        _state[name] = _probe(name)[0]
    return _state[name]


def reset() -> None:
    """Forget what was checked (tests switch hooks off and on)."""
    _state.clear()


# ---- process-groups ----------------------------------------------------------------------

@contextlib.contextmanager
def ray_processes_in_own_group() -> Iterator[None]:
    """Ray's processes started meanwhile (GCS, raylet, its workers, log monitor, dashboard) go
    in a process group of their own. Only where the kernel kills them with the driver
    (fate sharing): without it Ray's reaper needs them in the driver's group."""
    if not on("process-groups"):
        yield
        return
    from ray._private import services, utils

    if sys.platform == "win32" or not utils.detect_fate_sharing_support():
        yield
        return
    found = services.ConsolePopen

    class InOwnGroup(found):
        def __init__(self, *args, **kwargs):
            ray_preexec = kwargs.get("preexec_fn")  # Ray's: block SIGINT, die with the parent

            def preexec():  # in the child, before exec (Popen's process_group needs 3.11)
                os.setpgid(0, 0)
                if ray_preexec:
                    ray_preexec()

            super().__init__(*args, **{**kwargs, "preexec_fn": preexec})

    services.ConsolePopen = InOwnGroup
    try:
        yield
    finally:
        services.ConsolePopen = found


# ---- sigterm-while-starting --------------------------------------------------------------

@contextlib.contextmanager
def ray_sigterm_handlers_diverted(keep: Callable) -> Iterator[bool]:
    """While Ray starts, the SIGTERM handlers it would set are handed to `keep` instead.
    Yields whether they are (False: the hook is off and Ray sets its own)."""
    if not on("sigterm-while-starting"):
        yield False
        return
    from ray._private import utils

    found = utils.set_sigterm_handler
    utils.set_sigterm_handler = keep
    try:
        yield True
    finally:
        utils.set_sigterm_handler = found


# ---- ray-node ----------------------------------------------------------------------------

def _node():
    if not on("ray-node"):
        return None
    import ray._private.worker

    return getattr(ray._private.worker, "_global_node", None)


def ray_temp_folder() -> Path | None:
    """The folder holding every Ray session's folder on this machine (None: unknown)."""
    node = _node()
    return Path(node.get_session_dir_path()).parent if node is not None else None


def ray_processes_by_kind() -> dict[str, list]:
    """The Ray processes this process started, as Popen objects by kind ("raylet",
    "log_monitor", "dashboard", ...): none when it joined a cluster or the hook is off."""
    node = _node()
    started = getattr(node, "all_processes", None) or {}
    return {kind: [info.process for info in infos] for kind, infos in started.items()}


def ray_processes() -> list:
    return [p for processes in ray_processes_by_kind().values() for p in processes]


def kill_ray_monitor() -> None:
    """Ray's autoscaler monitor takes a whole second to exit on shutdown and has nothing to save."""
    node = _node()
    if node is not None:
        try:
            node.kill_monitor(check_alive=False)
        except Exception:  # noqa: BLE001 - the usual shutdown still ends it
            pass


# ---- worker-preload and tune-actor-env ---------------------------------------------------

def preload_config(modules: list[str]) -> dict:
    """ray.init's keyword arguments that make prestarted workers import `modules`."""
    return {"_system_config": {"preload_python_modules": modules}} if modules and on("worker-preload") else {}


def tune_actors_on_prestarted_workers() -> None:
    """Tune's trial actors get {"PL_DISABLE_FORK": "1"} as a runtime_env, and Ray runs an actor
    with a runtime_env only in a worker started for it. Nothing here uses Lightning."""
    if on("tune-actor-env"):
        from ray.tune.execution import class_cache

        class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


# ---- trainable-state and training-result -------------------------------------------------

def trial_folder(trainable) -> Path | None:
    """The trial's folder in the sweep's storage, where its checkpoints are."""
    storage = getattr(trainable, "_storage", None) if on("trainable-state") else None
    return Path(storage.trial_fs_path) if storage is not None else None


def set_iteration(trainable, iteration: int) -> None:
    """Tune's count of steps, made to follow a restored checkpoint's epoch."""
    if on("trainable-state"):
        trainable._iteration = iteration


def training_result(checkpoint, metrics):
    """What Trainable.restore takes for a checkpoint with its metrics (None: hook off)."""
    if not on("training-result"):
        return None
    from ray.train._internal.checkpoint_manager import _TrainingResult

    return _TrainingResult(checkpoint=checkpoint, metrics=metrics)


# ---- asha-rungs --------------------------------------------------------------------------

def asha_rungs(asha) -> dict | None:
    """ASHA's recorded values as plain data: {"brackets": [[[milestone, {trial: value}]]],
    "num_stopped": n} (None: hook off)."""
    if not on("asha-rungs"):
        return None
    return {"brackets": [rungs_of(b) for b in asha._brackets], "num_stopped": asha._num_stopped}


def rungs_of(bracket) -> list:
    return [[milestone, {t: float(v) for t, v in recorded.items()}] for milestone, recorded in bracket._rungs]


def set_asha_rungs(asha, brackets: list, num_stopped: int) -> None:
    """Put recorded values back into ASHA's brackets of the same shape."""
    if not on("asha-rungs"):
        return
    for bracket, saved in zip(asha._brackets, brackets):
        fill_rungs(bracket, saved)
    asha._num_stopped = num_stopped


def fill_rungs(bracket, saved: list) -> None:
    for (milestone, recorded), (_, values) in zip(bracket._rungs, saved):
        recorded.clear()
        recorded.update(values)


def asha_brackets(asha) -> list:
    return asha._brackets if on("asha-rungs") else []


def asha_bracket_of(asha, trial_id: str):
    return asha._trial_info.get(trial_id) if on("asha-rungs") else None


def set_asha_bracket(asha, trial_id: str, bracket) -> None:
    if on("asha-rungs"):
        asha._trial_info[trial_id] = bracket


# ---- optuna-search and optuna-ids --------------------------------------------------------

def searcher_trials(search) -> dict:
    """OptunaSearch's Tune trial id -> Optuna trial (an empty dict, unused, when off)."""
    return search._ot_trials if on("optuna-search") else {}


def searcher_study(search):
    return search._ot_study if on("optuna-search") else None


def searcher_completed(search) -> set:
    return search._completed_trials if on("optuna-search") else set()


def optuna_trial_id(trial) -> int | None:
    """The storage's id of an Optuna trial (live or frozen); None when the hook is off."""
    return trial._trial_id if on("optuna-ids") else None


def optuna_trial(study, trial_id: int):
    """A live Optuna trial for a storage id (to give a RUNNING one to a new Tune trial)."""
    import optuna

    return optuna.trial.Trial(study, trial_id) if on("optuna-ids") else None


def study_storage(study):
    return study._storage if on("optuna-ids") else None


# ---- tune-snapshot -----------------------------------------------------------------------

def snapshot_files() -> tuple[str, ...]:
    """The patterns of Tune's snapshot files that `--resume` reads (none when off)."""
    return SNAPSHOT_FILES if on("tune-snapshot") else ()


def staged_snapshots(ray_temp: Path, experiment: str, file: str) -> list[Path]:
    return list(ray_temp.glob(STAGED_SNAPSHOT.format(experiment=experiment, file=file)))


# ---- checkpoint-folders ------------------------------------------------------------------

def newest_checkpoint(trial_folder: Path, *holding: str) -> Path | None:
    """The newest of a trial's checkpoint folders that holds every file named in `holding`."""
    if not on("checkpoint-folders"):
        return None
    saved = sorted(p for p in Path(trial_folder).glob("checkpoint_*") if all((p / f).is_file() for f in holding))
    return saved[-1] if saved else None


def trial_folders(tune_dir: Path, trial_id: str) -> list[Path]:
    """A Tune trial's folders in the sweep's Tune folder (one per start of the trial)."""
    return sorted(Path(tune_dir).glob(f"*_{trial_id}_*")) if on("checkpoint-folders") else []
