"""Population-based training: Tune's PBT scheduler over the sweep's space.

Tune runs PBT without a search algorithm. The population starts from the baseline, the
YAML's points and random draws from the space (seeded: the same sweep draws the same
population); every `perturbation_interval` epochs a trial in the bottom quarter takes the
weights, optimizer and schedule state of one in the top quarter (the trainable keeps its own
rates: training.loop.EpochRun.restore) and perturbs what may change mid-run. Values stay
inside the space: Tune multiplies a number by 0.8 or 1.2 without looking at its range."""
from __future__ import annotations

from ..spec import SweepSpec, baseline_point, kind_of, mutable, sample

def mutations(spec: SweepSpec) -> dict:
    """Tune's hyperparam_mutations: a choice's values in order (PBT shifts to a neighbour), a
    range as Tune's distribution (PBT scales the value or, sometimes, draws a new one)."""
    from ray import tune

    out = {}
    for name in mutable(spec):
        d = spec.space[name]
        kind, v = kind_of(d), d[kind_of(d)]
        out[name] = list(v) if kind == "choice" else (tune.loguniform(*v) if kind == "loguniform" else tune.uniform(*v))
    return out


class KeepInSpace:
    """PBT's custom explore step: a perturbed number put back inside its range. A class, not a
    closure: Tune pickles the scheduler into its snapshots."""

    def __init__(self, space: dict):
        self.space = space

    def __call__(self, config: dict) -> dict:
        for name, d in self.space.items():
            kind = kind_of(d)
            if config.get(name) is not None and kind in ("loguniform", "uniform", "int"):
                lo, hi = d[kind]
                config[name] = min(max(config[name], lo), hi)
        return config


def first_configs(spec: SweepSpec) -> list[dict]:
    """The population: the baseline (when baseline_first), the YAML's points, then random
    draws, `spec.trials` full configs in all. A point's unset values are drawn too."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    for point in ([baseline_point(spec)] if spec.baseline_first else []) + list(spec.points):
        study.enqueue_trial(point)
    configs = []
    for _ in range(spec.trials):
        trial = study.ask()
        configs.append(sample(trial, spec.space))
        study.tell(trial, 0.0)
    return configs


def make_pbt(spec: SweepSpec):
    from ray.tune.schedulers import PopulationBasedTraining

    return PopulationBasedTraining(
        time_attr="training_iteration", metric=spec.metric, mode=spec.mode,
        perturbation_interval=spec.scheduler.perturbation_interval, hyperparam_mutations=mutations(spec),
        custom_explore_fn=KeepInSpace(spec.space), quantile_fraction=0.25, resample_probability=0.25)


def make_search(spec: SweepSpec):
    """Tune's plain variant generator, handing out the population in order. Each member names
    every searched parameter, None where a `when` leaves it out (the trial then takes the
    shared config's value), so the generator draws nothing itself."""
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=[{**dict.fromkeys(spec.space), **c} for c in first_configs(spec)])


def param_space(spec: SweepSpec) -> dict:
    """Tune's param_space for PBT: every searched name, as a placeholder the population fills."""
    return dict.fromkeys(spec.space)
