"""Spec names of samplers and pruners mapped to Optuna objects.

Kept apart from the driver so that spec validation can check ``args`` against the real
constructor signatures without importing Ray.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import optuna

    from tuner.spec import StudySpec


def _sampler_classes() -> dict[str, Callable[..., Any]]:
    import optuna

    from tuner.engine._grid import SpaceGridSampler

    return {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "grid": SpaceGridSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "qmc": optuna.samplers.QMCSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }


def _pruner_classes() -> dict[str, Callable[..., Any]]:
    import optuna

    return {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "asha": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }


# Arguments tuner sets itself; a user may override the defaults but not these.
_RESERVED = {"seed", "search_space", "space", "self"}

# tuner's defaults, chosen for studies of tens to hundreds of trials with conditional spaces.
_SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "tpe": {"multivariate": True, "group": True, "constant_liar": True},
}
_PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
    "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 1},
    "hyperband": {"min_resource": 1},
}


def allowed_args(kind: str, name: str) -> list[str]:
    """Constructor arguments a user may pass for this sampler/pruner."""
    classes = _sampler_classes() if kind == "sampler" else _pruner_classes()
    params = inspect.signature(classes[name]).parameters
    return sorted(p for p in params if p not in _RESERVED and params[p].kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))


def make_sampler(spec: "StudySpec") -> "optuna.samplers.BaseSampler":
    """The Optuna sampler for a spec, seeded so the same seed gives the same trials."""
    import warnings

    import optuna

    cls = _sampler_classes()[spec.sampler]
    kwargs = {**_SAMPLER_DEFAULTS.get(spec.sampler, {}), **spec.sampler_args}
    if spec.sampler == "grid":
        kwargs["space"] = spec.search_space
    params = inspect.signature(cls).parameters
    if "seed" in params:
        kwargs["seed"] = spec.seed
    if spec.sampler == "cmaes":
        # Conditional/categorical parameters fall back to an independent sampler; keep it seeded.
        kwargs.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=spec.seed))
        kwargs.setdefault("warn_independent_sampling", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**kwargs)


def make_pruner(spec: "StudySpec") -> "optuna.pruners.BasePruner":
    """The Optuna pruner for a spec (the same object type on the driver and in workers)."""
    cls = _pruner_classes()[spec.pruner]
    kwargs = {**_PRUNER_DEFAULTS.get(spec.pruner, {}), **spec.pruner_args}
    return cls(**kwargs)
