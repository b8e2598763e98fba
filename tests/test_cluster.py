"""A real Ray cluster on this machine, and what a sweep survives on it.

Every cluster here is real `ray start` processes: a head and a second raylet that
joins it, both on this host, each with its own CPUs, node id and process session,
with their own ports, temp dir and auth token, so they never meet the embedded Ray
instances other tests start (no `ray_session` here, and never `ray stop`, which
would kill every Ray on the machine). Sweeps run as subprocesses,
`sweeps/run.py ARCH --address HOST:PORT`, as they would after `ray up`. Failures
are injected by killing real processes: a Ray Train worker, the sweep's driver, a
whole node. Also: cluster.yaml checked by Ray's own validator, Ray's autoscaler
(its fake multi-node provider) adding a node for a sweep, atomic result files, and
the embedded Ray's dashboard on localhost only.
"""
from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mnist_dist.sweeps.runner import free_port

from .conftest import DATA_DIR, REPO
from .procs import cmdline, kill_session, session_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

RUN = [sys.executable, str(REPO / "sweeps" / "run.py")]
RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() \
    else shutil.which("ray") or "ray"
START_TIMEOUT = 180  # s for a node to come up; this 2-core machine is often loaded
SWEEP_TIMEOUT = 600


def node_ip() -> str:
    """The address Ray gives a node on this host (it replaces a loopback --node-ip-address
    by this, so the nodes are on the host's address, not 127.0.0.1)."""
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


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
        """Start `sweeps/run.py ARGS --address ...` (the sweep's driver) in the background."""
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


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Head `a` and node `b`, 1 CPU each: two 1-CPU trials at once must use both nodes."""
    cluster = LocalCluster(tmp_path_factory.mktemp("two-nodes"))
    try:
        cluster.start_head(num_cpus=1, resources={"node_a": 1})
        cluster.add_node("b", num_cpus=1, resources={"node_b": 1})
        yield cluster
    finally:
        cluster.shutdown()


# --- sweep specs and what a sweep leaves behind --------------------------------------------

def write_spec(path: Path, **spec) -> Path:
    path.write_text(yaml.safe_dump({"baseline_first": False, "scheduler": {"type": "none"}, **spec}))
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def events(sweep: Path) -> list[dict]:
    path = sweep / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


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


# --- cluster.yaml ------------------------------------------------------------------------

def test_cluster_yaml_passes_rays_own_validation():
    """`ray up` runs prepare_config (merge with the AWS defaults) then validate_config (Ray's
    JSON schema and its cross-field checks) before it touches AWS; so do we, offline."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = prepare_config(raw)
    validate_config(config)
    assert config["provider"]["type"] == "aws"
    head, workers = config["head_node_type"], config["available_node_types"]
    assert workers[head]["resources"] == {"CPU": 0}  # the head trains nothing
    gpu = workers["gpu_worker"]
    assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    # The project on every node, with Ray, Python and the dependencies pinned.
    pins = re.findall(r'"ray\[[^]]*\]==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert config["docker"]["image"] == f"rayproject/ray:{pins[0]}-py311-gpu"
    assert any("pip install" in c and "/home/ray/mnist-dist" in c for c in config["setup_commands"])
    assert config["file_mounts"]["/home/ray/mnist-dist"] == "."
    assert any("MNIST_DIST_DATA_DIR=/home/ray/data" in c for c in config["setup_commands"])
    # Shared storage for results and checkpoints, mounted before the containers start.
    assert any("/mnt/efs" in c for c in config["initialization_commands"])
    assert "-v /mnt/efs:/mnt/efs" in config["docker"]["run_options"]
    # Token auth on every node; the dashboard is not opened to the network.
    for cmd in config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in cmd and "dashboard-host" not in cmd
    ssh = config["provider"]["security_group"]["IpPermissions"]
    assert [p["FromPort"] for p in ssh] == [22] and ssh[0]["IpRanges"][0]["CidrIp"] != "0.0.0.0/0"


def test_no_secrets_in_cluster_config_or_notes():
    docs = sorted((REPO / "docs").glob("*.md"))  # the README's cluster and security notes live here
    for path in (REPO / "cluster.yaml", REPO / "README.md", REPO / "notes" / "cluster.md", *docs):
        if not path.exists():
            continue
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", text), path
        assert not re.search(r"\b[0-9a-f]{64}\b", text), f"{path}: looks like a Ray auth token"


# --- two nodes ---------------------------------------------------------------------------

@pytest.mark.slow
def test_sweep_runs_trials_on_both_nodes_and_gathers_results(two_nodes, tmp_path):
    cluster = two_nodes
    # Training (several seconds) outlasts a trial process's start, so the second trial cannot
    # wait for the first one's process to be free: it must take the other node's CPU.
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=2, max_concurrent=2, fixed=SLOW["fixed"],
                     space={"lr": {"choice": [0.001, 0.002]}})
    cluster.finish(cluster.sweep(sweep_args("lenet5", cfg, tmp_path, "multi"), tmp_path / "sweep.log"))
    sweep = tmp_path / "multi"
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["trials_run"] == summary["completed"] == 2
    rows = read_csv(sweep / "trials.csv")
    # 1 CPU per node, 1 CPU per trial, 2 at once: one trial per node.
    assert {r["node_ids"] for r in rows} == {cluster.nodes["head"].node_id, cluster.nodes["b"].node_id}
    # Everything in one place: each trial's checkpoint under the sweep's tune/ folder, its
    # history, and the best model copied out of its checkpoint and re-evaluated.
    for r in rows:
        assert Path(r["checkpoint_path"]).parent.parent == sweep / "tune"  # Tune's own trial folders
        assert (Path(r["checkpoint_path"]) / "model.pt").is_file()
        assert epochs(sweep, r["trial_id"]) == [1, 2, 3]
    assert (sweep / "best" / "model.pt").is_file() and summary["test_acc"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("workers, actor", [(1, "EpochTrainable"), (2, "RayTrainWorker")])
def test_killed_trial_process_resumes_from_its_last_checkpoint(two_nodes, tmp_path, workers, actor):
    """(a) SIGKILL a trial's process after its first epoch: a single-worker trial's reused
    process (Tune restores the trial from its last checkpoint in a new one), or one of a DDP
    trial's two Ray Train workers (Train restarts the worker group from the last checkpoint).
    Either way the history goes 1, 2, 3, never back to 1."""
    cluster = two_nodes
    # 24,000 images: a few seconds per epoch, time enough to kill it mid-run
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=1, fixed={**SLOW["fixed"], "train_limit": 24000},
                     space={"lr": {"choice": [0.001]}})
    name = f"kill-{workers}"
    proc = cluster.sweep(sweep_args("lenet5", cfg, tmp_path, name, "--workers", str(workers)),
                         tmp_path / "sweep.log")
    sweep = tmp_path / name
    wait_for("epoch 1 checkpointed", lambda: any(
        m.get("epoch", 0) >= 1 and not m.get("finished") for m in train_progress(sweep).values()), proc)
    victims = wait_for(f"{workers} {actor}", lambda: len(w := cluster.actors(actor)) == workers and w, proc)
    epoch_at_kill = max(m["epoch"] for m in train_progress(sweep).values())
    victim = min(victims)
    os.kill(victim, signal.SIGKILL)
    respawned = wait_for(f"a new {actor}", lambda: cluster.actors(actor) - victims, proc)
    cluster.finish(proc)
    rows = read_csv(sweep / "trials.csv")
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs_run"] == "3"
    assert reported_epochs(sweep, rows[0]["trial_id"]) == [1, 2, 3]  # continued after epoch_at_kill
    assert epoch_at_kill < 3 and respawned
    if workers > 1:  # Ray Train absorbed the failure: Tune saw one start, one completion, no error
        assert [e["event"] for e in events(sweep)] == ["start", "complete"]
    else:  # Tune restarted the trial from its checkpoint: started twice, completed once
        assert [e["event"] for e in events(sweep)] == ["start", "retry", "start", "complete"]


def checkpoints(sweep: Path, trial_id: str) -> list[str]:
    """The checkpoint folders of a single-worker trial (Tune keeps the latest only)."""
    return sorted(p.name for p in sweep.glob(f"tune/*_{trial_id}_*/checkpoint_*") if p.is_dir())


@pytest.mark.slow
def test_sweep_resumes_after_its_driver_is_killed(two_nodes, tmp_path):
    """(b) SIGKILL the sweep's driver just after a trial finished; `--resume` against the same
    cluster completes the sweep without training finished trials again or losing their results.
    Tune's snapshot of the sweep may be up to 10 s older than the kill and still call such a
    trial running: Tune then starts it again, and it must hand back its final result untrained."""
    import optuna

    cluster = two_nodes
    cfg = write_spec(tmp_path / "mlp.yaml", trials=3, max_concurrent=1,
                     fixed={"epochs": 2, "train_limit": 1000, "test_limit": 500},
                     space={"lr": {"loguniform": [0.001, 0.1]}})
    args = sweep_args("mlp", cfg, tmp_path, "kill-driver")
    sweep = tmp_path / "kill-driver"
    proc = cluster.sweep(args, tmp_path / "sweep.log")
    wait_for("a trial completed", lambda: any(e["event"] == "complete" for e in events(sweep)), proc)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: a crashed driver or a lost laptop
    proc.wait(timeout=30)
    done = {e["trial_id"]: e for e in events(sweep) if e["event"] == "complete"}
    trained = {t: checkpoints(sweep, t) for t in done}
    assert 1 <= len(done) < 3 and not (sweep / "summary.json").exists()
    cluster.finish(cluster.sweep(args + ["--resume"], tmp_path / "resume.log"))
    rows = {r["trial_id"]: r for r in read_csv(sweep / "trials.csv")}
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"completed"}
    for trial_id, event in done.items():
        # not trained again: its Train run ends with the checkpoint it had before the kill
        assert checkpoints(sweep, trial_id) == trained[trial_id], f"{trial_id} was trained again"
        assert Path(rows[trial_id]["checkpoint_path"]).name == trained[trial_id][-1]
        assert float(rows[trial_id]["best_val_acc"]) == event["best_val_acc"]  # its result kept
        assert epochs(sweep, trial_id) == [1, 2]
    study = optuna.load_study(study_name="kill-driver", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 3


@pytest.mark.slow
def test_sweep_survives_losing_a_node(two_nodes, tmp_path):
    """(c) Kill node b (raylet, object store, workers: the whole machine, as far as Ray can
    tell) while a trial trains on it: that trial resumes on the head from its checkpoint and
    the sweep completes. Runs last: node b stays dead."""
    cluster = two_nodes
    node_a, node_b = cluster.nodes["head"].node_id, cluster.nodes["b"].node_id
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=2, max_concurrent=2, fixed=SLOW["fixed"],
                     space={"lr": {"choice": [0.001, 0.002]}})
    proc = cluster.sweep(sweep_args("lenet5", cfg, tmp_path, "lose-node"), tmp_path / "sweep.log")
    sweep = tmp_path / "lose-node"

    def on_b_mid_run():
        return next((t for t, m in train_progress(sweep).items()
                     if m.get("node_ids") == node_b and not m.get("finished")), None)

    moved = wait_for("a trial checkpointed on node b", on_b_mid_run, proc)
    cluster.nodes["b"].kill()
    cluster.finish(proc)
    rows = {r["trial_id"]: r for r in read_csv(sweep / "trials.csv")}
    assert len(rows) == 2 and {r["status"] for r in rows.values()} == {"completed"}
    assert set(rows[moved]["node_ids"].split(",")) == {node_a, node_b}  # moved to the head
    assert reported_epochs(sweep, moved) == [1, 2, 3]  # resumed from its checkpoint, not epoch 1
    other = next(t for t in rows if t != moved)
    assert rows[other]["node_ids"] == node_a


# --- the autoscaler ----------------------------------------------------------------------

FAKE_HEAD_NODE_ID = "f" * 51 + "00000"  # what the fake provider calls the head


def fake_cluster_config(gcs_address: str) -> dict:
    """Ray's fake multi-node provider: the autoscaler "launches" a worker node by starting
    another raylet on this host. No Docker needed (that is fake_multinode_docker)."""
    return {
        "cluster_name": "fake-autoscale", "max_workers": 1, "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "use_node_id_as_ip": True},
        "auth": {"ssh_user": "ray"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {"resources": {"CPU": 1, "object_store_memory": 100 * 2**20},
                               "node_config": {}, "min_workers": 0, "max_workers": 1}},
        "head_node_type": "ray.head.default",
        **{k: [] for k in ("cluster_synced_files", "rsync_exclude", "rsync_filter", "initialization_commands",
                           "setup_commands", "head_setup_commands", "worker_setup_commands",
                           "head_start_ray_commands", "worker_start_ray_commands")},
        "file_mounts": {}, "file_mounts_sync_continuously": False,
    }


STATE_PROBE = """
import sys, ray
from mnist_dist.sweeps.runner import SweepOptions, init_ray

@ray.remote(num_cpus=0)
class Probe:  # asks what Ray Train's placement-group cleaner asks, from inside the cluster
    def controller_alive(self):
        from ray.train.v2._internal.state.util import is_actor_alive
        try:
            return repr(is_actor_alive(ray.get_runtime_context().get_actor_id(), timeout=30))
        except Exception as e:
            return repr(e)

if sys.argv[1] == "sweep":
    init_ray(SweepOptions())  # what `mnist-dist sweep` starts
else:
    ray.init(num_cpus=1)  # a bare local Ray
print(ray.get(Probe.remote().controller_alive.remote()), flush=True)
ray.shutdown()
"""


@pytest.mark.slow
def test_embedded_ray_finds_its_own_state_api_beside_another_ray(two_nodes):
    """With another Ray on the host (the cluster here), a bare local Ray's actors cannot use
    the State API ("multiple active Ray instances"), so Train's placement-group cleaner dies
    and the workers of ASHA-stopped trials are never released. The sweep's embedded Ray
    tells its processes where its State API is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_API"))}

    def probe(mode: str) -> str:
        out = subprocess.run([sys.executable, "-c", STATE_PROBE, mode], cwd=REPO, env=env, text=True,
                             capture_output=True, timeout=START_TIMEOUT)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip().splitlines()[-1]

    assert "multiple active Ray instances" in probe("bare")  # the failure is real here
    assert probe("sweep") == "True"


@pytest.mark.slow
def test_autoscaler_adds_a_node_for_a_sweep(tmp_path):
    """cluster.yaml's shape in small: a head with no CPU for training and no worker nodes. A
    sweep with --max-concurrent 1 starts anyway (on an --address cluster the limit is taken as
    given), its trial's Train worker waits for a CPU, the autoscaler launches a worker node,
    and the trial runs there. Autoscaler v1: v2 (what `ray up` runs) cannot load the fake
    provider from Ray 2.60's wheel, which lacks the provider's defaults file
    fake_multi_node/example.yaml (FileNotFoundError in the monitor)."""
    cluster = LocalCluster(tmp_path)
    try:
        config = fake_cluster_config(f"{node_ip()}:{cluster.port}")
        (tmp_path / "fake.yaml").write_text(yaml.safe_dump(config))
        head = cluster.start_head(num_cpus=0, autoscaling_config=tmp_path / "fake.yaml", env={
            "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_enable_autoscaler_v2": "0"})
        assert head.node_id == FAKE_HEAD_NODE_ID
        cfg = write_spec(tmp_path / "mlp.yaml", trials=1, space={"lr": {"choice": [0.01]}},
                         fixed={"epochs": 1, "train_limit": 1000, "test_limit": 500})
        cluster.finish(cluster.sweep(sweep_args("mlp", cfg, tmp_path, "autoscaled", "--max-concurrent", "1"),
                                     tmp_path / "sweep.log"))
        row, = read_csv(tmp_path / "autoscaled" / "trials.csv")
        assert row["status"] == "completed"
        assert row["node_ids"] and row["node_ids"] != head.node_id  # ran on the launched node
        launched = [p for p in head.pids() if "/raylet/raylet" in cmdline(p) and row["node_ids"] in cmdline(p)]
        assert launched, "the trial's node is not a raylet the autoscaler started"
    finally:
        cluster.shutdown()


# --- atomic writes -----------------------------------------------------------------------

def test_interrupted_writes_leave_the_previous_file(tmp_path, monkeypatch):
    """(d) A crash part-way through writing summary.json, trials.csv or a checkpoint never
    leaves a file a later step would read: the previous version stays, whole."""
    import torch

    from mnist_dist.config import save_json
    from mnist_dist.sweeps import results
    from mnist_dist.training.checkpoint import CheckpointError, atomic_save, load_payload, model_payload
    from mnist_dist.models import create_model

    # JSON: the new content cannot be serialised half-way through.
    summary = tmp_path / "summary.json"
    save_json({"trials_run": 2}, summary)
    with pytest.raises(TypeError):
        save_json({"trials_run": 3, "bad": object()}, summary)
    assert json.loads(summary.read_text()) == {"trials_run": 2}

    # JSON: the disk fills after half the bytes are written.
    def half_then_fail(self, text, *a, **kw):
        open(self, "w").write(text[:len(text) // 2])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", half_then_fail)
        with pytest.raises(OSError):
            save_json({"trials_run": 3, "pad": "x" * 1000}, summary)
    assert json.loads(summary.read_text()) == {"trials_run": 2}

    # CSV: the process dies between the first and second row.
    trials = tmp_path / "trials.csv"
    results.write_csv([{"trial_id": "a", "val_acc": 0.9}], trials)

    class Crash(csv.DictWriter):
        def writerows(self, rows):
            self.writerow(rows[0])
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(results.csv, "DictWriter", Crash)
        with pytest.raises(KeyboardInterrupt):
            results.write_csv([{"trial_id": "b", "val_acc": 0.8}, {"trial_id": "c", "val_acc": 0.7}], trials)
    assert read_csv(trials) == [{"trial_id": "a", "val_acc": "0.9"}]

    # Checkpoint: torch.save fails after it has started writing (an object it cannot pickle).
    model = create_model("mlp", 10, None)
    good = model_payload(model, {"arch": "mlp"}, list(range(10)), 0.13, 0.31, "mnist")
    path = tmp_path / "model.pt"
    atomic_save(good, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        atomic_save({**good, "metrics": {"bad": lambda: 0}}, path)
    assert path.read_bytes() == before and load_payload(path)["arch"] == "mlp"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt")]
    for p in leftovers:  # a leftover temporary is hidden, and no reader accepts it
        with pytest.raises(Exception):
            torch.load(p, weights_only=True)
    # And a checkpoint cut short (a copy interrupted by something else) is refused, not half-read.
    (tmp_path / "cut.pt").write_bytes(before[:len(before) // 2])
    with pytest.raises(CheckpointError):
        load_payload(tmp_path / "cut.pt")


# --- security ----------------------------------------------------------------------------

def listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(_hex_ip(addr))
    return found


def _hex_ip(h: str) -> str:
    if len(h) == 8:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(h)[::-1])
    raw = b"".join(bytes.fromhex(h[i:i + 8])[::-1] for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)


EMBEDDED = """
import sys, ray
from mnist_dist.sweeps.runner import SweepOptions, init_ray
init_ray(SweepOptions())
print(ray._private.worker._global_node.webui_url, flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def http_status(url: str, token: str | None = None) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
def test_embedded_ray_has_token_auth_and_a_localhost_only_dashboard(tmp_path):
    """The sweep's own local Ray (no --address): Ray 2.60 turns token auth on and writes a
    token to ~/.ray/auth_token (a fresh HOME here); the dashboard listens on 127.0.0.1 only
    and answers its API only with that token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        host, port = url.rsplit(":", 1)
        assert host == "127.0.0.1", url
        assert listening(int(port)) == {"127.0.0.1"}  # not 0.0.0.0, not the host's address
        token = (tmp_path / ".ray" / "auth_token").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{64}", token)  # 256 random bits
        api = f"http://{url}/api/version"
        assert http_status(api) == 401  # no token
        assert http_status(api, "0" * 64) == 403  # a wrong one
        assert http_status(api, token) == 200
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        kill_session(proc.pid)
