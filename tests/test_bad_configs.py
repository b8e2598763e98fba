"""Bad sweep YAMLs, training configs and flags: each is one `error:` line naming the file
or flag, the key and the value and saying what is accepted, exit 2, before Ray starts or
anything is written. Ray and training are blocked here: reaching either is a failure."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mnist_dist.cli import main
from mnist_dist.config import FIELDS, RANGES, ConfigError, resolve
from mnist_dist.tuning.spec import load_spec

from .badinput import run_bad, tree_state


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch):
    """`import ray` fails and a Trainer cannot be made: validation must come first."""
    from mnist_dist.training import loop

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the config was validated")

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(loop.Trainer, "__init__", no_training)


LR = "space:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
NO_BASELINE = "baseline_first: false\n"
MOMENTUM = ("space:\n  optimizer: {choice: [adam, sgd]}\n"
            "  momentum: {uniform: [0.5, 0.99], when: {optimizer: [sgd]}}\n")

# (YAML text, what the error line must name besides the file)
SWEEP_YAML = {
    "empty": ("", ["is empty"]),
    "comments only": ("# every line commented out\n", ["is empty"]),
    "a list": ("- lr\n- batch_size\n", ["not a mapping"]),
    "a scalar": ("hello\n", ["not a mapping"]),
    "not YAML": ("space: [unclosed\n", ["not valid YAML"]),
    "a key twice": ("trials: 2\ntrials: 30\n" + LR, ["key 'trials' is given twice", "line 2"]),
    "a nested key twice": (LR + "fixed:\n  epochs: 2\n  epochs: 3\n", ["key 'epochs' is given twice"]),
    "space a list": ("space:\n  - lr\n  - batch_size\n", ["space=", "not a mapping"]),
    "fixed a list": ("fixed: [epochs, 3]\n" + LR, ["fixed=", "not a mapping"]),
    "scheduler a string": ("scheduler: asha\n" + LR, ["scheduler='asha'", "not a mapping"]),
    "space empty": ("trials: 3\nspace: {}\n", ["space is empty"]),
    "no space": ("trials: 3\n", ["space is empty"]),
    "max_concurrent words": ("max_concurrent: four\n" + LR, ["max_concurrent='four'", "an integer >= 1"]),
    "max_concurrent 0": ("max_concurrent: 0\n" + LR, ["max_concurrent=0", ">= 1"]),
    "trials 0": ("trials: 0\n" + LR, ["trials=0", "an integer >= 1"]),
    "trials negative": ("trials: -3\n" + LR, ["trials=-3"]),
    "trials fraction": ("trials: 2.5\n" + LR, ["trials=2.5", "not a valid int"]),
    "trials true": ("trials: true\n" + LR, ["trials=True"]),
    "unknown top key": ("trails: 5\n" + LR, ["'trails'", "did you mean 'trials'"]),
    "another arch": ("arch: mlp\n" + LR, ["arch='mlp'", "'lenet5'"]),
    "baseline_first maybe": ("baseline_first: maybe\n" + LR, ["baseline_first='maybe'", "true or false"]),
    "seed negative": ("seed: -1\n" + LR, ["seed=-1", "[0, 4294967295]"]),
    "unknown dataset": ("dataset: cifar10\n" + LR, ["dataset='cifar10'", "'mnist'"]),
    "metric unknown": ("metric: accuracy\n" + LR, ["'accuracy'", "best_val_acc"]),
    "metric misspelt": ("metric: val_los\nmode: min\n" + LR, ["did you mean 'val_loss'"]),
    "mode unknown": ("mode: maximize\n" + LR, ["mode='maximize'", "('max', 'min')"]),
    "mode picks the worst": ("metric: val_loss\nmode: max\n" + LR, ["use mode: min"]),
    "loguniform text": ("space:\n  lr: {loguniform: [abc, 1.0e-2]}\n", ["space.lr.loguniform[0]='abc'", "> 0"]),
    "loguniform from 0 (lr)": ("space:\n  lr: {loguniform: [0, 1]}\n", ["space.lr.loguniform[0]=0", "> 0"]),
    "loguniform from 0 (weight_decay)": (NO_BASELINE + "space:\n  weight_decay: {loguniform: [0, 1.0e-3]}\n",
                                         ["space.weight_decay.loguniform", "both > 0"]),
    "range reversed": ("space:\n  lr: {loguniform: [1.0e-2, 1.0e-4]}\n", ["space.lr.loguniform", "low < high"]),
    "range empty": (NO_BASELINE + "space:\n  momentum: {uniform: [0.5, 0.5]}\n", ["space.momentum.uniform", "low < high"]),
    "range infinite": (NO_BASELINE + "space:\n  momentum: {uniform: [0.5, .inf]}\n",
                       ["space.momentum.uniform[1]=inf", "not a finite number"]),
    "range one end": ("space:\n  lr: {loguniform: [1.0e-4]}\n", ["space.lr.loguniform=", "[low, high]"]),
    "int fraction": (NO_BASELINE + "space:\n  batch_size: {int: [1.5, 3]}\n", ["space.batch_size.int[0]=1.5", "integer"]),
    "int for a number": ("space:\n  lr: {int: [1, 3]}\n", ["space.lr.int", "loguniform or uniform or choice"]),
    "uniform for an integer": (NO_BASELINE + "space:\n  batch_size: {uniform: [16, 64]}\n",
                               ["space.batch_size.uniform", "search it with int or choice"]),
    "choice empty": ("space:\n  lr: {choice: []}\n", ["space.lr.choice=[]", "non-empty list"]),
    "choice not a list": ("space:\n  optimizer: {choice: adam}\n", ["space.optimizer.choice='adam'"]),
    "choice of text for an integer": (NO_BASELINE + "space:\n  batch_size: {choice: [32, big]}\n",
                                      ["space.batch_size.choice='big'", "an integer in [1, 65536]"]),
    "choice out of range": (NO_BASELINE + "space:\n  dropout: {choice: [0.1, 1.5]}\n", ["space.dropout.choice=1.5", "[0, 1)"]),
    "choice unknown optimizer": ("space:\n  optimizer: {choice: [adam, lion]}\n", ["space.optimizer.choice='lion'", "'adamw'"]),
    "two distributions": ("space:\n  lr: {loguniform: [1.0e-4, 1.0e-2], uniform: [0.1, 0.2]}\n", ["space.lr", "exactly one"]),
    "distribution a number": ("space:\n  lr: 0.01\n", ["space.lr=0.01", "a mapping like"]),
    "space unknown param": ("space:\n  lrr: {loguniform: [1.0e-4, 1.0e-2]}\n", ["'lrr'", "did you mean 'lr'"]),
    "space not searchable": ("space:\n  data_dir: {choice: [a, b]}\n", ["space.data_dir cannot be searched"]),
    "when unknown param": ("space:\n  optimizer: {choice: [adam, sgd]}\n"
                           "  momentum: {uniform: [0.5, 0.99], when: {optimiser: [sgd]}}\n",
                           ["space.momentum.when.optimiser", "optimizer"]),
    "when param below": ("space:\n  momentum: {uniform: [0.5, 0.99], when: {optimizer: [sgd]}}\n"
                         "  optimizer: {choice: [adam, sgd]}\n", ["space.momentum.when.optimizer", "above momentum"]),
    "when on a range": ("space:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
                        "  momentum: {uniform: [0.5, 0.99], when: {lr: [0.001]}}\n", ["space.momentum.when.lr"]),
    "when value not a choice": ("space:\n  optimizer: {choice: [adam, sgd]}\n"
                                "  momentum: {uniform: [0.5, 0.99], when: {optimizer: [rmsprop]}}\n",
                                ["space.momentum.when.optimizer=['rmsprop']", "['adam', 'sgd']"]),
    "when not a mapping": ("space:\n  optimizer: {choice: [adam, sgd]}\n"
                           "  momentum: {uniform: [0.5, 0.99], when: sgd}\n", ["space.momentum.when='sgd'"]),
    "points a mapping": (LR + "points: {lr: 0.001}\n", ["points=", "a list of mappings"]),
    "point outside the space": (LR + "points:\n  - {lr: 0.5}\n", ["points[0].lr=0.5", "is outside the space"]),
    "point of the wrong type": (LR + "points:\n  - {lr: fast}\n", ["points[0].lr='fast'", "not a valid float"]),
    "point unknown key": (LR + "points:\n  - {lrr: 0.001}\n", ["points[0].lrr is not in space"]),
    "point against its when": (MOMENTUM + "points:\n  - {optimizer: adam, momentum: 0.9}\n",
                               ["points[0] sets momentum", "optimizer='adam'"]),
    "fixed unknown key": ("fixed: {batch_sise: 32}\n" + LR, ["'batch_sise'", "did you mean 'batch_size'"]),
    "fixed words for a number": ("fixed: {epochs: ten}\n" + LR, ["fixed.epochs='ten'", "an integer in [1, 10000]"]),
    "fixed eval_batch_size negative": ("fixed: {eval_batch_size: -1}\n" + LR, ["fixed.eval_batch_size=-1", "[1, 65536]"]),
    "fixed plateau patience negative": ("fixed: {lr_plateau_patience: -1}\n" + LR, ["fixed.lr_plateau_patience=-1", ">= 0"]),
    "fixed warm-up past the run": ("fixed: {epochs: 4, warmup_epochs: 6}\n" + LR, ["warmup_epochs", "below epochs=4"]),
    "searched warm-up past the run": ("fixed: {epochs: 2}\n" + NO_BASELINE + "space:\n  warmup_epochs: {choice: [0.0, 3.0]}\n",
                                      ["warmup_epochs up to 3.0 with epochs from 2"]),
    "fixed seed": ("fixed: {seed: 3}\n" + LR, ["fixed.seed is not allowed", "top level"]),
    "fixed and searched": ("fixed: {lr: 0.001}\n" + LR, ["['lr'] both fixed and searched"]),
    "scheduler type": ("scheduler: {type: hyperband}\n" + LR, ["scheduler.type='hyperband'", "('asha', 'pbt', 'none')"]),
    "scheduler grace 0": ("scheduler: {grace_period: 0}\n" + LR, ["scheduler.grace_period=0", ">= 1"]),
    "scheduler unknown key": ("scheduler: {grace: 2}\n" + LR, ["scheduler: unknown key 'grace'", "grace_period"]),
    "compare_within a range": ("scheduler: {compare_within: lr}\n" + LR, ["compare_within='lr'"]),
    "baseline outside the space": ("space:\n  lr: {loguniform: [1.0e-2, 1.0e-1]}\n", ["the baseline lr=0.001", "baseline_first: false"]),
}


@pytest.mark.parametrize("text, names", SWEEP_YAML.values(), ids=SWEEP_YAML.keys())
def test_bad_sweep_yaml_is_one_line_naming_file_key_and_value(tmp_path, capsys, text, names):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(text)
    err = run_bad(capsys, ["sweep", "lenet5", "--config", cfg, "--results-dir", tmp_path / "results"],
                  names=(str(cfg), *names), root=tmp_path)
    assert len(err.strip().splitlines()) == 1, err


# (training config YAML, what the error line must name besides the file)
TRAIN_YAML = {
    "empty": ("", ["is empty"]),
    "a list": ("- lr: 0.1\n", ["not a mapping"]),
    "a key twice": ("lr: 0.1\nlr: 0.001\n", ["key 'lr' is given twice"]),
    "unknown key": ("lrr: 0.1\n", ["'lrr'", "did you mean 'lr'"]),
    "lr negative": ("lr: -1\n", ["lr=-1.0", "a number > 0"]),
    "lr zero": ("lr: 0\n", ["lr=0.0", "> 0"]),
    "lr nan": ("lr: .nan\n", ["lr=nan", "not a finite number"]),
    "lr words": ("lr: fast\n", ["lr='fast'", "not a valid float"]),
    "lr a list": ("lr: [0.1, 0.2]\n", ["lr=[0.1, 0.2]", "not a valid float"]),
    "batch_size 0": ("batch_size: 0\n", ["batch_size=0", "[1, 65536]"]),
    "batch_size huge": ("batch_size: 1000000\n", ["batch_size=1000000", "[1, 65536]"]),
    "batch_size fraction": ("batch_size: 32.5\n", ["batch_size=32.5", "not a valid int"]),
    "batch_size true": ("batch_size: true\n", ["batch_size=True", "not a valid int"]),
    "eval_batch_size negative": ("eval_batch_size: -1\n", ["eval_batch_size=-1", "[1, 65536]"]),
    "epochs 0": ("epochs: 0\n", ["epochs=0", "[1, 10000]"]),
    "weight_decay negative": ("weight_decay: -0.1\n", ["weight_decay=-0.1", "[0, 1]"]),
    "momentum 1": ("momentum: 1.0\n", ["momentum=1.0", "[0, 1)"]),
    "dropout 1": ("dropout: 1\n", ["dropout=1.0", "[0, 1)"]),
    "label_smoothing negative": ("label_smoothing: -0.1\n", ["label_smoothing=-0.1", "[0, 0.5)"]),
    "plateau patience negative": ("lr_plateau_patience: -1\n", ["lr_plateau_patience=-1", ">= 0"]),
    "plateau factor 1": ("lr_plateau_factor: 1\n", ["lr_plateau_factor=1.0", "[0, 1)"]),
    "early stopping negative": ("early_stopping_patience: -2\n", ["early_stopping_patience=-2", ">= 0"]),
    "warm-up past the run": ("epochs: 5\nwarmup_epochs: 10\n", ["warmup_epochs=10.0", "below epochs=5"]),
    "warm-up negative": ("warmup_epochs: -1\n", ["warmup_epochs=-1.0", ">= 0"]),
    "val_fraction 0": ("val_fraction: 0\n", ["val_fraction=0.0", "(0, 1)"]),
    "seed negative": ("seed: -5\n", ["seed=-5"]),
    "optimizer unknown": ("optimizer: lion\n", ["optimizer='lion'", "'sgd'"]),
    "augment unknown": ("augment: medium\n", ["augment='medium'", "'strong'"]),
    "amp unknown": ("amp: sometimes\n", ["amp='sometimes'", "true, false or auto"]),
    "train_limit tiny": ("train_limit: 5\n", ["train_limit=5", ">= 10"]),
    "images a list": ("images: [a, b]\n", ["images=['a', 'b']", "a folder path"]),
    "dataset unknown": ("dataset: cifar10\n", ["dataset='cifar10'", "'fashion-mnist'"]),
    "another arch": ("arch: mlp\n", ["arch='mlp'", "'lenet5'"]),
}


@pytest.mark.parametrize("text, names", TRAIN_YAML.values(), ids=TRAIN_YAML.keys())
def test_bad_training_config_is_one_line_naming_file_key_and_value(tmp_path, capsys, text, names):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(text)
    err = run_bad(capsys, ["train", "lenet5", "--config", cfg, "--results-dir", tmp_path / "results"],
                  names=(str(cfg), *names), root=tmp_path)
    assert len(err.strip().splitlines()) == 1, err


# training-config flags of `mnist-dist train`: (flags, what the error line names)
TRAIN_FLAGS = {
    "--epochs 0": (["--epochs", "0"], ["--epochs=0", "[1, 10000]"]),
    "--lr -1": (["--lr", "-1"], ["--lr=-1.0", "> 0"]),
    "--lr inf": (["--lr", "inf"], ["--lr='inf'", "not a finite number"]),
    "--batch-size abc": (["--batch-size", "abc"], ["--batch-size='abc'", "not a valid int"]),
    "--eval-batch-size -1": (["--eval-batch-size", "-1"], ["--eval-batch-size=-1"]),
    "--lr-plateau-patience -1": (["--lr-plateau-patience", "-1"], ["--lr-plateau-patience=-1"]),
    "--dropout 2": (["--dropout", "2"], ["--dropout=2.0", "[0, 1)"]),
    "--momentum 1": (["--momentum", "1"], ["--momentum=1.0"]),
    "--seed -1": (["--seed", "-1"], ["--seed=-1"]),
    "--amp maybe": (["--amp", "maybe"], ["--amp='maybe'"]),
    "--nesterov 2": (["--nesterov", "2"], ["--nesterov='2'", "true or false"]),
    "--optimizer lion": (["--optimizer", "lion"], ["--optimizer='lion'"]),
    "--dataset cifar10": (["--dataset", "cifar10"], ["--dataset='cifar10'"]),
    "--warmup-epochs past --epochs": (["--warmup-epochs", "5", "--epochs", "3"], ["warmup_epochs=5.0", "below epochs=3"]),
}


@pytest.mark.parametrize("flags, names", TRAIN_FLAGS.values(), ids=TRAIN_FLAGS.keys())
def test_bad_training_flag_is_one_line_naming_the_flag(tmp_path, capsys, flags, names):
    err = run_bad(capsys, ["train", "lenet5", *flags, "--results-dir", tmp_path / "results"],
                  names=tuple(names), root=tmp_path)
    assert len(err.strip().splitlines()) == 1, err


def run_bad_flag(capsys, argv, flag: str, root: Path) -> str:
    """argparse's refusal of a flag's value: exit 2, its usage and one line
    'mnist-dist CMD: error: argument FLAG: ...', no traceback, nothing written."""
    before = tree_state(root)
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "Traceback" not in err and err.startswith("usage: ")
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"mnist-dist {argv[0]}: error: argument {flag}: "), err
    assert tree_state(root) == before
    return line


# flags argparse checks as it parses: (command and flags, the flag, what the line says)
PARSED_FLAGS = {
    "--trials 0": (["sweep", "lenet5", "--trials", "0"], "--trials", "0 must be >= 1"),
    "--trials four": (["sweep", "lenet5", "--trials", "four"], "--trials", "'four' is not an integer"),
    "--max-concurrent 0": (["sweep", "lenet5", "--max-concurrent", "0"], "--max-concurrent", "0 must be >= 1"),
    "--workers 0": (["sweep", "lenet5", "--workers", "0"], "--workers", "0 must be >= 1"),
    "--workers 1.5": (["sweep", "lenet5", "--workers", "1.5"], "--workers", "'1.5' is not an integer"),
    "--cpus-per-worker 0": (["sweep", "lenet5", "--cpus-per-worker", "0"], "--cpus-per-worker", "0.0 must be > 0"),
    "--cpus-per-worker nan": (["sweep", "lenet5", "--cpus-per-worker", "nan"], "--cpus-per-worker", "not a finite number"),
    "--gpus-per-worker -1": (["sweep", "lenet5", "--gpus-per-worker", "-1"], "--gpus-per-worker", "-1.0 must be >= 0"),
    "--gpus-per-worker 1.5": (["sweep", "lenet5", "--gpus-per-worker", "1.5"], "--gpus-per-worker", "a whole number"),
    "--gpus-per-worker lots": (["sweep", "lenet5", "--gpus-per-worker", "lots"], "--gpus-per-worker", "'lots' is not a number"),
    "--final-seeds -1": (["sweep", "lenet5", "--final-seeds", "-1"], "--final-seeds", "-1 must be >= 0"),
    "--seed -1": (["sweep", "lenet5", "--seed", "-1"], "--seed", "[0, 4294967295]"),
    "--dataset cifar10": (["sweep", "lenet5", "--dataset", "cifar10"], "--dataset", "'mnist'"),
    "--progress-every -1": (["train", "lenet5", "--progress-every", "-1"], "--progress-every", "-1.0 must be >= 0"),
    "--progress-every soon": (["train", "lenet5", "--progress-every", "soon"], "--progress-every", "'soon' is not a number"),
}


@pytest.mark.parametrize("argv, flag, says", PARSED_FLAGS.values(), ids=PARSED_FLAGS.keys())
def test_bad_flag_is_refused_as_it_is_parsed(tmp_path, capsys, argv, flag, says):
    line = run_bad_flag(capsys, [*argv, "--results-dir", tmp_path / "results"], flag, tmp_path)
    assert says in line


def below(rng):
    """A value just outside a range's lower end."""
    return rng.low if rng.low_open else rng.low - 1


@pytest.mark.parametrize("key", [k for k, r in RANGES.items() if r.low is not None])
def test_every_numeric_field_refuses_a_value_below_its_range(key):
    """Over the table of ranges: a field added with a range is tested by this."""
    with pytest.raises(ConfigError, match=f"^my.yaml: {key}="):
        resolve("lenet5", {key: below(RANGES[key])}, source="my.yaml")


def test_every_training_field_has_a_range():
    assert RANGES.keys() == FIELDS.keys()


def test_the_validated_sweep_is_what_the_sweep_runs_from(tmp_path):
    """Values are converted where they are checked: YAML's '1e-4' text and the old augment
    false become the numbers and levels the trials and the searcher get."""
    cfg = tmp_path / "s.yaml"
    cfg.write_text("trials: '5'\nfixed: {epochs: 4.0}\nspace:\n  lr: {loguniform: [1e-4, 1e-2]}\n"
                   "  augment: {choice: [false, light]}\n  warmup_epochs: {choice: [0, 1]}\n"
                   "points:\n  - {lr: '3e-3', augment: false}\n")
    spec = load_spec("lenet5", cfg)
    assert spec.trials == 5 and spec.fixed == {"epochs": 4}
    assert spec.space == {"lr": {"loguniform": [1e-4, 1e-2]}, "augment": {"choice": ["off", "light"]},
                          "warmup_epochs": {"choice": [0.0, 1.0]}}
    assert spec.points == [{"lr": 3e-3, "augment": "off"}]


def started_sweep(tmp_path: Path, trials: int = 2) -> Path:
    """A sweep folder as a started sweep leaves it: config.json with the sweep it runs."""
    import json

    spec = load_spec("mlp", overrides={"trials": trials})
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"sweep": spec.to_dict(), "options": {}, "base_config": {}}))
    return folder


@pytest.mark.parametrize("flag, value, says", [("--trials", "1", "already has 2 trials"),
                                               ("--seed", "7", "started with seed"),
                                               ("--dataset", "fashion-mnist", "started with dataset")])
def test_resume_refuses_a_flag_that_would_change_the_sweep(tmp_path, capsys, flag, value, says):
    """A flag that would make --resume run another sweep is refused, not ignored (--trials may
    only grow the sweep)."""
    started_sweep(tmp_path)
    run_bad(capsys, ["sweep", "mlp", "--resume", "--name", "s", "--results-dir", tmp_path / "results",
                     flag, value], names=(f"{flag} {value}", says), root=tmp_path)


def test_resume_with_more_trials_grows_the_saved_sweep(tmp_path):
    from mnist_dist.tuning.driver import cli

    started_sweep(tmp_path, trials=2)
    import argparse

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["mlp", "--resume", "--name", "s", "--results-dir", str(tmp_path / "results"), "--trials", "5"])
    spec, opts = cli.build(args, "mlp")
    assert spec.trials == 5 and spec.space == load_spec("mlp").space and opts.resume


def test_resume_runs_the_sweep_it_saved_not_the_yaml_as_it_is_now(tmp_path):
    from mnist_dist.tuning.driver import cli

    folder = started_sweep(tmp_path, trials=3)
    edited = tmp_path / "mlp.yaml"
    edited.write_text("trials: 9\nspace:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    import argparse

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["mlp", "--resume", "--name", "s", "--results-dir", str(folder.parent),
                         "--config", str(edited)])
    spec, opts = cli.build(args, "mlp")
    assert spec.trials == 3 and spec.space == load_spec("mlp").space and opts.resume


def test_resume_of_a_damaged_config_json_is_one_line(tmp_path, capsys):
    folder = started_sweep(tmp_path)
    (folder / "config.json").write_text("{not json")
    run_bad(capsys, ["sweep", "mlp", "--resume", "--name", "s", "--results-dir", tmp_path / "results"],
            names=("config.json", "not a sweep's saved config"), root=tmp_path)
