"""The nine architectures of the five source projects, with their baselines.

Where a source left a hyperparameter unstated it used Keras' defaults (Adam lr
1e-3, batch 32), so those are the baseline here too. Layer sizes follow the
source descriptions (each registry entry's `description`); `dropout` is the tunable
rate where the source has dropout.
"""
from __future__ import annotations

import torch.nn as nn

from ..data.transforms import InputSpec
from .registry import register

MNIST28 = InputSpec(28, 1)
PADDED32 = InputSpec(32, 1)
ALEXNET227 = InputSpec(227, 3, resize=True)
ADAM = {"optimizer": "adam", "lr": 1e-3}


def conv(cin: int, cout: int, k: int = 3, **kw) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, **kw), nn.ReLU(inplace=True)]


def dense(cin: int, cout: int, dropout: float | None = None) -> list[nn.Module]:
    layers = [nn.Linear(cin, cout), nn.ReLU(inplace=True)]
    return layers + ([nn.Dropout(dropout)] if dropout else [])


@register("mlp", input=MNIST28, published="~97% validation accuracy (MNIST)", published_acc=0.97,
          description="Flatten -> Dense(100, ReLU) -> Dense(10)",
          baseline={"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "epochs": 15, "batch_size": 64})
def mlp(num_classes=10, dropout=None):
    return nn.Sequential(nn.Flatten(), *dense(784, 100), nn.Linear(100, num_classes))


@register("ffn", input=MNIST28, published="96.5% test (MNIST), loss 0.166", published_acc=0.965,
          description="784 -> Dense(64)+ReLU+Dropout -> Dense(64)+ReLU+Dropout -> Dense(10)",
          dropout=0.5, baseline={**ADAM, "epochs": 15, "batch_size": 32})
def ffn(num_classes=10, dropout=0.5):
    return nn.Sequential(nn.Flatten(), *dense(784, 64, dropout), *dense(64, 64, dropout),
                         nn.Linear(64, num_classes))


@register("lenet5", input=PADDED32, published="98.6% test (MNIST), loss 0.039", published_acc=0.986,
          description="Conv(6,5x5)-Pool-Conv(16,5x5)-Pool-Dense(120)-Dense(84)-Dense(10)",
          baseline={**ADAM, "epochs": 10, "batch_size": 32})
def lenet5(num_classes=10, dropout=None):
    return nn.Sequential(*conv(1, 6, 5), nn.MaxPool2d(2), *conv(6, 16, 5), nn.MaxPool2d(2),
                         nn.Flatten(), *dense(16 * 5 * 5, 120), *dense(120, 84),
                         nn.Linear(84, num_classes))


@register("cnn_minimal", input=MNIST28, published="fastest, limited (no number)",
          description="Conv(32,3x3) -> Flatten -> Dense(10)",
          baseline={**ADAM, "epochs": 10, "batch_size": 128})
def cnn_minimal(num_classes=10, dropout=None):
    return nn.Sequential(*conv(1, 32), nn.Flatten(), nn.Linear(32 * 26 * 26, num_classes))


@register("cnn_deep", input=MNIST28, published="slowest, no better than cnn_minimal (no number)",
          description="Conv(32)-Conv(64)-Conv(128) (3x3, no pooling) -> Dense(64)-Dense(32)-Dense(10)",
          baseline={**ADAM, "epochs": 10, "batch_size": 128})
def cnn_deep(num_classes=10, dropout=None):
    return nn.Sequential(*conv(1, 32), *conv(32, 64), *conv(64, 128), nn.Flatten(),
                         *dense(128 * 22 * 22, 64), *dense(64, 32), nn.Linear(32, num_classes))


@register("cnn_regularized", input=MNIST28, published="99.22% test (MNIST), train 99.28%",
          published_acc=0.9922, dropout=0.5,
          description="Conv(32)-Pool-Conv(64)-Pool -> Dense(128)-Dropout -> Dense(10)",
          baseline={**ADAM, "epochs": 10, "batch_size": 128})
def cnn_regularized(num_classes=10, dropout=0.5):
    return nn.Sequential(*conv(1, 32), nn.MaxPool2d(2), *conv(32, 64), nn.MaxPool2d(2),
                         nn.Flatten(), *dense(64 * 5 * 5, 128, dropout), nn.Linear(128, num_classes))


def _bn_conv(cin: int, cout: int) -> list[nn.Module]:
    # conv without bias: BatchNorm's shift makes it redundant
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _bn_dense(cin: int, cout: int, dropout: float) -> list[nn.Module]:
    return [nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True),
            nn.Dropout(dropout)]


@register("cnn_bn", input=MNIST28, published="99.53% test (MNIST), loss 0.0144", published_acc=0.9953,
          dropout=0.5, amp=True, description="3 Conv-BN blocks (32x2, 64x2, 128) with pooling and dropout "
          "-> Dense(256)-BN -> Dense(128)-BN -> Dense(10)",
          baseline={**ADAM, "epochs": 30, "batch_size": 128, "early_stopping_monitor": "val_loss",
                    "early_stopping_patience": 5, "lr_plateau_factor": 0.5, "lr_plateau_patience": 3})
def cnn_bn(num_classes=10, dropout=0.5):
    block_drop = dropout / 2  # source: 0.25 after conv blocks, 0.5 in the dense head
    return nn.Sequential(
        *_bn_conv(1, 32), *_bn_conv(32, 32), nn.MaxPool2d(2), nn.Dropout(block_drop),
        *_bn_conv(32, 64), *_bn_conv(64, 64), nn.MaxPool2d(2), nn.Dropout(block_drop),
        *_bn_conv(64, 128), nn.MaxPool2d(2), nn.Dropout(block_drop),  # 7x7 -> 3x3
        nn.Flatten(), *_bn_dense(128 * 3 * 3, 256, dropout), *_bn_dense(256, 128, dropout),
        nn.Linear(128, num_classes))


@register("alexnet", input=ALEXNET227, published="converges despite over-parameterisation (no number)",
          dropout=0.5, amp=True, description="AlexNet: Conv(96,11x11,s4)-Pool-Conv(256,5x5)-Pool-Conv(384)"
          "-Conv(384)-Conv(256)-Pool -> Dense(4096)-Dense(4096) -> Dense(10), 227x227x3 input",
          baseline={"optimizer": "adam", "lr": 1e-4, "epochs": 5, "batch_size": 32,
                    "early_stopping_monitor": "train_acc", "early_stopping_patience": 2})
def alexnet(num_classes=10, dropout=0.5):
    return nn.Sequential(
        *conv(3, 96, 11, stride=4), nn.MaxPool2d(3, 2),  # 227 -> 55 -> 27
        *conv(96, 256, 5, padding=2), nn.MaxPool2d(3, 2),  # 27 -> 13
        *conv(256, 384, padding=1), *conv(384, 384, padding=1), *conv(384, 256, padding=1),
        nn.MaxPool2d(3, 2), nn.Flatten(),  # 13 -> 6
        *dense(256 * 6 * 6, 4096, dropout), *dense(4096, 4096, dropout), nn.Linear(4096, num_classes))


@register("fashion_cnn", input=PADDED32, published="92.0% test on Fashion-MNIST, loss 0.244",
          published_acc=0.920, published_dataset="fashion-mnist",
          description="Conv(32,3x3)-Pool-Conv(64,3x3)-Pool -> Dense(128) -> Dense(10), 32x32 input",
          baseline={**ADAM, "epochs": 10, "batch_size": 32, "dataset": "fashion-mnist"})
def fashion_cnn(num_classes=10, dropout=None):
    # 32 -> conv 30 -> pool 15 -> conv 13 -> pool 6
    return nn.Sequential(*conv(1, 32), nn.MaxPool2d(2), *conv(32, 64), nn.MaxPool2d(2),
                         nn.Flatten(), *dense(64 * 6 * 6, 128), nn.Linear(128, num_classes))
