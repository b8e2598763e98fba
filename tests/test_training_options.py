"""Training options: learning-rate schedules with warm-up, augmentation
strengths (never a flip for digits) and label smoothing, as TrainConfig fields; their
resume state, the old augment true/false, the errors, and the shipped sweep YAMLs. No Ray."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mnist_dist.cli import main
from mnist_dist.config import ConfigError, TrainConfig, load_yaml, resolve
from mnist_dist.data import load_dataset
from mnist_dist.data.transforms import InputSpec, mirror_safe, prepare_batch
from mnist_dist.models import list_models
from mnist_dist.tuning.spec import baseline_point, load_spec, max_epochs
from mnist_dist.training.loop import EpochRun, Trainer

CPU = torch.device("cpu")
LR = 0.01


@pytest.fixture(scope="module")
def fashion(data_dir):
    return load_dataset("fashion-mnist", data_dir)


def trainer(data, **overrides) -> Trainer:
    return Trainer(resolve("lenet5", overrides), CPU, data)


def record_lrs(t: Trainer) -> list[float]:
    """The learning rate each optimizer step of `t` uses, appended as it trains."""
    lrs, step = [], t.step

    def recording(x, y):
        lrs.append(t.lr())
        return step(x, y)

    t.step = recording
    return lrs


def train(t: Trainer, epochs: int) -> tuple[list[float], EpochRun]:
    lrs, run = record_lrs(t), EpochRun(t.cfg, t)
    for _ in range(epochs):
        run.step()
    return lrs, run


# 1,000 images in batches of 100: 10 steps per epoch, 4 epochs = T = 40 steps.
# (step, multiplier of lr) at the start, middle and end, from the schedules' formulas.
cos = lambda t: 0.5 * (1 + math.cos(math.pi * t))  # noqa: E731 cosine from 1 (t=0) to 0 (t=1)
ONECYCLE_PEAK = 0.25 * 40 - 1  # the step at lr: OneCycleLR's pct_start * total - 1
SCHEDULES = {
    "constant": ({}, [(0, 1.0), (20, 1.0), (39, 1.0)]),
    "constant, warm-up 0.5 epoch": ({"warmup_epochs": 0.5},  # 5 steps: 1/5, 2/5, ... 5/5, then lr
                                    [(0, 1 / 5), (2, 3 / 5), (4, 1.0), (5, 1.0), (39, 1.0)]),
    "cosine": ({"lr_schedule": "cosine"}, [(0, 1.0), (20, 0.5), (39, cos(39 / 40))]),
    "cosine, warm-up 1 epoch": ({"lr_schedule": "cosine", "warmup_epochs": 1.0},
                                [(0, 1 / 10), (9, 1.0), (10, 1.0), (25, 0.5), (39, cos(29 / 30))]),
    "onecycle": ({"lr_schedule": "onecycle"},  # lr/25 -> lr at 25% -> lr/25/1e4
                 [(0, 1 / 25), (ONECYCLE_PEAK, 1.0), (24, 4e-6 + (1 - 4e-6) * cos((24 - 9) / (39 - 9))),
                  (39, 1 / 25 / 1e4)]),
}


@pytest.mark.slow  # trains
@pytest.mark.parametrize("name", SCHEDULES)
def test_learning_rate_per_step_follows_the_schedule(mnist, name):
    overrides, expected = SCHEDULES[name]
    t = trainer(mnist, optimizer="sgd", lr=LR, train_limit=1000, batch_size=100, epochs=4, **overrides)
    lrs, _ = train(t, 4)
    assert t.steps_per_epoch == 10 and len(lrs) == 40
    for step, factor in expected:
        assert lrs[int(step)] == pytest.approx(LR * factor, rel=1e-9, abs=1e-15), (name, step)
    if overrides.get("lr_schedule") == "cosine":  # monotonic after the warm-up, 0 after the last step
        w = round(overrides.get("warmup_epochs", 0) * 10)
        assert all(a >= b for a, b in zip(lrs[w:], lrs[w + 1:])) and t.lr() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.slow  # trains
def test_onecycle_is_torch_onecyclelr_without_momentum_cycling(mnist):
    t = trainer(mnist, optimizer="sgd", lr=LR, momentum=0.9, train_limit=1000, batch_size=100, epochs=4,
                lr_schedule="onecycle")
    lrs, _ = train(t, 4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=40, pct_start=0.25,
                                              cycle_momentum=False)
    expected = []
    for s in range(40):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        if s < 39:
            ref.step()
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert t.opt.param_groups[0]["momentum"] == 0.9  # the tuned momentum is left alone


@pytest.mark.slow  # trains
def test_schedule_state_survives_a_resume(mnist, tmp_path):
    """Train 1 epoch, checkpoint (through a file, loaded as sweeps load it), resume in a new
    Trainer: the learning rates go on exactly as in an uninterrupted run."""
    cfg = dict(optimizer="sgd", lr=LR, train_limit=600, batch_size=100, epochs=3,
               lr_schedule="cosine", warmup_epochs=0.5)
    whole, _ = train(trainer(mnist, **cfg), 3)
    first_lrs, run = train(trainer(mnist, **cfg), 1)
    torch.save(run.checkpoint()["resume"], tmp_path / "resume.pt")
    saved = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert saved["trainer"]["schedule"]["last_epoch"] == 6  # optimizer steps taken

    second = trainer(mnist, **cfg)
    lrs = record_lrs(second)
    resumed = EpochRun(second.cfg, second)
    resumed.restore(saved)
    while not resumed.done:
        resumed.step()
    assert resumed.state.epoch == 3
    assert first_lrs + lrs == pytest.approx(whole, rel=1e-12)
    assert lrs[0] != pytest.approx(LR / 3)  # not restarted at the warm-up's first step


@pytest.mark.slow  # trains
def test_checkpoint_files_hold_the_best_weights_once_and_resume_them(mnist, tmp_path):
    """resume.pt leaves the best epoch's weights to model.pt beside it (for alexnet they were
    233 MB of the 1.17 GB written per epoch); reading the folder back gives the whole state."""
    from mnist_dist.training.reporting import read_checkpoint, write_checkpoint

    cfg = dict(optimizer="adam", lr=1e-3, train_limit=600, batch_size=100, epochs=3)
    _, run = train(trainer(mnist, **cfg), 2)
    ckpt = run.checkpoint()
    write_checkpoint(ckpt, tmp_path)
    on_disk = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert "best_state" not in on_disk["state"] and run.state.best_epoch >= 1
    whole = tmp_path / "whole.pt"
    torch.save(ckpt["resume"], whole)  # what resume.pt was
    weights = sum(t.numel() * t.element_size() for t in run.state.best_state.values())
    assert whole.stat().st_size - (tmp_path / "resume.pt").stat().st_size >= weights

    saved = read_checkpoint(tmp_path)
    assert saved["state"]["best_state"].keys() == run.state.best_state.keys()
    assert all(torch.equal(saved["state"]["best_state"][k], v) for k, v in run.state.best_state.items())
    assert "best_state" not in read_checkpoint(tmp_path, best_weights=False)["state"]
    old = tmp_path / "old"  # a checkpoint written before: resume.pt holds the best weights itself
    old.mkdir()
    torch.save(ckpt["resume"], old / "resume.pt")
    assert all(torch.equal(read_checkpoint(old)["state"]["best_state"][k], v) for k, v in run.state.best_state.items())
    resumed = EpochRun(run.cfg, trainer(mnist, **cfg))
    resumed.restore(saved)
    resumed.step()
    run.step()  # the uninterrupted run's third epoch: the same numbers, the same best model
    assert resumed.state.history[-1]["val_acc"] == run.state.history[-1]["val_acc"]
    assert resumed.state.best_epoch == run.state.best_epoch
    assert all(torch.equal(resumed.state.best_state[k], v) for k, v in run.state.best_state.items())


@pytest.mark.slow  # trains
def test_plateau_cut_scales_the_schedule_instead_of_being_undone(mnist):
    """ReduceLROnPlateau with a schedule (here a 1-epoch warm-up, then constant): each cut
    holds for every later step, and the scaled schedule is in the resume state."""
    t = trainer(mnist, optimizer="sgd", lr=1e-6, momentum=0.0, train_limit=500, epochs=4,
                warmup_epochs=1.0, lr_plateau_factor=0.5, lr_plateau_patience=0)
    lrs = record_lrs(t)
    run = EpochRun(t.cfg, t)
    history = [run.step()["lr"] for _ in range(4)]
    steps = t.steps_per_epoch
    assert history[:2] == pytest.approx([1e-6, 1e-6]) and history[2:] == pytest.approx([5e-7, 2.5e-7])
    assert lrs[:steps][0] == pytest.approx(1e-6 / steps)  # the warm-up
    assert lrs[2 * steps:3 * steps] == pytest.approx([5e-7] * steps)  # epoch 3: the cut holds
    assert t.resume_state()["schedule"]["base_lrs"] == pytest.approx([1.25e-7])


@pytest.mark.parametrize("level", ["light", "strong"])
@pytest.mark.parametrize("which", ["mnist", "fashion"])
def test_augmented_batch_differs_but_keeps_labels_and_value_range(mnist, fashion, which, level):
    data = mnist if which == "mnist" else fashion
    t = trainer(data, train_limit=1000)
    idx = t.shard(1)[:256]
    plain, y_plain = t.batch(idx)
    aug, y_aug = t.batch(idx, augment=level)
    assert aug.shape == plain.shape and torch.equal(y_aug, y_plain) and torch.equal(y_aug, data.train_y[idx])
    changed = (aug - plain).abs().flatten(1).amax(1) > 1e-3
    assert changed.float().mean() > 0.9  # nearly every image moved (a few draws are the identity)
    black, white = (0 - data.mean) / data.std, (1 - data.mean) / data.std
    assert aug.min() >= black - 1e-5 and aug.max() <= white + 1e-5
    ink = lambda x: (x - black).sum()  # noqa: E731
    assert 0.7 < ink(aug) / ink(plain) < 1.1  # moved around, mostly kept in the frame


def test_light_digit_augmentation_is_what_augment_true_was(mnist):
    x = mnist.test_x[:64]
    old = prepare_batch(x, InputSpec(), 0.0, 1.0, augment=True, generator=torch.Generator().manual_seed(0))
    light = prepare_batch(x, InputSpec(), 0.0, 1.0, augment="light",
                          generator=torch.Generator().manual_seed(0), dataset="mnist")
    assert torch.equal(old, light)


@pytest.mark.parametrize("level", ["light", "strong"])
def test_digit_augmentation_is_the_affine_transform_of_its_draws(mnist, level):
    """The sampling grid is built by broadcast multiply-adds (faster on a CPU than
    F.affine_grid's batched matrix product); the images are those F.affine_grid gives for
    the same draws: a rotation, a shift and (strong) a scaling per image."""
    from mnist_dist.data.transforms import DIGIT_AUGMENT, augment_batch

    p = {"max_scale": 0.0, **DIGIT_AUGMENT[level]}
    x = mnist.test_x[:64].unsqueeze(1).float()
    got = augment_batch(x, **p, generator=torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)  # the same draws, in the same order
    u = [torch.rand(64, generator=draws) * 2 - 1 for _ in range(4 if p["max_scale"] else 3)]
    angle, sx, sy = u[0] * math.radians(p["max_degrees"]), u[1] * 2 * p["max_shift"] / 28, u[2] * 2 * p["max_shift"] / 28
    s = 1 / (1 + u[3] * p["max_scale"]) if p["max_scale"] else torch.ones(64)
    theta = torch.stack([torch.stack([angle.cos() * s, -angle.sin() * s, sx], 1),
                         torch.stack([angle.sin() * s, angle.cos() * s, sy], 1)], 1)
    want = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    assert (got - want).abs().max() < 0.01  # of 255: float rounding in the grid
    assert (got - x).abs().amax((1, 2, 3)).min() > 1  # and every image moved


def bar_on_the_left(n: int = 256) -> torch.Tensor:
    """Images with a vertical bar in columns 3-6: any flip puts its ink right of centre, and
    no shift, rotation or scaling of the digit augmentations moves it across."""
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 4:24, 3:7] = 255
    return x


def ink_centre_columns(x: torch.Tensor) -> torch.Tensor:
    x = x[:, 0] - x[:, 0].amin()  # background 0
    cols = torch.arange(x.shape[-1], dtype=x.dtype)
    return (x.sum(1) * cols).sum(1) / x.sum((1, 2))


@pytest.mark.parametrize("dataset", ["mnist", "kmnist", "my-digits"])
@pytest.mark.parametrize("level", ["light", "strong"])
def test_digits_are_never_flipped_fashion_is(dataset, level):
    """The same generator state, seeded so that a flip is drawn for about half of 256 images
    (none at all: probability 2^-256): the Fashion batch has mirrored images, the digit
    batch never."""
    x = bar_on_the_left()
    for seed in range(3):
        digits = prepare_batch(x, InputSpec(), 0.0, 1.0, augment=level, dataset=dataset,
                               generator=torch.Generator().manual_seed(seed))
        clothes = prepare_batch(x, InputSpec(), 0.0, 1.0, augment=level, dataset="fashion-mnist",
                                generator=torch.Generator().manual_seed(seed))
        assert (ink_centre_columns(digits) < 13.5).all()
        mirrored = (ink_centre_columns(clothes) > 13.5).float().mean()
        assert 0.3 < mirrored < 0.7
    assert not mirror_safe(dataset) and mirror_safe("fashion-mnist")


@pytest.mark.slow  # trains
def test_label_smoothing_changes_the_training_loss_not_the_validation_loss(mnist):
    """Two copies of one trained model, with and without smoothing, at lr 1e-12 (the weights
    stay as they are, so the losses can be recomputed from the model)."""
    taught = trainer(mnist, optimizer="sgd", lr=0.05, train_limit=2000)
    taught.train_epoch(epoch=1)
    cfg = dict(optimizer="sgd", lr=1e-12, momentum=0.0, train_limit=500, batch_size=500)
    plain, smooth = trainer(mnist, **cfg), trainer(mnist, label_smoothing=0.1, **cfg)
    for t in (plain, smooth):
        t.model.load_state_dict(taught.model.state_dict())
    loss_plain, *_ = plain.train_epoch(epoch=1)
    loss_smooth, *_ = smooth.train_epoch(epoch=1)
    x, y = smooth.batch(smooth.shard(1))
    with torch.no_grad():
        out = smooth.model(x)
    assert loss_plain == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-4)
    assert loss_smooth == pytest.approx(F.cross_entropy(out, y, label_smoothing=0.1).item(), rel=1e-4)
    assert loss_smooth > loss_plain * 1.2  # a confident model pays for the smoothed targets

    val_loss, _ = smooth.validate()
    vx, vy = smooth.batch(smooth.val_idx)
    with torch.no_grad():
        vout = smooth.model(vx)
    assert val_loss == pytest.approx(F.cross_entropy(vout, vy).item(), rel=1e-5)  # plain cross-entropy
    assert val_loss == pytest.approx(plain.validate()[0], rel=1e-6)


@pytest.mark.parametrize("value, level", [(True, "light"), (False, "off"), ("true", "light"),
                                          ("False", "off"), ("yes", "light"), ("0", "off"),
                                          ("strong", "strong"), ("Light", "light")])
def test_old_augment_true_false_still_loads(value, level):
    assert TrainConfig.from_dict({"augment": value}).augment == level
    assert TrainConfig(augment=value).augment == level


def test_old_configs_and_checkpoints_load(tmp_path):
    old = TrainConfig().to_dict()
    for new in ("lr_schedule", "warmup_epochs", "label_smoothing"):
        del old[new]
    old["augment"] = True  # as an old model.pt's "config" has it
    cfg = TrainConfig.from_dict(old)
    assert (cfg.augment, cfg.lr_schedule, cfg.warmup_epochs, cfg.label_smoothing) == ("light", "constant", 0, 0)
    for text, level in (("augment: true", "light"), ("augment: off", "off"), ("augment: no", "off"),
                        ("augment: strong", "strong")):  # YAML 1.1 reads off/no as false
        (tmp_path / "c.yaml").write_text(text + "\n")
        assert resolve("lenet5", load_yaml(tmp_path / "c.yaml")).augment == level


@pytest.mark.parametrize("overrides, message", [
    ({"lr_schedule": "linear"},
     "lr_schedule='linear' is not valid; expected one of ('constant', 'cosine', 'onecycle')"),
    ({"warmup_epochs": -1}, "warmup_epochs=-1.0 is not valid; expected a number of epochs >= 0"),
    ({"warmup_epochs": "two"}, "warmup_epochs='two' is not a valid float"),
    ({"lr_schedule": "onecycle", "warmup_epochs": 1}, "warmup_epochs=1.0 is not valid; expected 0 with "
                                                      "lr_schedule=onecycle, which warms up over its own"),
    ({"augment": "medium"}, "augment='medium' is not valid; expected one of ('off', 'light', 'strong')"),
    ({"label_smoothing": 0.5}, "label_smoothing=0.5 is not valid; expected a number in [0, 0.5)"),
    ({"label_smoothing": -0.1}, "label_smoothing=-0.1 is not valid"),
])
def test_bad_values_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve("lenet5", overrides)


@pytest.mark.slow  # trains
def test_train_command_takes_the_options_as_flags(tmp_path, capsys):
    rc = main(["train", "lenet5", "--smoke-test", "--quiet", "--results-dir", str(tmp_path), "--name", "run",
               "--lr-schedule", "onecycle", "--augment", "strong", "--label-smoothing", "0.1"])
    assert rc == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["lr_schedule"], cfg["augment"], cfg["label_smoothing"]) == ("onecycle", "strong", 0.1)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["lr"] == pytest.approx(1e-3 / 25 / 1e4)  # one-cycle's end after the 1 epoch
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "constant | cosine | onecycle" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("arch", list_models())
def test_shipped_sweeps_search_the_options_with_the_baseline_first(arch):
    """Epochs fixed (ASHA's max_t, the schedules' run length), not searched; the source's
    constant / off / 0.0 are trial 1's values; Fashion alone may be flipped, digits get
    shifts and rotations."""
    spec = load_spec(arch)
    assert "epochs" not in spec.space and max_epochs(spec) == spec.fixed["epochs"]
    assert {"lr_schedule", "augment", "label_smoothing"} <= set(spec.space)
    first = baseline_point(spec)
    assert (first["lr_schedule"], first["augment"], first["label_smoothing"]) == ("constant", "off", 0.0)
    assert "warmup_epochs" not in first  # searched only with cosine
    assert spec.space["augment"]["choice"][0] == "off"  # a string, not YAML's false
