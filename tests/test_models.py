"""Every registered architecture, through the registry: a new model is tested here for free."""
from __future__ import annotations

import pytest
import torch

from mnist_dist.config import resolve
from mnist_dist.models import UnknownModelError, count_parameters, create_model, get_entry, list_models

# Parameter counts, computed by hand from the layer sizes in SPEC.md (kept here so a
# changed layer is noticed).
PARAMS = {"mlp": 784 * 100 + 100 + 100 * 10 + 10,
          "ffn": 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10,
          "lenet5": 156 + 2416 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10,
          "cnn_minimal": 320 + 32 * 26 * 26 * 10 + 10,
          "cnn_deep": 4_060_074, "cnn_regularized": 225_034, "cnn_bn": 468_906,
          "alexnet": 58_322_314, "fashion_cnn": 315_146}


def test_registry_has_the_nine_architectures():
    assert set(list_models()) == set(PARAMS)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shape_and_parameters(name):
    entry = get_entry(name)
    model = create_model(name)
    assert count_parameters(model) == PARAMS[name]
    x = torch.randn(2, *entry.input.shape)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    resolve(name)  # its source baseline is a valid TrainConfig


@pytest.mark.parametrize("name", [n for n in list_models() if get_entry(n).dropout is not None])
def test_dropout_is_tunable_where_the_source_has_it(name):
    rates = {m.p for m in create_model(name, dropout=0.2).modules() if isinstance(m, torch.nn.Dropout)}
    assert 0.2 in rates


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownModelError, match="known: mlp, ffn, lenet5"):
        create_model("resnet50")


def test_models_command_imports_only_what_it_uses():
    """`mnist-dist models` (and every command) imports its own module alone: not Ray, not
    the report's plotting, not the image preprocessing of predict."""
    import subprocess
    import sys

    code = ("import sys; from mnist_dist.cli import main; main(['models']); "
            "print(sorted(m for m in ('ray', 'optuna', 'matplotlib', 'mnist_dist.report', "
            "'mnist_dist.inference', 'mnist_dist.tuning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
