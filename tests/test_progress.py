"""Live progress: the display (mnist_dist.progress), the Trainer's per-step hook and what
`mnist-dist train` prints on a terminal, off one (CI logs, files) and with --quiet."""
from __future__ import annotations

import io
import re
import sys

import torch

import pytest

from mnist_dist.cli import main
from mnist_dist.config import resolve
from mnist_dist.progress import Progress
from mnist_dist.training.loop import Trainer

ESCAPES = re.compile(r"[\r\x1b]")  # carriage returns and terminal escape codes


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_is_lines_ending_at_100_percent():
    out = io.StringIO()
    p = Progress(54000, "epoch 2/15", " img", stream=out, every=0)
    for done in (0, 20000, 54000):
        p.update(done, postfix="run ETA 1:00")
    p.close()
    lines = out.getvalue().splitlines()
    assert not ESCAPES.search(out.getvalue())
    assert [line.split("%")[0] for line in lines] == ["epoch 2/15:   0", "epoch 2/15:  37", "epoch 2/15: 100"]
    assert "54,000/54,000 img [" in lines[-1] and "img/s, run ETA 1:00]" in lines[-1]


def test_plain_progress_prints_nothing_for_a_task_shorter_than_its_interval():
    out = io.StringIO()
    p = Progress(100, "epoch 1/1", " img", stream=out, every=30)
    p.update(50)
    p.update(100)
    p.close()
    assert out.getvalue() == ""


def test_live_progress_is_a_bar_that_reaches_100_percent():
    out = FakeTerminal()
    p = Progress(54000, "epoch 1/3", " img", stream=out)  # live: the stream is a terminal
    for done in (0, 1000, 54000):
        p.update(done)
    p.close()
    frames = [f for f in out.getvalue().split("\r") if f.strip()]
    assert p.live and "100%|" in frames[-1] and "54,000/54,000 img" in frames[-1]


@pytest.mark.slow  # trains
def test_trainer_reports_images_done_up_to_the_epoch_total(mnist):
    cfg = resolve("mlp", {"train_limit": 1000, "batch_size": 64})
    trainer = Trainer(cfg, torch.device("cpu"), mnist)
    calls = []
    trainer.on_progress, trainer.progress_every = (lambda done, total: calls.append((done, total))), 0
    _, _, n, _ = trainer.train_epoch(epoch=1)
    done = [d for d, _ in calls]
    assert n == 1000 and {t for _, t in calls} == {1000}
    # every step (progress_every=0), then the epoch's end; the last batch holds 40 images
    assert done == [0] + [min(64 * step, 1000) for step in range(1, 17)] + [1000]


def train(tmp_path, *flags: str) -> int:
    return main(["train", "mlp", "--smoke-test", "--results-dir", str(tmp_path), "--name", "run",
                 *flags])


@pytest.mark.slow  # trains
def test_train_command_prints_plain_progress_lines_off_a_terminal(tmp_path, capsys):
    assert train(tmp_path, "--progress-every", "0") == 0
    out = capsys.readouterr().out
    assert not ESCAPES.search(out)
    lines = out.splitlines()
    progress = [i for i, line in enumerate(lines) if line.startswith("epoch 1/1: ")]
    assert progress and "  0% 0/2,000 img" in lines[progress[0]]
    last = lines[progress[-1]]
    assert "100% 2,000/2,000 img [" in last and "img/s" in last and last.endswith(", validating]")
    assert lines[progress[-1] + 1].startswith("  epoch   1  loss ")  # then the epoch's line


@pytest.mark.slow  # trains
def test_train_command_shows_a_live_bar_on_a_terminal(tmp_path, monkeypatch):
    out = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    assert train(tmp_path) == 0
    frames = out.getvalue().split("\r")
    bar = [f for f in frames if f.startswith("epoch 1/1: ")]
    assert bar and "100%|" in bar[-1] and "2,000/2,000 img" in bar[-1]
    assert any(f.startswith("  epoch   1  loss ") for f in frames)  # in the cleared bar's place


@pytest.mark.slow  # trains
def test_train_command_quiet_prints_only_the_final_summary(tmp_path, capsys):
    assert train(tmp_path, "--quiet") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("status completed after 1 epochs") and "test accuracy" in lines[0]
    assert lines[1] == f"wrote {tmp_path / 'run'}"
