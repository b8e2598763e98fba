"""A sweep's summary.json: one typed shape, one writer, and every reader taking both layouts
found in sweep folders (the report reads folders it did not write)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnist_dist import layout
from mnist_dist.tuning.outputs.summary import (BestTrial, EnsembleResult, FinalSeeds, McNemarSummary, SeedStats,
                                               SweepSummary, read_summary, write_summary)

from .conftest import disk_fills_half_way

BEST_CONFIG = {"lr": 0.01, "optimizer": "sgd"}
BASELINE_CONFIG = {"lr": 0.001, "optimizer": "adam"}


def full_summary() -> SweepSummary:
    """A sweep with every part: a best model, an ensemble and both configs' seeds."""
    best = SeedStats.measure([1000, 2000, 3000], {1000: 0.994, 2000: 0.9942, 3000: 0.9938}, BEST_CONFIG)
    baseline = SeedStats.measure([1000, 2000, 3000], {1000: 0.989, 2000: 0.9892, 3000: 0.9888}, BASELINE_CONFIG)
    return SweepSummary(
        name="lenet5-mnist", arch="lenet5", dataset="mnist", metric="best_val_acc", mode="max", trials_run=4,
        counts={layout.COMPLETED: 2, layout.STOPPED_BY_PATIENCE: 0, layout.STOPPED_BY_SCHEDULER: 1,
                layout.DIVERGED: 0, layout.FAILED: 0},
        workers=1, wall_time_s=120.5, overhead_per_trial_s=0.8, overhead_per_reused_trial_s=0.3,
        trial_processes=2, train_time_s=100.0, incomplete=True, interrupted_trials=1,
        best=BestTrial(best_trial="abc", best_val_acc=0.99, best_metric=0.99, best_config=BEST_CONFIG,
                       test_acc=0.991, test_loss=0.03, parameters=61706, best_images_per_sec=5000.0,
                       best_train_time_s=40.0),
        ensemble=EnsembleResult(k=2, members=("abc", "def"), val_acc_by_k=(0.99, 0.992), val_acc=0.992,
                                test_acc=0.993, test_loss=0.025, best_single_test_acc=0.991,
                                mcnemar_vs_best_single=McNemarSummary(12, 8, 0.5, "exact binomial"),
                                model="/r/lenet5-mnist/ensemble/model.pt"),
        final_seeds=FinalSeeds(best=best, baseline=baseline, gain_over_baseline=0.005, beats_baseline=True,
                               wall_time_s=30.0))


def other_layout() -> dict:
    """summary.json in the other layout: the search's flag named `interrupted`, the best
    config's seed statistics at the top of `final_seeds`, a status under its other name
    (layout.OLD_NAMES), and no `incomplete`, overhead or process keys."""
    return {"kind": "sweep", "name": "old", "arch": "mlp", "dataset": "mnist", "metric": "best_val_acc",
            "mode": "max", "trials_run": 3, "completed": 1, "stopped_early": 1, "failed": 0,
            "wall_time_s": 50.0, "interrupted": True, "interrupted_trials": 1,
            "best_trial": "t1", "best_val_acc": 0.98, "best_metric": 0.98, "best_config": {"lr": 0.1},
            "test_acc": 0.981, "test_loss": 0.07, "parameters": 100,
            "ensemble": {"error": "no ensemble: OSError: gone"},
            "final_seeds": {"seeds": [1000, 2000], "test_acc": [0.98, 0.982], "test_acc_mean": 0.981,
                            "test_acc_std": 0.0014, "interrupted": True, "wall_time_s": 12.0,
                            "gain_over_baseline": 0.002, "beats_baseline": False,
                            "baseline": {"config": {"lr": 0.01}, "seeds": [1000, 2000], "test_acc": [0.978, 0.98],
                                         "test_acc_mean": 0.979, "test_acc_std": 0.0014}}}


def test_a_summary_survives_its_round_trip_through_json():
    summary = full_summary()
    text = json.dumps(summary.to_dict())
    assert SweepSummary.from_dict(json.loads(text)) == summary
    d = json.loads(text)
    # the keys readers have always found at the top stay there, under their names
    assert d["test_acc"] == 0.991 and d["best_config"] == BEST_CONFIG and d["completed"] == 2
    assert d["incomplete"] is True and "interrupted" not in d and d["interrupted_trials"] == 1
    assert d["ensemble"]["mcnemar_vs_best_single"]["p_value"] == 0.5 and "error" not in d


def test_a_sweep_without_a_usable_model_has_its_error_and_no_best_keys():
    summary = SweepSummary(name="x", arch="mlp", dataset="mnist", error="no trial finished")
    d = summary.to_dict()
    assert d["error"] == "no trial finished" and "test_acc" not in d and "best_trial" not in d
    assert "ensemble" not in d and "final_seeds" not in d
    assert SweepSummary.from_dict(d) == summary and SweepSummary.from_dict(d).best is None


def test_a_summary_in_the_other_layout_reads_into_the_same_types():
    summary = SweepSummary.from_dict(other_layout())
    assert summary.incomplete is True and summary.interrupted_trials == 1
    assert summary.counts == {layout.COMPLETED: 1, layout.STOPPED_BY_SCHEDULER: 1, layout.FAILED: 0}
    assert summary.best.test_acc == 0.981 and summary.best.best_images_per_sec is None
    assert summary.ensemble.error == "no ensemble: OSError: gone" and summary.ensemble.k is None
    final = summary.final_seeds
    assert final.best == SeedStats((1000, 2000), (0.98, 0.982), 0.981, 0.0014)
    assert final.baseline.config == {"lr": 0.01} and final.baseline.test_acc_mean == 0.979
    assert final.incomplete is True and final.wall_time_s == 12.0 and final.beats_baseline is False
    assert summary.unfinished
    # written back, it takes the one layout write_summary writes
    d = summary.to_dict()
    assert d["incomplete"] is True and "interrupted" not in d
    assert d["final_seeds"]["best"]["test_acc_mean"] == 0.981 and "test_acc_mean" not in d["final_seeds"]


def test_incomplete_wins_over_its_alias_and_missing_keys_take_defaults():
    assert SweepSummary.from_dict({**other_layout(), "incomplete": False}).incomplete is False
    bare = SweepSummary.from_dict({"kind": "sweep", "arch": "mlp", "dataset": "mnist"})
    assert (bare.incomplete, bare.trials_run, bare.best, bare.final_seeds, bare.ensemble) == (False, 0, None, None,
                                                                                               None)


def test_malformed_values_become_defaults_not_errors():
    odd = {"kind": "sweep", "arch": "mlp", "dataset": "mnist", "trials_run": "three", "wall_time_s": None,
           "final_seeds": "none", "ensemble": [1, 2], "test_acc": "high", "best_config": [1]}
    summary = SweepSummary.from_dict(odd)
    assert summary.trials_run == 0 and summary.final_seeds is None and summary.ensemble is None
    assert summary.best.test_acc is None and summary.best.best_config is None
    assert FinalSeeds.from_dict({"best": {"test_acc": "x", "test_acc_mean": True}}).best == SeedStats()
    with pytest.raises(ValueError, match="JSON object"):
        SweepSummary.from_dict([1, 2])


def test_seed_statistics_have_one_shape_for_the_best_and_the_baseline_config():
    final = full_summary().final_seeds.to_dict()
    assert set(final["best"]) == set(final["baseline"]) == {"config", "seeds", "test_acc", "test_acc_mean",
                                                             "test_acc_std"}
    assert final["best"]["config"] == BEST_CONFIG and final["baseline"]["config"] == BASELINE_CONFIG
    assert final["best"]["test_acc_mean"] == pytest.approx(0.994) and final["best"]["test_acc_std"] == pytest.approx(
        0.0002)
    # a seed run that never finished is left out; one value has no spread
    one = SeedStats.measure([1000, 2000], {2000: 0.99})
    assert (one.test_acc, one.test_acc_mean, one.test_acc_std) == ((0.99,), 0.99, 0.0)
    assert SeedStats.measure([1000], {}).test_acc_mean is None
    cut = FinalSeeds(incomplete=True, error="no best config to retrain").to_dict()
    assert cut["best"]["seeds"] == [] and cut["incomplete"] is True and cut["baseline"] is None


def test_write_summary_is_the_file_and_read_summary_reads_it_back(tmp_path):
    path = write_summary(full_summary(), tmp_path)
    assert path == tmp_path / layout.SUMMARY_JSON
    assert read_summary(tmp_path) == full_summary()


def test_a_crash_while_writing_the_summary_leaves_the_previous_file(tmp_path, monkeypatch):
    """The disk fills half-way through the new summary: the old one is still there, whole,
    and no temporary file is left beside it."""
    write_summary(SweepSummary(name="before", arch="mlp", dataset="mnist"), tmp_path)
    disk_fills_half_way(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_summary(full_summary(), tmp_path)
    monkeypatch.undo()
    assert read_summary(tmp_path).name == "before"
    assert [p.name for p in tmp_path.iterdir()] == [layout.SUMMARY_JSON]


def test_summary_json_has_one_writer():
    """Only write_summary saves summary.json: no other module writes it on its own."""
    import re

    root = Path(__file__).resolve().parents[1] / "mnist_dist"
    saves = re.compile(r"(save_json|write_text|atomic_write)\([^\n]*(SUMMARY_JSON|summary\.json)")
    writers = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if saves.search(p.read_text())]
    assert writers == ["tuning/outputs/summary.py"]


def report_source(summary: dict):
    from mnist_dist.report.collect import Source

    return Source("sweep", summary["name"], Path(summary["name"]), summary)


@pytest.mark.parametrize("make", [other_layout, lambda: full_summary().to_dict()], ids=["other layout", "written"])
def test_the_report_and_the_console_read_summaries_of_either_layout(make):
    from mnist_dist.report import tables, versus
    from mnist_dist.tuning.driver.console import final_message

    summary = make()
    typed = SweepSummary.from_dict(summary)
    row = tables.source_row(report_source(summary))
    assert row["incomplete"] is True and row["test_acc_mean"] == typed.final_seeds.best.test_acc_mean
    assert row["seeds"] == len(typed.final_seeds.best.test_acc)
    vs = versus.versus_row(report_source(summary))
    assert vs["best"]["mean"] == typed.final_seeds.best.test_acc_mean
    assert vs["baseline"]["mean"] == typed.final_seeds.baseline.test_acc_mean
    assert vs["seeds_wall_time_s"] == typed.final_seeds.wall_time_s
    text = final_message(typed, [], Path("/r") / typed.name, "python sweeps/run.py x --resume")
    assert f"test accuracy {typed.best.test_acc:.4f}" in text and "Resume with:" in text
    assert "best config" in text and "the source's baseline config" in text
