"""The Pareto front of a sweep of several objectives: the finished trials no other finished
trial beats on every objective at once.

Only trials that ran their whole budget (or stopped by their own early stopping) take part:
one that ASHA stopped after a few epochs is cheap because it was cut, not because its config
is, and Optuna cannot take intermediate values for several objectives to judge it fairly."""
from __future__ import annotations

import math

from ... import layout

FINISHED = (layout.COMPLETED, layout.STOPPED_BY_PATIENCE)


def _values(row: dict, directions) -> list[float] | None:
    """The row's objectives as numbers to minimise; None if one is missing or not finite."""
    out = []
    for name, mode in directions:
        try:
            v = float(row.get(name))
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        out.append(-v if mode == "max" else v)
    return out


def dominates(a: list[float], b: list[float]) -> bool:
    """a is no worse than b on every objective and better on one (all to minimise)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(rows: list[dict], directions: list[tuple[str, str]]) -> list[dict]:
    """{trial_id, objective: value, ...} of each trial on the front, best first on the first objective."""
    scored = [(r, v) for r in rows if r.get("status") in FINISHED and (v := _values(r, directions)) is not None]
    front = [(r, v) for r, v in scored if not any(dominates(w, v) for _, w in scored)]
    front.sort(key=lambda rv: (rv[1], str(rv[0]["trial_id"])))
    return [{"trial_id": r["trial_id"], **{name: float(r[name]) for name, _ in directions}} for r, _ in front]
