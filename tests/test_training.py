"""The per-worker training function on real MNIST: learning, callbacks, divergence,
checkpoints, and the `mnist-dist train` command."""
from __future__ import annotations

import json
import math

import pytest
import torch

from mnist_dist.cli import main
from mnist_dist.config import ConfigError, TrainConfig, resolve
from mnist_dist.models.checkpoint import load_model
from mnist_dist.training import train_func_per_worker
from mnist_dist.models.checkpoint import input_spec
from mnist_dist.evaluation import evaluate
from mnist_dist.training.loop import train_val_indices
from mnist_dist.training.reporting import LocalReporter


def run(arch="lenet5", **overrides):
    reporter = LocalReporter()
    cfg = resolve(arch, overrides)
    state = train_func_per_worker(cfg.to_dict(), reporter)
    return cfg, state, reporter


@pytest.mark.slow  # trains
def test_lenet5_learns_real_mnist_in_one_epoch():
    _, state, _ = run(train_limit=10000, epochs=1, batch_size=32)
    assert state.history[0]["val_acc"] > 0.90
    assert state.history[0]["status"] == "completed"


@pytest.mark.slow  # trains
def test_epoch_loss_and_accuracy_match_a_direct_computation(mnist):
    """The loop keeps per-step losses and predictions and sums them once per epoch; with
    100 images in batches of 32 the last batch holds 4 and must weigh 4, not 32. An lr of
    1e-12 leaves the weights as they were, so the model can recompute the same numbers."""
    import torch.nn.functional as F

    from mnist_dist.data import prepare_batch
    from mnist_dist.training.loop import Trainer

    cfg = resolve("lenet5", {"train_limit": 100, "batch_size": 32, "optimizer": "sgd", "lr": 1e-12,
                             "momentum": 0.0})
    trainer = Trainer(cfg, torch.device("cpu"), mnist)
    loss, acc, n, diverged = trainer.train_epoch(epoch=1)
    idx = trainer.shard(1)
    with torch.no_grad():
        out = trainer.model(prepare_batch(mnist.train_x[idx], trainer.entry.input, mnist.mean, mnist.std))
    assert (n, diverged) == (100, False)
    assert loss == pytest.approx(F.cross_entropy(out, mnist.train_y[idx]).item(), rel=1e-4)
    assert acc == pytest.approx((out.argmax(1) == mnist.train_y[idx]).float().mean().item())


@pytest.mark.slow  # trains
def test_early_stopping_stops_after_patience_epochs():
    # lr so small that nothing changes: val_acc never improves after epoch 1
    _, state, _ = run(optimizer="sgd", lr=1e-12, train_limit=500, epochs=6,
                      early_stopping_monitor="val_acc", early_stopping_patience=2)
    assert [h["status"] for h in state.history] == ["running", "running", "stopped_by_patience"]


@pytest.mark.slow  # trains
def test_reduce_lr_on_plateau_halves_the_rate():
    # 1e-6: too small to move the loss by ReduceLROnPlateau's 1e-4 relative threshold,
    # large enough that halving it exceeds the scheduler's eps (1e-8)
    _, state, _ = run(optimizer="sgd", lr=1e-6, momentum=0.0, train_limit=500, epochs=4,
                      lr_plateau_factor=0.5, lr_plateau_patience=0)
    lrs = [h["lr"] for h in state.history]
    assert lrs[0] == lrs[1] == 1e-6 and math.isclose(lrs[2], 5e-7) and math.isclose(lrs[3], 2.5e-7)


@pytest.mark.slow  # trains
def test_checkpoint_holds_the_best_epoch_and_reloads_with_weights_only(mnist, tmp_path):
    from mnist_dist.models.checkpoint import atomic_save

    cfg, state, reporter = run(optimizer="sgd", lr=0.05, train_limit=3000, epochs=3)
    payload = reporter.last_checkpoint["model"]
    atomic_save(payload, tmp_path / "model.pt")
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert raw["arch"] == "lenet5" and raw["classes"] == list("0123456789")
    assert raw["input"] == {"size": 32, "channels": 1, "resize": False}
    assert raw["config"]["lr"] == 0.05 and raw["dataset"] == "mnist"
    best = state.history[state.best_epoch - 1]
    assert raw["metrics"]["epoch"] == state.best_epoch
    assert best["val_acc"] == max(h["val_acc"] for h in state.history)
    # The saved weights reproduce the best epoch's validation accuracy exactly.
    model, payload = load_model(tmp_path / "model.pt")
    _, val_idx = train_val_indices(cfg, len(mnist.train_x))
    ev = evaluate(model, mnist.train_x[val_idx], mnist.train_y[val_idx], input_spec(payload),
                  mnist.mean, mnist.std, mnist.classes)
    assert ev["accuracy"] == pytest.approx(best["val_acc"], abs=1e-9)


@pytest.mark.slow  # trains
def test_divergence_ends_the_run_with_status_not_exception():
    _, state, _ = run(arch="mlp", optimizer="sgd", lr=1e6, train_limit=2000, epochs=3)
    assert state.history[-1]["status"] == "diverged" and len(state.history) == 1
    assert state.history[-1]["val_acc"] == 0.0


@pytest.mark.slow  # trains
@pytest.mark.parametrize("optimizer, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                            ("sgd", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop)])
def test_every_optimizer_is_built_as_asked_and_trains(optimizer, cls):
    from mnist_dist.models import create_model
    from mnist_dist.training.loop import make_optimizer

    lr = 0.05 if optimizer == "sgd" else 1e-3
    cfg, state, _ = run(arch="mlp", optimizer=optimizer, lr=lr, nesterov=True, momentum=0.8, train_limit=1000,
                        epochs=1, weight_decay=1e-4, batch_size=32)
    assert state.history[0]["status"] == "completed" and state.history[0]["val_acc"] > 0.3
    opt = make_optimizer(cfg, create_model("mlp").parameters())
    assert type(opt) is cls  # not a fall-back to Adam
    group = opt.param_groups[0]
    assert group["lr"] == lr and group["weight_decay"] == 1e-4
    if optimizer in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    if optimizer == "sgd":
        assert group["nesterov"] is True


def test_amp_is_true_false_or_auto():
    from mnist_dist.models import get_entry

    assert resolve("lenet5", {}).amp is None  # auto: the architecture's own choice
    assert [resolve("lenet5", {"amp": v}).amp for v in ("auto", "true", "false", True)] == [None, True, False, True]
    assert get_entry("cnn_bn").amp and get_entry("alexnet").amp and not get_entry("lenet5").amp
    with pytest.raises(ConfigError, match="amp"):
        resolve("lenet5", {"amp": "sometimes"})


def test_bad_config_values_and_keys():
    with pytest.raises(ConfigError, match="batch_size=0"):
        resolve("mlp", {"batch_size": 0})
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"batch_sise": 3})
    with pytest.raises(ConfigError, match="lr='fast' is not a valid float"):
        resolve("mlp", {"lr": "fast"})


def test_train_command_writes_a_complete_run(trained_model, mnist):
    import csv

    import numpy as np

    run_dir = trained_model.parent
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["arch"] == "cnn_regularized" and summary["epochs_run"] == 2
    assert summary["test_acc"] > 0.96  # 20,000 real images, 2 epochs
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["arch"], config["train_limit"], config["epochs"], config["batch_size"]) == (
        "cnn_regularized", 20000, 2, 64)
    with open(run_dir / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(h["epoch"]) for h in history] == [1, 2]
    assert [h["epoch"] for h in json.loads((run_dir / "history.json").read_text())] == [1, 2]
    assert float(history[-1]["best_val_acc"]) == pytest.approx(summary["best_val_acc"])
    ev = json.loads((run_dir / "evaluation.json").read_text())
    assert sum(map(sum, ev["confusion_matrix"])) == 10000 and ev["accuracy"] == summary["test_acc"]
    assert set(ev["classification_report"]) >= {"0", "9", "macro avg"}
    arrays = np.load(run_dir / "predictions.npz")
    assert arrays["probabilities"].shape == (10000, 10)
    assert np.allclose(arrays["probabilities"].sum(1), 1, atol=1e-5)
    assert (arrays["labels"] == mnist.test_y.numpy()).all()
    assert (arrays["predictions"] == arrays["probabilities"].argmax(1)).all()
    assert (arrays["predictions"] == arrays["labels"]).mean() == pytest.approx(summary["test_acc"])


def test_train_command_rejects_bad_input(capsys):
    assert main(["train", "resnet"]) == 2
    assert "known: mlp" in capsys.readouterr().err
    assert main(["train", "mlp", "--epochs", "0"]) == 2
    assert "epochs=0" in capsys.readouterr().err
