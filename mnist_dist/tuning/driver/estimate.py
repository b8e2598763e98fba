"""Before a sweep commits hours: time a few training steps here and say what it will cost.

The baseline config's model takes a handful of real training steps in the driver, on this
machine's device (as Ray's trial processes start), at the baseline's batch size and (unless
a step takes a second) at the smallest and largest the space searches, each step with the
next of the augmentation levels the space searches (on a CPU light augmentation doubled an
MLP's epoch). From the step times come an epoch's time (averaged over the batch sizes and
augmentation levels the trials will use) and the sweep's: a typical figure with ASHA (every
trial runs the grace period, a third of those go on to the next rung, and so on) and the
most it can take (every trial runs every epoch), with as many trials at once as the sweep
will run (by CPUs, and by GPUs where there are any). Trials that share a GPU are timed as
one trial with their batches together: where the GPU has room to spare (small models) that
costs about one batch's time, where it has none (alexnet) k times as much. A sweep that
would run for hours prints that, with the alternatives.
"""
from __future__ import annotations

import math
import time
from functools import partial  # picklable, as Tune pickles the progress display with the sweep

from ...config import TrainConfig
from ...progress import format_seconds

STEPS = 3  # timed steps at least, after one untimed warm-up step
MIN_TIMED_S = 0.3  # and more steps until this long (small models), at most MAX_STEPS
MAX_STEPS = 200
SLOW_STEP_S = 1.0  # a step this long is timed at the baseline's batch size alone
SLOW_SWEEP_S = 2 * 3600  # above this, say so and offer alternatives


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def seconds_per_image(cfg: TrainConfig, batch_size: int, device: str, threads: int,
                      augment: tuple[str, ...] = ("off",)) -> float:
    """Training time per image for this config's model and input, measured here, at
    `batch_size`, on `device` with `threads` CPU threads, as a trial would train: averaged
    over the augmentation levels `augment`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _time_steps(cfg, batch_size, torch.device(device), augment)
    finally:
        torch.set_num_threads(before)


def _time_steps(cfg: TrainConfig, batch: int, device, augment: tuple[str, ...] = ("off",)) -> float:
    import torch

    from ...data import prepare_batch
    from ...models import create_model, get_entry
    from ...training.loop import make_optimizer

    entry = get_entry(cfg.arch)
    model = create_model(cfg.arch, 10, cfg.dropout).to(device)
    opt = make_optimizer(cfg, model.parameters())
    # random 28x28 digits-sized uint8 images: only the shapes matter for the time
    x = torch.randint(0, 256, (batch, 28, 28), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)  # on the device, as a trial draws its augmentation

    def step(level: str):
        opt.zero_grad()
        inputs = prepare_batch(x, entry.input, 0.13, 0.31, augment=level, generator=gen, dataset=cfg.dataset)
        loss = torch.nn.functional.cross_entropy(model(inputs), y)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step(augment[0])  # the first step pays for one-off set-up
    t0, steps = time.perf_counter(), 0
    # STEPS at least, and MIN_TIMED_S: a small model's step takes well under a millisecond,
    # too short to time three of them; and as many steps with each augmentation level
    while (steps < STEPS or (time.perf_counter() - t0 < MIN_TIMED_S and steps < MAX_STEPS)
           or steps % len(augment)):
        step(augment[steps % len(augment)])
        steps += 1
    return (time.perf_counter() - t0) / (steps * batch)


def batch_sizes(spec, baseline: int) -> list[int]:
    """The batch sizes the sweep's trials train with: the space's choice, else the baseline's."""
    d = spec.space.get("batch_size") or {}
    return sorted({int(b) for b in d["choice"]}) if "choice" in d else [baseline]


def augment_levels(spec, baseline: str) -> tuple[str, ...]:
    """The augmentation levels the sweep's trials train with: the space's choice, else the
    baseline's (a level costs per image whatever the model: on a CPU light augmentation
    doubled an MLP's epoch and added 3% to cnn_regularized's)."""
    from ...data.transforms import augment_level

    d = spec.space.get("augment") or {}
    return tuple(dict.fromkeys(augment_level(a) for a in d["choice"])) if "choice" in d else (augment_level(baseline),)


def mean_seconds_per_image(timed: dict[int, float], sizes: list[int]) -> float:
    """Per-image time averaged over the batch sizes `sizes`, from times measured at one or
    more batch sizes. A step costs a fixed part (Python, kernel launches, the optimizer's
    pass over the weights) and a part per image: t(B) = c + d / B per image, fitted by least
    squares."""
    if len(timed) == 1:
        return next(iter(timed.values()))
    xs, ts = [1 / b for b in timed], list(timed.values())
    mx, mt = sum(xs) / len(xs), sum(ts) / len(ts)
    d = max(0.0, sum((x - mx) * (t - mt) for x, t in zip(xs, ts)) / sum((x - mx) ** 2 for x in xs))
    c = max(0.0, mt - d * mx)
    return sum(c + d / b for b in sizes) / len(sizes)


def epochs_to_go(epoch: float, max_epochs: int, grace: int | None = None, reduction: int | None = None) -> float:
    """Epochs a trial that has trained `epoch` of them is expected to train yet. Without
    ASHA (grace None): up to max_epochs. Under ASHA, when trials fare as usual: it runs to
    its next rung, goes on past each rung with chance 1/reduction, up to max_epochs."""
    if epoch >= max_epochs:
        return 0.0
    if not grace:
        return max_epochs - epoch
    total, at, chance, rung = 0.0, float(epoch), 1.0, max(grace, 1)
    while at < max_epochs:
        rung = min(rung, max_epochs)
        if rung > at:
            total += chance * (rung - at)
            at, chance = rung, chance / reduction
        rung *= reduction
    return total


def epochs_expected(spec, asha: bool = True):
    """epochs_left(epoch) for the progress display's time left: under the sweep's ASHA, or
    (the final seeds, a sweep without a scheduler) every trial to the last epoch."""
    from ..spec import max_epochs

    if not asha or spec.scheduler.type == "none":
        return partial(epochs_to_go, max_epochs=max_epochs(spec))
    return partial(epochs_to_go, max_epochs=max_epochs(spec), grace=spec.scheduler.grace_period,
                   reduction=spec.scheduler.reduction_factor)


def epochs_ahead(epochs: dict, ended: set, trials: int, epochs_left) -> float:
    """Epochs a sweep of `trials` is expected to train yet: its running trials (`epochs`:
    trained so far per trial seen, those in `ended` done) and those not started, by
    `epochs_left(epoch)`."""
    running = sum(epochs_left(e) for t, e in epochs.items() if t not in ended)
    return running + max(0, trials - len(epochs)) * epochs_left(0)


def typical_epochs(trials: int, max_epochs: int, grace: int, reduction: int) -> float:
    """Epochs a sweep trains in all under ASHA when trials fare as usual: everyone runs to
    the first rung, 1/reduction of them to the next, and so on up to max_epochs."""
    return trials * epochs_to_go(0, max_epochs, grace, reduction)


def estimate(spec, base: dict, concurrency: int, sharing: int = 1, device: str = "cpu",
             threads: int = 1) -> dict:
    """Seconds per epoch (alone, and with `sharing` trials on one GPU) and for the whole
    sweep (typical and at most), on this machine, `concurrency` trials at a time, each
    training on `device` with `threads` CPU threads."""
    from ..spec import max_epochs

    cfg = TrainConfig.from_dict(base)
    n_train = cfg.train_limit or round(60000 * (1 - cfg.val_fraction))  # MNIST-sized by default
    epoch_images = n_train * 1.15  # + validation, about a sixth of an epoch
    # The baseline's batch, and the smallest and largest the space tries: small batches cost
    # the most per image (a cnn_bn sweep on an H200 took 1.75x the estimate made from batch
    # 128 alone: its epochs took 12.6-14.9 s at batch 32, 3.3-4.7 s at 128), large ones the
    # least (ffn's, timed at its baseline's 32 alone, said 7:06 for a 5:06 search).
    sizes = batch_sizes(spec, cfg.batch_size)
    levels = augment_levels(spec, cfg.augment)
    alone = {cfg.batch_size: seconds_per_image(cfg, cfg.batch_size, device, threads, levels)}
    # A step of SLOW_STEP_S or more is all work per image (no fixed part for a fit to find),
    # and timing it at other batch sizes took a minute for alexnet on a CPU.
    if alone[cfg.batch_size] * cfg.batch_size < SLOW_STEP_S:
        alone.update({b: seconds_per_image(cfg, b, device, threads, levels) for b in {sizes[0], sizes[-1]} - set(alone)})
    probe = sorted(alone)
    together = alone
    if sharing > 1:  # k trials on one GPU keep it as busy as one trial with k times the batch:
        # each of their epochs takes k times that rate's epoch, and never less than one alone
        together = {b: max(alone[b], seconds_per_image(cfg, b * sharing, device, threads, levels) * sharing)
                    for b in probe}
    per_epoch = alone[cfg.batch_size] * epoch_images
    shared = together[cfg.batch_size] * epoch_images
    mean_epoch = mean_seconds_per_image(together, sizes) * epoch_images  # over the sweep's batch sizes
    top = max_epochs(spec) if "epochs" in spec.space else cfg.epochs
    if spec.scheduler.type == "asha":
        epochs = typical_epochs(spec.trials, top, spec.scheduler.grace_period, spec.scheduler.reduction_factor)
    else:
        epochs = spec.trials * top
    per_slot = mean_epoch / max(concurrency, 1)
    return {"epoch_s": per_epoch, "shared_epoch_s": shared, "mean_epoch_s": mean_epoch, "sharing": sharing,
            "concurrency": concurrency,
            "typical_s": epochs * per_slot, "at_most_s": spec.trials * top * per_slot, "trials": spec.trials}


def _epoch_time(seconds: float) -> str:
    """'0.6 s' under 10 s (an mlp epoch read '00:00'), else '01:15'."""
    return f"{seconds:.1f} s" if seconds < 10 else format_seconds(seconds)


def describe(est: dict, arch: str) -> str:
    """One line, or a warning with alternatives when the sweep would take hours."""
    shared = (f" ({_epoch_time(est['shared_epoch_s'])} with {est['sharing']} sharing a GPU)"
              if est.get("sharing", 1) > 1 else "")
    line = (f"estimate on this machine: {_epoch_time(est['epoch_s'])} per epoch of {arch}{shared}; the sweep "
            f"about {format_seconds(est['typical_s'])}, at most {format_seconds(est['at_most_s'])}")
    if est["typical_s"] < SLOW_SWEEP_S:
        return line
    return (f"WARNING: {line}.\n"
            f"  That is long for this hardware. Alternatives:\n"
            f"  - a quick check of the whole path: python sweeps/run.py {arch} --smoke-test\n"
            f"  - fewer trials: --trials {max(2, math.ceil(est['trials'] / 4))}\n"
            f"  - a GPU cluster: ray up cluster.yaml, then python sweeps/run.py {arch} --address auto\n"
            f"  The sweep goes on; Ctrl-C stops it and --resume continues it later.")
