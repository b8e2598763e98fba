"""The report on steered sweeps: the sampler and scheduler each sweep names, warm starts
(trials imported as history, starting points), PBT's mutated values over the epochs and the
Pareto front of a sweep of several objectives; and a folder written before these existed.

The folders are copies of the real smoke sweep, edited as the sweeps write these features;
the figure functions are also tested on small tables without Ray."""
from __future__ import annotations

import csv
import json
import re
import shutil
from html import escape, unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mnist_dist.report import steering
from mnist_dist.report.collect import Source

OLD, HIST, POINTS, PBT, OBJS = "old-sweep", "history-warm", "points-warm", "pbt-sweep", "two-objectives"
NEW_KEYS = ("sampler", "scheduler", "warm_start", "objectives", "pareto_front")
IMPORTED_IDS = ("imp-aaa", "imp-bbb")


def read_rows(path: Path) -> tuple[list[dict], list[str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader), list(reader.fieldnames)


def write_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def edit_summary(folder: Path, drop=(), **changes) -> dict:
    summary = {k: v for k, v in json.loads((folder / "summary.json").read_text()).items() if k not in drop}
    summary.update(changes)
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def make_old(folder: Path) -> None:
    """As a sweep wrote it before it named its sampler and scheduler: no new keys, no
    imported_from column, no config columns in the histories."""
    edit_summary(folder, drop=NEW_KEYS)
    rows, fields = read_rows(folder / "trials.csv")
    write_rows(folder / "trials.csv", rows, [f for f in fields if f != "imported_from"])
    for h in (folder / "histories").glob("*.csv"):
        rows, fields = read_rows(h)
        write_rows(h, rows, [f for f in fields if not f.startswith("config/")])


def make_history_warm_start(folder: Path) -> None:
    """Two trials of an earlier sweep imported as the sampler's history, better than any of
    this sweep's own (they would be its best if they counted)."""
    edit_summary(folder, warm_start={"source": OLD, "kind": "history", "trials": 2, "skipped_values": 1})
    rows, fields = read_rows(folder / "trials.csv")
    imported = [{**{k: "" for k in fields}, **{k: v for k, v in rows[0].items() if k.startswith("config/")},
                 "trial_id": tid, "status": "imported", "imported_from": OLD, "epochs_run": "3",
                 "best_val_acc": "0.999", "checkpoint_path": ""} for tid in IMPORTED_IDS]
    fields = [*fields[:2], "imported_from", *[f for f in fields[2:] if f != "imported_from"]]
    write_rows(folder / "trials.csv", [*imported, *rows], fields)


def make_points_warm_start(folder: Path) -> str:
    """Three starting points from another sweep; this sweep's first trial ran one. Its id."""
    edit_summary(folder, warm_start={"source": "other-sweep", "kind": "points", "trials": 3, "skipped_values": 0})
    rows, fields = read_rows(folder / "trials.csv")
    for i, r in enumerate(rows):
        r["imported_from"] = "other-sweep/src-7" if i == 0 else ""
    write_rows(folder / "trials.csv", rows, [*[f for f in fields if f != "imported_from"], "imported_from"])
    return rows[0]["trial_id"]


# each trial's values over 3 epochs; lr, weight_decay and augment change, batch_size does not
PBT_VALUES = ({"lr": (1e-3, 1e-3, 4e-3), "weight_decay": (0.0, 0.0, 0.0), "augment": ("off", "off", "light"),
               "batch_size": (64, 64, 64)},
              {"lr": (2e-3, 2e-3, 2e-3), "weight_decay": (0.0, 1e-4, 1e-4), "augment": ("off", "off", "off"),
               "batch_size": (64, 64, 64)})
PBT_CHANGED = ["lr", "weight_decay", "augment"]


def pbt_history(template: dict, values: dict) -> tuple[list[dict], list[str]]:
    base = {k: v for k, v in template.items() if not k.startswith("config/")}
    rows = [{**base, "epoch": str(e + 1), "lr": str(values["lr"][e]),
             **{f"config/{k}": str(v[e]) for k, v in values.items()}} for e in range(3)]
    return rows, [*base, *(f"config/{k}" for k in values)]


def make_pbt(folder: Path) -> None:
    edit_summary(folder, scheduler="pbt", sampler="random")
    rows, _ = read_rows(folder / "trials.csv")
    for r, values in zip(rows, PBT_VALUES):
        path = folder / "histories" / f"{r['trial_id']}.csv"
        template = read_rows(path)[0][0] if path.is_file() else {"epoch": "1", "val_acc": "0.5"}
        write_rows(path, *pbt_history(template, values))


def make_two_objectives(folder: Path) -> list[dict]:
    """Accuracy against training time: the two finished trials form the front; a trial ASHA
    stopped early is faster than both and left out of it. The summary's front."""
    rows, fields = read_rows(folder / "trials.csv")
    a, b = rows[:2]
    a.update(status="completed", best_val_acc="1.0", train_time_s="10.0")
    b.update(status="completed", best_val_acc="0.995", train_time_s="5.0")
    cut = {**b, "trial_id": "asha-cut", "status": "stopped_by_scheduler", "best_val_acc": "0.99",
           "train_time_s": "1.0"}
    write_rows(folder / "trials.csv", [a, b, cut], fields)
    front = [{"trial_id": a["trial_id"], "best_val_acc": 1.0, "train_time_s": 10.0},
             {"trial_id": b["trial_id"], "best_val_acc": 0.995, "train_time_s": 5.0}]
    edit_summary(folder, scheduler="asha", objectives=[{"metric": "best_val_acc", "mode": "max"},
                                                       {"metric": "train_time_s", "mode": "min"}],
                 pareto_front=front)
    return front


@pytest.fixture(scope="module")
def steered(smoke_sweep, tmp_path_factory):
    """One results folder with an old sweep and one sweep of each steering feature, and the
    report built over it."""
    from mnist_dist.report.build import build_report

    results = tmp_path_factory.mktemp("steered")
    for name in (OLD, HIST, POINTS, PBT, OBJS):
        shutil.copytree(smoke_sweep, results / name, ignore=shutil.ignore_patterns("tune", "train", "final"))
    make_old(results / OLD)
    make_history_warm_start(results / HIST)
    point_trial = make_points_warm_start(results / POINTS)
    make_pbt(results / PBT)
    front = make_two_objectives(results / OBJS)
    logged = []
    rep = build_report(results, log=logged.append)
    return {"results": results, "rep": rep, "log": logged, "point_trial": point_trial, "front": front,
            "html": (results / "report" / "index.html").read_text(),
            "md": (results / "report" / "comparison.md").read_text()}


def md_section(md: str, name: str) -> str:
    return md.split(f"### {name}\n")[1].split("\n### ")[0].split("\n## ")[0]


def html_section(html: str, name: str) -> str:
    return html.split(f'<h3 id="sweep-{name}">')[1].split("<h3 ")[0]


def sweep_figures(rep, name: str) -> dict:
    section = next(s for s in rep.sweeps if s.source.name == name)
    return {f.key: f for f in section.figures}


def test_every_section_names_its_sampler_scheduler_and_warm_start(steered):
    md, html = steered["md"], steered["html"]
    smoke = json.loads((steered["results"] / HIST / "summary.json").read_text())  # a smoke sweep schedules none
    expected = {OLD: ("tpe", "asha"), HIST: (smoke["sampler"], smoke["scheduler"]),
                POINTS: (smoke["sampler"], smoke["scheduler"]), PBT: ("random", "pbt"),
                OBJS: (smoke["sampler"], "asha")}
    for name, (sampler, scheduler) in expected.items():
        section = html_section(html, name)
        assert f"<span>sampler <code>{sampler}</code></span>" in section, name
        assert re.search(rf"<span>scheduler <code[^>]*>{scheduler}</code></span>", section), name
        text = md_section(md, name)
        assert f"- sampler: {sampler}\n" in text, name
        assert f"- scheduler: {steering.scheduler_text(scheduler)}" in text, name
    history = escape("warm-started from old-sweep: 2 trials as history; 1 parameter value outside this "
                     "sweep's space skipped")
    assert history in html_section(html, HIST)
    assert unescape(history) in md_section(md, HIST)
    points = "warm-started from other-sweep: 3 starting points; 0 parameter values"
    assert points in html_section(html, POINTS) and points in md_section(md, POINTS)
    for name in (OLD, PBT, OBJS):
        assert "warm-started" not in html_section(html, name) and "warm-started" not in md_section(md, name)


def test_imported_trials_are_not_this_sweeps_trials(steered):
    from mnist_dist.report import plots

    rep, html, md = steered["rep"], steered["html"], steered["md"]
    src = next(s for s in rep.sources if s.name == HIST)
    assert list(src.imported["trial_id"]) == list(IMPORTED_IDS)
    assert "imported" not in set(src.trials["status"]) and len(src.trials) == src.summary["trials_run"]
    # status counts: from summary.json, and from trials.csv when it has none
    bare = Source("sweep", HIST, src.path, {}, trials=src.trials, imported=src.imported)
    assert sum(plots._count(bare, s) for s in plots.STATUS_COLORS) == src.summary["trials_run"]
    # the trials table, the figures' trials and the best trial are this sweep's own
    section = html_section(html, HIST)
    n = src.summary["trials_run"]
    assert f"All {n} trials, best first (2 imported from an earlier sweep not listed)" in section
    assert not any(tid in html for tid in IMPORTED_IDS)
    assert "2 trials imported from old-sweep" in section and "2 trials imported from old-sweep" in md_section(md, HIST)
    with open(steered["results"] / "report" / "all_runs.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == HIST)
    assert int(row["trials_run"]) == src.summary["trials_run"] and float(row["val_acc"]) < 0.999
    assert src.summary["best_trial"] not in IMPORTED_IDS


def test_hyperparameter_figure_leaves_imported_trials_out(steered, kept_figures, tmp_path):
    from mnist_dist.report import hparams

    src = next(s for s in steered["rep"].sources if s.name == HIST)
    hparams.hyperparameters(src, tmp_path / "h.png")
    fig = kept_figures[0]
    assert f"({src.summary['trials_run']} trials)" in fig._suptitle.get_text()
    for ax in (a for a in fig.axes if a.get_visible()):
        drawn = sum(len(c.get_offsets()) for c in ax.collections)
        assert drawn <= src.summary["trials_run"] + 1  # the trials and the best trial's star
        assert all(y < 0.999 for c in ax.collections for _, y in c.get_offsets())


def test_starting_point_trials_are_marked(steered):
    section = html_section(steered["html"], POINTS)
    trial = steered["point_trial"]
    assert f"trials that ran a starting point: {trial} (from other-sweep/src-7)" in section
    assert f"trials that ran a starting point: {trial} (from other-sweep/src-7)" in md_section(steered["md"], POINTS)
    assert "<th>starting point from</th>" in section and "<td>other-sweep/src-7</td>" in section
    src = next(s for s in steered["rep"].sources if s.name == POINTS)
    assert src.imported is None and len(src.trials) == src.summary["trials_run"]  # normal trials


def test_pbt_sweep_shows_each_trials_mutated_values(steered, kept_figures, tmp_path):
    results, rep = steered["results"], steered["rep"]
    figs = sweep_figures(rep, PBT)
    fig = figs[f"{PBT}-pbt-mutations"]
    assert fig.path == results / "report" / "figures" / f"{PBT}-pbt-mutations.png" and fig.path.is_file()
    assert fig.caption == steering.MUTATIONS_CAPTION and "(lr, weight_decay, augment)" in fig.title
    assert escape(steering.MUTATIONS_CAPTION) in html_section(steered["html"], PBT)
    assert f"figures/{PBT}-pbt-mutations.png" in md_section(steered["md"], PBT)
    assert "PBT chose the values" in figs[f"{PBT}-importance"].note
    src = next(s for s in rep.sources if s.name == PBT)
    assert steering.mutations(src, tmp_path / "m.png") == PBT_CHANGED
    panels = [ax for ax in kept_figures[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["lr (rate used)", "weight_decay", "augment"]
    assert panels[0].get_yscale() == "log"
    assert all(len(ax.get_lines()) == 2 for ax in panels)  # one line per trial
    for name in (OLD, HIST, POINTS, OBJS):  # no PBT: no such figure
        assert not any(k.endswith("pbt-mutations") for k in sweep_figures(rep, name))


def test_pareto_front_figure_and_table(steered, kept_figures, tmp_path):
    results, rep, front = steered["results"], steered["rep"], steered["front"]
    fig = sweep_figures(rep, OBJS)[f"{OBJS}-pareto"]
    assert fig.path == results / "report" / "figures" / f"{OBJS}-pareto.png" and fig.path.is_file()
    assert "Trials ASHA stopped are left out of the front" in fig.caption
    section = html_section(steered["html"], OBJS)
    assert escape(fig.caption) in section
    table = section.split(f'<table id="pareto-{OBJS}">')[1].split("</table>")[0]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]
    expected = [[p["trial_id"], steering.fmt_objective("best_val_acc", p["best_val_acc"]),
                 steering.fmt_objective("train_time_s", p["train_time_s"])] for p in front]
    assert [c for c in cells if c] == expected == [[front[0]["trial_id"], "100.00%", "10"],
                                                   [front[1]["trial_id"], "99.50%", "5"]]
    md_rows = [line for line in md_section(steered["md"], OBJS).splitlines() if line.startswith("| ")]
    assert md_rows[1:] == [f"| {' | '.join(r)} |" for r in expected]
    assert "asha-cut" not in table

    src = next(s for s in rep.sources if s.name == OBJS)
    steering.pareto(src, tmp_path / "p.png")
    ax, = kept_figures[0].axes
    assert "higher is better" in ax.get_ylabel() and "best_val_acc" in ax.get_ylabel()
    assert "lower is better" in ax.get_xlabel() and "train_time_s" in ax.get_xlabel()
    assert ax.get_ylim()[1] <= 1.0  # an accuracy axis ends at 100%
    ringed = next(c for c in ax.collections if c.get_label().startswith("Pareto front"))
    assert sorted(map(tuple, ringed.get_offsets())) == [(5.0, 0.995), (10.0, 1.0)]
    cut = next(c for c in ax.collections if c.get_label().startswith("stopped by ASHA"))
    assert [tuple(p) for p in cut.get_offsets()] == [(1.0, 0.99)]
    for name in (OLD, HIST, POINTS, PBT):  # one objective: no front
        assert not any(k.endswith("pareto") for k in sweep_figures(rep, name))
        assert "pareto-" not in html_section(steered["html"], name)


def test_old_folder_builds_as_before(steered):
    rep, html, md = steered["rep"], steered["html"], steered["md"]
    assert not [w for w in rep.warnings if OLD in w]
    figs = sweep_figures(rep, OLD)
    assert set(figs) == {f"{OLD}-hyperparameters", f"{OLD}-importance"}
    assert all(f.path is not None and f.path.is_file() for f in figs.values())
    src = next(s for s in rep.sources if s.name == OLD)
    assert src.imported is None and "imported_from" not in src.trials.columns
    section = html_section(html, OLD)
    assert f"All {len(src.trials)} trials, best first</summary>" in section
    assert 'class="note steering"' not in section and "starting point" not in section
    assert md_section(md, OLD).strip().splitlines()[-2:] == ["- sampler: tpe",
                                                            f"- scheduler: {steering.scheduler_text('asha')}"]
    with open(steered["results"] / "report" / "all_runs.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == OLD)
    summary = json.loads((steered["results"] / OLD / "summary.json").read_text())
    assert int(row["trials_run"]) == summary["trials_run"]
    assert float(row["test_acc"]) == pytest.approx(summary["test_acc"])
    assert not [line for line in steered["log"] if line.startswith("warning") and OLD in line]


# --- the figure functions on small tables, without Ray ---------------------------------------------



def table_source(tmp_path: Path, summary: dict, trials: list[dict], histories: dict | None = None) -> Source:
    for tid, rows in (histories or {}).items():
        (tmp_path / "histories").mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(tmp_path / "histories" / f"{tid}.csv", index=False)
    return Source("sweep", "s", tmp_path, {"kind": "sweep", **summary}, trials=pd.DataFrame(trials))


def test_mutations_skip_when_nothing_changed(tmp_path):
    steady = [{"epoch": e, "lr": 1e-3, "config/lr": 1e-3, "config/augment": "off"} for e in (1, 2, 3)]
    src = table_source(tmp_path, {"scheduler": "pbt"}, [{"trial_id": "a", "status": "completed"}], {"a": steady})
    with pytest.raises(steering.Skip, match="changed"):
        steering.mutations(src, tmp_path / "m.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(steering.Skip, match="histories"):
        steering.mutations(table_source(empty, {}, [{"trial_id": "b", "status": "completed"}]), tmp_path / "m.png")


def test_mutations_weight_decay_with_zero_and_a_schedule(tmp_path, kept_figures):
    """A choice of 0 beside small decays gets a symlog axis; lr is the rate used (a schedule)."""
    a = [{"epoch": e, "lr": 1e-2 / e, "config/lr": 1e-2, "config/weight_decay": wd}
         for e, wd in ((1, 0.0), (2, 1e-5), (3, 1e-3))]
    src = table_source(tmp_path, {"scheduler": "pbt"}, [{"trial_id": "a", "status": "completed"}], {"a": a})
    assert steering.mutations(src, tmp_path / "m.png") == ["weight_decay"]  # config/lr never changed
    ax = next(ax for ax in kept_figures[0].axes if ax.get_visible())
    assert ax.get_yscale() == "symlog"


def test_pareto_skips_and_front_table(tmp_path, kept_figures):
    trials = [{"trial_id": "a", "status": "completed", "val_acc": 0.9, "train_time_s": 3.0}]
    with pytest.raises(steering.Skip, match="one objective"):
        steering.pareto(table_source(tmp_path, {}, trials), tmp_path / "p.png")
    two = {"objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "images_per_sec", "mode": "max"}]}
    with pytest.raises(steering.Skip, match="images_per_sec"):
        steering.pareto(table_source(tmp_path, two, trials), tmp_path / "p.png")
    cut = [{**trials[0], "status": "stopped_by_scheduler"}]
    objs = {"objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "train_time_s", "mode": "min"}]}
    with pytest.raises(steering.Skip, match="no finished trial"):
        steering.pareto(table_source(tmp_path, objs, cut), tmp_path / "p.png")
    # percentages: the accuracy axis ends at 100 even so; the x axis here is an accuracy
    flipped = {"objectives": [{"metric": "train_time_s", "mode": "min"}, {"metric": "val_acc", "mode": "max"}],
               "pareto_front": [{"trial_id": "a", "train_time_s": 3.0, "val_acc": 0.999}]}
    src = table_source(tmp_path, flipped, [{**trials[0], "val_acc": 0.999},
                                           {"trial_id": "b", "status": "completed", "val_acc": 0.99,
                                            "train_time_s": 4.0}])
    steering.pareto(src, tmp_path / "p.png")
    ax, = kept_figures[0].axes
    assert ax.get_xlim()[1] <= 1.0
    assert steering.front_table(src) == (["trial", "train_time_s (lower is better)", "val_acc (higher is better)"],
                                         [["a", "3", "99.90%"]])


def test_importances_leave_imported_trials_out_and_take_several_objectives(tmp_path):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from mnist_dist.report import hparams

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5)}
    rng = np.random.default_rng(0)
    for i in range(12):
        lr, dropout = float(10 ** rng.uniform(-4, -1)), float(rng.uniform(0, 0.5))
        study.add_trial(create_trial(params={"lr": lr, "dropout": dropout}, distributions=dist,
                                     values=[1 - abs(np.log10(lr) + 2.5) / 3, 10 + dropout],
                                     user_attrs={"imported_from": "old"} if i < 4 else {}))
    src = Source("sweep", "s", tmp_path, {"kind": "sweep", "objectives": [{}, {}]}, study_path=db)
    assert len(hparams.own_trials(study).trials) == 8
    imp, n = hparams.importances(src)
    assert n == 8 and set(imp) == {"lr", "dropout"}
