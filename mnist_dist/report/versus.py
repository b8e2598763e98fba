"""Did the sweep beat the source? Per sweep: the source's baseline config, the best swept
config and the sweep's ensemble on the test set, beside the published number.

The baseline and best configs are compared over the seeds `--final-seeds K` retrained them
with (mean +/- std); a single seed says little when two configs differ by a tenth of a
point. The sweep "beats its baseline" only when the means differ by more than two standard
deviations (the larger of the two). The ensemble is one model: its row has no spread."""
from __future__ import annotations

from ..evaluation import beats_over_seeds
from ..tuning.outputs.summary import EnsembleResult, FinalSeeds, SeedStats, SweepSummary
from .collect import Source
from .tables import accuracy, md_cell, num, pct, published

HEADERS = ("Architecture", "Dataset", "Published", "Baseline config", "Best swept config", "Sweep ensemble",
           "Best - baseline", "Sweep")
NOTES = ("Test accuracy over the seeds of `--final-seeds K` (mean ± std, n seeds), the same seeds for "
         "the source's baseline config and the sweep's best; the ensemble (k best trials averaged, k "
         "chosen on validation) is one model. \"beats\" when best - baseline exceeds twice the larger std.")


def seed_figure(stats: SeedStats | None) -> dict | None:
    """{mean, std, n} from one config's seed statistics, None when it has no accuracy."""
    mean = accuracy(stats.test_acc_mean) if stats else None
    if mean is None or not stats.test_acc:
        return None
    return {"mean": mean, "std": num(stats.test_acc_std) or 0.0, "n": len(stats.test_acc)}


def versus_row(src: Source) -> dict:
    s = SweepSummary.from_dict(src.summary)
    final, ens = s.final_seeds or FinalSeeds(), s.ensemble or EnsembleResult()
    pub_text, pub_acc, _ = published(src.arch, src.dataset)
    best, baseline = seed_figure(final.best), seed_figure(final.baseline)
    row = {"arch": src.arch, "dataset": src.dataset, "source": src.name, "published": pub_text,
           "published_acc": pub_acc, "best": best, "baseline": baseline,
           "best_single": accuracy(s.best and s.best.test_acc),  # seed 0, when no seeds were retrained
           "ensemble_acc": accuracy(ens.test_acc), "ensemble_k": ens.k,
           "gain": None, "beats_baseline": None, "trials": src.summary.get("trials_run"),
           "wall_time_s": num(src.summary.get("wall_time_s")), "seeds_wall_time_s": num(final.wall_time_s)}
    if best and baseline:
        row["gain"], row["beats_baseline"] = beats_over_seeds(best["mean"], best["std"], baseline["mean"],
                                                              baseline["std"])
    return row


def versus_rows(sources: list[Source]) -> list[dict]:
    rows = [versus_row(s) for s in sources if s.kind == "sweep"]
    return sorted(rows, key=lambda r: (r["dataset"], r["arch"], r["source"]))


def fmt_seeds(fig: dict | None) -> str:
    if not fig:
        return "-"
    return f"{100 * fig['mean']:.2f} ± {100 * fig['std']:.2f}% (n={fig['n']})"


def display(row: dict) -> list[str]:
    best = fmt_seeds(row["best"]) if row["best"] else (
        f"{pct(row['best_single'])} (one seed)" if row["best_single"] is not None else "-")
    ens = "-" if row["ensemble_acc"] is None else f"{pct(row['ensemble_acc'])} (k={row['ensemble_k']})"
    if row["gain"] is None:
        gain = "- (needs --final-seeds)"
    else:
        gain = f"{100 * row['gain']:+.2f} pp, " + ("beats" if row["beats_baseline"] else "within 2 std")
    return [row["arch"], row["dataset"], row["published"] or "-", fmt_seeds(row["baseline"]), best, ens, gain,
            fmt_sweep(row)]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def fmt_sweep(row: dict) -> str:
    """The sweep's name, trials and wall time (search, then the final seeds)."""
    parts = [f"{row['trials']} trials" if row["trials"] is not None else None,
             minutes(row["wall_time_s"]) if row["wall_time_s"] is not None else None,
             f"seeds {minutes(row['seeds_wall_time_s'])}" if row["seeds_wall_time_s"] is not None else None]
    detail = ", ".join(p for p in parts if p)
    return f"{row['source']} ({detail})" if detail else row["source"]


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "No sweeps."
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(md_cell(c) for c in display(r)) + " |" for r in rows]
    return "\n".join(lines)


CSV_KEYS = ("arch", "dataset", "source", "trials", "wall_time_s", "seeds_wall_time_s", "published_acc", "baseline_mean", "baseline_std", "baseline_seeds",
            "best_mean", "best_std", "best_seeds", "best_single", "ensemble_acc", "ensemble_k", "gain",
            "beats_baseline")


def write_csv(rows: list[dict], path) -> None:
    from .. import layout

    flat = []
    for r in rows:
        out = {k: r.get(k) for k in CSV_KEYS}
        for role in ("baseline", "best"):
            fig = r[role] or {}
            out.update({f"{role}_mean": fig.get("mean"), f"{role}_std": fig.get("std"), f"{role}_seeds": fig.get("n")})
        flat.append(out)
    layout.write_csv(flat, path, columns=list(CSV_KEYS))
