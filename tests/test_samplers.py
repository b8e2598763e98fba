"""The search algorithm a sweep uses (the YAML's `sampler`, --sampler): validated as every
sweep key is, built as the Optuna sampler it names with the sweep's seed, its fallback to
random draws said once, and recorded in config.json, summary.json, the console and the report."""
from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from mnist_dist.tuning.driver import cli
from mnist_dist.tuning.driver.samplers import fallback_note, make_sampler, modelled
from mnist_dist.tuning.spec import SAMPLERS, load_spec, sample
from mnist_dist.tuning.outputs.summary import SweepSummary

from .badinput import run_bad
from .conftest import RUN, read_csv, write_spec
from .test_bad_configs import run_bad_flag

LR = {"lr": {"loguniform": [1.0e-4, 1.0e-2]}}
CLASSES = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler,
           "cmaes": optuna.samplers.CmaEsSampler, "random": optuna.samplers.RandomSampler}


@pytest.fixture
def no_ray(monkeypatch):
    """`import ray` fails: a refused sampler must be refused before Ray is touched."""
    monkeypatch.setitem(sys.modules, "ray", None)


# --- validation --------------------------------------------------------------------------

@pytest.mark.parametrize("value, says", [("bayes", "sampler='bayes' is not valid"),
                                         ("TPE", "sampler='TPE' is not valid"),
                                         (3, "sampler=3 is not a valid str")])
def test_a_bad_sampler_in_the_yaml_is_one_line_naming_file_key_value_and_the_choices(
        tmp_path, capsys, no_ray, value, says):
    cfg = write_spec(tmp_path / "s.yaml", sampler=value, space=LR)
    err = run_bad(capsys, ["sweep", "mlp", "--config", cfg, "--results-dir", tmp_path / "results"],
                  names=(str(cfg), says, "('tpe', 'gp', 'cmaes', 'random')"), root=tmp_path)
    assert len(err.strip().splitlines()) == 1, err


def test_a_bad_sampler_flag_is_refused_as_it_is_parsed(tmp_path, capsys, no_ray):
    line = run_bad_flag(capsys, ["sweep", "mlp", "--sampler", "bayes", "--results-dir", tmp_path / "results"],
                        "--sampler", tmp_path)
    assert "'bayes' is not valid; expected one of ('tpe', 'gp', 'cmaes', 'random')" in line


def parse(*argv: str):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(list(argv))


def test_the_flag_overrides_the_yaml_and_the_default_is_tpe(tmp_path):
    cfg = write_spec(tmp_path / "s.yaml", sampler="cmaes", space=LR)
    assert cli.build(parse("mlp", "--config", str(cfg)), "mlp")[0].sampler == "cmaes"
    assert cli.build(parse("mlp", "--config", str(cfg), "--sampler", "gp"), "mlp")[0].sampler == "gp"
    assert load_spec("mlp").sampler == "tpe" and load_spec("mlp").to_dict()["sampler"] == "tpe"


def started_sweep(tmp_path: Path, **saved) -> Path:
    """A sweep folder as a started sweep leaves it: config.json with the sweep it runs."""
    sweep = {**load_spec("mlp").to_dict(), **saved}
    folder = tmp_path / "results" / "s"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"sweep": sweep, "options": {}, "base_config": {}}))
    return folder


def test_resume_refuses_another_sampler(tmp_path, capsys, no_ray):
    started_sweep(tmp_path, sampler="cmaes")
    run_bad(capsys, ["sweep", "mlp", "--resume", "--name", "s", "--results-dir", tmp_path / "results",
                     "--sampler", "gp"], names=("--sampler gp", "started with sampler 'cmaes'"), root=tmp_path)


def test_resume_of_a_sweep_saved_without_a_sampler_runs_tpe(tmp_path):
    folder = started_sweep(tmp_path)
    saved = json.loads((folder / "config.json").read_text())
    del saved["sweep"]["sampler"]  # config.json written before the key existed
    (folder / "config.json").write_text(json.dumps(saved))
    args = parse("mlp", "--resume", "--name", "s", "--results-dir", str(folder.parent), "--sampler", "tpe")
    assert cli.build(args, "mlp")[0].sampler == "tpe"


# --- the Optuna sampler each name builds ---------------------------------------------------

def proposals(sampler, space: dict, n: int = 6) -> list[dict]:
    """The configs `sampler` proposes for `space` over n trials of a fixed objective."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: -abs(math.log10(sample(t, space)["lr"]) + 2.5), n_trials=n)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_is_the_optuna_class_it_names_seeded_with_the_sweeps_seed(name):
    spec = load_spec("mlp", overrides={"sampler": name, "seed": 3})
    assert isinstance(make_sampler(spec), CLASSES[name])
    same = proposals(make_sampler(spec), spec.space)
    assert same == proposals(make_sampler(spec), spec.space)
    spec.seed = 4
    assert same != proposals(make_sampler(spec), spec.space)


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_the_sampler_keeps_its_model_through_tunes_snapshot(name):
    """Tune pickles the searcher, sampler included, and --resume unpickles it."""
    import pickle

    spec = load_spec("lenet5", overrides={"sampler": name})
    restored = pickle.loads(pickle.dumps(make_sampler(spec)))
    assert type(restored) is type(make_sampler(spec)) and restored.modelled == set(modelled(spec))


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_searcher_runs_the_sampler_the_sweep_names(name):
    from mnist_dist.tuning import internals
    from mnist_dist.tuning.driver.runner import make_searcher

    searcher = make_searcher(load_spec("lenet5", overrides={"sampler": name}), None, "s")
    assert isinstance(internals.searcher_study(searcher).sampler, CLASSES[name])


# --- what GP and CMA-ES model, and the one line that says so -------------------------------

NOTES = {
    ("mlp", "cmaes"): "sampler cmaes: optimizer, weight_decay, batch_size, lr_schedule, augment, label_smoothing "
                      "(categorical) and momentum, nesterov (conditional) are drawn at random; lr by CMA-ES",
    ("lenet5", "cmaes"): "sampler cmaes: optimizer, weight_decay, batch_size, lr_schedule, augment, "
                         "label_smoothing (categorical) and momentum, nesterov, warmup_epochs (conditional) "
                         "are drawn at random; lr by CMA-ES",
    ("mlp", "gp"): "sampler gp: momentum, nesterov (conditional) are drawn at random; optimizer, lr, "
                   "weight_decay, batch_size, lr_schedule, augment, label_smoothing by the Gaussian process",
    ("lenet5", "gp"): "sampler gp: momentum, nesterov, warmup_epochs (conditional) are drawn at random; "
                      "optimizer, lr, weight_decay, batch_size, lr_schedule, augment, label_smoothing by the "
                      "Gaussian process",
}


@pytest.mark.parametrize("arch, name", NOTES.keys(), ids=[f"{a}-{n}" for a, n in NOTES])
def test_the_fallback_line_names_what_the_shipped_space_draws_at_random(arch, name):
    assert fallback_note(load_spec(arch, overrides={"sampler": name})) == NOTES[arch, name]


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_tpe_and_random_search_have_no_fallback_line(name):
    assert fallback_note(load_spec("mlp", overrides={"sampler": name})) is None


def test_a_space_cmaes_cannot_model_at_all_says_the_search_is_random(tmp_path):
    cfg = write_spec(tmp_path / "s.yaml", sampler="cmaes",
                     space={"optimizer": {"choice": ["adam", "sgd"]}, "batch_size": {"choice": [32, 64]}})
    assert fallback_note(load_spec("mlp", cfg)) == ("sampler cmaes: batch_size, optimizer (categorical) are drawn "
                                                    "at random; CMA-ES models none of them: the search is random")


@pytest.mark.parametrize("arch, name", NOTES.keys(), ids=[f"{a}-{n}" for a, n in NOTES])
def test_optuna_models_exactly_what_the_line_says(arch, name):
    """Even while every finished trial drew the conditional parameters (all sgd here), they
    stay out of the model: Optuna's own intersection would take them in, and CMA-ES would
    then fall back to random draws for good at the first trial without them."""
    spec = load_spec(arch, overrides={"sampler": name})
    sampler = make_sampler(spec)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for lr in (1e-3, 3e-3, 1e-2):
        study.enqueue_trial({"optimizer": "sgd", "lr": lr, "lr_schedule": "cosine"})
    study.optimize(lambda t: -abs(math.log10(sample(t, spec.space)["lr"]) + 2.5), n_trials=3)
    assert all({"momentum", "nesterov"} <= t.params.keys() for t in study.trials)
    study.ask()
    assert sorted(sampler.infer_relative_search_space(study, study.trials[-1])) == sorted(modelled(spec))


@pytest.fixture
def optuna_log():
    """What Optuna logs while a test runs (its logger does not propagate to caplog's)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("optuna").addHandler(handler)
    yield records
    logging.getLogger("optuna").removeHandler(handler)


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_optuna_does_not_repeat_the_fallback_every_trial(optuna_log, name):
    spec = load_spec("lenet5", overrides={"sampler": name})
    proposals(make_sampler(spec), spec.space, n=12)
    warnings = [r.getMessage() for r in optuna_log if r.levelno >= logging.WARNING]
    assert not warnings, warnings[:3]


# --- recorded: summary.json, the console, the report ---------------------------------------

def test_the_summary_keeps_the_sampler_and_reads_old_ones_as_tpe():
    summary = SweepSummary(name="s", arch="mlp", sampler="cmaes")
    assert summary.to_dict()["sampler"] == "cmaes"
    assert SweepSummary.from_dict(summary.to_dict()).sampler == "cmaes"
    old = {k: v for k, v in summary.to_dict().items() if k != "sampler"}
    assert SweepSummary.from_dict(old).sampler == "tpe"
    assert SweepSummary.from_dict({**old, "sampler": 7}).sampler == "tpe"


def test_the_console_and_the_report_name_the_sampler():
    from mnist_dist.report.html import sweep_block
    from mnist_dist.tuning.driver.console import final_message

    summary = SweepSummary(name="s", arch="mlp", metric="best_val_acc", mode="max", sampler="gp", trials_run=0)
    assert final_message(summary, [], Path("/r/s"), "").splitlines()[0] == \
        "sweep s: 0 trials () in 0 s, sampler gp, scheduler asha"
    source = SimpleNamespace(summary=summary.to_dict(), name="s", label="s", trials=None, imported=None)
    html = sweep_block(SimpleNamespace(source=source, edge_warnings=[], figures=[]))
    assert "<span>sampler <code>gp</code></span>" in html


# --- real sweeps ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_random_search_smoke_sweep_records_its_sampler(tmp_path):
    from mnist_dist.report.build import build_report

    results = tmp_path / "results"
    out = subprocess.run(RUN + ["mlp", "--smoke-test", "--sampler", "random", "--results-dir", str(results)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = results / "mlp-mnist-smoke"
    assert json.loads((sweep / "summary.json").read_text())["sampler"] == "random"
    assert json.loads((sweep / "config.json").read_text())["sweep"]["sampler"] == "random"
    assert "sampler random" in out.stdout and "drawn at random" not in out.stderr
    build_report(results, log=lambda *a: None)
    assert "<span>sampler <code>random</code></span>" in (results / "report" / "index.html").read_text()


@pytest.mark.slow
def test_a_cmaes_sweep_says_its_fallback_once_and_proposes_from_cma_es(tmp_path):
    """3 trials one at a time: the baseline, then trials CMA-ES proposes (it starts after
    one finished trial), on 1,000 images for 1 epoch."""
    cfg = tmp_path / "tiny.yaml"  # by hand: write_spec sorts keys; `when` needs optimizer above momentum
    cfg.write_text("sampler: cmaes\ntrials: 3\nmax_concurrent: 1\nscheduler: {type: none}\n"
                   "fixed: {epochs: 1, train_limit: 1000, test_limit: 500}\n"
                   "space:\n  optimizer: {choice: [adam, sgd]}\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
                   "  momentum: {uniform: [0.5, 0.99], when: {optimizer: [sgd]}}\n")
    results = tmp_path / "results"
    out = subprocess.run(RUN + ["mlp", "--config", str(cfg), "--results-dir", str(results), "--name", "c"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = ("mlp: sampler cmaes: optimizer (categorical) and momentum (conditional) are drawn at random; "
            "lr by CMA-ES")
    assert out.stderr.count(line) == 1 and "sampled independently" not in out.stdout + out.stderr
    sweep = results / "c"
    assert json.loads((sweep / "summary.json").read_text())["sampler"] == "cmaes"
    assert json.loads((sweep / "config.json").read_text())["sweep"]["sampler"] == "cmaes"
    assert len(read_csv(sweep / "trials.csv")) == 3
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.system_attrs.get("cma:generation") is not None for t in study.trials] == [False, True, True]


@pytest.mark.parametrize("sampler, scheduler", [("gp", "asha"), ("cmaes", "asha"), ("random", "asha"),
                                                ("tpe", "none"), ("tpe", "pbt")])
def test_each_sampler_and_scheduler_runs_a_smoke_sweep(ray_session, tmp_path, sampler, scheduler):
    from dataclasses import replace

    from mnist_dist.tuning.driver.runner import run_sweep

    from .conftest import smoke_options

    spec = load_spec("mlp", overrides={"sampler": sampler})
    spec = replace(spec, scheduler=replace(spec.scheduler, type=scheduler))
    summary = run_sweep(spec, smoke_options(tmp_path, "s", workers=1))
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"} and summary["best_trial"]
    assert summary["sampler"] == ("random" if scheduler == "pbt" else sampler)
    assert summary["scheduler"] == ("pbt" if scheduler == "pbt" else "none")  # a smoke test's 1 epoch: no ASHA
