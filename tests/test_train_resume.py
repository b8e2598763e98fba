"""`mnist-dist train` stopped by Ctrl-C or SIGTERM keeps its finished epochs, says how to
continue, and `--resume` finishes it as an uninterrupted run would have."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from mnist_dist.cli import main
from mnist_dist.models.checkpoint import load_model

EPOCHS = 3
ARGS = ["mlp", "--smoke-test", "--epochs", str(EPOCHS), "--augment", "light", "--dropout", "0.3"]


def start_and_stop_after_first_epoch(run_dir, sig) -> tuple[int, list[str]]:
    """Start `mnist-dist train` in its own process, wait for its first epoch's line (printed
    once the epoch's files are written), send `sig`; returns (exit code, stdout lines)."""
    cmd = [sys.executable, "-m", "mnist_dist.cli", "train", *ARGS,
           "--results-dir", str(run_dir.parent), "--name", run_dir.name]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("  epoch   1 "):
                proc.send_signal(sig)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, lines + rest.splitlines()


def history(run_dir) -> list[dict]:
    return json.loads((run_dir / "history.json").read_text())


@pytest.mark.slow  # three short trainings, one in a process of its own
@pytest.mark.parametrize("sig, code, compare", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)])
def test_interrupted_run_keeps_its_epochs_and_resumes_to_the_same_result(tmp_path, capsys, sig, code, compare):
    run_dir = tmp_path / "run"
    rc, lines = start_and_stop_after_first_epoch(run_dir, sig)
    assert rc == code, "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)
    said = [line for line in lines if line.startswith("interrupted")]
    assert len(said) == 1 and f"mnist-dist train --resume {run_dir}" in said[0], lines

    kept = history(run_dir)
    assert 1 <= len(kept) < EPOCHS and [h["epoch"] for h in kept] == list(range(1, len(kept) + 1))
    assert (run_dir / "history.csv").read_text().count("\n") == len(kept) + 1
    _, payload = load_model(run_dir / "model.pt")  # the best epoch so far, as a usable model file
    assert payload["metrics"]["epoch"] == max(kept, key=lambda h: h["val_acc"])["epoch"]
    assert (run_dir / "resume.pt").is_file() and not (run_dir / "run.json").exists()

    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == EPOCHS
    assert summary["resumed_after_epoch"] == len(kept)
    assert [h["epoch"] for h in history(run_dir)] == list(range(1, EPOCHS + 1))
    assert {"evaluation.json", "predictions.npz", "model.pt"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "resume.pt").exists()  # what a finished run leaves, as after a full run

    if not compare:  # once is enough for the numbers
        return
    # model, optimizer, schedule and random state restored: the same epochs as in one go
    assert main(["train", *ARGS, "--results-dir", str(tmp_path), "--name", "whole", "--quiet"]) == 0
    assert [h["val_loss"] for h in history(run_dir)] == pytest.approx(
        [h["val_loss"] for h in history(tmp_path / "whole")], rel=1e-5)
