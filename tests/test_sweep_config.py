"""A sweep does what its config says: the config file, where the shipped ones live, the
metric and mode, image-folder data and one driver per sweep folder."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import pytest

from mnist_dist.config import ConfigError
from mnist_dist.models import list_models
from mnist_dist.tuning.outputs.results import pick_best
from mnist_dist.tuning.spec import CONFIGS_DIR, baseline_point, load_spec, min_grace_period, schedule_warning

from .conftest import REPO, RUN, read_csv, smoke_options, write_spec
from .procs import ray_started





@pytest.mark.parametrize("arch", list_models())
def test_every_architecture_ships_a_valid_sweep_config(arch):
    """Adding an architecture needs its YAML: this fails for one registered without it."""
    spec = load_spec(arch)
    assert (CONFIGS_DIR / f"{arch}.yaml").is_file() and spec.arch == arch and spec.space
    # the repository's sweeps/ARCH.yaml is the same file (a link into the package)
    assert (REPO / "sweeps" / f"{arch}.yaml").read_text() == (CONFIGS_DIR / f"{arch}.yaml").read_text()
    # ASHA's first cut comes after one-cycle's peak: no trial is judged while warming up
    assert schedule_warning(spec) is None


@pytest.mark.parametrize("epochs, space, fixed, grace", [
    (15, {"lr_schedule": {"choice": ["constant", "onecycle"]}}, {}, 4),  # peak at 3.75 epochs
    (30, {"lr_schedule": {"choice": ["constant", "onecycle"]}}, {}, 8),  # 7.5
    (15, {"lr": {"loguniform": [1e-4, 1e-2]}}, {"lr_schedule": "onecycle"}, 4),
    (15, {"lr_schedule": {"choice": ["constant", "cosine"]},
          "warmup_epochs": {"choice": [0.0, 2.0]}}, {}, 2),  # the longest warm-up
    (15, {"lr_schedule": {"choice": ["constant", "cosine"]}}, {}, 1),  # nothing to wait for
])
def test_first_asha_cut_waits_for_the_schedules_warm_up(tmp_path, epochs, space, fixed, grace):
    def spec_with(g):
        return load_spec("lenet5", write_spec(tmp_path / f"s{g}.yaml", space=space,
                                               fixed={"epochs": epochs, **fixed},
                                               scheduler={"type": "asha", "grace_period": g}))
    assert min_grace_period(spec_with(grace)) == grace
    assert schedule_warning(spec_with(grace)) is None
    if grace > 1:
        assert f"at least {grace}" in schedule_warning(spec_with(grace - 1))


def test_sweep_command_warns_of_an_early_first_cut(tmp_path):
    cfg = write_spec(tmp_path / "early.yaml", space={"lr_schedule": {"choice": ["constant", "onecycle"]}},
                     fixed={"epochs": 15}, scheduler={"type": "asha", "grace_period": 1})
    out = subprocess.run(RUN + ["lenet5", "--config", str(cfg), "--estimate-only"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "grace_period 1 judges trials before" in out.stderr and "at least 4" in out.stderr


class FakeTrial:  # what ASHA reads of a trial
    def __init__(self, trial_id: str, schedule: str):
        self.trial_id, self.config = trial_id, {"lr_schedule": schedule, "lr": 1e-3}


def asha(state: Path, compare_within=None):
    from mnist_dist.tuning.execution.scheduler import ResumableASHA

    return ResumableASHA(state, compare_within=compare_within, time_attr="training_iteration",
                         metric="best_val_acc", mode="max", max_t=30, grace_period=8, reduction_factor=3)


def rung_actions(scheduler, results) -> dict:
    """Each (trial, accuracy at epoch 8) in turn, as the trials reach ASHA's first rung."""
    actions = {}
    for trial, acc in results:
        scheduler.on_trial_add(None, trial)
        actions[trial.trial_id] = scheduler.on_trial_result(
            None, trial, {"training_iteration": 8, "best_val_acc": acc})
    return actions


def test_asha_ranks_a_schedule_only_against_its_own_kind_and_keeps_that_over_a_resume(tmp_path, monkeypatch):
    """At epoch 8 of 30 a one-cycle trial trails the constant-rate ones it will overtake: with
    scheduler.compare_within: lr_schedule it is judged against one-cycle trials only."""
    trials = [(FakeTrial("const1", "constant"), 0.990), (FakeTrial("const2", "constant"), 0.985),
              (FakeTrial("cycle1", "onecycle"), 0.975), (FakeTrial("cycle2", "onecycle"), 0.970)]
    plain = rung_actions(asha(tmp_path / "plain.json"), trials)
    assert plain == {"const1": "CONTINUE", "const2": "STOP", "cycle1": "STOP", "cycle2": "STOP"}
    grouped = rung_actions(asha(tmp_path / "grouped.json", "lr_schedule"), trials)
    assert grouped == {"const1": "CONTINUE", "const2": "STOP", "cycle1": "CONTINUE", "cycle2": "STOP"}
    # a new sweep never reads a state file; a resumed sweep's scheduler reads the rungs of each kind back
    (tmp_path / "fresh.json").write_bytes((tmp_path / "grouped.json").read_bytes())
    fresh = asha(tmp_path / "fresh.json", "lr_schedule")
    assert rung_actions(fresh, [(FakeTrial("cycle3", "onecycle"), 0.972)]) == {"cycle3": "CONTINUE"}
    from mnist_dist.tuning.execution.scheduler import ResumableASHA

    monkeypatch.setattr(ResumableASHA, "resuming", True)
    resumed = rung_actions(asha(tmp_path / "grouped.json", "lr_schedule"),
                           [(FakeTrial("cycle3", "onecycle"), 0.972), (FakeTrial("cycle4", "onecycle"), 0.980),
                            (FakeTrial("const3", "constant"), 0.980)])
    assert resumed == {"cycle3": "STOP", "cycle4": "CONTINUE", "const3": "STOP"}


def test_a_sweep_started_before_compare_within_resumes(tmp_path):
    """`--resume` unpickles the scheduler the sweep started with, without __init__: one
    written before compare_within existed has neither it nor the kinds' rungs."""
    import pickle

    old = asha(tmp_path / "old.json")
    for name in ("compare_within", "kind_brackets", "empty_brackets"):
        del old.__dict__[name]
    restored = pickle.loads(pickle.dumps(old))
    assert rung_actions(restored, [(FakeTrial("a", "constant"), 0.99), (FakeTrial("b", "onecycle"), 0.98)]) == {
        "a": "CONTINUE", "b": "STOP"}


@pytest.mark.parametrize("space, scheduler", [
    ({"lr": {"loguniform": [1e-4, 1e-2]}}, {"type": "asha"}),  # not searched
    ({"lr": {"loguniform": [1e-4, 1e-2]}, "dropout": {"uniform": [0.0, 0.5]}}, {"type": "asha"}),  # continuous
    ({"lr_schedule": {"choice": ["constant", "onecycle"]}}, {"type": "none"}),  # no ASHA to compare
])
def test_compare_within_must_name_a_choice_searched_under_asha(tmp_path, space, scheduler):
    within = "dropout" if "dropout" in space else "lr_schedule"
    cfg = write_spec(tmp_path / "s.yaml", space=space, scheduler={**scheduler, "compare_within": within})
    with pytest.raises(ConfigError, match=f"compare_within='{within}' must name a parameter the space searches "
                                          "with choice, under type: asha"):
        load_spec("lenet5", cfg)
    assert load_spec("cnn_bn").scheduler.compare_within == "lr_schedule"


@pytest.mark.slow
def test_a_built_wheel_carries_the_sweep_configs(tmp_path):
    """A non-editable install (a wheel) has no repository beside it: the YAMLs are package data."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel, = tmp_path.glob("mnist_dist-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for arch in list_models():
        assert f"mnist_dist/tuning/configs/{arch}.yaml" in names, arch


def test_missing_or_unreadable_config_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="no/such/file.yaml: config file not found"):
        load_spec("mlp", "/no/such/file.yaml")
    with pytest.raises(ConfigError, match="is a folder; expected a YAML config file"):
        load_spec("mlp", tmp_path)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="binary.yaml: cannot read it"):
        load_spec("mlp", tmp_path / "binary.yaml")
    (tmp_path / "bad.yaml").write_text("space: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_spec("mlp", tmp_path / "bad.yaml")


def test_missing_config_fails_before_ray_starts(tmp_path, ray_watch):
    env, ray_tmp = ray_watch
    out = subprocess.run(RUN + ["lenet5", "--config", "/no/such/file.yaml", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "/no/such/file.yaml: config file not found" in out.stderr
    assert not ray_started(ray_tmp) and not list(tmp_path.iterdir())


def test_a_data_folder_without_the_dataset_fails_before_ray_starts(tmp_path, ray_watch):
    """Seen on a GPU machine: every trial failed on it, each with a traceback, after Ray's start."""
    data = tmp_path / "data"
    (data / "fashion-mnist").mkdir(parents=True)  # another dataset is there, not MNIST
    results = tmp_path / "results"
    env, ray_tmp = ray_watch
    out = subprocess.run(RUN + ["lenet5", "--smoke-test", "--data-dir", str(data), "--results-dir", str(results)],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2, out.stderr
    assert f"{data / 'mnist'}: missing train-images-idx3-ubyte" in out.stderr
    assert "Traceback" not in out.stderr and not ray_started(ray_tmp)
    assert not results.exists()


@pytest.mark.parametrize("metric, mode, message", [
    ("val_los", "min", "did you mean 'val_loss'"),
    ("accuracy", "max", "not something trials report"),
    ("val_loss", "max", "would pick the worst trial; use mode: min"),
])
def test_metric_and_mode_are_checked(tmp_path, metric, mode, message):
    cfg = write_spec(tmp_path / "s.yaml", metric=metric, mode=mode, space={"lr": {"loguniform": [1e-3, 1e-1]}})
    with pytest.raises(ConfigError, match=message):
        load_spec("mlp", cfg)


@pytest.mark.parametrize("key, value", [("reduction_factor", 1), ("reduction_factor", 2.5), ("grace_period", 0)])
def test_asha_settings_are_checked(tmp_path, key, value):
    """A reduction factor of 1 made no rungs ever pass: the estimate's epoch count looped
    forever; Ray's own check is a bare assertion deep in Tune."""
    cfg = write_spec(tmp_path / "s.yaml", scheduler={"type": "asha", key: value},
                     space={"lr": {"loguniform": [1e-3, 1e-1]}})
    with pytest.raises(ConfigError, match=f"scheduler.{key}={value!r} is not (a )?valid( int)?; expected an integer >= "):
        load_spec("mlp", cfg)


def test_pick_best_follows_metric_and_mode():
    rows = [{"trial_id": t, "status": "completed", "checkpoint_path": "x", "val_loss": loss, "best_val_acc": acc}
            for t, loss, acc in (("a", 0.30, 0.95), ("b", 0.10, 0.93), ("c", 0.20, 0.97))]
    rows.append({"trial_id": "d", "status": "diverged", "checkpoint_path": "x", "val_loss": float("nan"),
                 "best_val_acc": 0.0})
    assert pick_best(rows, "val_loss", "min")["trial_id"] == "b"
    assert pick_best(rows, "best_val_acc", "max")["trial_id"] == "c"


def write_image_folder(root: Path, mnist, n_train: int = 600, n_test: int = 100) -> None:
    for split, (x, y) in {"train": (mnist.train_x[:n_train], mnist.train_y[:n_train]),
                          "test": (mnist.test_x[:n_test], mnist.test_y[:n_test])}.items():
        (root / split).mkdir(parents=True)
        for i, (img, label) in enumerate(zip(x.numpy(), y.tolist())):
            cv2.imwrite(str(root / split / f"{label}_{i}.png"), img)


@pytest.mark.slow
def test_sweep_over_an_image_folder_ranked_by_validation_loss(ray_session, mnist, tmp_path):
    """`--images DIR` (here through the options the flag sets) and `metric: best_val_loss,
    mode: min`: the trials train on the folder, the best trial is the one with the lowest
    validation loss, and its test accuracy is computed on the folder's own test images."""
    from mnist_dist.tuning.driver.runner import run_sweep
    from mnist_dist.models.checkpoint import load_model
    from mnist_dist.models.checkpoint import input_spec
    from mnist_dist.evaluation import evaluate
    from mnist_dist.data import load_image_folder

    folder = tmp_path / "my digits"
    write_image_folder(folder, mnist)
    cfg = write_spec(tmp_path / "mlp.yaml", trials=3, metric="best_val_loss", mode="min",
                     scheduler={"type": "none"}, fixed={"epochs": 2, "images": str(folder)},
                     space={"lr": {"choice": [1e-4, 0.01, 0.03]}}, baseline_first=False)
    spec = load_spec("mlp", cfg)
    summary = run_sweep(spec, smoke_options(tmp_path, "folder", workers=1, smoke_test=False))
    rows = read_csv(tmp_path / "folder" / "trials.csv")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}
    # TPE may propose the same lr twice, and the same config and seed give the same loss:
    # ties go to the higher accuracy, then the lower trial id
    lowest = min(rows, key=lambda r: (float(r["best_val_loss"]), -float(r["best_val_acc"]), r["trial_id"]))
    assert summary["best_trial"] == lowest["trial_id"] and summary["dataset"] == "my digits"
    assert summary["best_metric"] == pytest.approx(float(lowest["best_val_loss"]))
    model, payload = load_model(tmp_path / "folder" / "best" / "model.pt")
    data = load_image_folder(folder)
    assert payload["classes"] == list(data.classes) or tuple(payload["classes"]) == data.classes
    ev = evaluate(model, data.test_x, data.test_y, input_spec(payload), data.mean, data.std, data.classes)
    assert ev["accuracy"] == summary["test_acc"] and len(data.test_y) == 100


@pytest.mark.slow
def test_two_sweeps_of_one_name_exactly_one_runs(tmp_path):
    args = ["mlp", "--smoke-test", "--results-dir", str(tmp_path), "--name", "same", "--quiet"]
    procs = [subprocess.Popen(RUN + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # each starts its own Ray, if any: which one did is not told apart
    outs = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in outs)
    assert codes == [0, 2], [err[-2000:] for _, _, err in outs]
    loser = next(err for rc, _, err in outs if rc == 2)
    assert "is in use by a running sweep (pid" in loser and str(tmp_path / "same") in loser
    sweep = tmp_path / "same"
    assert len(read_csv(sweep / "trials.csv")) == 2
    assert len([json.loads(line) for line in (sweep / "events.jsonl").read_text().splitlines()
                if '"complete"' in line]) == 2
    import optuna

    study = optuna.load_study(study_name="same", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert len(study.trials) == 2


def test_a_dead_holder_does_not_keep_the_folder(tmp_path):
    """The lock belongs to a process: once it is gone (crashed, killed), the folder is free."""
    code = ("import sys; from pathlib import Path; from mnist_dist.tuning.driver.runner import SweepLock; "
            "SweepLock(Path(sys.argv[1])); import os; os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], check=True, timeout=120)
    from mnist_dist.tuning.driver.runner import SweepLock

    lock = SweepLock(tmp_path / "s")  # taken over at once
    with pytest.raises(ConfigError, match="in use by a running sweep"):
        SweepLock(tmp_path / "s")  # ...and held against a second driver (even in one process)
    lock.release()


def test_sweeps_command_shows_where_the_shipped_configs_are(capsys):
    from mnist_dist.cli import main

    assert main(["sweeps", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(CONFIGS_DIR)
    assert main(["sweeps"]) == 0
    out = capsys.readouterr().out
    assert str(CONFIGS_DIR) in out and all(f"{arch}.yaml" in out for arch in list_models())


def test_the_estimate_averages_the_epoch_over_the_batch_sizes_the_space_searches(monkeypatch):
    """Small batches cost the most per image (a step's fixed part is paid per batch): on an
    H200 a cnn_bn sweep's epochs took 12.6-14.9 s at batch 32 and 3.3-4.7 s at 128, and the
    estimate, timed at the baseline's 128 alone, said 3:57 for a search of 6:53. The steps
    are now also timed at the space's smallest and largest batch, and a sweep's epoch is the
    average over its batch sizes of t(B) = c + d / B per image, fitted to those timings."""
    from mnist_dist.tuning.driver import estimate

    c, d = 1e-5, 3e-3  # seconds per image: a fixed part and one per step
    timed = []

    def fake_seconds_per_image(cfg, batch_size, device, threads, augment=("off",)):
        timed.append(batch_size)
        return c + d / batch_size

    monkeypatch.setattr(estimate, "seconds_per_image", fake_seconds_per_image)
    spec = load_spec("lenet5")  # baseline batch 128 (the source's); the space: 32, 64, 128, 256
    assert estimate.batch_sizes(spec, 128) == [32, 64, 128, 256]
    base = {**baseline_point(spec), "arch": "lenet5", **spec.fixed, "batch_size": 128}
    est = estimate.estimate(spec, base, concurrency=2)
    assert sorted(timed) == [32, 128, 256]
    images = est["epoch_s"] / (c + d / 128)  # the baseline's epoch, as printed
    assert images == pytest.approx(round(60000 * 0.9) * 1.15)  # training + validation images
    mean = sum(c + d / b for b in (32, 64, 128, 256)) / 4
    assert est["mean_epoch_s"] == pytest.approx(mean * images)
    assert est["at_most_s"] == pytest.approx(spec.trials * spec.fixed["epochs"] * mean * images / 2)
    # the baseline's batch is already the smallest: two timings, the fit the same
    timed.clear()
    est = estimate.estimate(spec, {**base, "batch_size": 32}, concurrency=2)
    assert sorted(timed) == [32, 256] and est["mean_epoch_s"] == pytest.approx(mean * images)
    # a slow step (alexnet's on a CPU) is all work per image: the baseline's batch alone
    timed.clear()
    monkeypatch.setattr(estimate, "seconds_per_image", lambda cfg, b, *a, **k: timed.append(b) or 1e-2)
    est = estimate.estimate(spec, base, concurrency=2)
    assert timed == [128] and est["mean_epoch_s"] == pytest.approx(1e-2 * images)
    monkeypatch.setattr(estimate, "seconds_per_image", fake_seconds_per_image)
    # the space searches no batch size: the baseline's alone
    timed.clear()
    fixed = dataclasses.replace(spec, space={k: v for k, v in spec.space.items() if k != "batch_size"})
    est = estimate.estimate(fixed, base, concurrency=2)
    assert timed == [128] and est["mean_epoch_s"] == pytest.approx(est["epoch_s"])
    # an epoch under 10 s is said in tenths (an mlp epoch read "00:00"), longer ones as a clock
    assert estimate.describe({**est, "epoch_s": 0.64}, "mlp").startswith("estimate on this machine: 0.6 s per epoch of mlp;")
    assert estimate.describe({**est, "epoch_s": 75}, "mlp").startswith("estimate on this machine: 01:15 per epoch")
    # two equal timings (no per-step part): every batch size costs the same
    assert estimate.mean_seconds_per_image({32: 2e-4, 128: 2e-4}, [32, 64, 128, 256]) == pytest.approx(2e-4)


def test_the_estimate_times_steps_with_the_augmentation_the_space_searches(monkeypatch):
    """On a CPU light augmentation doubled an MLP's epoch (mlp at batch 64: 1.21 s plain,
    2.34 s augmented), and the estimate, timed without it, said 1:26 for a 3:57 search. The
    timed steps now take the space's augmentation levels in turn, as many steps each."""
    from mnist_dist import data
    from mnist_dist.config import TrainConfig
    from mnist_dist.tuning.driver import estimate

    spec = load_spec("mlp")  # searches augment: off, light
    assert estimate.augment_levels(spec, "off") == ("off", "light")
    assert estimate.augment_levels(load_spec("cnn_regularized"), "off") == ("off", "light", "strong")
    fixed = dataclasses.replace(spec, space={k: v for k, v in spec.space.items() if k != "augment"})
    assert estimate.augment_levels(fixed, "light") == ("light",)  # not searched: the baseline's
    asked = []
    monkeypatch.setattr(estimate, "seconds_per_image",
                        lambda cfg, b, device, threads, augment=("off",): asked.append(augment) or 1e-5)
    estimate.estimate(spec, {**baseline_point(spec), "arch": "mlp", **spec.fixed}, concurrency=2)
    assert asked and all(a == ("off", "light") for a in asked)
    monkeypatch.undo()

    levels = []
    made = data.prepare_batch
    monkeypatch.setattr(data, "prepare_batch", lambda *a, **k: (levels.append(k["augment"]), made(*a, **k))[1])
    per_image = estimate.seconds_per_image(TrainConfig.from_dict({"arch": "mlp"}), 64, "cpu", 1, ("off", "light", "strong"))
    assert 0 < per_image < 1e-2
    timed = levels[1:]  # after one warm-up step
    assert len(timed) % 3 == 0 and len(timed) >= estimate.STEPS
    assert timed.count("off") == timed.count("light") == timed.count("strong")


def test_the_estimate_times_a_small_models_steps_long_enough_to_measure(monkeypatch):
    """Three steps of a small model take a few milliseconds, too short to time: the steps
    go on until MIN_TIMED_S has passed (and at most MAX_STEPS of them)."""
    from mnist_dist.config import TrainConfig
    from mnist_dist.training import loop
    from mnist_dist.tuning.driver import estimate

    steps = []
    made = loop.make_optimizer

    def counting(cfg, params):
        opt = made(cfg, params)
        step = opt.step
        opt.step = lambda *a, **k: (steps.append(time.perf_counter()), step(*a, **k))[1]
        return opt

    monkeypatch.setattr(loop, "make_optimizer", counting)
    cfg = TrainConfig.from_dict({"arch": "mlp", "batch_size": 32})
    per_image = estimate.seconds_per_image(cfg, 32, "cpu", 1)
    timed = steps[1:]  # after the warm-up step
    assert estimate.STEPS < len(timed) <= estimate.MAX_STEPS and 0 < per_image < 1e-3
    assert len(timed) == estimate.MAX_STEPS or timed[-1] - steps[0] >= estimate.MIN_TIMED_S * 0.9


@pytest.mark.parametrize("gpus, share", [(0, None), (1, None), (1, 0.0)],
                         ids=["no GPU", "a GPU shared by 4", "a GPU not used"])
def test_the_estimate_counts_the_trials_that_fit_and_a_shared_gpu(gpus, share, monkeypatch, tmp_path):
    """Before Ray starts, the estimate runs as many trials at once as the sweep will: by CPUs,
    and by GPUs where trials use them (four per GPU by default). It once counted the 16 CPUs of
    an H200 machine as 16 trials at once and said 14 s for an alexnet sweep that took 207 s.
    Trials sharing a GPU are timed as one trial with their batches together; every timing uses
    the trial's device and its one CPU thread."""
    import os

    from mnist_dist.tuning.driver import estimate, runner
    from mnist_dist.tuning.options import Scaling, base_config

    timed = []

    def fake_seconds_per_image(cfg, batch_size, device, threads, augment=("off",)):
        timed.append((batch_size, device, threads))
        # per image: a part per step and one per image, 1e-4 s at batch 32, half that at 128
        return 1e-4 / 3 + 6.4e-3 / 3 / batch_size

    monkeypatch.setattr(estimate, "seconds_per_image", fake_seconds_per_image)
    monkeypatch.setattr(estimate, "local_gpus", lambda: gpus)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    spec = load_spec("alexnet")  # 12 trials of 5 epochs, ASHA at 2 with reduction factor 3
    opts = smoke_options(tmp_path, "est", workers=1, smoke_test=False)
    opts.scaling = Scaling(workers=1, gpus_per_worker=share)  # None: auto, as sweeps/run.py starts
    base = base_config(spec, opts)
    est = runner.preflight(spec, opts, base)
    epoch_images = round(60000 * 0.9) * 1.15
    assert est["epoch_s"] == pytest.approx(1e-4 * epoch_images)
    if gpus and share is None:
        assert est["concurrency"] == 4 and est["sharing"] == 4
        # alone at the space's smallest and largest batch (32, 128), then four of each together
        assert timed == [(32, "cuda", 1), (128, "cuda", 1), (128, "cuda", 1), (512, "cuda", 1)]
        assert est["shared_epoch_s"] == pytest.approx(0.5e-4 * 4 * epoch_images)  # twice one alone
        assert "(00:12 with 4 sharing a GPU)" in est["message"]
        per_image = (2e-4 + 1.6667e-4 + 1.5e-4) / 3  # four together: 2e-4 at 32, 1.5e-4 at 128, fitted at 64
    else:
        assert est["concurrency"] == 16 and est["sharing"] == 1 and timed == [(32, "cpu", 1), (128, "cpu", 1)]
        assert est["shared_epoch_s"] == est["epoch_s"] and "sharing" not in est["message"]
        per_image = (1e-4 + 6.6667e-5 + 5e-5) / 3  # alone at 32, 64 and 128
    assert est["mean_epoch_s"] == pytest.approx(per_image * epoch_images, rel=1e-4)
    # ASHA's typical budget: 12 trials x 2 epochs, then a third of them 3 more = 36 epochs
    assert est["typical_s"] == pytest.approx(36 * est["mean_epoch_s"] / est["concurrency"])
    assert est["at_most_s"] == pytest.approx(12 * 5 * est["mean_epoch_s"] / est["concurrency"])


def test_a_smoke_test_is_a_new_spec_and_leaves_the_given_one_alone():
    from mnist_dist.tuning.options import smoke_tested

    spec = load_spec("lenet5")
    before = spec.to_dict()
    smoke = smoke_tested(spec)
    assert spec.to_dict() == before  # resolved once: nothing changes it after loading
    assert smoke.trials == 2 and smoke.scheduler.type == "none" and smoke.fixed["epochs"] == 1
    assert "epochs" not in smoke.space and smoke_tested(smoke).to_dict() == smoke.to_dict()
