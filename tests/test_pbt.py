"""`scheduler: {type: pbt}`: population-based training. The population is the baseline, the
points and random draws; a trial that takes over another's checkpoint keeps its own rates;
perturbed values stay in the space; what PBT cannot combine with is one clear line."""
from __future__ import annotations

import pytest
import torch

from mnist_dist.config import resolve
from mnist_dist.training.loop import EpochRun, Trainer
from mnist_dist.tuning.execution.pbt import KeepInSpace, first_configs, mutations
from mnist_dist.tuning.spec import baseline_point, load_spec

from .badinput import run_bad
from .conftest import read_csv, smoke_options


def write_spec(path, **spec):
    """A sweep YAML with these keys in this order (a `when` names a parameter above it)."""
    import yaml

    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path

SPACE = {"optimizer": {"choice": ["adam", "sgd"]}, "lr": {"loguniform": [1.0e-4, 3.0e-2]},
         "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": ["sgd"]}},
         "weight_decay": {"choice": [0.0, 1.0e-5, 1.0e-4]}, "label_smoothing": {"choice": [0.0, 0.05, 0.1]}}
PBT = {"type": "pbt", "perturbation_interval": 1}


def pbt_spec(tmp_path, **extra):
    return load_spec("mlp", write_spec(tmp_path / "pbt.yaml", trials=6, scheduler=PBT, space=SPACE,
                                       points=[{"optimizer": "adam", "lr": 3.0e-3}], **extra))


def test_the_population_is_the_baseline_the_points_then_seeded_random_draws(tmp_path):
    spec = pbt_spec(tmp_path)
    configs = first_configs(spec)
    assert len(configs) == 6 and configs[0] == baseline_point(spec)
    assert configs[1]["optimizer"] == "adam" and configs[1]["lr"] == 3.0e-3 and "weight_decay" in configs[1]
    assert configs == first_configs(spec)  # the same sweep, the same population
    for c in configs:
        assert ("momentum" in c) == (c["optimizer"] == "sgd")  # conditional values only where they apply


def test_only_what_can_change_mid_run_is_perturbed_and_it_stays_in_the_space(tmp_path):
    spec = pbt_spec(tmp_path)
    assert set(mutations(spec)) == {"lr", "weight_decay", "label_smoothing"}
    assert mutations(spec)["weight_decay"] == [0.0, 1.0e-5, 1.0e-4]
    keep = KeepInSpace(spec.space)
    assert keep({"lr": 0.036, "momentum": 0.4}) == {"lr": 3.0e-2, "momentum": 0.5}
    assert keep({"lr": 1.0e-3}) == {"lr": 1.0e-3}


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_trial_taking_over_another_checkpoint_keeps_its_own_rates(mnist, schedule):
    def run(lr, wd):
        cfg = resolve("mlp", {"train_limit": 256, "test_limit": 64, "batch_size": 64, "epochs": 4, "lr": lr,
                              "optimizer": "sgd", "weight_decay": wd, "lr_schedule": schedule})
        return EpochRun(cfg, Trainer(cfg, torch.device("cpu"), mnist))

    donor = run(0.01, 0.0)
    donor.step()
    taker = run(0.02, 1.0e-4)
    taker.restore(donor.checkpoint()["resume"])
    assert taker.state.epoch == 1 and taker.state.history == donor.state.history
    for a, b in zip(taker.trainer.model.state_dict().values(), donor.trainer.model.state_dict().values()):
        assert torch.equal(a, b)
    group = taker.trainer.opt.param_groups[0]
    assert group["weight_decay"] == 1.0e-4
    assert group["lr"] == pytest.approx(2 * donor.trainer.opt.param_groups[0]["lr"])  # the same point of its schedule
    same = run(0.01, 0.0)
    same.restore(donor.checkpoint()["resume"])  # its own checkpoint: nothing re-set
    assert same.trainer.opt.param_groups[0]["lr"] == donor.trainer.opt.param_groups[0]["lr"]


@pytest.mark.parametrize("extra, says", [
    ({"sampler": "gp"}, "no sampler applies"),
    ({"objectives": ["best_val_acc", "train_time_s"]}, "PBT ranks trials by one metric"),
    ({"space": {"optimizer": {"choice": ["adam", "sgd"]}, "batch_size": {"choice": [32, 64]}}},
     "nothing to change mid-run"),
])
def test_what_pbt_cannot_combine_with_is_one_line(tmp_path, capsys, extra, says):
    spec = {"trials": 4, "scheduler": PBT, "space": SPACE, **extra}
    cfg = write_spec(tmp_path / "s.yaml", **spec)
    run_bad(capsys, ["sweep", "mlp", "--config", cfg, "--results-dir", tmp_path / "results"],
            names=(str(cfg), says), root=tmp_path)


def test_pbt_refuses_ddp_trials_and_a_warm_start(tmp_path, capsys):
    cfg = write_spec(tmp_path / "s.yaml", trials=4, scheduler=PBT, space=SPACE)
    base = ["sweep", "mlp", "--config", cfg, "--results-dir", tmp_path / "results"]
    run_bad(capsys, base + ["--workers", "2"], names=("--workers 2", "pbt"), root=tmp_path)
    (tmp_path / "old").mkdir()
    run_bad(capsys, base + ["--warm-start", tmp_path / "old"], names=("--warm-start", "pbt"), root=tmp_path)


def test_a_pbt_sweep_perturbs_its_trials_and_records_their_values_per_epoch(ray_session, tmp_path):
    from mnist_dist.tuning.driver.runner import run_sweep

    # one member barely learns (sgd at 1e-4): the population's worst at every step, so it takes
    # over a better member's checkpoint and config, perturbed
    cfg = write_spec(tmp_path / "s.yaml", trials=4, scheduler=PBT, space=SPACE, baseline_first=False,
                     points=[{"optimizer": "sgd", "lr": 1.0e-4, "momentum": 0.5}, {"optimizer": "adam", "lr": 3.0e-3}],
                     fixed={"epochs": 4, "train_limit": 1000, "test_limit": 500})
    summary = run_sweep(load_spec("mlp", cfg), smoke_options(tmp_path, "p", workers=1, smoke_test=False))
    rows = read_csv(tmp_path / "p" / "trials.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    assert summary["scheduler"] == "pbt" and summary["sampler"] == "random"
    histories = [read_csv(tmp_path / "p" / "histories" / f"{r['trial_id']}.csv") for r in rows]
    # what each trial process reported, epoch by epoch (Tune may drop the result of the epoch at
    # which a trial was paused for another to take over its checkpoint)
    assert all(len(h) >= 3 and "config/lr" in h[0] and h[-1]["epoch"] == "4" for h in histories)
    changed = [h for h in histories
               if any(len({e[f"config/{k}"] for e in h}) > 1 for k in ("lr", "weight_decay", "label_smoothing"))]
    assert changed, "PBT perturbed no trial"
    for h in changed:  # the rate it trained at is the one its config says, epoch by epoch
        assert all(float(e["lr"]) == pytest.approx(float(e["config/lr"])) for e in h), h
