"""Build RESULTS_DIR/report/ from everything in RESULTS_DIR: collect, compare, draw, write."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import layout
from . import hparams, images, plots, stats, steering, tables, versus
from .collect import Source, discover

FIGURES = "figures"


class NothingToReport(Exception):
    pass


@dataclass
class Figure:
    key: str  # file stem in figures/
    title: str
    path: Path | None = None  # None: not drawn, see note
    note: str = ""
    caption: str = ""  # how to read it, under the figure


@dataclass
class ModelSection:
    row: dict
    source: Source
    figures: list[Figure]
    arch: object = None  # ArchSummary, or a str saying why there is none
    note: str = ""  # why there are no figures


@dataclass
class SweepSection:
    source: Source
    figures: list[Figure]
    edge_warnings: list[str]


@dataclass
class Report:
    results_dir: Path
    out_dir: Path
    sources: list[Source]
    warnings: list[str]
    rows: list[dict] = field(default_factory=list)  # every source
    best: list[dict] = field(default_factory=list)  # one per architecture x dataset
    versus: list[dict] = field(default_factory=list)  # per sweep: baseline vs best vs ensemble
    mcnemar: list[dict] = field(default_factory=list)
    overview: list[Figure] = field(default_factory=list)
    sweeps: list[SweepSection] = field(default_factory=list)
    models: list[ModelSection] = field(default_factory=list)
    datasets: dict[str, list[Figure]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


class Drawer:
    """Draws one figure at a time; a figure that fails becomes a warning, not a crash,
    because one odd folder must not cost the user the rest of the report."""

    def __init__(self, folder: Path, warnings: list[str]):
        self.folder, self.warnings = folder, warnings

    def __call__(self, key: str, title: str, draw: Callable[[Path], Path]) -> Figure:
        path = self.folder / f"{slug(key)}.png"
        try:
            with plots.plt.rc_context(plots.STYLE):
                draw(path)
            return Figure(key, title, path)
        except plots.Skip as e:
            return Figure(key, title, note=str(e))
        except Exception as e:  # noqa: BLE001 - reported to the user below
            plots.plt.close("all")
            self.warnings.append(f"figure '{title}' could not be drawn ({type(e).__name__}: {e})")
            return Figure(key, title, note=f"could not be drawn: {type(e).__name__}: {e}")


def overview_figures(rep: Report, draw: Drawer) -> list[Figure]:
    sweeps = [s for s in rep.sources if s.kind == "sweep"]
    return [
        draw("accuracy-vs-time", "Test accuracy vs training time", lambda p: plots.accuracy_vs(
            rep.rows, "train_time_s", "training time of the model (s, sum of epochs)",
            "Test accuracy vs training time (every sweep and run)", p)),
        draw("accuracy-vs-parameters", "Test accuracy vs parameters", lambda p: plots.accuracy_vs(
            rep.rows, "parameters", "parameters", "Test accuracy vs parameter count (every sweep and run)", p)),
        draw("trial-status", "Trial status per sweep", lambda p: plots.trial_status(sweeps, p)),
    ]


def sweep_section(src: Source, draw: Drawer) -> SweepSection:
    k = slug(src.name)
    figs = [draw(f"{k}-hyperparameters", f"{src.name}: metric vs hyperparameters",
                 lambda p: hparams.hyperparameters(src, p)),
            draw(f"{k}-importance", f"{src.name}: hyperparameter importance",
                 lambda p: hparams.importance_plot(src, p))]
    if steering.steering(src)[1] == "pbt":
        changed = steering.mutated(steering.histories(src))
        fig = draw(f"{k}-pbt-mutations", f"{src.name}: PBT's values per trial over the epochs"
                   + (f" ({', '.join(changed)})" if changed else ""), lambda p: steering.mutations(src, p))
        fig.caption = steering.MUTATIONS_CAPTION
        figs.append(fig)
    if steering.objectives(src):
        fig = draw(f"{k}-pareto", f"{src.name}: Pareto front of the objectives", lambda p: steering.pareto(src, p))
        fig.caption = steering.PARETO_CAPTION
        figs.append(fig)
    return SweepSection(src, figs, hparams.edge_warnings(src))


def model_section(row: dict, src: Source, draw: Drawer, data_dir, cache: dict) -> ModelSection:
    from .archsummary import summarize

    k, title = slug(src.name), f"{src.arch} on {src.dataset} ({src.name})"
    ev = src.evaluation
    try:
        classes = len(ev["classes"]) if ev and ev.get("classes") else 10
        arch = summarize(src.arch, classes)
    except Exception as e:  # an architecture no longer in the registry, say
        arch = f"no architecture summary: {type(e).__name__}: {e}"
    if ev is None and src.history is None:  # nothing trained: one line, not five empty figures
        why = src.summary.get("error") or "no evaluation.json and no history"
        return ModelSection(row, src, [], arch, note=f"no trained model to show: {why}")

    def grid(correct: bool):
        return lambda p: images.prediction_grid(src, images.source_dataset(src, data_dir, cache),
                                                correct, title, p)
    figs = [draw(f"{k}-learning-curves", "Learning curves",
                 lambda p: plots.learning_curves(src.history, title, p)),
            draw(f"{k}-confusion", "Confusion matrix", lambda p: plots.confusion(ev, title, p)),
            draw(f"{k}-per-class", "Per-class accuracy", lambda p: plots.per_class(ev, title, p)),
            draw(f"{k}-correct", "Correctly classified test images", grid(True)),
            draw(f"{k}-wrong", "Misclassified test images", grid(False))]
    return ModelSection(row, src, figs, arch)


def dataset_figures(name: str, src: Source, draw: Drawer, data_dir, cache: dict) -> list[Figure]:
    k = slug(name)
    ds = lambda: images.source_dataset(src, data_dir, cache)  # noqa: E731 (loaded once, on first use)
    return [draw(f"dataset-{k}-classes", "Class distribution", lambda p: images.class_distribution(ds(), p)),
            draw(f"dataset-{k}-pixels", "Pixel values", lambda p: images.pixel_histogram(ds(), p)),
            draw(f"dataset-{k}-samples", "Sample images", lambda p: images.sample_grid(ds(), p))]


def clear_figures(folder: Path) -> None:
    """Old figures of sweeps that are gone would otherwise linger beside the new ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for png in folder.glob("*.png"):
        png.unlink()


def build_report(results_dir, out_dir=None, data_dir=None, log=print) -> Report:
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else results_dir / "report"
    if not results_dir.is_dir():
        raise NothingToReport(f"{results_dir} does not exist. {HOW_TO}")
    inside = out_dir.parent.resolve() == results_dir.resolve()
    found = discover(results_dir, skip=("report", out_dir.name) if inside else ("report",))
    for w in found.warnings:
        log(f"warning: {w}")
    if not found.sources:
        raise NothingToReport(f"nothing to report: {results_dir} holds no sweep (summary.json) or "
                              f"training run (run.json). {HOW_TO}")
    rep = Report(results_dir, out_dir, found.sources, list(found.warnings))
    rep.rows = tables.all_rows(rep.sources)
    rep.best = tables.best_rows(rep.rows)
    rep.versus = versus.versus_rows(rep.sources)
    by_name = {s.name: s for s in rep.sources}
    featured = [by_name[r["source"]] for r in rep.best]
    rep.mcnemar = stats.pairwise(featured)
    draw_all(rep, featured, by_name, data_dir, log)
    write_outputs(rep)
    return rep


HOW_TO = ("Make results first: `mnist-dist train ARCH` (one run) or `mnist-dist sweep ARCH` "
          "(a hyperparameter sweep), then run `mnist-dist report` again.")


def draw_all(rep: Report, featured: list[Source], by_name: dict, data_dir, log) -> None:
    n_before = len(rep.warnings)
    fig_dir = rep.out_dir / FIGURES
    clear_figures(fig_dir)
    draw, cache = Drawer(fig_dir, rep.warnings), {}
    log(f"drawing figures for {len(rep.sources)} sources into {fig_dir}")
    rep.overview = overview_figures(rep, draw)
    rep.sweeps = [sweep_section(s, draw) for s in rep.sources if s.kind == "sweep"]
    rep.models = [model_section(r, by_name[r["source"]], draw, data_dir, cache) for r in rep.best]
    for src in featured:
        if src.dataset not in rep.datasets:
            rep.datasets[src.dataset] = dataset_figures(src.dataset, src, draw, data_dir, cache)
    for w in rep.warnings[n_before:]:
        log(f"warning: {w}")


def write_outputs(rep: Report) -> None:
    from .html import render

    out = rep.out_dir
    tables.write_csv(rep.best, out / "comparison.csv")
    tables.write_csv(rep.rows, out / "all_runs.csv")
    versus.write_csv(rep.versus, out / "versus.csv")
    layout.write_text(out / "comparison.md", markdown_report(rep))
    layout.write_text(out / "index.html", render(rep))
    figs = [f.path for f in all_figures(rep) if f.path]
    rep.files = [out / "index.html", out / "comparison.md", out / "comparison.csv", out / "all_runs.csv",
                 out / "versus.csv", *figs]


def markdown_report(rep: Report) -> str:
    parts = [f"# mnist-dist results\n\nFrom `{rep.results_dir}`: {len(rep.sources)} sweeps and runs.",
             "## Best model per architecture and dataset", tables.markdown_table(rep.best), tables.NOTES,
             "## Baseline config vs best swept config vs ensemble", versus.markdown_table(rep.versus),
             versus.NOTES,
             "## All sweeps and runs", tables.markdown_table(rep.rows),
             "## McNemar's test between the best models", stats.markdown_table(rep.mcnemar)]
    if rep.sweeps:
        parts += ["## Sweeps", "\n\n".join(sweep_markdown(s) for s in rep.sweeps)]
    edges = [f"- {s.source.name}: {w}" for s in rep.sweeps for w in s.edge_warnings]
    if edges:
        parts += ["## Hyperparameters at the edge of their search range", "\n".join(edges)]
    if rep.warnings:
        parts += ["## Warnings", "\n".join(f"- {w}" for w in rep.warnings)]
    return "\n\n".join(parts) + "\n"


def sweep_markdown(s: SweepSection) -> str:
    """A sweep's steering: sampler, scheduler, warm start, objectives, with the Pareto front
    and the figures that show them."""
    sampler, scheduler = steering.steering(s.source)
    lines = [f"### {tables.md_cell(s.source.name)}", "",
             f"- sampler: {tables.md_cell(sampler)}",
             f"- scheduler: {tables.md_cell(steering.scheduler_text(scheduler))}",
             *(f"- {tables.md_cell(n)}" for n in steering.notes(s.source))]
    headers, rows = steering.front_table(s.source)
    if rows:
        lines += ["", "Pareto front (summary.json):", "", tables.markdown_row(headers), "|" + "---|" * len(headers),
                  *(tables.markdown_row(r) for r in rows)]
    for f in s.figures:
        if f.caption and f.path:
            lines += ["", f"![{tables.md_cell(f.title)}]({FIGURES}/{f.path.name})", "", f.caption]
        elif f.caption:
            lines += ["", f"{f.title}: not shown - {f.note}"]
    return "\n".join(lines)


def all_figures(rep: Report) -> list[Figure]:
    figs = list(rep.overview)
    for s in rep.sweeps:
        figs += s.figures
    for m in rep.models:
        figs += m.figures
    for f in rep.datasets.values():
        figs += f
    return figs
