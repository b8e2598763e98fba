"""`mnist-dist report` on real results: a real smoke sweep, a real training run and a
deliberately broken sweep folder; the page is then opened in a real headless Chromium."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from mnist_dist.report import stats
from mnist_dist.report.hparams import edge_warning

SWEEP = "lenet5-smoke"
RUN = "cnn_regularized-run"
BROKEN = "broken-sweep"
PARTIAL = "partial-sweep"


@pytest.fixture(scope="module")
def report(smoke_sweep, trained_model, tmp_path_factory):
    """One results folder (copies: the report must not depend on the fixtures' paths) and
    one `python -m mnist_dist.report` over it, as a user would run it."""
    results = tmp_path_factory.mktemp("report-results")
    # Ray's own trial folders are large and the report never reads them
    shutil.copytree(smoke_sweep, results / SWEEP, ignore=shutil.ignore_patterns("tune", "train"))
    shutil.copytree(trained_model.parent, results / RUN)
    # a sweep that lost its best model and histories (a crash, a half-copied folder)
    shutil.copytree(results / SWEEP, results / PARTIAL)
    shutil.rmtree(results / PARTIAL / "best")
    shutil.rmtree(results / PARTIAL / "histories")
    (results / BROKEN).mkdir()
    (results / BROKEN / "summary.json").write_text('{"kind": "sweep", "arch": ')  # truncated JSON
    stale = results / "report" / "figures" / "stale-sweep-confusion.png"  # from an earlier report
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mnist_dist.report", str(results)],
                          capture_output=True, text=True, timeout=600)
    print(f"report built in {time.perf_counter() - t0:.1f}s\n{proc.stdout}\n{proc.stderr}")
    return results, proc


def figure_names(featured: list[str]) -> list[str]:
    names = ["accuracy-vs-time", "accuracy-vs-parameters", "trial-status", f"{SWEEP}-hyperparameters",
             f"{SWEEP}-importance", "dataset-mnist-classes", "dataset-mnist-pixels", "dataset-mnist-samples"]
    for src in featured:
        names += [f"{src}-{k}" for k in ("learning-curves", "confusion", "per-class", "correct", "wrong")]
    return names


def test_report_writes_every_file(report):
    results, proc = report
    assert proc.returncode == 0, proc.stderr
    out = results / "report"
    for name in ("index.html", "comparison.md", "comparison.csv", "all_runs.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 200, name
    for name in figure_names([SWEEP, RUN]):
        png = out / "figures" / f"{name}.png"
        assert png.is_file(), f"{png.name} missing; stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        img = matplotlib.image.imread(png)
        assert img.shape[0] > 100 and img.shape[1] > 100, png.name
        assert float(np.std(img)) > 0.01, f"{png.name} is blank"
    assert not (out / "figures" / "stale-sweep-confusion.png").exists()  # old figures are cleared
    # every figure is inlined: the page alone is the report
    html = (out / "index.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(list((out / "figures").glob("*.png")))
    assert not re.search(r'(src|href)="(https?:)?//', html), "the page must not load anything remote"


def test_tables_hold_the_summaries_numbers(report):
    results, _ = report
    sweep = json.loads((results / SWEEP / "summary.json").read_text())
    run = json.loads((results / RUN / "run.json").read_text())
    with open(results / "report" / "comparison.csv") as f:
        rows = {r["arch"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"lenet5", "cnn_regularized"}  # one row per architecture x dataset
    md = (results / "report" / "comparison.md").read_text()
    for summary in (sweep, run):
        row = rows[summary["arch"]]
        assert row["dataset"] == summary["dataset"] == "mnist"
        assert math.isclose(float(row["test_acc"]), summary["test_acc"], rel_tol=1e-12)
        assert math.isclose(float(row["test_loss"]), summary["test_loss"], rel_tol=1e-12)
        assert int(row["parameters"]) == summary["parameters"]
        assert f"{100 * summary['test_acc']:.2f}%" in md
    assert int(rows["lenet5"]["trials_run"]) == sweep["trials_run"] == 2
    assert json.loads(rows["lenet5"]["best_config"]) == sweep["best_config"]
    # published numbers sit beside ours, with the difference, for same-dataset sources
    assert math.isclose(float(rows["lenet5"]["published_acc"]), 0.986)
    assert math.isclose(float(rows["lenet5"]["diff_vs_published"]), sweep["test_acc"] - 0.986, abs_tol=1e-9)
    # baseline config vs best config vs ensemble, over the final seeds
    with open(results / "report" / "versus.csv") as f:
        versus = {r["source"]: r for r in csv.DictReader(f)}
    assert set(versus) == {SWEEP, PARTIAL}  # sweeps only
    row, final = versus[SWEEP], sweep["final_seeds"]
    assert math.isclose(float(row["best_mean"]), final["best"]["test_acc_mean"], rel_tol=1e-12)
    assert math.isclose(float(row["baseline_mean"]), final["baseline"]["test_acc_mean"], rel_tol=1e-12)
    assert int(row["best_seeds"]) == int(row["baseline_seeds"]) == 2
    assert math.isclose(float(row["ensemble_acc"]), sweep["ensemble"]["test_acc"], rel_tol=1e-12)
    assert "## Baseline config vs best swept config vs ensemble" in md


def test_broken_folder_is_a_warning_not_a_failure(report):
    results, proc = report
    assert proc.returncode == 0
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any(BROKEN in w and "summary.json is not valid JSON" in w for w in warnings), proc.stderr
    assert not any(f"{results / 'report'}:" in w for w in warnings), "the report folder itself is no source"
    assert any(PARTIAL in w and "predictions.npz is missing" in w for w in warnings), proc.stderr
    with open(results / "report" / "all_runs.csv") as f:
        assert sorted(r["source"] for r in csv.DictReader(f)) == [RUN, SWEEP, PARTIAL]
    html = (results / "report" / "index.html").read_text()
    assert 'id="warnings"' in html and BROKEN in html
    assert BROKEN in (results / "report" / "comparison.md").read_text()


def test_mcnemar_compares_the_models_on_their_common_test_images(report):
    results, _ = report
    md = (results / "report" / "comparison.md").read_text()
    section = md.split("## McNemar's test")[1].split("\n## ")[0]
    # the smoke sweep scored the first 500 test images, the run all 10,000
    line = next(ln for ln in section.splitlines() if ln.startswith("| mnist |"))
    assert "| 500 |" in line and ("beats" in line or "no significant difference" in line)
    assert 'id="mcnemar"' in (results / "report" / "index.html").read_text()


def test_empty_results_folder_says_how_to_make_results(tmp_path, capsys):
    from mnist_dist.cli import main

    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "nothing to report" in err and "mnist-dist train" in err
    assert not (tmp_path / "report").exists()
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_best_per_architecture_and_all_runs(report, tmp_path):
    """Two runs of one architecture x dataset: the comparison keeps the better one, the
    all-runs table lists both."""
    from mnist_dist.report.collect import discover
    from mnist_dist.report.tables import all_rows, best_rows

    results, _ = report
    shutil.copytree(results / RUN, tmp_path / "a")
    shutil.copytree(results / RUN, tmp_path / "b")
    summary = json.loads((tmp_path / "b" / "run.json").read_text())
    summary["test_acc"] -= 0.01
    (tmp_path / "b" / "run.json").write_text(json.dumps(summary))
    found = discover(tmp_path)
    assert not found.warnings
    rows = all_rows(found.sources)
    assert [r["source"] for r in rows] == ["a", "b"]
    assert [r["source"] for r in best_rows(rows)] == ["a"]


ODD_NAME = 'a<b & "c"|d'


def markdown_tables(md: str) -> list[list[str]]:
    """Each Markdown table as its lines (a table: consecutive lines starting with '|')."""
    blocks, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks, current = blocks + [current], []
    return blocks


def test_names_render_literally(trained_model, tmp_path):
    """A run named with HTML and Markdown specials: escaped on the page, and the Markdown
    tables keep their columns (a second run, whose arch has the same name, puts it into
    the McNemar table too). Needs no sweep, so no Ray."""
    from html import escape

    from mnist_dist.report.build import build_report

    shutil.copytree(trained_model.parent, tmp_path / ODD_NAME)
    shutil.copytree(trained_model.parent, tmp_path / "other")
    run = json.loads((tmp_path / "other" / "run.json").read_text())
    (tmp_path / "other" / "run.json").write_text(json.dumps({**run, "arch": ODD_NAME}))
    build_report(tmp_path, log=lambda *a: None)

    html = (tmp_path / "report" / "index.html").read_text()
    assert escape(ODD_NAME) in html  # a&lt;b &amp; &quot;c&quot;|d
    assert "a<b" not in html and '"c"' not in html

    md = (tmp_path / "report" / "comparison.md").read_text()
    tables = markdown_tables(md)
    assert len(tables) == 3  # best per architecture, all runs, McNemar
    for table in tables:
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in table}  # cells split at unescaped |
        assert len(widths) == 1, table
    assert sum('a\\<b & "c"\\|d' in line for t in tables for line in t) >= 3


def test_mcnemar_against_hand_computed_values():
    # b=10, c=2: 12 discordant images, exact: p = 2 * (C(12,0)+C(12,1)+C(12,2)) / 2^12 = 158/4096
    m = stats.mcnemar(10, 2)
    assert m.method == "exact binomial" and m.p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert stats.binom_two_sided(2, 12) == pytest.approx(0.03857421875, rel=1e-12)
    # b=30, c=12: chi2 = (|30-12| - 1)^2 / 42 = 6.8810, p = P(chi2_1 > 6.881) = 0.0087119
    m = stats.mcnemar(30, 12)
    assert m.statistic == pytest.approx(289 / 42) and m.p_value == pytest.approx(0.0087119, abs=1e-6)
    assert stats.chi2_sf_1df(289 / 42) == pytest.approx(0.0087119, abs=1e-6)
    assert stats.chi2_sf_1df(3.841459) == pytest.approx(0.05, abs=1e-6)  # the textbook 5% point
    assert stats.mcnemar(0, 0).p_value == 1.0 and stats.mcnemar(7, 7).p_value == 1.0
    assert stats.verdict("cnn", "mlp", stats.mcnemar(30, 12)) == "cnn beats mlp"
    assert stats.verdict("cnn", "mlp", stats.mcnemar(12, 30)) == "mlp beats cnn"
    assert stats.verdict("cnn", "mlp", stats.mcnemar(6, 4)) == "no significant difference"
    labels = np.array([0, 1, 2, 3])
    assert stats.discordant(labels, np.array([0, 1, 2, 0]), np.array([0, 0, 0, 3])) == (2, 1)


def test_edge_of_search_range_warnings():
    lr = {"loguniform": [1e-4, 1e-1]}
    assert "lower edge" in edge_warning("lr", 1.2e-4, lr)  # log scale: 2.6% in
    assert "upper edge" in edge_warning("lr", 0.08, lr)
    assert edge_warning("lr", 3e-3, lr) is None
    assert "upper edge" in edge_warning("momentum", 0.97, {"uniform": [0.5, 0.99]})
    assert edge_warning("momentum", 0.8, {"uniform": [0.5, 0.99]}) is None
    assert "lower edge" in edge_warning("epochs", 5, {"int": [5, 30]})
    assert "largest" in edge_warning("batch_size", 256, {"choice": [64, 32, 256, 128]})
    assert edge_warning("batch_size", 64, {"choice": [32, 64, 128, 256]}) is None
    assert edge_warning("optimizer", "sgd", {"choice": ["adam", "sgd"]}) is None  # unordered
    assert edge_warning("nesterov", True, {"choice": [False, True]}) is None


def test_edge_warnings_advise_only_values_the_field_accepts():
    """A best value at an edge that is already the field's own bound (config.RANGES) gets
    no advice to search beyond it; categorical fields never get 'values beyond it'."""
    wd = {"choice": [0, 1e-5, 1e-4]}
    assert edge_warning("weight_decay", 0, wd) is None  # nothing below 0
    assert "largest" in edge_warning("weight_decay", 1e-4, wd)
    assert edge_warning("weight_decay", 1, {"choice": [1e-2, 1e-1, 1]}) is None  # 1 is its maximum
    dropout = {"uniform": [0.0, 0.5]}
    assert edge_warning("dropout", 0.01, dropout) is None
    assert "upper edge" in edge_warning("dropout", 0.49, dropout)  # up to 1 (excluded) can be searched
    assert edge_warning("label_smoothing", 0.0, {"uniform": [0.0, 0.2]}) is None
    assert edge_warning("warmup_epochs", 0, {"choice": [0, 1, 2]}) is None
    assert "largest" in edge_warning("warmup_epochs", 2, {"choice": [0, 1, 2]})
    assert edge_warning("epochs", 1, {"int": [1, 30]}) is None  # epochs >= 1
    assert edge_warning("early_stopping_patience", 0, {"int": [0, 10]}) is None
    assert "upper edge" in edge_warning("lr", 0.095, {"loguniform": [1e-4, 1e-1]})
    assert "lower edge" in edge_warning("lr", 1.1e-4, {"loguniform": [1e-4, 1e-1]})  # lr > 0
    # numbers standing for categories: augment levels and booleans by their old spellings
    assert edge_warning("augment", 1, {"choice": [0, 1]}) is None
    assert edge_warning("nesterov", 1, {"choice": [0, 1]}) is None
    assert edge_warning("optimizer", "sgd", {"choice": ["adam", "sgd"]}) is None
    assert edge_warning("augment", "light", {"choice": ["off", "light"]}) is None
    # a parameter the config does not know (a folder from another version): the plain check
    assert "largest" in edge_warning("width", 64, {"choice": [16, 32, 64]})




NEAR_100 = ([0.99], [0.985, 0.99, 0.995, 0.999], [1.0], [1.0, 1.0, 0.998])


@pytest.mark.parametrize("accs", NEAR_100)
def test_accuracy_vs_cost_axis_ends_at_100_percent(kept_figures, tmp_path, accs):
    from mnist_dist.report import plots

    rows = [{"arch": f"m{i}", "dataset": "mnist", "test_acc": a, "train_time_s": 10.0 * (i + 1)}
            for i, a in enumerate(accs)]
    plots.accuracy_vs(rows, "train_time_s", "training time", "accuracy vs time", tmp_path / "a.png")
    ax, = kept_figures[0].axes
    lo, hi = ax.get_ylim()
    assert hi <= 1.0 and lo < min(accs)  # capped at 100%, with room below the lowest point
    if max(accs) < 1.0:
        assert hi > max(accs)


@pytest.mark.parametrize("accs", NEAR_100)
def test_learning_curve_accuracy_axis_ends_at_100_percent(kept_figures, tmp_path, accs):
    import pandas as pd

    from mnist_dist.report import plots

    history = pd.DataFrame({"epoch": range(1, len(accs) + 1), "train_loss": 0.1, "val_loss": 0.1,
                            "train_acc": accs, "val_acc": accs})
    plots.learning_curves(history, "run", tmp_path / "c.png")
    acc = next(ax for ax in kept_figures[0].axes if ax.get_title() == "accuracy")
    lo, hi = acc.get_ylim()
    assert hi <= 1.0 and lo < min(accs)
    loss = next(ax for ax in kept_figures[0].axes if ax.get_title() == "loss")
    assert loss.get_ylim()[1] > 0.1  # the loss axis is not an accuracy: left as it was


@pytest.mark.parametrize("accs", NEAR_100)
def test_per_class_accuracy_axis_ends_at_100_percent(kept_figures, tmp_path, accs):
    from mnist_dist.report import plots

    ev = {"per_class_accuracy": {str(i): a for i, a in enumerate(accs)}, "accuracy": float(np.mean(accs))}
    plots.per_class(ev, "run", tmp_path / "p.png")
    ax, = kept_figures[0].axes
    lo, hi = ax.get_xlim()
    assert hi <= 1.0 and lo < min(accs)


def sweep_source(metric: str, values: list[float]):
    import pandas as pd

    from mnist_dist.report.collect import Source

    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "weight_decay": {"choice": [0, 1e-5, 1e-4]}}
    n = len(values)
    trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "status": "completed",
                           "config/lr": np.geomspace(1e-3, 1e-2, n),
                           "config/weight_decay": [(0, 1e-5, 1e-4)[i % 3] for i in range(n)], metric: values})
    summary = {"kind": "sweep", "metric": metric, "best_trial": "t0",
               "best_config": {"lr": 1e-3, "weight_decay": 0}}
    return Source("sweep", "s", Path("s"), summary, config={"sweep": {"space": space}}, trials=trials)


@pytest.mark.parametrize("metric,values,top", [
    ("best_val_acc", [0.99], 1.0),
    ("best_val_acc", [0.985, 0.99, 0.999], 1.0),
    ("val_acc", [1.0, 1.0], 1.0),
    ("best_val_acc", [98.5, 99.0, 99.9], 100.0),  # in percent
])
def test_hyperparameter_accuracy_axes_end_at_100_percent(kept_figures, tmp_path, metric, values, top):
    from mnist_dist.report import hparams

    hparams.hyperparameters(sweep_source(metric, values), tmp_path / "h.png")
    axes = [ax for ax in kept_figures[0].axes if ax.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        lo, hi = ax.get_ylim()
        assert hi <= top and lo < min(values), ax.get_title()


def test_hyperparameter_loss_axes_are_not_capped(kept_figures, tmp_path):
    from mnist_dist.report import hparams

    hparams.hyperparameters(sweep_source("best_val_loss", [1.5, 2.0, 2.5]), tmp_path / "h.png")
    for ax in (ax for ax in kept_figures[0].axes if ax.get_visible()):
        assert ax.get_ylim()[1] > 2.5


def test_architecture_summary_matches_the_model():
    from mnist_dist.models import count_parameters, create_model
    from mnist_dist.report.archsummary import summarize

    s = summarize("lenet5")
    assert s.input_shape == (1, 32, 32)
    assert s.total_parameters == count_parameters(create_model("lenet5"))
    assert sum(layer.parameters for layer in s.layers) == s.total_parameters
    assert (s.layers[0].type, s.layers[0].output_shape) == ("Conv2d", (6, 28, 28))
    assert (s.layers[-1].type, s.layers[-1].output_shape) == ("Linear", (10,))


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
            pytest.fail("chromium not installed; .ci/run should have run apt-get install chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    offline = ["--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-default-apps",
               "--host-resolver-rules=MAP * ~NOTFOUND"]  # any network request would fail
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--hide-scrollbars", *offline, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_page_in_a_real_browser(report, artifacts, tmp_path):
    results, _ = report
    page = (results / "report" / "index.html").resolve()
    n_img = page.read_text().count("<img ")
    dom = chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    ok = re.search(r'data-images-ok="(\d+)"', body)
    total = re.search(r'data-images-total="(\d+)"', body)
    assert ok and total, f"the page's load script did not run: {body}"
    assert int(total.group(1)) == n_img > 10
    assert int(ok.group(1)) == n_img, "some images did not decode in the browser"
    assert 'id="comparison"' in dom.stdout and "lenet5" in dom.stdout

    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    r = chromium([f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri()], tmp_path / "profile-shot")
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (4000, 1280)
    assert float(np.std(img[..., :3])) > 0.05, "the screenshot is (nearly) blank"


def test_report_reads_sweeps_written_with_old_status_names(smoke_sweep, tmp_path):
    """Folders from before the status names were made unmistakable (early_stopped,
    stopped_early) still report, under today's names."""
    from mnist_dist.report.build import build_report

    old = tmp_path / "old-sweep"
    shutil.copytree(smoke_sweep, old)
    summary = json.loads((old / "summary.json").read_text())
    summary.pop("stopped_by_scheduler", None)
    (old / "summary.json").write_text(json.dumps({**summary, "stopped_early": 1, "completed": 1}))
    rows = list(csv.DictReader(open(old / "trials.csv")))
    rows[0]["status"] = "stopped_early"
    with open(old / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    build_report(tmp_path, log=lambda *a: None)
    with open(tmp_path / "report" / "all_runs.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == "old-sweep")
    assert row["stopped_by_scheduler"] == "1" and row["completed"] == "1"
    assert "stopped by ASHA" in (tmp_path / "report" / "index.html").read_text()


def test_report_builds_from_a_run_folder_without_training(mnist, tmp_path):
    """The fast loop's report test: a run folder written through the project's own writers
    with an untrained model (no training, no Ray) becomes the page, tables and CSVs."""
    from mnist_dist import layout
    from mnist_dist.config import resolve
    from mnist_dist.evaluation import evaluate_checkpoint, save_evaluation
    from mnist_dist.models import create_model
    from mnist_dist.models.checkpoint import atomic_save, model_payload
    from mnist_dist.report.build import build_report

    run = tmp_path / "train-mlp-mnist"
    run.mkdir()
    cfg = resolve("mlp", {"epochs": 1}).to_dict()
    history = [{"epoch": 1, "train_loss": 2.3, "train_acc": 0.1, "val_loss": 2.3, "val_acc": 0.1, "lr": 0.01,
                "epoch_seconds": 1.0, "train_seconds": 0.9, "images_per_sec": 1000.0, "best_val_acc": 0.1,
                "status": layout.COMPLETED}]
    atomic_save(model_payload(create_model("mlp"), cfg, mnist.classes, mnist.mean, mnist.std, "mnist",
                              history[0]), run / layout.MODEL)
    small = type(mnist)(**{**vars(mnist), "test_x": mnist.test_x[:300], "test_y": mnist.test_y[:300]})
    ev = evaluate_checkpoint(run / layout.MODEL, small)
    save_evaluation(ev, run)
    layout.save_json(cfg, run / layout.CONFIG_JSON)
    layout.write_csv(history, run / layout.HISTORY_CSV)
    layout.save_json({"kind": "run", "name": run.name, "arch": "mlp", "dataset": "mnist", "status": "completed",
                      "epochs_run": 1, "train_time_s": 1.0, "images_per_sec": 1000.0, "best_val_acc": 0.1,
                      "best_epoch": 1, "test_acc": ev["accuracy"], "test_loss": ev["loss"],
                      "parameters": ev["parameters"]}, run / layout.RUN_JSON)
    build_report(tmp_path, log=lambda *a: None)
    report = tmp_path / "report"
    assert (report / "index.html").read_text().count("train-mlp-mnist") >= 1
    with open(report / "all_runs.csv") as f:
        row, = list(csv.DictReader(f))
    assert row["arch"] == "mlp" and float(row["test_acc"]) == pytest.approx(ev["accuracy"])
    md = (report / "comparison.md").read_text()
    assert any(line.startswith("|") and "mlp" in line and "train-mlp-mnist" in line for line in md.splitlines())


def versus_source(name: str, final: dict | None, ensemble: dict | None = None, arch: str = "lenet5"):
    from mnist_dist.report.collect import Source

    summary = {"kind": "sweep", "arch": arch, "dataset": "mnist", "test_acc": 0.991, "trials_run": 20,
               "wall_time_s": 504.0}
    if final is not None:
        summary["final_seeds"] = final
    if ensemble is not None:
        summary["ensemble"] = ensemble
    return Source("sweep", name, Path(name), summary)


def seeds_block(accs: list[float], **extra) -> dict:
    import statistics

    return {"seeds": [1000, 2000, 3000][:len(accs)], "test_acc": accs, "test_acc_mean": statistics.mean(accs),
            "test_acc_std": statistics.stdev(accs), **extra}


def test_versus_table_says_whether_the_sweep_beat_its_baseline():
    """Baseline vs best vs ensemble vs published, over
    seeds; 'beats' only when the gain exceeds twice the larger standard deviation."""
    from mnist_dist.report import versus

    clear = versus_source("clear", seeds_block([0.9940, 0.9942, 0.9938], baseline=seeds_block([0.9890, 0.9892, 0.9888]),
                                               wall_time_s=270.0),
                          {"test_acc": 0.9951, "k": 3})
    noisy = versus_source("noisy", seeds_block([0.9940, 0.9930, 0.9950], baseline=seeds_block([0.9925, 0.9935, 0.9930])))
    single = versus_source("single", None)
    rows = {r["source"]: r for r in versus.versus_rows([clear, noisy, single])}
    assert rows["clear"]["gain"] == pytest.approx(0.0050) and rows["clear"]["beats_baseline"] is True
    assert rows["noisy"]["gain"] == pytest.approx(0.0010) and rows["noisy"]["beats_baseline"] is False
    assert rows["single"]["gain"] is None and rows["single"]["best"] is None
    assert rows["clear"]["published_acc"] == pytest.approx(0.986)  # lenet5's source, on MNIST
    cells = dict(zip(versus.HEADERS, versus.display(rows["clear"])))
    assert cells["Baseline config"] == "98.90 ± 0.02% (n=3)" and cells["Best swept config"] == "99.40 ± 0.02% (n=3)"
    assert cells["Sweep ensemble"] == "99.51% (k=3)" and cells["Best - baseline"] == "+0.50 pp, beats"
    assert cells["Sweep"] == "clear (20 trials, 8.4 min, seeds 4.5 min)"
    assert dict(zip(versus.HEADERS, versus.display(rows["noisy"])))["Best - baseline"] == "+0.10 pp, within 2 std"
    single_cells = dict(zip(versus.HEADERS, versus.display(rows["single"])))
    assert single_cells["Best swept config"] == "99.10% (one seed)"
    assert single_cells["Best - baseline"] == "- (needs --final-seeds)"
