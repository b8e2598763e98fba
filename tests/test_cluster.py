"""What a sweep survives on a real multi-node Ray cluster (real `ray start` processes on
this host): trials spread over nodes, failures injected by killing real processes (a
trial's process, a DDP worker, the sweep's driver, a whole node), Ray's autoscaler adding
a node, and the embedded Ray finding its own State API beside another Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO
from .procs import cmdline
from .ray_cluster import (SLOW, START_TIMEOUT, LocalCluster, checkpoints, epochs, events, node_ip, read_csv,
                          reported_epochs, sweep_args, train_progress, wait_for, write_spec)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]


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



# --- two nodes ---------------------------------------------------------------------------

@pytest.mark.slow
def test_sweep_runs_trials_on_both_nodes_and_gathers_results(two_nodes, tmp_path):
    cluster = two_nodes
    # Training (several seconds) outlasts a trial process's start, so the second trial cannot
    # wait for the first one's process to be free: it must take the other node's CPU. With
    # 8,000 images a trial once ended first on a loaded machine (both cores busy elsewhere), so
    # 16,000.
    cfg = write_spec(tmp_path / "lenet5.yaml", trials=2, max_concurrent=2,
                     fixed={**SLOW["fixed"], "train_limit": 16000}, space={"lr": {"choice": [0.001, 0.002]}})
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
from mnist_dist.tuning.options import Scaling, SweepOptions
from mnist_dist.tuning.execution.ray_setup import init_ray

@ray.remote(num_cpus=0)
class Probe:  # asks what Ray Train's placement-group cleaner asks, from inside the cluster
    def controller_alive(self):
        from tests.ray_private import actor_alive
        try:
            return repr(actor_alive(ray.get_runtime_context().get_actor_id(), timeout=30))
        except Exception as e:
            return repr(e)

if sys.argv[1] == "sweep":  # what `mnist-dist sweep --workers 2` starts: Ray Train's trials need the State API
    init_ray(SweepOptions(scaling=Scaling(workers=2)))
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
    env["PYTHONPATH"] = str(REPO)  # the probe actor imports tests.ray_private in Ray's workers

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
    given), its trial process waits for a CPU, the autoscaler launches a worker node,
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
