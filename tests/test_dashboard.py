"""`mnist-dist dashboard`: optuna-dashboard's real server over a sweep's optuna.db.

The study is written as a sweep writes it (Optuna's RDBStorage on SWEEP_DIR/optuna.db, the
study named after the folder, trials told COMPLETE or PRUNED with their epoch values); no
Ray. The server is the real command (`mnist_dist.cli.main`), read back through the
dashboard's own JSON API (/api/studies, /api/studies/<id>) and stopped with Ctrl-C."""
from __future__ import annotations

import _thread
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from mnist_dist.cli import main
from mnist_dist.tuning.outputs import dashboard
from mnist_dist.tuning.outputs.dashboard import make_server, newest_sweep

from .procs import listening

LR = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
OPT = optuna.distributions.CategoricalDistribution(["adam", "sgd"])

# (params, per-epoch val_acc, final state); None: still running
TRIALS = [
    ({"lr": 1e-3, "optimizer": "adam"}, [0.91, 0.95, 0.97], optuna.trial.TrialState.COMPLETE),
    ({"lr": 3e-2, "optimizer": "sgd"}, [0.88, 0.93, 0.96], optuna.trial.TrialState.COMPLETE),
    ({"lr": 9e-2, "optimizer": "sgd"}, [0.42], optuna.trial.TrialState.PRUNED),  # ASHA stopped it
    ({"lr": 2e-4, "optimizer": "adam"}, [0.80], None),
]


def write_sweep_study(sweep_dir: Path, trials=TRIALS) -> None:
    """An Optuna study in sweep_dir/optuna.db as tuning.storage.open_storage keeps it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}")
    study = optuna.create_study(study_name=sweep_dir.name, storage=storage, direction="maximize")
    for params, accs, state in trials:
        study.enqueue_trial(params)  # as the sweep's `points` are
        trial = study.ask({"lr": LR, "optimizer": OPT})
        for epoch, acc in enumerate(accs, 1):
            trial.report(acc, epoch)
        if state is not None:
            study.tell(trial, accs[-1] if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    storage.engine.dispose()


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


@pytest.mark.timeout(120)
def test_dashboard_serves_the_newest_sweeps_study_on_localhost(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    write_sweep_study(results / "lenet5-mnist", TRIALS[:1])  # an older sweep
    write_sweep_study(results / "mlp-mnist")
    (results / "train-run").mkdir()  # not a sweep: no optuna.db
    old = time.time() - 3600
    os.utime(results / "lenet5-mnist" / "optuna.db", (old, old))
    assert newest_sweep(results) == results / "mlp-mnist"

    # The real command runs in this (main) thread, as a user runs it in the project folder with
    # no SWEEP_DIR; a second thread reads the API, then stops it with a Ctrl-C (SIGINT).
    servers, failures = queue.Queue(), []

    def keep(*args, **kwargs):
        made = make_server(*args, **kwargs)
        servers.put(made[0])
        return made

    def client():
        try:
            failures.append(read_back(servers.get(timeout=60)))
        except BaseException as e:  # noqa: BLE001  (re-raised in the main thread)
            failures.append(e)
        finally:
            _thread.interrupt_main()

    monkeypatch.setattr(dashboard, "make_server", keep)
    monkeypatch.chdir(tmp_path)
    # Ctrl-C must raise KeyboardInterrupt here, as in a fresh `mnist-dist dashboard`: a Ray
    # started earlier in this test session installs a SIGINT handler of its own
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        assert main(["dashboard", "--port", "0"]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    thread.join(timeout=30)
    if isinstance(failures[0], BaseException):
        raise failures[0]
    port, study_id = failures[0]
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("study 'mlp-mnist' from ") and lines[0].endswith(
        "4 trials (2 complete, 1 pruned, 1 running)"), out
    assert lines[1] == (f"optuna-dashboard at http://127.0.0.1:{port}/dashboard/studies/{study_id} "
                        "(Ctrl-C to stop; it can edit and delete the study: --read-only refuses that)")
    assert lines[2:] == ["dashboard stopped"]
    assert err == ""  # no request log unless --log-requests


def read_back(server) -> tuple[int, int]:
    """What the dashboard at `server` serves of the mlp-mnist study; returns (port, study_id)."""
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    assert listening(port) == {"127.0.0.1"}  # not 0.0.0.0, not the host's address
    base = f"http://127.0.0.1:{port}"

    studies = get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == ["mlp-mnist"]  # only the newest sweep's db
    assert studies[0]["directions"] == ["maximize"]
    study_id = studies[0]["study_id"]

    detail = get_json(f"{base}/api/studies/{study_id}")
    assert detail["name"] == "mlp-mnist"
    trials = sorted(detail["trials"], key=lambda t: t["number"])
    assert [t["state"] for t in trials] == ["Complete", "Complete", "Pruned", "Running"]
    for t, (params, accs, _) in zip(trials, TRIALS):
        assert [v["value"] for v in t["intermediate_values"]] == pytest.approx(accs)
        assert [v["step"] for v in t["intermediate_values"]] == list(range(1, len(accs) + 1))
        assert {p["name"]: p["param_external_value"] for p in t["params"]} == {
            k: str(v) for k, v in params.items()}
    assert trials[0]["values"] == pytest.approx([0.97])
    assert trials[1]["values"] == pytest.approx([0.96])
    assert trials[2]["values"] == pytest.approx([0.42])  # PRUNED keeps its last epoch's value
    assert "values" not in trials[3]
    assert [t["number"] for t in detail["best_trials"]] == [0]
    assert detail["has_intermediate_values"] is True

    with urllib.request.urlopen(f"{base}/dashboard/studies/{study_id}", timeout=30) as r:  # the page
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
    return port, study_id


@pytest.mark.timeout(120)
def test_a_read_only_dashboard_refuses_changes_and_still_serves_the_study(tmp_path):
    write_sweep_study(tmp_path / "mlp-mnist")
    server, storage, study_id = make_server(tmp_path / "mlp-mnist", port=0, readonly=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert get_json(f"{base}/api/studies/{study_id}")["name"] == "mlp-mnist"
        for method, path in (("DELETE", f"/api/studies/{study_id}"),
                             ("PUT", f"/api/studies/{study_id}/note"), ("POST", "/api/studies")):
            request = urllib.request.Request(base + path, data=b"{}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 405
        assert [s.study_name for s in storage.get_all_studies()] == ["mlp-mnist"]
        assert len(storage.get_all_trials(study_id)) == len(TRIALS)
    finally:
        server.shutdown()
        server.server_close()


def error(capsys, argv) -> str:
    """Run `mnist-dist ARGV`, which must fail as a user error: exit 2, one line on stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_dashboard_errors_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "results" / "train-run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert "no sweep under results/" in error(capsys, ["dashboard"])
    assert "no sweep under elsewhere/" in error(capsys, ["dashboard", "--results-dir", "elsewhere"])
    assert "results/train-run holds no optuna.db" in error(capsys, ["dashboard", "results/train-run"])
    assert "not a folder" in error(capsys, ["dashboard", "results/missing"])

    (tmp_path / "results" / "broken").mkdir()
    (tmp_path / "results" / "broken" / "optuna.db").write_text("not a database")
    assert "is not an Optuna study database" in error(capsys, ["dashboard", "results/broken"])

    write_sweep_study(tmp_path / "results" / "mlp-mnist", TRIALS[:1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert f"port {port} on 127.0.0.1 is in use" in error(
            capsys, ["dashboard", "results/mlp-mnist", "--port", port])

    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # the extra not installed
    for argv in (["dashboard"], ["dashboard", "results/mlp-mnist"]):
        assert "pip install 'mnist-dist[dashboard]'" in error(capsys, argv)
