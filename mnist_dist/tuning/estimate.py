"""Before a sweep commits hours: time a few training steps here and say what it will cost.

The baseline config's model takes a handful of real training steps in the driver, on
this machine's device, before Ray starts. From the step time come an epoch's time and
the sweep's: a typical figure with ASHA (every trial runs the grace period, a third of
those go on to the next rung, and so on) and the most it can take (every trial runs
every epoch). A sweep that would run for hours prints that, with the alternatives.
"""
from __future__ import annotations

import math
import time

from ..config import TrainConfig
from ..progress import format_seconds

STEPS = 3  # timed steps, after one untimed warm-up step
SLOW_SWEEP_S = 2 * 3600  # above this, say so and offer alternatives


def seconds_per_image(cfg: TrainConfig) -> float:
    """Training time per image for this config's model and input, measured here."""
    import torch

    from ..data import prepare_batch
    from ..models import create_model, get_entry
    from ..training.loop import make_optimizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    entry = get_entry(cfg.arch)
    model = create_model(cfg.arch, 10, cfg.dropout).to(device)
    opt = make_optimizer(cfg, model.parameters())
    # random 28x28 digits-sized uint8 images: only the shapes matter for the time
    x = torch.randint(0, 256, (cfg.batch_size, 28, 28), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)
    for i in range(STEPS + 1):
        if i == 1:  # the first step pays for one-off set-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(prepare_batch(x, entry.input, 0.13, 0.31)), y)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (STEPS * cfg.batch_size)


def typical_epochs(trials: int, max_epochs: int, grace: int, reduction: int) -> float:
    """Epochs a sweep trains in all under ASHA when trials fare as usual: everyone runs to
    the first rung, 1/reduction of them to the next, and so on up to max_epochs."""
    total, rung, survivors, done = 0.0, max(grace, 1), float(trials), 0
    while done < max_epochs:
        rung = min(rung, max_epochs)
        total += survivors * (rung - done)
        done, survivors, rung = rung, survivors / reduction, rung * reduction
    return total


def estimate(spec, base: dict, concurrency: int) -> dict:
    """Seconds per epoch and for the whole sweep (typical and at most), on this machine."""
    from .spec import max_epochs

    cfg = TrainConfig.from_dict(base)
    n_train = cfg.train_limit or round(60000 * (1 - cfg.val_fraction))  # MNIST-sized by default
    per_epoch = seconds_per_image(cfg) * n_train * 1.15  # + validation, about a sixth of an epoch
    top = max_epochs(spec) if "epochs" in spec.space else cfg.epochs
    if spec.scheduler.type == "asha":
        epochs = typical_epochs(spec.trials, top, spec.scheduler.grace_period, spec.scheduler.reduction_factor)
    else:
        epochs = spec.trials * top
    per_slot = 1 / max(concurrency, 1)
    return {"epoch_s": per_epoch, "typical_s": epochs * per_epoch * per_slot,
            "at_most_s": spec.trials * top * per_epoch * per_slot, "trials": spec.trials}


def describe(est: dict, arch: str) -> str:
    """One line, or a warning with alternatives when the sweep would take hours."""
    line = (f"estimate on this machine: {format_seconds(est['epoch_s'])} per epoch of {arch}; the sweep "
            f"about {format_seconds(est['typical_s'])}, at most {format_seconds(est['at_most_s'])}")
    if est["typical_s"] < SLOW_SWEEP_S:
        return line
    return (f"WARNING: {line}.\n"
            f"  That is long for this hardware. Alternatives:\n"
            f"  - a quick check of the whole path: python sweeps/run.py {arch} --smoke-test\n"
            f"  - fewer trials: --trials {max(2, math.ceil(est['trials'] / 4))}\n"
            f"  - a GPU cluster: ray up cluster.yaml, then python sweeps/run.py {arch} --address auto\n"
            f"  The sweep goes on; Ctrl-C stops it and --resume continues it later.")
