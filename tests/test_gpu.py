"""The code paths only a GPU takes: AMP in bf16, fp16 with loss scaling, the dataset held
on the device, and `mnist-dist train` on a machine with PyTorch but no Ray or Optuna.
Skipped without CUDA (CI has none); run on a GPU machine with `pytest -m gpu`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnist_dist.config import resolve
from mnist_dist.evaluation import evaluate_checkpoint
from mnist_dist.models.checkpoint import atomic_save
from mnist_dist.training.loop import EpochRun, Trainer

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


def small(arch: str = "lenet5", **over):
    return resolve(arch, {"train_limit": 6000, "epochs": 1, "seed": 0, **over})


def test_amp_uses_bf16_without_a_scaler_and_learns(mnist):
    trainer = Trainer(small(amp=True), CUDA, mnist)
    assert trainer.use_amp and trainer.amp_dtype == torch.bfloat16
    assert not trainer.scaler.is_enabled()  # bf16 has fp32's range: no loss scaling
    # the dataset sits on the GPU as uint8; a batch is made there
    assert trainer.x.device.type == "cuda" and trainer.x.dtype == torch.uint8
    x, y = trainer.batch(trainer.train_idx[:32].to(CUDA))
    assert x.device.type == y.device.type == "cuda"
    m = EpochRun(trainer.cfg, trainer).step()
    assert m["status"] == "completed" and m["val_acc"] > 0.85  # fp32 on the CPU: 0.92


def test_amp_auto_is_on_only_where_it_is_faster(mnist):
    """`amp: auto` (the default): bf16 for cnn_bn and alexnet, fp32 for the small models,
    which autocast made slower on an H200; an explicit value wins."""
    picked = {a: Trainer(small(a), CUDA, mnist).use_amp for a in ("lenet5", "mlp", "cnn_bn")}
    assert picked == {"lenet5": False, "mlp": False, "cnn_bn": True}
    assert not Trainer(small("cnn_bn", amp=False), CUDA, mnist).use_amp


def test_fp16_scales_the_loss_and_resumes_with_the_scale(mnist, monkeypatch):
    """A GPU without bf16 (before Ampere) trains in fp16 with a GradScaler; its scale is part
    of the resume state."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    cfg = small(amp=True, epochs=2)
    trainer = Trainer(cfg, CUDA, mnist)
    assert trainer.amp_dtype == torch.float16 and trainer.scaler.is_enabled()
    run = EpochRun(cfg, trainer)
    first = run.step()
    assert first["val_acc"] > 0.85
    saved = run.checkpoint()["resume"]
    scale = saved["trainer"]["scaler"]["scale"]
    assert scale > 0 and torch.isfinite(torch.tensor(scale))

    again = EpochRun(cfg, Trainer(cfg, CUDA, mnist))
    again.restore(saved)
    assert again.trainer.scaler.get_scale() == scale
    second = again.step()
    assert second["epoch"] == 2 and second["status"] == "completed" and second["val_acc"] > 0.9


def test_a_gpu_trained_model_gives_the_same_answers_on_the_cpu(mnist, tmp_path):
    cfg = small("cnn_regularized", amp=True)
    run = EpochRun(cfg, Trainer(cfg, CUDA, mnist))
    run.step()
    atomic_save(run.checkpoint()["model"], tmp_path / "model.pt")
    on_gpu = evaluate_checkpoint(tmp_path / "model.pt", mnist, "cuda")
    on_cpu = evaluate_checkpoint(tmp_path / "model.pt", mnist, "cpu")
    assert on_gpu["accuracy"] > 0.9  # fp32 on the CPU: 0.93
    assert abs(on_gpu["accuracy"] - on_cpu["accuracy"]) <= 0.001  # fp32 on both: rounding only


def test_train_command_runs_on_the_gpu_without_ray_or_optuna(tmp_path, data_dir):
    """The GPU machines of the checklist have PyTorch but no Ray and no Optuna."""
    block = ("import sys; sys.modules['ray'] = None; sys.modules['optuna'] = None; "
             "from mnist_dist.cli import entry; entry()")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MNIST_DIST_DATA_DIR": str(data_dir)}
    out = subprocess.run([sys.executable, "-c", block, "train", "lenet5", "--smoke-test", "--quiet",
                          "--results-dir", str(tmp_path), "--name", "gpu"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    run = json.loads((tmp_path / "gpu" / "run.json").read_text())
    assert run["status"] == "completed" and run["test_acc"] > 0.6  # 2,000 images, 1 epoch: about 0.79
