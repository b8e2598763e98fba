"""A real sweep's results: trials, statuses, ASHA's and Optuna's record of them, the best
model, final seeds and the ensemble, on real MNIST subsets."""
from __future__ import annotations



import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import torch
import pytest
import yaml

from mnist_dist.tuning.driver.runner import run_sweep
from mnist_dist.tuning.spec import baseline_point, load_spec
from mnist_dist.models.checkpoint import load_model
from mnist_dist.models.checkpoint import input_spec
from mnist_dist.evaluation import evaluate

from .conftest import read_csv, read_events as events, smoke_options, study, write_spec



def test_smoke_sweep_two_trials_on_two_workers(smoke_sweep, mnist):
    for name in ("summary.json", "trials.csv", "config.yaml", "config.json", "events.jsonl",
                 "optuna.db", "best/model.pt", "best/evaluation.json", "best/predictions.npz"):
        assert (smoke_sweep / name).is_file(), name
    summary = json.loads((smoke_sweep / "summary.json").read_text())
    assert summary["trials_run"] == 2 and summary["completed"] == 2 and summary["failed"] == 0
    rows = read_csv(smoke_sweep / "trials.csv")
    assert {r["world_size"] for r in rows} == {"2"}  # both Train workers took part (DDP)
    for r in rows:
        hist = read_csv(smoke_sweep / "histories" / f"{r['trial_id']}.csv")
        assert len(hist) == 1 and hist[0]["world_size"] == "2"
    # Optuna proposed the configs: its storage holds both trials, the first the source baseline.
    trials = study(smoke_sweep).trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params == baseline_point(load_spec("lenet5"))  # every searched param at the source's value
    assert {k: trials[0].params[k] for k in ("optimizer", "lr", "batch_size")} == {
        "optimizer": "adam", "lr": 0.001, "batch_size": 32}
    by_id = {t.user_attrs["tune_trial_id"]: t for t in trials}
    for r in rows:
        t = by_id[r["trial_id"]]
        assert t.params["optimizer"] == r["config/optimizer"] and float(r["config/lr"]) == t.params["lr"]
        assert t.value == pytest.approx(float(r["best_val_acc"]))
    # The best checkpoint reloads alone and reproduces its reported test accuracy.
    model, payload = load_model(smoke_sweep / "best" / "model.pt")
    assert payload["config"]["arch"] == "lenet5" and payload["config"]["train_limit"] == 1000
    ev = evaluate(model, mnist.test_x[:500], mnist.test_y[:500], input_spec(payload), mnist.mean,
                  mnist.std, mnist.classes)
    assert ev["accuracy"] == summary["test_acc"]
    assert summary["best_val_acc"] == max(float(r["best_val_acc"]) for r in rows)
    # --final-seeds 2: the best config retrained with two other seeds, each model saved and
    # evaluated; the figures are those models' test accuracies, their mean and spread.
    final = summary["final_seeds"]
    best = final["best"]
    assert best["seeds"] == [1000, 2000] and best["config"] == summary["best_config"]
    check_seed_models(smoke_sweep / "final", "seed", best, summary["best_config"], mnist)
    # ... and the source's baseline config with the same seeds, unless it was the best
    baseline = final["baseline"]
    assert baseline["config"] == baseline_point(load_spec("lenet5")) and baseline["seeds"] == best["seeds"]
    final_rows = read_csv(smoke_sweep / "final" / "trials.csv")
    if {k: summary["best_config"][k] for k in baseline["config"]} == baseline["config"]:
        assert baseline["test_acc"] == best["test_acc"] and {r["role"] for r in final_rows} == {"best"}
    else:
        assert sorted(r["role"] for r in final_rows) == ["baseline", "baseline", "best", "best"]
        check_seed_models(smoke_sweep / "final", "baseline-seed", baseline, baseline["config"], mnist)
    assert final["gain_over_baseline"] == pytest.approx(best["test_acc_mean"] - baseline["test_acc_mean"])
    # config.yaml is config.json; events.jsonl has each trial's start and end; the best
    # model's predictions are the evaluation's.
    assert yaml.safe_load((smoke_sweep / "config.yaml").read_text()) == json.loads(
        (smoke_sweep / "config.json").read_text())
    ev_rows = events(smoke_sweep)
    for r in rows:
        assert [e["event"] for e in ev_rows if e["trial_id"] == r["trial_id"]] == ["start", "complete"]
    arrays = np.load(smoke_sweep / "best" / "predictions.npz")
    assert arrays["probabilities"].shape == (500, 10)
    assert (arrays["predictions"] == arrays["labels"]).mean() == pytest.approx(summary["test_acc"])


def check_seed_models(folder: Path, prefix: str, block: dict, config: dict, mnist) -> None:
    """--final-seeds: each seed's model saved with its config and seed; the block's
    accuracies are those models' on the test images, with their mean and spread."""
    assert len(block["test_acc"]) == len(block["seeds"])
    for seed, acc in zip(block["seeds"], block["test_acc"]):
        model, payload = load_model(folder / f"{prefix}-{seed}" / "model.pt")
        assert payload["config"]["seed"] == seed
        assert {k: payload["config"][k] for k in config} == config
        ev = evaluate(model, mnist.test_x[:500], mnist.test_y[:500], input_spec(payload), mnist.mean,
                      mnist.std, mnist.classes)
        assert ev["accuracy"] == acc
    assert block["test_acc_mean"] == pytest.approx(statistics.mean(block["test_acc"]))
    assert block["test_acc_std"] == pytest.approx(statistics.stdev(block["test_acc"]))


def test_final_seeds_train_the_best_and_the_baseline_config_apart():
    """The configs --final-seeds retrains: the best and the source's baseline, each naming
    every key either searches (so a trial's config says which it is); one when they agree."""
    from mnist_dist.tuning.driver.final import final_configs, role_of

    spec = load_spec("lenet5")
    base = {"momentum": 0.9, "nesterov": False, "warmup_epochs": 0.0}
    best = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.0,
            "batch_size": 64, "lr_schedule": "cosine", "warmup_epochs": 1.0, "augment": "light",
            "label_smoothing": 0.1}
    configs = final_configs(spec, best, base)
    assert set(configs) == {"best", "baseline"} and configs["best"] == best
    assert configs["baseline"] == {**baseline_point(spec), "momentum": 0.9, "nesterov": False, "warmup_epochs": 0.0}
    for role, config in configs.items():
        assert role_of({**config, "seed": 1000}, configs) == role
    assert role_of(None, configs) is None  # a seed run Ctrl-C stopped before it started
    same = final_configs(spec, baseline_point(spec), base)
    assert list(same) == ["best"]


def test_tied_trials_rank_the_same_however_tune_lists_them():
    """Three lenet5 trials once tied at 99.283% validation accuracy (5,957 of 6,000), and a
    resumed sweep, listing its trials in another order, named another best trial. Ties now
    go to the lower validation loss, then the trial id."""
    from mnist_dist.tuning.outputs.results import pick_best, ranked

    def row(trial_id, acc, loss, status="completed"):
        return {"trial_id": trial_id, "status": status, "checkpoint_path": "x", "best_val_acc": acc,
                "best_val_loss": loss}

    rows = [row("a", 0.9928, 0.0594), row("b", 0.9928, 0.0561), row("c", 0.9928, 0.0574), row("d", 0.9913, 0.0559),
            row("e", 0.9990, 0.01, status="failed"), row("f", float("nan"), 0.1), row("g", 0.9928, 0.0561)]
    for order in (rows, rows[::-1], rows[3:] + rows[:3]):
        assert [r["trial_id"] for r in ranked(order, "best_val_acc", "max")] == ["b", "g", "c", "a", "d"]
        assert pick_best(order, "best_val_acc", "max")["trial_id"] == "b"
    assert [r["trial_id"] for r in ranked(rows, "best_val_loss", "min")] == ["d", "b", "g", "c", "a", "f"]


def test_a_replaced_checkpoint_is_read_from_the_newest_beside_it(tmp_path):
    """A DDP trial that ASHA stopped may write the next epoch's checkpoint (replacing the one
    its last result names) before the stop reaches it; the sweep's ensemble once failed on
    the missing folder. The newest checkpoint beside it holds the trial's best model."""
    from mnist_dist.tuning.outputs.results import fetch_model

    trial = tmp_path / "train-abc"
    for name, content in (("checkpoint_2026-11-25_20-43-22", b"epoch 1"), ("checkpoint_2026-11-25_20-43-25", b"epoch 2")):
        (trial / name).mkdir(parents=True)
        (trial / name / "model.pt").write_bytes(content)
    shutil.rmtree(trial / "checkpoint_2026-11-25_20-43-22")
    out = fetch_model(str(trial / "checkpoint_2026-11-25_20-43-22"), tmp_path / "copy")
    assert out.read_bytes() == b"epoch 2"
    assert fetch_model(str(trial / "checkpoint_2026-11-25_20-43-25"), tmp_path / "again").read_bytes() == b"epoch 2"



def test_asha_stopped_trial_is_pruned_and_diverged_trial_recorded(ray_session, tmp_path):
    """Three fixed points, one at a time: a good lr, an lr too small to learn (ASHA stops it
    after epoch 1) and an lr that diverges. Optuna must see COMPLETE, PRUNED, COMPLETE(0)."""
    cfg = write_spec(tmp_path / "mlp.yaml", trials=3, max_concurrent=1, baseline_first=True,
                     scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                     fixed={"epochs": 3, "train_limit": 2000, "test_limit": 500},
                     space={"lr": {"choice": [0.01, 1.0e-6, 1.0e+6]}},
                     points=[{"lr": 1.0e-6}, {"lr": 1.0e+6}])
    summary = run_sweep(load_spec("mlp", cfg), smoke_options(tmp_path, "asha", workers=1, smoke_test=False,
                                                              max_concurrent=1))
    rows = read_csv(tmp_path / "asha" / "trials.csv")
    assert [(r["config/lr"], r["status"]) for r in rows] == [
        ("0.01", "completed"), ("1e-06", "stopped_by_scheduler"), ("1000000.0", "diverged")]
    assert [r["epochs_run"] for r in rows] == ["3", "1", "1"]
    assert (summary["completed"], summary["stopped_by_scheduler"], summary["diverged"]) == (1, 1, 1)
    trials = study(tmp_path / "asha").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert [t.user_attrs["status"] for t in trials] == ["completed", "stopped_by_scheduler", "diverged"]
    assert trials[1].intermediate_values.keys() == {1}  # TPE ranks it by what it reached
    assert trials[2].value == 0.0
    assert summary["best_trial"] == rows[0]["trial_id"]
    done = [e["status"] for e in events(tmp_path / "asha") if e["event"] == "complete"]
    assert done == ["completed", "stopped_by_scheduler", "diverged"]
    # One trial process served all three trials, the one ASHA stopped and the next included:
    # Tune reset it in place (reuse_actors) instead of starting a process per trial.
    assert len({r["pid"] for r in rows}) == 1 and rows[0]["pid"]
    assert summary["trial_processes"] == 1 and summary["overhead_per_reused_trial_s"] >= 0
    # ...and a reused process trains exactly as a fresh one: same config and seed, same numbers.
    for r in rows[:2]:
        fresh = fresh_history({**spec_config(tmp_path / "asha"), "lr": float(r["config/lr"])})
        hist = read_csv(tmp_path / "asha" / "histories" / f"{r['trial_id']}.csv")
        assert len(hist) == int(r["epochs_run"])
        for h, f in zip(hist, fresh):
            assert float(h["train_loss"]) == pytest.approx(f["train_loss"], rel=1e-5)
            assert float(h["val_loss"]) == pytest.approx(f["val_loss"], rel=1e-5)
            assert float(h["val_acc"]) == f["val_acc"]


def spec_config(sweep_dir: Path) -> dict:
    """What every trial of the sweep shared (saved beside its results)."""
    return json.loads((sweep_dir / "config.json").read_text())["base_config"]


def fresh_history(config: dict) -> list[dict]:
    """Train `config` in this (fresh, never reused) process, one thread like a 1-CPU trial."""
    import torch

    from mnist_dist.training.loop import train_func_per_worker

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_func_per_worker(config).history
    finally:
        torch.set_num_threads(threads)



def test_the_ensemble_evaluates_each_candidate_once(smoke_sweep, tmp_path, monkeypatch):
    """k is chosen from each candidate's validation probabilities computed once, not once per k
    (that evaluated alexnet's members 15 times on the CPU and outran an H200 run's time), and
    the choice is the sweep's own: same accuracies per k, same members, same test accuracy."""
    from mnist_dist.tuning.outputs import ensemble
    from mnist_dist.tuning.outputs.results import read_rows

    sweep = tmp_path / "sweep"
    shutil.copytree(smoke_sweep, sweep, ignore=shutil.ignore_patterns("tune", "final"))
    summary = json.loads((sweep / "summary.json").read_text())
    calls = []
    counted = ensemble.predict_proba
    monkeypatch.setattr(ensemble, "predict_proba", lambda *a, **k: calls.append(1) or counted(*a, **k))
    rows = read_rows(sweep / "trials.csv")
    base = json.loads((sweep / "config.json").read_text())["base_config"]
    again = ensemble.build_ensemble(rows, load_spec("lenet5"), sweep, base, summary["test_acc"]).to_dict()
    assert len(calls) == len(rows) == 2  # one per candidate; the old code made 1 + 2 = 3
    before = summary["ensemble"]
    assert again["val_acc_by_k"] == before["val_acc_by_k"] and again["members"] == before["members"]
    assert again["test_acc"] == before["test_acc"] and again["best_single_test_acc"] == summary["test_acc"]


def test_sweep_ensemble_averages_its_best_members_and_is_an_ordinary_model(smoke_sweep, mnist, tmp_path, capsys):
    """The smoke sweep's ensemble: k chosen on validation, its predictions the average of its
    members' probabilities, its model.pt used by evaluate, predict and export unchanged."""
    import cv2

    from mnist_dist.cli import main
    from mnist_dist.evaluation import predict_proba
    from mnist_dist.models.checkpoint import Ensemble

    summary = json.loads((smoke_sweep / "summary.json").read_text())
    ens = summary["ensemble"]
    val = ens["val_acc_by_k"]
    assert len(val) == 2 and ens["k"] == max(range(2), key=lambda i: (val[i], -i)) + 1
    path = smoke_sweep / "ensemble" / "model.pt"
    model, payload = load_model(path)
    assert isinstance(model, Ensemble) and payload["members"] == ens["k"] == len(model.members)
    rows = {r["trial_id"]: r for r in read_csv(smoke_sweep / "trials.csv")}
    members = []
    for trial_id in ens["members"]:
        ckpt = Path(rows[trial_id]["checkpoint_path"]) / "model.pt"
        members.append(load_model(ckpt)[0])
    x, spec = mnist.test_x[:200], input_spec(payload)
    averaged = torch.stack([predict_proba(m, x, spec, mnist.mean, mnist.std) for m in members]).mean(0)
    assert torch.allclose(predict_proba(model, x, spec, mnist.mean, mnist.std), averaged, atol=1e-5)
    m = ens["mcnemar_vs_best_single"]
    assert 0 <= m["p_value"] <= 1 and ens["best_single_test_acc"] == summary["test_acc"]
    # an ordinary model file: evaluate (same test images as the sweep), predict, export
    assert main(["evaluate", "--model", str(path), "--dataset", "mnist", "--limit", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == ens["test_acc"]
    cv2.imwrite(str(tmp_path / "digit.png"), 255 - mnist.test_x[0].numpy())
    assert main(["predict", "--model", str(path), str(tmp_path / "digit.png")]) == 0
    assert "digit.png" in capsys.readouterr().out
    assert main(["export", "--model", str(path), "--format", "torchscript", "--output", str(tmp_path / "e.pt")]) == 0
    scripted = torch.jit.load(str(tmp_path / "e.pt"))  # raw [0, 1] images in, probabilities out
    probs = scripted(mnist.test_x[:200].float().unsqueeze(1) / 255)
    assert torch.allclose(probs, averaged, atol=1e-4)
