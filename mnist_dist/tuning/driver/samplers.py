"""The search algorithms a sweep can use (the YAML's `sampler`, `--sampler`): the Optuna
sampler each name builds, seeded with the sweep's seed, and which searched parameters it
models rather than draws at random.

From Optuna 5.0's source: TPE (univariate, as built here) models every parameter, a
conditional one over the trials that drew it; GPSampler models the parameters every
finished trial holds, categorical ones included; CmaEsSampler only those of them with a
numeric range. Each draws the rest from a RandomSampler seeded as itself and, by default,
logs a warning per parameter and trial. Here GP and CMA-ES model the unconditional
parameters and no others, said once before Ray starts (`fallback_note`), with Optuna's
warning off. Left to Optuna, a conditional parameter would enter the model while every
finished trial happens to hold it (momentum, while all were sgd) and leave it at the first
trial without it; CMA-ES, once its dimension changes, draws everything at random for the
rest of the sweep.
"""
from __future__ import annotations

import optuna

from ..spec import SweepSpec

STARTUP_TRIALS = 5  # TPE's and GP's random first trials (all of them in a shorter sweep)
LABELS = {"tpe": "TPE", "gp": "the Gaussian process", "cmaes": "CMA-ES", "random": "random search"}


class _UnconditionalOnly:
    """Mixed into GPSampler and CmaEsSampler: the joint model covers `modelled` (set after
    construction; pickled with the sampler in Tune's snapshots) and the rest goes to the
    sampler's independent RandomSampler, whatever the finished trials hold."""
    modelled: frozenset = frozenset()

    def infer_relative_search_space(self, study, trial) -> dict:
        space = super().infer_relative_search_space(study, trial)
        return {name: dist for name, dist in space.items() if name in self.modelled}


class UnconditionalGP(_UnconditionalOnly, optuna.samplers.GPSampler):
    """GPSampler over the space's unconditional parameters."""


class UnconditionalCmaEs(_UnconditionalOnly, optuna.samplers.CmaEsSampler):
    """CmaEsSampler over the space's unconditional numeric parameters."""


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `spec.sampler` names, seeded with `spec.seed`."""
    startup = min(STARTUP_TRIALS, spec.trials)
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "gp":
        sampler = UnconditionalGP(seed=spec.seed, n_startup_trials=startup, warn_independent_sampling=False)
    elif spec.sampler == "cmaes":
        # random first trials would tell CMA-ES nothing: it starts at the centre of the ranges
        sampler = UnconditionalCmaEs(seed=spec.seed, n_startup_trials=1, warn_independent_sampling=False)
    else:
        raise ValueError(f"unknown sampler {spec.sampler!r}; known: {', '.join(LABELS)}")
    sampler.modelled = frozenset(modelled(spec))
    return sampler


def drawn_at_random(spec: SweepSpec) -> dict[str, list[str]]:
    """The searched parameters GP or CMA-ES leaves to random draws, by why, in space order:
    conditional (`when`), and for CMA-ES categorical (`choice`). Empty for TPE and random
    search, which fall back on nothing."""
    if spec.sampler not in ("gp", "cmaes"):
        return {}
    conditional = [name for name, d in spec.space.items() if "when" in d]
    categorical = [name for name, d in spec.space.items()
                   if spec.sampler == "cmaes" and "when" not in d and "choice" in d]
    return {"categorical": categorical, "conditional": conditional}


def modelled(spec: SweepSpec) -> list[str]:
    """The searched parameters spec.sampler's model proposes, in space order."""
    if spec.sampler == "random":
        return []
    at_random = {name for names in drawn_at_random(spec).values() for name in names}
    return [name for name in spec.space if name not in at_random]


def fallback_note(spec: SweepSpec) -> str | None:
    """One line naming what GP or CMA-ES draws at random and what it models; None when the
    sampler models every parameter (TPE) or none by design (random)."""
    reasons = [f"{', '.join(names)} ({why})" for why, names in drawn_at_random(spec).items() if names]
    if not reasons:
        return None
    count = sum(len(names) for names in drawn_at_random(spec).values())
    model, label = modelled(spec), LABELS[spec.sampler]
    rest = f"{', '.join(model)} by {label}" if model else f"{label} models none of them: the search is random"
    return f"sampler {spec.sampler}: {' and '.join(reasons)} {'is' if count == 1 else 'are'} drawn at random; {rest}"
