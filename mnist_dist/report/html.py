"""index.html: one self-contained page (figures inlined as base64 PNG), so it opens
from disk, can be mailed or archived, and needs no server and no network."""
from __future__ import annotations

import base64
import time
from html import escape

from ..tuning.outputs.summary import SweepSummary
from . import hparams, stats, steering, tables, versus

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1d2733;background:#f4f6f8;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:0 24px 48px}
header{background:#1d3557;color:#fff;padding:22px 24px}
header h1{margin:0 0 4px;font-size:26px} header p{margin:0;opacity:.85}
nav{max-width:1240px;margin:0 auto;padding:10px 24px;font-size:14px}
nav a{margin-right:16px;color:#1d3557;font-weight:600;text-decoration:none}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:8px 22px 18px;
 margin:18px 0}
h2{color:#1d3557;border-bottom:2px solid #e6ebf0;padding-bottom:6px}
h3{color:#264653;margin-top:26px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;width:100%}
th{background:#1d3557;color:#fff;text-align:left;padding:6px 6px;position:sticky;top:0}
td{padding:5px 6px;border-bottom:1px solid #e6ebf0;vertical-align:top}
tr:nth-child(even) td{background:#f8fafc}
td.num{text-align:right;white-space:nowrap} td.acc{font-weight:700}
td.cfg{min-width:180px;font-size:11.5px;color:#34495e}
.sub{font-size:11px;color:#6b7a89;font-weight:400;white-space:normal}
.pos{color:#1b7a3a;font-weight:600} .neg{color:#c0392b;font-weight:600}
.scroll{overflow-x:auto}
.note{font-size:13px;color:#5c6b7a}
.warn{background:#fff4e5;border-left:5px solid #e67e22;padding:8px 12px;margin:8px 0;font-size:14px}
.warn b{color:#c0392b}
.missing{font-size:13px;color:#7a8794;font-style:italic}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0;flex:1 1 480px;max-width:100%} figure.wide{flex-basis:100%}
figure img{max-width:100%;height:auto;border:1px solid #e6ebf0;border-radius:4px;background:#fff}
figcaption{font-size:12px;color:#5c6b7a;margin-top:2px}
details summary{cursor:pointer;color:#1d3557;font-weight:600;margin:6px 0}
.kv{font-size:14px} .kv span{margin-right:18px}
code{background:#eef2f6;padding:1px 4px;border-radius:3px}
"""

# Lets a test (or a curious user) check from the page itself that every figure decoded.
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesOk = ok;
  document.body.dataset.imagesTotal = imgs.length;
});
"""

WIDE = ("hyperparameters", "correct", "wrong", "learning-curves", "trial-status", "pbt-mutations")


def img(fig) -> str:
    if fig.path is None:
        return f'<p class="missing">{escape(fig.title)}: not shown - {escape(fig.note)}</p>'
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    wide = " wide" if fig.key.endswith(WIDE) else ""
    caption = f"<br>{escape(fig.caption)}" if getattr(fig, "caption", "") else ""
    return (f'<figure class="{wide.strip()}"><img src="data:image/png;base64,{data}" alt="{escape(fig.title)}">'
            f'<figcaption>{escape(fig.title)} - <code>{escape(fig.path.parent.name)}/'
            f'{escape(fig.path.name)}</code>{caption}</figcaption></figure>')


def figs(figures) -> str:
    return '<div class="figs">' + "".join(img(f) for f in figures) + "</div>"


def table(headers, rows, table_id: str = "", classes=None) -> str:
    """rows: lists of cell strings (already escaped HTML); classes: per-column td class."""
    classes = classes or [""] * len(headers)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
                                    for v, c in zip(r, classes)) + "</tr>" for r in rows)
    tid = f' id="{table_id}"' if table_id else ""
    return f'<div class="scroll"><table{tid}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


NUMERIC = {"test_acc", "test_loss", "val_acc", "test_images", "train_time_s", "images_per_sec", "parameters",
           "diff_vs_published"}


def comparison_cell(key: str, row: dict, shown: dict) -> str:
    """Markdown's cell text, with a little HTML: the source under the architecture (saves a
    column), the seeds' mean under the accuracy, the difference coloured by its sign."""
    if key == "arch":
        return f'{escape(shown["arch"])}<br><span class="sub">{escape(shown["source"])}</span>'
    if key == "test_acc":
        seeds = tables.fmt_seeds(row)
        return tables.pct(row["test_acc"]) + (f'<br><span class="sub">{escape(seeds)}</span>' if seeds else "")
    if key == "diff_vs_published" and row[key] is not None:
        return f'<span class="{"pos" if row[key] >= 0 else "neg"}">{escape(shown[key])}</span>'
    return escape(shown[key])


def comparison_table(rows, table_id: str) -> str:
    columns = [(k, h) for k, h in tables.COLUMNS if k != "source"]
    cells = [[comparison_cell(k, r, tables.display(r)) for k, _ in columns] for r in rows]
    classes = [("num acc" if k == "test_acc" else "num") if k in NUMERIC else ("cfg" if k == "best_config" else "")
               for k, _ in columns]
    return table([h for _, h in columns], cells, table_id, classes)


def warnings_section(rep) -> str:
    edges = [(s.source.name, w) for s in rep.sweeps for w in s.edge_warnings]
    if not rep.warnings and not edges:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in rep.warnings)
    items += "".join(f"<li><b>WARNING</b> {escape(n)}: {escape(w)}</li>" for n, w in edges)
    return (f'<section id="warnings"><h2>Warnings</h2><div class="warn"><ul>{items}</ul></div>'
            '<p class="note">Folders with problems are reported and skipped or shown with what could '
            "be read; everything else below is complete.</p></section>")


def versus_table(rep) -> str:
    if not rep.versus:
        return ""
    rows = []
    for r in rep.versus:
        cells = [escape(c) for c in versus.display(r)]
        if r["beats_baseline"] is not None:
            cells[6] = f'<span class="{"pos" if r["beats_baseline"] else "neg"}">{cells[6]}</span>'
        rows.append(cells)
    return ("<h3>Baseline config vs best swept config vs ensemble</h3>"
            + table(versus.HEADERS, rows, "versus", ["", "", "", "num acc", "num acc", "num acc", "num", ""])
            + f'<p class="note">{escape(versus.NOTES)}</p>')


def comparison_section(rep) -> str:
    return ('<section id="comparison-section"><h2>1. Comparison: best model per architecture and dataset</h2>'
            + comparison_table(rep.best, "comparison") + f'<p class="note">{escape(tables.NOTES)}</p>'
            + versus_table(rep)
            + f"<h3>All sweeps and runs ({len(rep.rows)})</h3>" + comparison_table(rep.rows, "all-runs")
            + "</section>")


def cost_section(rep) -> str:
    return ('<section id="cost"><h2>2. Accuracy vs cost</h2><p class="note">Circled points form the '
            "Pareto front: no other model of the same dataset is both more accurate and cheaper. "
            "Accuracies of smoke runs (few test images) are not comparable with full runs.</p>"
            + figs(rep.overview[:2]) + "</section>")


def mcnemar_section(rep) -> str:
    intro = ("<p class=\"note\">McNemar's test on the best models' test predictions, pairwise, for "
             "models tested on the same images (the common first N test images of the same dataset). "
             f"Exact binomial test below {stats.EXACT_BELOW} discordant images, else chi-square with "
             "continuity correction. \"A beats B\" when p &lt; 0.05.</p>")
    if not rep.mcnemar:
        return f'<section id="stats"><h2>3. Statistical comparison</h2>{intro}<p class="missing">' \
               f"{escape(stats.markdown_table([]))}</p></section>"
    rows = [[escape(c) for c in stats.display(r)] for r in rep.mcnemar]
    rows = [r[:-1] + [f"<b>{r[-1]}</b>" if "beats" in r[-1] else r[-1]] for r in rows]
    return (f'<section id="stats"><h2>3. Statistical comparison (McNemar)</h2>{intro}'
            + table(stats.HEADERS, rows, "mcnemar", ["", "", "", "num", "num", "num", "", "num", ""])
            + "</section>")


def sweep_block(s) -> str:
    sm = s.source.summary
    fmt = lambda v, f: "-" if tables.num(v) is None else f.format(float(v))  # noqa: E731
    typed = SweepSummary.from_dict(sm)
    kv = (f"<span>metric <code>{escape(str(sm.get('metric', '?')))}</code></span>"
          f"<span>sampler <code>{escape(typed.sampler)}</code></span>"
          f'<span>scheduler <code title="{escape(steering.scheduler_text(typed.scheduler))}">'
          f"{escape(typed.scheduler)}</code></span>"
          f"<span>trials {escape(str(sm.get('trials_run', '-')))}</span>"
          f"<span>workers/trial {escape(str(sm.get('workers', '-')))}</span>"
          f"<span>wall time {fmt(sm.get('wall_time_s'), '{:.0f} s')}</span>"
          f"<span>overhead/trial {fmt(sm.get('overhead_per_trial_s'), '{:.1f} s')}</span>"
          f"<span>best trial <code>{escape(str(sm.get('best_trial', '-')))}</code></span>"
          f"<span>test acc {tables.pct(sm.get('test_acc'))}</span>")
    warnings = list(s.edge_warnings)
    if typed.incomplete:
        warnings.insert(0, f"partial results: the sweep was interrupted after {typed.trials_run} trials "
                           f"({typed.interrupted_trials} cut short); resume it with --resume")
    warn = "".join(f'<div class="warn"><b>WARNING:</b> {escape(w)}</div>' for w in warnings)
    notes = "".join(f'<p class="note steering">{escape(n)}</p>' for n in steering.notes(s.source))
    return (f'<h3 id="sweep-{escape(s.source.name)}">{escape(s.source.label)}</h3><p class="kv">{kv}</p>'
            + notes + warn + figs(s.figures) + front_table(s.source) + trials_table(s.source))


def front_table(src) -> str:
    """A sweep of several objectives: its Pareto front, as summary.json gives it."""
    headers, rows = steering.front_table(src)
    if not rows:
        return ""
    return (f"<h4>Pareto front ({len(rows)} trials)</h4>"
            + table(headers, [[escape(c) for c in r] for r in rows], f"pareto-{escape(src.name)}",
                    ["", *["num"] * (len(headers) - 1)]))


def trials_table(src) -> str:
    t = src.trials
    if t is None or t.empty:
        return ""
    metric = hparams.metric_column(src)  # the sweep's own metric, best first by its mode
    keep = [c for c in t.columns if c in ("trial_id", "status", "epochs_run", "best_val_acc", metric, "train_time_s")
            or c.startswith("config/")]
    if steering.starting_points(src):  # which trials ran a warm start's starting point
        keep.append("imported_from")
    ascending = src.summary.get("mode") == "min"
    t = t[keep].sort_values(metric, ascending=ascending) if metric in keep else t[keep]
    rows = [[escape(tables.fmt_value(v)) if v == v else "-" for v in r] for r in t.itertuples(index=False)]
    n = steering.imported_count(src)
    imported = f" ({n} imported from an earlier sweep not listed)" if n else ""
    headers = ["starting point from" if c == "imported_from" else c.removeprefix("config/") for c in keep]
    return (f"<details><summary>All {len(t)} trials, best first{imported}</summary>"
            + table(headers, rows) + "</details>")


def sweeps_section(rep) -> str:
    if not rep.sweeps:
        return ""
    return ('<section id="sweeps"><h2>4. Sweeps</h2>' + figs(rep.overview[2:])
            + '<p class="note">Hyperparameter plots: every trial\'s metric against each searched value; '
            "the star is the best trial, shaded bands are the outer 10% of each range where a best value "
            "means the range should be widened.</p>" + "".join(sweep_block(s) for s in rep.sweeps)
            + "</section>")


def arch_block(arch) -> str:
    if isinstance(arch, str) or arch is None:
        return f'<p class="missing">{escape(str(arch))}</p>'
    rows = [[escape(x.name), escape(x.type), escape("x".join(map(str, x.output_shape)) or "-"),
             f"{x.parameters:,}"] for x in arch.layers]
    shape = "x".join(map(str, arch.input_shape))
    return (f"<details><summary>Architecture: {len(arch.layers)} layers, {arch.total_parameters:,} "
            f"parameters, input {shape}</summary>"
            + table(["layer", "type", "output shape", "parameters"], rows, classes=["", "", "", "num"])
            + "</details>")


def models_section(rep) -> str:
    blocks = []
    for m in rep.models:
        d = tables.display(m.row)
        desc = _description(m.source.arch)
        blocks.append(f'<h3 id="model-{escape(m.source.name)}">{escape(m.source.arch)} on '
                      f"{escape(m.source.dataset)}</h3><p class=\"kv\"><span>test acc <b>{escape(d['test_acc'])}"
                      f"</b></span><span>loss {escape(d['test_loss'])}</span><span>from "
                      f"{escape(d['source'])}</span><span>{escape(d['best_config'])}</span></p>"
                      f'<p class="note">{escape(desc)}</p>' + arch_block(m.arch)
                      + (f'<p class="missing">{escape(m.note)}</p>' if m.note else figs(m.figures)))
    return '<section id="models"><h2>5. Best models</h2>' + "".join(blocks) + "</section>"


def _description(arch: str) -> str:
    from ..models import get_entry

    try:
        return get_entry(arch).description
    except Exception:  # noqa: BLE001 - an architecture removed from the registry
        return ""


def datasets_section(rep) -> str:
    blocks = "".join(f"<h3>{escape(name)}</h3>" + figs(f) for name, f in rep.datasets.items())
    return f'<section id="datasets"><h2>6. Datasets</h2>{blocks}</section>'


NAV = (("comparison-section", "Comparison"), ("cost", "Accuracy vs cost"), ("stats", "McNemar"),
       ("sweeps", "Sweeps"), ("models", "Best models"), ("datasets", "Datasets"), ("warnings", "Warnings"))


def render(rep) -> str:
    n_sweeps = sum(s.kind == "sweep" for s in rep.sources)
    meta = (f"Generated {time.strftime('%Y-%m-%d %H:%M')} from <code>{escape(str(rep.results_dir))}</code>: "
            f"{n_sweeps} sweeps, {len(rep.sources) - n_sweeps} single runs, {len(rep.best)} "
            f"architecture x dataset pairs.")
    body = (warnings_section(rep) + comparison_section(rep) + cost_section(rep) + mcnemar_section(rep)
            + sweeps_section(rep) + models_section(rep) + datasets_section(rep))
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in NAV if f'id="{i}"' in body)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>mnist-dist report</title><style>{CSS}</style></head>\n<body>"
            f'<header><h1>mnist-dist report</h1><p>{meta}</p></header><nav>{nav}</nav>'
            f"<main>{body}</main><script>{SCRIPT}</script></body></html>\n")
