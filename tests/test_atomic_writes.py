"""A crash part-way through writing a result file never leaves half of one: every writer
goes through mnist_dist/layout.py (JSON, CSV, text, checkpoints, predictions)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mnist_dist import layout
from mnist_dist.models import create_model
from mnist_dist.models.checkpoint import CheckpointError, atomic_save, load_payload, model_payload

from .conftest import disk_fills_half_way, read_csv



def no_leftovers(folder: Path) -> None:
    """A failed write removes its temporary file."""
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_json_that_cannot_be_serialised_leaves_the_previous_file(tmp_path):
    summary = tmp_path / "summary.json"
    layout.save_json({"trials_run": 2}, summary)
    with pytest.raises(TypeError):
        layout.save_json({"trials_run": 3, "bad": object()}, summary)  # never turned into a string
    assert json.loads(summary.read_text()) == {"trials_run": 2}
    no_leftovers(tmp_path)


def test_a_full_disk_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    summary = tmp_path / "summary.json"
    layout.save_json({"trials_run": 2}, summary)
    disk_fills_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        layout.save_json({"trials_run": 3, "pad": "x" * 1000}, summary)
    monkeypatch.undo()
    assert json.loads(summary.read_text()) == {"trials_run": 2}
    no_leftovers(tmp_path)


def test_a_process_dying_between_csv_rows_leaves_the_previous_file(tmp_path, monkeypatch):
    trials = tmp_path / "trials.csv"
    layout.write_csv([{"trial_id": "a", "val_acc": 0.9}], trials)

    class Crash(csv.DictWriter):
        def writerows(self, rows):
            self.writerow(rows[0])
            raise KeyboardInterrupt

    monkeypatch.setattr(layout.csv, "DictWriter", Crash)
    with pytest.raises(KeyboardInterrupt):
        layout.write_csv([{"trial_id": "b", "val_acc": 0.8}, {"trial_id": "c", "val_acc": 0.7}], trials)
    monkeypatch.undo()
    assert read_csv(trials) == [{"trial_id": "a", "val_acc": "0.9"}]
    no_leftovers(tmp_path)


def test_the_reports_csv_is_written_atomically_too(tmp_path, monkeypatch):
    from mnist_dist.report import tables

    path = tmp_path / "comparison.csv"
    row = {k: None for k in tables.CSV_KEYS}
    tables.write_csv([{**row, "arch": "mlp", "best_config": None}], path)
    monkeypatch.setattr(layout, "atomic_write", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        tables.write_csv([{**row, "arch": "lenet5", "best_config": None}], path)
    assert [r["arch"] for r in read_csv(path)] == ["mlp"]


def test_a_checkpoint_that_fails_half_way_leaves_the_previous_one(tmp_path):
    # torch.save fails after it has started writing (an object it cannot pickle)
    model = create_model("mlp", 10, None)
    good = model_payload(model, {"arch": "mlp"}, list(range(10)), 0.13, 0.31, "mnist")
    path = tmp_path / "model.pt"
    atomic_save(good, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        atomic_save({**good, "metrics": {"bad": lambda: 0}}, path)
    assert path.read_bytes() == before and load_payload(path)["arch"] == "mlp"
    no_leftovers(tmp_path)
    # and a checkpoint cut short (a copy interrupted by something else) is refused, not half-read
    (tmp_path / "cut.pt").write_bytes(before[:len(before) // 2])
    with pytest.raises(CheckpointError):
        load_payload(tmp_path / "cut.pt")
    assert torch.load(path, weights_only=True)["arch"] == "mlp"
