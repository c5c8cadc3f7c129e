"""Spec names of samplers and pruners mapped to Optuna objects.

Kept apart from the driver so that spec validation can check ``args`` against the real
constructor signatures without importing Ray.
"""

from __future__ import annotations

import inspect
import math
import zlib
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import optuna

    from tuner.space import SearchSpace
    from tuner.spec import StudySpec


def _sampler_classes() -> dict[str, Callable[..., Any]]:
    import optuna

    from tuner.engine._cmaes import CmaEsSampler
    from tuner.engine._grid import SpaceGridSampler
    from tuner.engine._qmc import QMCSampler
    from tuner.engine._tpe import TPESampler

    return {
        "tpe": TPESampler,
        "random": optuna.samplers.RandomSampler,
        "grid": SpaceGridSampler,
        "cmaes": CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "qmc": QMCSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }


def _pruner_classes() -> dict[str, Callable[..., Any]]:
    import optuna

    from tuner.engine._pruners import HyperbandPruner, SuccessiveHalvingPruner

    return {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "asha": SuccessiveHalvingPruner,
        "hyperband": HyperbandPruner,
    }


# Arguments tuner sets itself; a user may override the defaults but not these.
_RESERVED = {"seed", "search_space", "space", "self"}

# tuner's defaults, chosen for studies of tens to hundreds of trials with conditional spaces,
# from `python -m bench efficiency` and `python -m bench efficiency_sweep` (`bench/HISTORY.md`).
# Two presets, picked by the search space, because the measurements split along it:
#
# * A space of numbers only (Branin, Hartmann-6, the GBM): multivariate, grouped TPE + ASHA with
#   reduction_factor 4. Multivariate TPE is ahead of independent TPE on the mean on all three
#   (30, 30 and 6 seeds; within noise each), and clearly ahead of the other preset on Hartmann-6
#   (-3.082 vs -2.964, paired interval excluding zero); on Branin and Hartmann-6 reduction factors 2
#   and 3 and a first rung at step 4 did not beat 4 (30 seeds: within noise, or behind).
# * A space with a categorical choice (the digits MLP and CNN: optimizer, activation, batch size,
#   batch norm): independent TPE + ASHA with reduction_factor 3 (since 2026-12-05 with 4 EI
#   candidates and every second trial multivariate, below). On the MLP this led the
#   numbers-only preset on 22 of 30 seeds (val_loss 0.0286 vs 0.0324, paired 95 % interval
#   +0.0016 to +0.0062); on the CNN it led on the mean (0.0175 vs 0.0203, 10 seeds, within
#   noise). These are neural-network trainings whose values carry seed noise as large as the
#   differences between good configurations (one MLP configuration re-run with 5 seeds: sd
#   0.004-0.010). Multivariate TPE keeps sampling near a few best trials, lucky ones included;
#   independent TPE mixes the good values of each parameter, and reduction factor 3 keeps a
#   third at each rung instead of a quarter, so a ranking made at epoch 1 decides less.
#   The categorical choice is the trait visible before any trial runs, not the cause: a
#   numbers-only but noisy objective gets the first preset; name the arguments to change it.
#   Not settled: on the CNN plain Optuna (multivariate TPE + median) leads this preset on the
#   mean (0.0156 vs 0.0175 over 60 seeds, 2026-12-04; the paired interval, -0.0040 to +0.0002,
#   just includes zero), by less on the median (0.0158 vs 0.0162): the preset ends above 0.025
#   on 7 of 60 seeds, Optuna on 1. On the MLP the preset leads it on the mean (0.0298 vs 0.0311, 30
#   seeds, within noise); no setting measured leads on both. Measured against this preset on
#   both (2026-12-04, `bench/HISTORY.md`), all within noise: 3 or 5 start-up trials instead of
#   10, median from epoch 1 instead of ASHA; on the MLP also 7 and 20 start-up trials, ASHA 2,
#   a first rung at epoch 2, Hyperband, and TPE's consider_endpoints and prior_weight (both
#   deprecated since Optuna 4.9, so never defaults); multivariate TPE trailed there in all six
#   forms tried (on the mean), and its best (ASHA 3, max_rungs 1) is level with plain Optuna on both
#   problems, so it would trade the MLP's lead for the CNN's gap. Drawing every third trial at
#   random after the tenth (SMAC's interleaving, 2026-12-05) is level with both too: it rescues
#   a few of the CNN's tail seeds and costs the MLP's mean a little.
#   Sampling every second trial with multivariate TPE (`alternate: 2`, tuner/engine/_tpe.py;
#   2026-12-05: MLP 0.0310, CNN 0.0160) lands between the two models on both problems.
#   What does lead (2026-12-05, seeds 0-29 and 0-39, `bench/HISTORY.md`): that, plus 4 EI
#   candidates instead of 24 (MLP 0.0274, ahead of plain Optuna on 20/30 seeds, +0.0037, interval
#   +0.0003 to +0.0071; CNN 0.0154, 20/40, -0.0007, within noise; the old preset: 0.0298 and
#   0.0172). Why: the CNN's tail seeds were TPE locking onto a poor value of a two-valued
#   parameter (1 convolution instead of 2) after start-up: with 24 candidates TPE almost always
#   picks the value its few best trials share; with 4 it samples closer to its model of the good
#   trials, so the other value keeps coming up. Fewer candidates alone gave MLP 0.0282 and
#   CNN 0.0164; the two together, the best means of all settings measured on both problems.
#   Checked since on seeds no choice had seen (MLP 100-159, CNN 100-159 and 200-259) and against
#   13 more settings (`bench/HISTORY.md`): ahead of plain Optuna on the MLP beyond noise (0.0287
#   vs 0.0325), level with it on the CNN over all 180 seeds run, a gap below what the benchmark
#   resolves (plain Optuna re-seeded per trial, the same algorithm, ended 0.0027 behind itself).
#
# Arguments a user gives override a preset's one by one, except that naming the TPE model
# (`multivariate`, or `group: true`) drops the sampler's preset as a whole: its candidates and
# alternation were measured with independent TPE only (and `group: true` alone must keep
# multivariate on, since Optuna refuses group without it).
#
# cmaes: Optuna's CmaEsSampler moves only when a whole population of trials has finished and, by
# default, counts completed ones only, which under ASHA fill a population two or three times a
# run. With consider_pruned_trials a pruned trial counts with its last value (tuner's subclass
# ranks a NaN there last, tuner/engine/_cmaes.py). On spaces of numbers only that leads
# (`efficiency_sweep`, cmaes / asha with and without it, 2026-12-06, `bench/HISTORY.md`): Branin
# 0.684 against 1.101 (25/30 seeds better, interval excluding zero), Hartmann-6 -3.072 against
# -2.702 (27/30, excluding zero), digits GBM 0.9719 against 0.9710 (7/10, within noise). On the
# digits MLP, whose categorical choices CMA-ES draws at random, it trails: 0.0324 against 0.0292
# (7/20, interval excluding zero). So it is on for numbers-only spaces and off otherwise.
_SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "tpe": {"multivariate": True, "group": True, "constant_liar": True},
    "cmaes": {"consider_pruned_trials": True},
}
_CATEGORICAL_SPACE_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("sampler", "tpe"): {"multivariate": False, "group": False, "n_ei_candidates": 4, "alternate": 2},
    ("sampler", "cmaes"): {"consider_pruned_trials": False},
    ("pruner", "asha"): {"reduction_factor": 3},
}
# The default pruner (spec.py) is asha: Optuna's SuccessiveHalvingPruner, in tuner's variant that
# never prunes a trial at its final step (tuner/engine/_pruners.py says why; min_resource "auto":
# 1/100 of the first finished trial's last step, so it suits any step scale; reduction_factor
# 4: a trial goes on past steps 1, 4, 16, ... only while in the top quarter of those that
# reached that step). It replaced median (n_startup_trials 5, n_warmup_steps 1, which, with
# steps from 1, prunes from the first step like Optuna's own MedianPruner): with TPE on the
# multi-fidelity Branin (optimum 0.398) and Hartmann-6 (optimum -3.32), the mean best value at
# the full budget went from 1.03 to 0.58 and from -2.96 to -3.10 over seeds 0-9, and from 0.53
# to 0.46 and -2.88 to -3.09 over seeds 10-19. Independent TPE + median led on the digits CNN
# (10 seeds, within noise) but trailed far on Branin and Hartmann-6 (30 seeds, intervals excluding
# zero), so median is not a default for either preset. (Plain Optuna 5.0 is multivariate TPE +
# median: its TPESampler's multivariate=None means True for one objective.)
_PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"min_resource": "auto", "reduction_factor": 4},
    "median": {"n_startup_trials": 5, "n_warmup_steps": 1},
    "percentile": {"percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 1},
    "hyperband": {"min_resource": 1},
}


# The default pruner follows the sampler for `gp`: Optuna's GPSampler fits its Gaussian process
# to completed trials only (and draws at random until it has 10), while ASHA completes few, so
# under ASHA most of gp's trials are start-up draws. Without a pruner every trial completes and
# every one after the tenth is the GP's. `efficiency_sweep`, 2026-12-06 (`bench/HISTORY.md`):
# gp / none against gp / asha, Branin (25 full trials' budget, 30 seeds) 0.520 against 1.099
# (26/30 seeds better, interval excluding zero; optimum 0.398, tpe / asha 0.464), Hartmann-6 (50,
# 30 seeds) -3.117 against -2.306 (29/30; optimum -3.322, tpe / asha -3.126), digits MLP (20
# seeds) 0.0365 against 0.0407 and GBM (10 seeds) 0.9724 against 0.9703 (13/20 and 7/10, within
# noise); gp / median (from step 1) trails gp / none on both synthetic ones. cmaes keeps asha:
# cmaes / asha led cmaes / none on Branin and Hartmann-6 (1.10 against 2.76, -2.70 against -2.45).
_SAMPLER_PRUNERS: dict[str, str] = {"gp": "none"}


def default_pruner(sampler: str) -> str:
    """The pruner a study gets when its spec names none: ``asha``, or what suits ``sampler``."""
    return _SAMPLER_PRUNERS.get(sampler, "asha")


def space_preset(kind: str, name: str, args: dict[str, Any], space: Any) -> dict[str, Any]:
    """The space-dependent defaults that apply to this sampler/pruner (empty when none do)."""
    preset = _CATEGORICAL_SPACE_DEFAULTS.get((kind, name), {})
    if not preset or space is None or not space.has_categorical() or _names_the_tpe_model(kind, name, args):
        return {}
    return {k: v for k, v in preset.items() if k not in args}


def _names_the_tpe_model(kind: str, name: str, args: dict[str, Any]) -> bool:
    # Drops the TPE preset as a whole; group: false does not (the preset has it, and it does not
    # ask for multivariate TPE).
    return kind == "sampler" and name == "tpe" and ("multivariate" in args or bool(args.get("group")))


def resolved_args(kind: str, name: str, args: dict[str, Any], space: Any) -> dict[str, Any]:
    """The constructor arguments tuner passes: its defaults, the space's preset, then ``args``."""
    base = (_SAMPLER_DEFAULTS if kind == "sampler" else _PRUNER_DEFAULTS).get(name, {})
    resolved = {**base, **space_preset(kind, name, args, space), **args}
    if kind == "sampler" and name == "tpe" and resolved.get("multivariate") is False and "group" not in args:
        resolved["group"] = False  # tuner's default group goes with multivariate: Optuna refuses it alone
    return resolved


def describe_plugin(kind: str, name: str, args: dict[str, Any], space: Any) -> str:
    """``name``, plus what the space's preset changed and what TPE's ``alternate`` mixes in (for
    the run header and ``validate``)."""
    preset = space_preset(kind, name, args, space)
    notes = []
    tpe = kind == "sampler" and name == "tpe"
    if preset:
        changed = _tpe_preset_words(preset) if tpe else [f"{k} {v}" for k, v in preset.items()]
        notes.append(f"{', '.join(changed)}: the space has categorical parameters")
    elif space is not None and not space.has_categorical():
        own = _NUMBERS_ONLY_WORDS.get((kind, name))
        if own and not set(own[0]) & set(args):
            notes.append(f"{own[1]}: the space holds numbers only")
    every = args.get("alternate") if tpe else None
    if every:
        own = resolved_args(kind, name, args, space).get("multivariate")
        notes.append(f"every {_ordinal(every)} trial {'independent' if own is None or own else 'multivariate'}")
    return f"{name} ({'; '.join(notes)})" if notes else name


# tuner's own defaults where they differ from Optuna's and no categorical preset replaces them, in
# the header's words (with the arguments that, when given, take their place).
_NUMBERS_ONLY_WORDS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("sampler", "tpe"): (("multivariate", "group"), "multivariate, grouped"),
    ("sampler", "cmaes"): (("consider_pruned_trials",), "counts pruned trials"),
    ("pruner", "asha"): (("reduction_factor",), f"reduction_factor {_PRUNER_DEFAULTS['asha']['reduction_factor']}"),
}


def _tpe_preset_words(preset: dict[str, Any]) -> list[str]:
    # The TPE preset in a user's words (its multivariate/group pair reads as "independent").
    words = ["independent"] if "multivariate" in preset else []
    if "n_ei_candidates" in preset:
        words.append(f"{preset['n_ei_candidates']} EI candidates")
    if preset.get("alternate"):
        words.append(f"every {_ordinal(preset['alternate'])} trial multivariate")
    return words


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def allowed_args(kind: str, name: str) -> list[str]:
    """Constructor arguments a user may pass for this sampler/pruner."""
    classes = _sampler_classes() if kind == "sampler" else _pruner_classes()
    params = inspect.signature(classes[name]).parameters
    return sorted(p for p in params if p not in _RESERVED and params[p].kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))


#: Tells the sampler's seed sequence apart from any other one derived from (seed, number).
_SAMPLER_STREAM = 0x5A4D


def training_seed(seed: int | None, number: int) -> int:
    """A trial's own seed, ``ctx.seed``: what the objective gives ``torch.manual_seed``.

    Distinct for every (study seed, trial number) pair a study can hold, and readable: trial
    7 of a study seeded 1 trains with seed 1000010. An unseeded study counts from 0.
    """
    return (seed if seed is not None else 0) * 1_000_003 + number


def qmc_study_seed(seed: int | None, study_name: str) -> int:
    """The seed shared by every trial's QMC sampler: the study's, or, for an unseeded study, one
    derived from its name (workers in other processes must agree on it without talking)."""
    return seed if seed is not None else zlib.crc32(study_name.encode())


def trial_seed(seed: int | None, number: int) -> int | None:
    """The sampler seed for one trial: a function of the study seed and the trial number.

    Samplers run in the trial's worker with a fresh instance per trial (their state lives in
    the storage), so seeding by trial number keeps "same seed, same trials" true whatever
    worker runs which trial. The number is hashed (NumPy's ``SeedSequence``) rather than used
    as is because the trial's own seed, ``ctx.seed``, is ``seed * 1_000_003 + number``
    (:func:`training_seed`): with that integer the sampler's ``RandomState`` and
    ``torch.manual_seed(ctx.seed)`` are the same Mersenne Twister stream, so a trial's
    parameters and its weight init and batch order would be drawn from the same numbers.
    """
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, number, _SAMPLER_STREAM]).generate_state(1)[0])


def plugins_text(spec: "StudySpec") -> str:
    """``sampler X, pruner Y`` as a run would build them, naming what the space's preset changed,
    then the spec's notes (``; note: ...``, :attr:`StudySpec.notes`).

    The notes ride here because this text ends both ``validate``'s line and the run's first
    line: what validation adjusted is then said wherever the spec is shown.
    """
    pruner = describe_plugin('pruner', spec.pruner, spec.pruner_args, spec.search_space)
    if spec.sampler in _SAMPLER_PRUNERS and "pruner" not in spec.raw and not spec.is_multi_objective:
        pruner += f" ({spec.sampler}'s default: it models completed trials only)"
    sampler = describe_plugin('sampler', spec.sampler, spec.sampler_args, spec.search_space)
    if spec.sampler == "nsga2":
        sampler += _nsga2_note(spec)
    return f"sampler {sampler}, pruner {pruner}" + "".join(f"; note: {note}" for note in spec.notes)


def _nsga2_note(spec: "StudySpec") -> str:
    # NSGA-II breeds only once a whole generation has completed; until then it draws at random
    # (pruned trials never count), which a study shorter than a generation never gets past.
    default = inspect.signature(_sampler_classes()["nsga2"]).parameters["population_size"].default
    population = spec.sampler_args.get("population_size", default)
    if not isinstance(population, int):
        return ""
    if spec.n_trials <= population:
        return (f" (a generation is {population} completed trials, so all {spec.n_trials} trials are random draws: "
                f"set sampler.args.population_size to {max(2, spec.n_trials // 5)} or use tpe)")
    if spec.pruner != "none":
        return f" (breeds once {population} trials have completed; pruned trials do not count)"
    return ""


def make_sampler(name: str, args: dict[str, Any], *, seed: int | None, space: Any,
                 study_seed: int | None = None) -> "optuna.samplers.BaseSampler":
    """The Optuna sampler ``name`` with tuner's defaults, ``args`` and ``seed`` (the trial's).

    ``study_seed`` (:func:`qmc_study_seed`): the seed every trial's sampler of the study shares,
    for the one sampler whose sequence must be the same in all of them (``qmc``, scrambled).
    """
    import warnings

    import optuna

    cls = _sampler_classes()[name]
    kwargs = resolved_args("sampler", name, args, space)
    if name == "grid":
        kwargs["space"] = space
    params = inspect.signature(cls).parameters
    if "seed" in params:
        kwargs["seed"] = seed
    if name == "cmaes":
        # Conditional/categorical parameters fall back to an independent sampler; keep it seeded.
        kwargs.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=seed))
        kwargs.setdefault("warn_independent_sampling", False)
    if name == "qmc":
        # A scrambled Sobol or Halton sequence is one sequence only if every trial's sampler
        # scrambles it with the same seed (Optuna's docs: "all the samplers must share the same
        # seed"); the point of trial k is the sequence's k-th. With the trial's own seed each
        # trial drew from a different scramble: points without the low discrepancy QMC is for.
        # The independent sampler (first trial, conditional parameters) keeps the trial's seed,
        # or every trial would draw the same values there.
        kwargs["seed"] = study_seed if study_seed is not None else seed
        kwargs.setdefault("independent_sampler", optuna.samplers.RandomSampler(seed=seed))
    if name in ("qmc", "gp") and "warn_independent_sampling" in params:
        # Optuna warns once per conditional param per trial that it draws it at random (37 of a
        # 12-trial run's 51 lines); validate's line says which sampler runs, as for cmaes above.
        kwargs.setdefault("warn_independent_sampling", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = cls(**kwargs)
    if name == "qmc" and space is not None:
        sampler.space_distributions = space.distributions_in_every_trial()  # trial k: the k-th point
    return sampler


def make_pruner(name: str, args: dict[str, Any], *, space: Any) -> "optuna.pruners.BasePruner":
    """The Optuna pruner ``name`` (the same configuration on the driver and in workers)."""
    cls = _pruner_classes()[name]
    return cls(**resolved_args("pruner", name, args, space))


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
        if any(word in text for word in _PYTHON_OBJECTS) and value is not None:
            # A function or an Optuna object (TPE's gamma, a constraints_func): YAML gives a number
            # or a name, which the sampler stores and calls in every trial ('float' object is not callable).
            return str(arg), _A_PYTHON_OBJECT
        if text.startswith("dict[") and not isinstance(value, (dict, type(None))):
            return str(arg), "a mapping or null"
    return None


_A_PYTHON_OBJECT = "a Python function or object"
#: Words of an annotation that say the argument is a Python function or object (not YAML data).
_PYTHON_OBJECTS = ("Callable", "BaseSampler", "BaseMutation", "BaseCrossover", "FrozenTrial", "Study")


# The least value of each integer count argument of the samplers and pruners tuner offers.
# Optuna checks some of these in its constructors, with messages that do not name the spec's
# field; others it stores unchecked, and a bad value then fails inside every trial or is
# silently read as something else (Optuna 5.0): n_startup_trials -3 of TPE, GP and CMA-ES acts
# as 0; Hyperband's min_resource 0 and reduction_factor 1 raise ZeroDivisionError at the first
# report, and a max_resource below min_resource gives it no brackets, so it never prunes;
# CMA-ES's popsize below 2 fails an assertion when it first samples (inc_popsize is left out:
# Optuna no longer reads it). One table gives all of them the same one-line error, naming the
# field and the range, before anything runs. TPE's n_ei_candidates and alternate are left to its
# constructor, whose messages already name the argument and its least value.
_MIN_INT_ARGS: dict[tuple[str, str], dict[str, int]] = {
    ("sampler", "tpe"): {"n_startup_trials": 0},
    ("sampler", "cmaes"): {"n_startup_trials": 0, "popsize": 2},
    ("sampler", "gp"): {"n_startup_trials": 0},
    ("sampler", "nsga2"): {"population_size": 2},
    ("pruner", "median"): {"n_startup_trials": 0, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1},
    ("pruner", "percentile"): {"n_startup_trials": 0, "n_warmup_steps": 0, "interval_steps": 1, "n_min_trials": 1},
    ("pruner", "asha"): {"min_resource": 1, "reduction_factor": 2, "min_early_stopping_rate": 0,
                         "bootstrap_count": 0, "max_rungs": 1},
    ("pruner", "hyperband"): {"min_resource": 1, "max_resource": 1, "reduction_factor": 2, "bootstrap_count": 0},
}


def _arg_range_problem(kind: str, name: str, args: dict[str, Any]) -> tuple[str, str] | None:
    """(arg, allowed) for the first integer count argument below its least value (``_MIN_INT_ARGS``).

    Call after :func:`_arg_type_problem`: only integers are compared (``auto``, ``null`` and the
    like are the constructor's to judge).
    """
    for arg, low in _MIN_INT_ARGS.get((kind, name), {}).items():
        value = args.get(arg)
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            return arg, f"an integer >= {low}"
    if kind == "pruner" and name == "hyperband":
        # Its brackets are floor(log(max_resource / min_resource, reduction_factor)) + 1: none below.
        low = resolved_args(kind, name, args, None).get("min_resource")
        high = args.get("max_resource")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(high, bool) and high < low:
            return "max_resource", f"auto or an integer >= min_resource ({low})"
    return None


def _cmaes_arg_problem(args: dict[str, Any], space: "SearchSpace | None") -> tuple[str, str, str] | None:
    """(arg, problem, fix) for a CMA-ES argument Optuna 5.0 takes unchecked: ``x0`` off the space
    fails every trial on an AssertionError at its first CMA-ES draw ("Parameter configuration must
    contain all distributions", "invalid bounds"); a ``sigma0`` of 0 or below is clipped to 1e-8,
    a search that cannot move; ``restart_strategy`` and ``inc_popsize`` are ignored since Optuna 4.4,
    so an `ipop` asked for never happens."""
    for arg in ("restart_strategy", "inc_popsize"):
        if arg in args:
            return arg, f"Optuna ignores {arg} since 4.4 (restarts moved to OptunaHub)", f"leave {arg} out"
    sigma0 = args.get("sigma0")
    if _is_number(sigma0) and not (math.isfinite(sigma0) and sigma0 > 0):
        return "sigma0", f"sigma0 {sigma0!r} is not a positive step size", "use a number > 0 or leave sigma0 out"
    x0 = args.get("x0")
    if isinstance(x0, dict) and space is not None:
        ranges = space.ranges_in_every_trial()
        names = ", ".join(ranges) or "none"
        for key, value in x0.items():
            if key not in ranges:
                return (f"x0.{key}", f"{key!r} is not a number range every trial draws (those are: {names})"[:200],
                        "give x0 a value for each of those")
            dist = ranges[key]
            if isinstance(value, str) and _reads_as_number(value):
                return (f"x0.{key}", f"YAML reads {value} as text (a number needs a dot and a signed exponent)",
                        f"write {float(value)!r}" if "e" not in repr(float(value)) else
                        f"write {repr(float(value)).replace('e-', '.0e-').replace('e+', '.0e+')}")
            if not _is_number(value):
                return f"x0.{key}", f"{value!r} is not a number"[:200], "give a number in the range"
            if not dist.low <= value <= dist.high:
                return (f"x0.{key}", f"{value!r} is outside {key}'s range [{dist.low}, {dist.high}]"[:200],
                        "give a number in the range")
        missing = [name for name in ranges if name not in x0]
        if missing:
            return ("x0", f"x0 gives no value for {', '.join(missing)}"[:200],
                    f"give x0 a value for each of: {names}"[:200])
    return None


def _reads_as_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_plugins(spec: "StudySpec") -> None:
    """Check argument types and build the sampler and pruner once, so that a bad value fails before any trial."""
    from tuner.exceptions import SpecError

    for kind, classes, name, args in (("sampler", _sampler_classes, spec.sampler, spec.sampler_args),
                                      ("pruner", _pruner_classes, spec.pruner, spec.pruner_args)):
        bad = _arg_type_problem(classes()[name], args)
        if bad and bad[1] == _A_PYTHON_OBJECT:
            raise SpecError(spec.source, f"{kind}.args.{bad[0]}", f"{name}'s {bad[0]} takes {_A_PYTHON_OBJECT}, "
                            f"which a spec cannot give (got {args[bad[0]]!r})"[:200], f"leave {bad[0]} out")
        if bad:
            raise SpecError(spec.source, f"{kind}.args.{bad[0]}", f"{name} expects {bad[1]}, got {args[bad[0]]!r}"[:200],
                            f"give {bad[0]} as {bad[1]}")
        bad = _arg_range_problem(kind, name, args)
        if bad:
            raise SpecError(spec.source, f"{kind}.args.{bad[0]}",
                            f"{bad[0]} {args[bad[0]]!r} is out of range for {name}", f"use {bad[1]}")
        if kind == "sampler" and name == "cmaes" and (cmaes_bad := _cmaes_arg_problem(args, spec.search_space)):
            raise SpecError(spec.source, f"sampler.args.{cmaes_bad[0]}", cmaes_bad[1], cmaes_bad[2])
    for kind, build in (("sampler", lambda: make_sampler(spec.sampler, spec.sampler_args, seed=spec.seed,
                                                          space=spec.search_space,
                                                          study_seed=qmc_study_seed(spec.seed, spec.name))),
                        ("pruner", lambda: make_pruner(spec.pruner, spec.pruner_args, space=spec.search_space))):
        if kind == "sampler" and spec.sampler == "grid":
            continue  # takes no arguments; spec validation already built the space's grid
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise SpecError(spec.source, f"{kind}.args", f"{getattr(spec, kind)} rejected its arguments: {exc}",
                            "check the values against Optuna's documentation") from None
