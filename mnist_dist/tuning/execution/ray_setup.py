"""The Ray a sweep runs on: an embedded local Ray sized to this machine, or a cluster
(`--address`), with the environment every trial process needs."""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .. import internals
from .plan import reuses_processes
from ..options import SweepOptions

# Ray Train's controller collects worker reports when it polls them, every 2 s by
# default: a 0.2 s epoch then takes 2 s. Polling at 0.2 s costs little CPU.
# A worker group that takes over 60 s to start fails its trial; on a loaded machine (or
# while a stopped trial's workers are being released) it should wait, so allow 10 min.
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600"}
# Snapshotting the sweep after every epoch's checkpoint is what we want (see trial_checkpoints);
# Tune warns about it when epochs are short.
DRIVER_ENV = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def runtime_env() -> dict:
    env = {**RAY_ENV, **{k: v for k, v in os.environ.items() if k.startswith(("MNIST_DIST_", "RAY_TRAIN_"))}}
    for key in ("MNIST_DIST_DATA_DIR", "MNIST_DIST_CACHE_DIR"):  # workers run in their trial's folder
        if env.get(key):
            env[key] = str(Path(env[key]).expanduser().resolve())
    return {"env_vars": env}


def importable_here(env: dict, package_dir: Path | None = None) -> dict:
    """`env` with PYTHONPATH led by the folder this process imported mnist_dist from.

    `sweeps/run.py` runs from a checkout without an install (it puts the checkout on its
    own sys.path); Ray's processes inherit the environment, not sys.path. Without this an
    embedded Ray's prestarted workers failed to import the preload and died, and the sweep
    waited the whole 60 s for them before its first trial (seen 2026-11-27); the trials
    themselves ran, as Ray hands the job the driver's folder later. Only for an embedded
    Ray: a cluster's nodes have their own install."""
    folder = str(package_dir or Path(__file__).resolve().parents[3])
    paths = [p for p in env.get("PYTHONPATH", os.environ.get("PYTHONPATH", "")).split(os.pathsep) if p]
    return {**env, "PYTHONPATH": os.pathsep.join([folder] + [p for p in paths if p != folder])}


PORT_TRIES = 3  # dashboard ports tried before giving up

# Imported by every worker process of an embedded Ray as it starts, before it takes work.
# Ray starts one worker per CPU with the cluster, so a trial process is ready when the
# first trials are: without this a trial's first ~6 s went to importing torch and Ray Tune
# (3.8 s) and, in the optimizer's constructor, torch._dynamo (1.7 s). Only for sweeps of
# single-worker trials: Ray Train's controller and workers start in new processes anyway,
# and these imports made each DDP trial 5 s slower (22.6 s instead of 17.6 s of overhead).
PRELOAD = ["mnist_dist.tuning.execution.prestart"]
READY_ENV = "MNIST_DIST_READY_DIR"  # where prestarted workers say they are ready (prestart.py)
_ready: list[tuple[Path, int]] = []  # that folder and the workers Ray started ahead, for this process's Ray


@contextlib.contextmanager
def environment(env: dict):
    """os.environ with `env` added, for the duration: processes started meanwhile inherit it."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def token_auth() -> None:
    """Turn Ray's token auth on for an embedded Ray on every supported release: 2.60 does it
    by default and writes the token itself; 2.58 and 2.59 only when RAY_AUTH_MODE=token is
    in the environment as Ray is imported (it reads its config then) and a token is in place.
    The token is Ray's usual file, ~/.ray/auth_token (256 random bits, owner-only), made here
    when missing. A RAY_AUTH_MODE the user set (say, `disabled`) is kept; once Ray is
    imported its mode is what it read, and changing the variable would only split the
    driver from the processes it starts."""
    if "RAY_AUTH_MODE" in os.environ or "ray._raylet" in sys.modules:
        return
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        path = Path.home() / ".ray" / "auth_token"
        if not path.is_file():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))  # free on every interface, loopback included
        return s.getsockname()[1]


def start_local_ray(num_cpus: int | None = None, env: dict | None = None, log_to_driver: bool = False,
                    preload: bool = True, dashboard: bool = True):
    """Start an embedded Ray whose processes all know where its State API lives.

    Ray Train's placement-group cleaner (a detached actor) asks the State API whether
    its controller is alive, with no address; with two Ray instances on one machine
    that look-up fails ("Found multiple active Ray instances") and the workers of a
    trial ASHA stopped are never released, so later trials wait for CPUs forever.
    Pinning the dashboard port and handing its URL to every worker fixes the look-up.
    Without Ray Train (`dashboard=False`) nothing needs the dashboard: its dozen processes
    took 1-1.5 s of the start on 2 cores.

    The environment reaches the workers by inheritance (Ray's own processes start from this
    one), not as the job's runtime_env: Ray uses the workers it starts with the cluster,
    PRELOAD imported, only for jobs without one.
    """
    import ray

    base_env = importable_here(dict(env or runtime_env()["env_vars"]))
    num_cpus = num_cpus or os.cpu_count()
    internals.tune_actors_on_prestarted_workers()
    _forget_ready()
    preload_kwargs = internals.preload_config(PRELOAD if preload else [])
    if preload_kwargs:  # workers that import nothing ahead have nothing to say: no wait for them
        # Ray starts one worker per CPU, but no more than it starts at once: os.cpu_count()
        folder = Path(tempfile.mkdtemp(prefix="mnist-dist-ready-"))
        _ready[:] = [(folder, min(num_cpus, os.cpu_count() or 1))]
        base_env[READY_ENV] = str(folder)
    for attempt in range(PORT_TRIES):
        port = free_port()
        env = {**base_env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"} if dashboard else base_env
        try:
            # log_to_driver: the workers' output (per-checkpoint lines, a stopped trial's
            # "actor died") stays in Ray's log files instead of the console
            with environment(env), internals.ray_processes_in_own_group():
                ray.init(num_cpus=num_cpus, include_dashboard=dashboard,
                         dashboard_host="127.0.0.1", dashboard_port=port if dashboard else None,
                         log_to_driver=log_to_driver,
                         **preload_kwargs,
                         logging_level=logging.INFO if log_to_driver else logging.ERROR)
            return ray
        except ValueError as e:
            # The free port can be taken before the dashboard binds it: Ray's own processes
            # pick free ports as they start (seen once in a full test run). Another port then.
            if "already occupied" not in str(e) or attempt == PORT_TRIES - 1:
                raise
            ray.shutdown()


def wait_for_trial_processes(count: int, timeout_s: float = 60.0) -> float:
    """Wait until `count` of the workers the embedded Ray started ahead have imported what
    a trial needs (PRELOAD, ~3.4 s of CPU each), at most `timeout_s`; returns the seconds
    waited. Trials then start in ready processes and each trial's time is its own, as in a
    plain Optuna loop whose imports precede its first trial. The wall time is the same:
    Tune's first trials would otherwise wait for these imports themselves. A worker that
    died while importing is not waited for (it said it had started); one that died before
    that still makes this
    wait the timeout, once: the folder goes after the wait (workers Ray starts later find
    none and say nothing), so a later sweep of this process (`sweeps/run.py all`, the final
    seeds) does not wait."""
    if not _ready:
        return 0.0  # a cluster (--address), DDP trials, or waited for already
    folder, ahead = _ready[0]
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        try:
            names = os.listdir(folder)
        except OSError:
            break
        ready = {n for n in names if n.isdigit()}
        died = [n for n in names if n.endswith(".start") and n[:-6] not in ready and not _alive(int(n[:-6]))]
        if len(ready) + len(died) >= min(count, ahead):
            break
        time.sleep(0.05)
    _forget_ready()
    return time.time() - t0


def _alive(pid: int) -> bool:
    """A process of this machine that has not exited (a zombie has: its parent has yet to
    reap it)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:  # no /proc (not Linux), or not ours to signal: taken as alive
        return True


def _forget_ready() -> None:
    for folder, _ in _ready:
        shutil.rmtree(folder, ignore_errors=True)
    _ready.clear()


def quiet_ray() -> None:
    """Ray's and Optuna's INFO/WARNING chatter off in this process (errors still show)."""
    import optuna

    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def init_ray(opts: SweepOptions):
    import ray

    if ray.is_initialized():  # e.g. tests sharing one instance
        return ray
    env = runtime_env()["env_vars"]
    if not opts.ray_logs:
        quiet_ray()
        # Tune's newer console output prints its own boxes and paths even at verbose=0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if opts.address:  # a cluster runs one Ray per machine: its State API is found as usual
        ray.init(address=opts.address, runtime_env={"env_vars": env}, log_to_driver=opts.ray_logs,
                 logging_level=logging.INFO if opts.ray_logs else logging.ERROR)
        return ray
    reused = reuses_processes(opts.scaling)  # no Ray Train: workers started ahead, no dashboard
    return start_local_ray(env=env, log_to_driver=opts.ray_logs, preload=reused, dashboard=not reused)


def sessions_folder() -> Path | None:
    """Ray's temp folder on this machine: every Ray session's folder (session_*) is in it."""
    return internals.ray_temp_folder()


def stop_ray() -> None:
    """Shut Ray down at the end of a command. Ray's shutdown gives each of its processes a
    second to exit after SIGTERM, and its autoscaler monitor always takes the whole second;
    it has nothing to save, so it is killed at once. (On a cluster, `--address`, this
    driver started no processes and only disconnects.)"""
    import ray

    _forget_ready()  # a driver stopped before its search began
    if not ray.is_initialized():
        return
    internals.kill_ray_monitor()
    ray.shutdown()
