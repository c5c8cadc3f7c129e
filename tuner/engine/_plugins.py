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
# Multivariate TPE was measured against independent TPE (`python -m bench efficiency_sweep`,
# README "Benchmarks"): independent led on the digits MLP (21 of 30 seeds, +0.0026 val_loss,
# 95 % interval -0.0008 to +0.0059) and trailed on Branin, Hartmann-6 (30 seeds each), the
# digits CNN and GBM (6 seeds each), every interval including zero: four problems to one, so
# multivariate stays.
_SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "tpe": {"multivariate": True, "group": True, "constant_liar": True},
}
# The default pruner (spec.py) is asha, Optuna's SuccessiveHalvingPruner with its own defaults
# (min_resource "auto": 1/100 of the first finished trial's last step, so it suits any step
# scale; reduction_factor 4: a trial goes on past steps 1, 4, 16, ... only while in the top
# quarter of those that reached that step). It replaced median (n_startup_trials 5,
# n_warmup_steps 1, which, with steps from 1, prunes from the first step like Optuna's own
# MedianPruner) after `python -m bench efficiency` (bench/README.md): with the default TPE on
# the multi-fidelity Branin (optimum 0.398) and Hartmann-6 (optimum -3.32), the mean best value
# at the full budget went from 1.03 to 0.58 and from -2.96 to -3.10 over seeds 0-9, and from
# 0.53 to 0.46 and -2.88 to -3.09 over seeds 10-19; at a quarter of the budget from 11.4 to 4.8
# and -1.54 to -2.48 (seeds 0-9). TPE with median pruning is what plain Optuna's defaults do,
# so the old default could not beat them; hyperband and asha with reduction_factor 3 came
# between the two. Later replays (`python -m bench efficiency_sweep`, README "Benchmarks"):
# TPE with 5 start-up trials and/or reduction_factor 3 lost on the digits CNN; on the digits MLP
# no setting of any sampler or pruner separated from these defaults over 20 seeds (every paired
# 95 % interval includes zero), so these defaults stayed.
_PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"min_resource": "auto", "reduction_factor": 4},
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


def trial_seed(seed: int | None, number: int) -> int | None:
    """The sampler seed for one trial: a function of the study seed and the trial number.

    Samplers run in the trial's worker with a fresh instance per trial (their state lives in
    the storage), so seeding by trial number keeps "same seed, same trials" true whatever
    worker runs which trial.
    """
    return None if seed is None else (seed * 1_000_003 + number) % 2**32


def make_sampler(name: str, args: dict[str, Any], *, seed: int | None, space: Any) -> "optuna.samplers.BaseSampler":
    """The Optuna sampler ``name`` with tuner's defaults, ``args`` and ``seed``."""
    import warnings

    import optuna

    cls = _sampler_classes()[name]
    kwargs = {**_SAMPLER_DEFAULTS.get(name, {}), **args}
    if name == "grid":
        kwargs["space"] = space
    params = inspect.signature(cls).parameters
    if "seed" in params:
        kwargs["seed"] = seed
    if name == "cmaes":
        # Conditional/categorical parameters fall back to an independent sampler; keep it seeded.
        kwargs.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=seed))
        kwargs.setdefault("warn_independent_sampling", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**kwargs)


def make_pruner(name: str, args: dict[str, Any]) -> "optuna.pruners.BasePruner":
    """The Optuna pruner ``name`` (the same configuration on the driver and in workers)."""
    cls = _pruner_classes()[name]
    return cls(**{**_PRUNER_DEFAULTS.get(name, {}), **args})


# Argument annotations whose every part names one of these can be checked against a YAML value.
_ARG_TYPES: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 2**53,
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= 1e300,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
}


def _arg_type_problem(cls: Callable[..., Any], args: dict[str, Any]) -> tuple[str, str] | None:
    """(arg, expected) for the first argument whose value does not fit its annotation.

    Optuna's constructors store most arguments unchecked (``n_startup_trials: abc`` would only
    fail inside every trial), so plain annotations (int, float, bool, str, None) are checked here.
    """
    params = inspect.signature(cls).parameters
    for arg, value in args.items():
        annotation = params[arg].annotation if arg in params else inspect.Parameter.empty
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        parts = [t.strip() for t in text.split("|")]
        if text and all(t in _ARG_TYPES for t in parts) and not any(_ARG_TYPES[t](value) for t in parts):
            return str(arg), " or ".join({"int": "an integer", "float": "a number", "bool": "true or false",
                                          "str": "a string", "None": "null"}[t] for t in parts)
    return None


def check_plugins(spec: "StudySpec") -> None:
    """Check argument types and build the sampler and pruner once, so that a bad value fails before any trial."""
    from tuner.exceptions import SpecError

    for kind, classes, name, args in (("sampler", _sampler_classes, spec.sampler, spec.sampler_args),
                                      ("pruner", _pruner_classes, spec.pruner, spec.pruner_args)):
        bad = _arg_type_problem(classes()[name], args)
        if bad:
            raise SpecError(spec.source, f"{kind}.args.{bad[0]}", f"{name} expects {bad[1]}, got {args[bad[0]]!r}"[:200],
                            f"give {bad[0]} as {bad[1]}")
    for kind, build in (("sampler", lambda: make_sampler(spec.sampler, spec.sampler_args, seed=spec.seed,
                                                          space=spec.search_space)),
                        ("pruner", lambda: make_pruner(spec.pruner, spec.pruner_args))):
        if kind == "sampler" and spec.sampler == "grid":
            continue  # takes no arguments; spec validation already built the space's grid
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise SpecError(spec.source, f"{kind}.args", f"{getattr(spec, kind)} rejected its arguments: {exc}",
                            "check the values against Optuna's documentation") from None
