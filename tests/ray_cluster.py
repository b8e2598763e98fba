"""A real Ray cluster on this machine for the tests, and what a sweep leaves behind on it.

Every cluster here is real `ray start` processes: a head and more raylets that join it,
all on this host, each with its own CPUs, node id and process session, with their own
ports, temp dir and auth token, so they never meet the embedded Ray instances other tests
start (and never `ray stop`, which would kill every Ray on the machine). Sweeps run as
subprocesses, `sweeps/run.py ARCH --address HOST:PORT`, as they would after `ray up`.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from mnist_dist.tuning.execution.ray_setup import free_port

from .conftest import DATA_DIR, RUN, read_csv, read_events
from .conftest import write_spec as shared_write_spec
from .procs import cmdline, kill_session, session_pids

RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() \
    else shutil.which("ray") or "ray"
START_TIMEOUT = 180  # s for a node to come up; this 2-core machine is often loaded
SWEEP_TIMEOUT = 600


def node_ip() -> str:
    """The address Ray gives a node on this host (it replaces a loopback --node-ip-address
    by this, so the nodes are on the host's address, not 127.0.0.1)."""
    import ray.util

    return ray.util.get_node_ip_address()



# --- a local multi-node cluster ----------------------------------------------------------

class Node:
    """One `ray start --block` process in its own session: a head or a worker node."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name, self.proc, self.log = name, proc, log

    def pids(self) -> list[int]:
        return session_pids(self.proc.pid)

    @property
    def node_id(self) -> str:
        for pid in self.pids():
            if m := re.search(r"/raylet/raylet .*--node_id=(\w+)", cmdline(pid)):
                return m.group(1)
        raise AssertionError(f"node {self.name}: no raylet running")

    def kill(self) -> None:
        """Lose the node: SIGKILL its raylet, object store and every worker on it, at once."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


TRIAL_ACTORS = ("EpochTrainable", "RayTrainWorker", "TrainController")


class LocalCluster:
    """A Ray cluster of `ray start` nodes on this host, isolated from other Ray instances:
    its own temp dir (so `ray.init()` elsewhere never finds it), free ports, its own token."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        # Short: Ray's Unix sockets live under it and AF_UNIX paths are limited to 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.token = self.temp_dir / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        self.nodes: dict[str, Node] = {}
        self.port = free_port()
        self.address = f"{node_ip()}:{self.port}"
        self.others: list[subprocess.Popen] = []  # drivers and helpers started against it

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
        # Token auth on, with this cluster's own token. An explicit --address does not pick up
        # ~/.ray/auth_token by itself: RAY_AUTH_MODE=token is needed (Ray 2.60), here and on a cluster.
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token),
                   RAY_USAGE_STATS_ENABLED="0", MNIST_DIST_DATA_DIR=str(DATA_DIR),
                   # Ray's own processes that look for "the" cluster (Train's placement-group
                   # cleaner does) must find this one, not another Ray on this host.
                   RAY_ADDRESS=self.address)
        return env

    def _start(self, name: str, args: list[str], env: dict, attempts: int = 3) -> Node:
        log = self.workdir / f"node-{name}.log"
        for attempt in range(attempts):
            ports = ["--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port",
                     str(free_port()), "--object-store-memory", str(100 * 2**20)]
            proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *ports, *args],
                                    env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                    start_new_session=True)
            node = self.nodes[name] = Node(name, proc, log)
            deadline = time.time() + START_TIMEOUT
            while "Ray runtime started" not in log.read_text():
                if proc.poll() is not None or time.time() > deadline:
                    break
                time.sleep(0.5)
            else:
                return node
            text = log.read_text()
            kill_session(proc.pid)
            proc.wait()
            # Ray gives a raylet a fixed 30 s to register with the GCS; a loaded machine misses it
            if "timed out during startup" not in text or attempt == attempts - 1:
                raise AssertionError(f"node {name} did not start:\n{text[-3000:]}")
        raise AssertionError("unreachable")

    def start_head(self, num_cpus: int, resources: dict | None = None, env: dict | None = None,
                   autoscaling_config: Path | None = None) -> Node:
        # The dashboard serves Ray's state API, which Ray Train's placement-group cleaner uses;
        # on localhost only, as on a cluster made from cluster.yaml.
        args = ["--head", "--port", str(self.port), "--num-cpus", str(num_cpus),
                "--temp-dir", str(self.temp_dir), "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(free_port()), "--resources", json.dumps(resources or {})]
        if autoscaling_config:
            args += ["--autoscaling-config", str(autoscaling_config)]
        return self._start("head", args, {**self.env, **(env or {})})

    def add_node(self, name: str, num_cpus: int, resources: dict | None = None) -> Node:
        return self._start(name, ["--address", self.address, "--num-cpus", str(num_cpus),
                                  "--resources", json.dumps(resources or {})], self.env)

    def sweep(self, args: list[str], log: Path) -> subprocess.Popen:
        """Start `sweeps/run.py ARGS --address ...` (the sweep's driver) in the background,
        once the trial processes of earlier sweeps are gone: Ray ends a finished (or killed)
        driver's actors a little later, longer on a loaded machine, and one still holding
        a node's CPU would put both of the next sweep's trials on the other node."""
        deadline = time.time() + 120
        while any(self.actors(name) for name in TRIAL_ACTORS) and time.time() < deadline:
            time.sleep(0.5)
        proc = subprocess.Popen(RUN + args + ["--address", self.address, "--quiet"], env=self.env,
                                stdout=open(log, "a"), stderr=subprocess.STDOUT)
        proc.log = log
        self.others.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen) -> None:
        try:
            rc = proc.wait(timeout=SWEEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
        assert rc == 0, f"sweep exited {rc}:\n{proc.log.read_text()[-4000:]}"

    def actors(self, name: str) -> set[int]:
        """PIDs of the actors of class `name` on any node of this cluster: RayTrainWorker (a
        DDP trial's Ray Train workers) or EpochTrainable (a single-worker trial's process)."""
        return {pid for node in self.nodes.values() for pid in node.pids()
                if cmdline(pid).startswith(f"ray::{name}")}

    def shutdown(self) -> None:
        for proc in self.others:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in sorted(self.nodes, key=lambda n: n == "head"):  # workers first, then the head
            kill_session(self.nodes[name].proc.pid)
            self.nodes[name].proc.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)



# --- sweep specs and what a sweep leaves behind --------------------------------------------

def write_spec(path: Path, **spec) -> Path:
    """A cluster test's sweep: no baseline trial, no scheduler, unless `spec` says otherwise."""
    return shared_write_spec(path, **{"baseline_first": False, "scheduler": {"type": "none"}, **spec})


events = read_events


def epochs(sweep: Path, trial_id: str) -> list[int]:
    return [int(r["epoch"]) for r in read_csv(sweep / "histories" / f"{trial_id}.csv")]


def reported_epochs(sweep: Path, trial_id: str) -> list[int]:
    """Every epoch the trial reported to Tune, in order, from Tune's own result.json: a
    restart from scratch would show epoch 1 twice."""
    path, = sweep.glob(f"tune/*_{trial_id}_*/result.json")
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def train_progress(sweep: Path) -> dict[str, dict]:
    """trial id -> metrics of the trial's latest persisted checkpoint: from Ray Train's own
    checkpoint_manager_snapshot.json for a DDP trial, from the resume state inside the
    checkpoint of a single-worker trial (Tune's class Trainable)."""
    import torch

    progress = {}
    for snap in sweep.glob("train/train-*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snap.read_text()).get("latest_checkpoint_result") or {}
        except (OSError, ValueError):  # being rewritten right now: read it next time
            continue
        progress[snap.parent.name.removeprefix("train-")] = latest.get("metrics", {})
    for resume in sweep.glob("tune/*/checkpoint_*/resume.pt"):
        try:
            history = torch.load(resume, map_location="cpu", weights_only=True)["state"]["history"]
        except Exception:  # being moved into place right now: read it next time
            continue
        trial_id = resume.parent.parent.name.split("_")[1]
        progress[trial_id] = history[-1] if history else {}
    return progress


def wait_for(what: str, condition, proc: subprocess.Popen, timeout: float = 300):
    """Poll `condition` until it returns something true, while the sweep `proc` runs."""
    deadline = time.time() + timeout
    while not (result := condition()):
        if proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"never happened: {what} (sweep rc {proc.poll()})\n"
                                 f"{proc.log.read_text()[-3000:]}")
        time.sleep(0.1)
    return result


# Trials slow enough to hit mid-run (a few seconds per epoch here), small enough to stay cheap.
SLOW = {"arch": "lenet5", "fixed": {"epochs": 3, "train_limit": 8000, "test_limit": 500, "batch_size": 32}}


def sweep_args(arch: str, cfg: Path, results: Path, name: str, *extra: str) -> list[str]:
    return [arch, "--config", str(cfg), "--results-dir", str(results), "--name", name,
            "--data-dir", str(DATA_DIR), *extra]


def checkpoints(sweep: Path, trial_id: str) -> list[str]:
    """The checkpoint folders of a single-worker trial (Tune keeps the latest only)."""
    return sorted(p.name for p in sweep.glob(f"tune/*_{trial_id}_*/checkpoint_*") if p.is_dir())
