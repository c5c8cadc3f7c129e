"""The contenders of ``python -m bench efficiency``, each run the way its documentation shows.

Every contender runs :class:`~bench.efficiency_problems.BenchObjective` (the problem behind the
step log) until the step log holds the problem's budget, then stops starting trials:

* ``random``: Optuna's ``RandomSampler`` and no pruner (``NopPruner``), in-process;
* ``optuna``: ``optuna.create_study(sampler=TPESampler(seed), pruner=MedianPruner())``, both
  with their defaults, and ``study.optimize`` in-process, as Optuna's tutorial shows;
* ``raytune``: ``tune.Tuner`` with a ``tune.uniform``/``tune.loguniform``/``tune.choice``
  ``param_space`` (random search, ``BasicVariantGenerator(random_state=seed)``) and
  ``ASHAScheduler(max_t=T)`` with its defaults (grace period 1, reduction factor 4), the
  metric sent each step with ``tune.report``, as Ray Tune's guides show;
* ``tuner`` (default and each sampler/pruner): ``tuner.run(spec, objective, storage=sqlite)``
  with real Ray workers and a fresh SQLite file; the spec names a sampler/pruner only when the
  contender is not tuner's default.

How each stops once the budget is spent differs by library (Optuna: ``study.stop()`` in a
callback; Ray Tune: a ``Stopper`` whose ``stop_all`` reads the log; tuner: the run's progress
hook, which sets the run's stop reason, the same path a ``timeout`` takes); what happened after
the budget is never counted (see :mod:`bench.efficiency_report`), so this only saves time.

The real problems run tuner's tasks, whose training loop stops a diverged training itself (a
NaN loss; :mod:`tuner.tasks._training`) by raising tuner's ``TrialPruned``: each contender
records that as its own library records a pruned trial, so all of them save the same epochs.
"""

from __future__ import annotations

import ast
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.efficiency_problems import PROBLEMS, QUICK, BenchObjective, Problem, StepLog
from tuner.engine._plugins import training_seed
from tuner.exceptions import TrialPruned

__all__ = ["Contender", "contender_named", "contenders", "init_ray", "parse_setting", "run_contender"]

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("none", "median", "percentile", "asha", "hyperband")
# Arguments the bench gives a sampler unless a setting names them. Optuna's QMCSampler is
# unscrambled by default: one fixed sequence whatever the seed, so its "mean over seeds" was not
# over independent replicates (only the pruner and the first, random, trial varied). Scrambled,
# tuner scrambles it with the study's seed (the same for every trial of a study).
_SAMPLER_PRESETS: dict[str, dict[str, Any]] = {"qmc": {"scramble": True}}


@dataclass(frozen=True)
class Contender:
    """One way of tuning: a library and, for tuner, the sampler/pruner named in the spec."""

    name: str
    library: str  # random | optuna | raytune | tuner
    sampler: str | None = None  # tuner only; None for both: the spec names neither (tuner's default)
    pruner: str | None = None
    sampler_args: tuple[tuple[str, Any], ...] = ()  # tuner only: the spec's sampler args (added to tuner's)
    pruner_args: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return {"random": "random search, no pruning", "optuna": "Optuna defaults (TPE + MedianPruner)",
                "raytune": "Ray Tune defaults (random + ASHA)"}.get(self.library, self._tuner_label())

    def _tuner_label(self) -> str:
        if self.sampler is None and self.pruner is None:
            return f"**tuner default** ({default_sampler()} + {default_pruner()})"
        def with_args(name: str | None, args: tuple[tuple[str, Any], ...]) -> str:
            return f"{name} ({', '.join(f'{k}={v}' for k, v in args)})" if args else str(name)

        return f"tuner {with_args(self.sampler, self.sampler_args)} + {with_args(self.pruner, self.pruner_args)}"


def default_sampler() -> str:
    from tuner.spec import StudySpec

    return StudySpec.__dataclass_fields__["sampler"].default  # type: ignore[return-value]


def default_pruner() -> str:
    from tuner.spec import StudySpec

    return StudySpec.__dataclass_fields__["pruner"].default  # type: ignore[return-value]


def contenders(grid: str = "oat") -> list[Contender]:
    """The contenders; tuner's samplers and pruners one at a time (``oat``) or all pairs (``full``).

    ``oat``: each sampler with tuner's default pruner, each pruner with tuner's default sampler,
    named explicitly in the spec (``tuner:SAMPLER/PRUNER``; a named sampler or pruner gets
    tuner's settings for it, so naming the defaults is the default and is not run twice).
    """
    out = [Contender("random", "random"), Contender("optuna", "optuna"), Contender("raytune", "raytune"),
           Contender("tuner", "tuner")]
    ds, dp = default_sampler(), default_pruner()
    if grid == "full":
        pairs = [(s, p) for s in SAMPLERS for p in PRUNERS]
    else:
        pairs = [(s, dp) for s in SAMPLERS] + [(ds, p) for p in PRUNERS]
    seen = {(ds, dp)}
    for s, p in pairs:
        if (s, p) not in seen:
            seen.add((s, p))
            out.append(Contender(f"tuner:{s}/{p}", "tuner", s, p, tuple(sorted(_SAMPLER_PRESETS.get(s, {}).items()))))
    return out


def parse_setting(text: str) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """``tpe:n_startup_trials=5/asha:reduction_factor=3`` -> (tpe, {...}, asha, {...}); ValueError if malformed."""

    def part(chunk: str) -> tuple[str, dict[str, Any]]:
        name, _, args = chunk.partition(":")
        out: dict[str, Any] = {}
        for item in filter(None, args.split(",")):
            key, _, value = item.partition("=")
            try:
                out[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                out[key.strip()] = value.strip()
        return name.strip(), out

    sampler, slash, pruner = text.partition("/")
    if not slash:
        raise ValueError(f"setting {text!r}: write SAMPLER[:ARG=VALUE,...]/PRUNER[:ARG=VALUE,...], e.g. tpe/asha")
    s, sargs = part(sampler)
    sargs = {**_SAMPLER_PRESETS.get(s, {}), **sargs}
    p, pargs = part(pruner)
    prune_on = pargs.pop("prune_on", "last")
    if prune_on not in ("last", "best"):
        raise ValueError(f"setting {text!r}: prune_on must be last or best")
    interleave = sargs.pop("interleave", None)  # a sweep option (efficiency_sweep.replay), not a sampler argument
    if interleave is not None and (not isinstance(interleave, int) or isinstance(interleave, bool) or interleave < 2):
        raise ValueError(f"setting {text!r}: interleave must be an integer of at least 2")
    # gamma=F (a sweep option too): TPE's good share, set by the replay on the sampler itself,
    # since Optuna 5 deprecates its gamma argument (a function of the trial count, not a share).
    gamma = sargs.pop("gamma", None)
    if gamma is not None and (s != "tpe" or isinstance(gamma, bool) or not isinstance(gamma, (int, float))
                              or not 0 < gamma < 1):
        raise ValueError(f"setting {text!r}: gamma is TPE's share of good trials: a number above 0 and "
                         "below 1 (Optuna's own is 0.1), for the tpe sampler")
    stream = sargs.pop("stream", "trial")
    if stream not in ("trial", "study"):
        raise ValueError(f"setting {text!r}: stream must be trial or study")
    # Build both once, so that an unknown name or argument fails here, not in the middle of a sweep.
    from tuner.engine._plugins import make_pruner, make_sampler

    try:
        if s != "grid":  # the grid sampler needs the problem's space; its name is checked below
            make_sampler(s, sargs, seed=0, space=None)
        make_pruner(p, pargs, space=None)
    except KeyError as exc:
        raise ValueError(f"setting {text!r}: unknown sampler or pruner {exc}") from None
    except TypeError as exc:
        # A value that is no Python literal is kept as text, and Optuna's comparison of it with a
        # number said only "'<' not supported between instances of 'str' and 'int'".
        words = [f"{k}={v}" for k, v in {**sargs, **pargs}.items() if isinstance(v, str)]
        if words:
            raise ValueError(f"setting {text!r}: {', '.join(words)}: the argument needs a number "
                             f"(e.g. {words[0].split('=')[0]}=3)") from None
        raise ValueError(f"setting {text!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"setting {text!r}: {exc}") from None
    if prune_on != "last":
        pargs["prune_on"] = prune_on
    if stream != "trial":
        sargs["stream"] = stream
    if interleave:
        sargs["interleave"] = interleave
    if gamma is not None:
        sargs["gamma"] = float(gamma)
    return s, sargs, p, pargs


def contender_named(name: str) -> Contender:
    """A tuner contender with arguments: ``tuner:SAMPLER[:ARG=V,...]/PRUNER[:ARG=V,...]``.

    For comparing settings of tuner's samplers and pruners (e.g. a candidate default) under the
    real ``tuner.run``; the arguments are the spec's ``sampler.args``/``pruner.args``. ValueError
    for a name that is none of these.
    """
    if not name.startswith("tuner:"):
        raise ValueError(f"unknown contender {name!r}; write random, optuna, raytune, tuner or "
                         "tuner:SAMPLER[:ARG=VALUE,...]/PRUNER[:ARG=VALUE,...]")
    sampler, sargs, pruner, pargs = parse_setting(name.removeprefix("tuner:"))
    sweep_only = sorted(set(sargs) & {"stream", "interleave", "gamma"} | set(pargs) & {"prune_on"})
    if sweep_only:
        raise ValueError(f"contender {name!r}: {', '.join(sweep_only)} is an option of efficiency_sweep's replay, "
                         "not of tuner.run; drop it here")
    return Contender(name, "tuner", sampler, pruner, tuple(sorted(sargs.items())), tuple(sorted(pargs.items())))


def init_ray(num_cpus: int) -> None:
    """One local Ray instance for every Ray-based run of this process (tuner joins it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    import tuner.engine._driver  # noqa: F401 - sets Tune's environment (no per-trial loggers) for both users

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")


def run_contender(contender: Contender, problem: Problem, *, seed: int, quick: bool, concurrency: int,
                  workdir: Path) -> dict[str, Any]:
    """Run one contender on one problem until the budget is spent; returns timings and the log path."""
    log_path = workdir / "steps.jsonl"
    objective = BenchObjective(problem.name, quick, str(log_path), seed)
    start = time.time()
    runner = {"random": _run_optuna, "optuna": _run_optuna, "raytune": _run_raytune, "tuner": _run_tuner}
    info = runner[contender.library](contender, problem, objective, seed=seed, concurrency=concurrency,
                                     workdir=workdir) or {}
    return {"start": start, "end": time.time(), "log": str(log_path), **info}


# ---- Optuna (random search and Optuna's defaults) --------------------------------------------------


class _OptunaContext:
    """``ctx`` for an objective under plain Optuna: report and prune through the ``optuna.Trial``."""

    def __init__(self, trial: Any, problem: Problem, seed: int, trial_dir: Path, prune_on: str = "last") -> None:
        self._trial = trial
        self._prune_on = prune_on
        self._best: float | None = None
        self.metric, self.direction = problem.metric, problem.direction
        self.metrics, self.directions = (problem.metric,), (problem.direction,)
        self.seed = training_seed(seed, trial.number)
        self.trial_dir = trial_dir
        self.device = "cpu"
        self.num_threads = 1

    def report(self, step: int, value: float | Mapping[str, float]) -> None:
        import optuna

        v = float(value[self.metric]) if isinstance(value, Mapping) else float(value)
        if self._prune_on == "best" and not math.isnan(v):
            better = min if self.direction == "minimize" else max
            self._best = v if self._best is None else better(self._best, v)
            v = self._best
        self._trial.report(v, step)
        if self._trial.should_prune():
            raise optuna.TrialPruned()

    def set_attr(self, key: str, value: Any) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


def _run_optuna(contender: Contender, problem: Problem, objective: BenchObjective, *, seed: int, concurrency: int,
                workdir: Path) -> dict[str, Any]:
    import optuna

    from tuner.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = SearchSpace.from_mapping(problem.space, source=f"bench:{problem.name}")
    if contender.library == "random":
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    else:
        sampler, pruner = optuna.samplers.TPESampler(seed=seed), optuna.pruners.MedianPruner()
    study = optuna.create_study(direction=problem.direction, sampler=sampler, pruner=pruner)
    log = StepLog(objective.log_path)

    def fn(trial: optuna.Trial) -> float:
        # space.suggest issues the same suggest_float/int/categorical calls a hand-written objective would.
        params = space.suggest(trial)
        try:
            result = objective(params, _OptunaContext(trial, problem, seed, workdir / f"trial_{trial.number:05d}"))
        except TrialPruned:  # the task's own stop (a diverged training): pruned, as Optuna's FAQ advises
            raise optuna.TrialPruned() from None
        return float(result[problem.metric]) if isinstance(result, Mapping) else float(result)

    def stop_at_budget(study: optuna.Study, _trial: Any) -> None:
        if log.steps() >= problem.budget:
            study.stop()

    study.optimize(fn, n_trials=problem.budget, n_jobs=concurrency, callbacks=[stop_at_budget],
                   catch=(Exception,), gc_after_trial=False)
    return {"n_trials": len(study.trials)}


# ---- Ray Tune -----------------------------------------------------------------------------------------


def tune_param_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """A flat tuner space as Ray Tune's ``param_space`` (the same distributions, written Tune's way)."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, dim in space["params"].items():
        if not isinstance(dim, Mapping):
            out[name] = dim  # a fixed value
        elif "float" in dim:
            low, high = dim["float"]
            out[name] = tune.loguniform(low, high) if dim.get("log") else tune.uniform(low, high)
        elif "int" in dim:
            low, high = dim["int"]  # inclusive in tuner, exclusive upper bound in Tune
            out[name] = tune.lograndint(low, high + 1) if dim.get("log") else tune.randint(low, high + 1)
        elif "choice" in dim:
            out[name] = tune.choice(list(dim["choice"]))
        else:
            raise ValueError(f"{name}: {dim} has no Ray Tune equivalent here")
    return out


class _TuneContext:
    """``ctx`` for an objective under Ray Tune: every step goes to ``tune.report``; ASHA decides."""

    def __init__(self, problem: Problem, seed: int, trial_dir: Path) -> None:
        self.metric, self.direction = problem.metric, problem.direction
        self.metrics, self.directions = (problem.metric,), (problem.direction,)
        self.seed = seed
        self.trial_dir = trial_dir
        self.device = "cpu"
        self.num_threads = 1

    def report(self, step: int, value: float | Mapping[str, float]) -> None:
        from ray import tune

        v = float(value[self.metric]) if isinstance(value, Mapping) else float(value)
        tune.report({self.metric: v, "step": int(step)})

    def set_attr(self, key: str, value: Any) -> None:
        pass

    def warn(self, text: str) -> None:
        pass


def _tune_trainable(config: dict[str, Any], objective: BenchObjective | None = None, workdir: str = "") -> None:
    """Ray Tune function trainable: one trial of the objective, reporting each step."""
    assert objective is not None
    from ray import tune

    problem = (QUICK if objective.quick else PROBLEMS)[objective.problem]
    # The trial's index (Tune's trial ids end in it: BasicVariantGenerator's "<prefix>_00007") seeds
    # its training, as the trial number does under the other contenders: reproducible runs, and
    # the same initialisation for the same trial index everywhere.
    index = int(re.search(r"(\d+)$", tune.get_context().get_trial_id()).group(1))  # type: ignore[union-attr]
    try:
        ctx = _TuneContext(problem, training_seed(objective.seed, index), Path(workdir) / f"trial_{index:05d}")
        objective(dict(config), ctx)
    except TrialPruned:  # the task's own stop (a diverged training): the trial ends with what it reported
        pass


def _budget_stopper(log: StepLog, budget: int) -> Any:
    from ray import tune

    class _BudgetStopper(tune.Stopper):
        """Stops the experiment once the step log holds the budget."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return log.steps() >= budget

    return _BudgetStopper()


def _run_raytune(contender: Contender, problem: Problem, objective: BenchObjective, *, seed: int, concurrency: int,
                 workdir: Path) -> dict[str, Any]:
    import logging

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    trainable = tune.with_parameters(_tune_trainable, objective=objective, workdir=str(workdir / "trials"))
    tuner = tune.Tuner(
        trainable,
        param_space=tune_param_space(problem.space),
        tune_config=tune.TuneConfig(
            metric=problem.metric, mode="max" if problem.direction == "maximize" else "min",
            scheduler=ASHAScheduler(max_t=problem.steps),
            search_alg=BasicVariantGenerator(random_state=seed),
            num_samples=problem.budget, max_concurrent_trials=concurrency,
            # Not a default, but it changes only the time per trial (the same trials run in the
            # same order): without it every trial starts a new worker process.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray"), name="run", verbose=0,
                                  stop=_budget_stopper(StepLog(objective.log_path), problem.budget),
                                  log_to_file=False),
    )
    results = tuner.fit()
    return {"n_trials": len(results), "errors": len(results.errors)}


# ---- tuner ----------------------------------------------------------------------------------------------


def _budget_progress(log: StepLog, budget: int) -> Any:
    from tuner.engine._progress import Progress

    class _BudgetProgress(Progress):
        """tuner's progress hook, told of every finished trial: stops the run once the budget is spent.

        Setting the run's stop reason is what a spec ``timeout`` does when it expires: no new
        trial starts and the run ends when the running ones have finished.
        """

        def trial_done(self, number: int, state_name: str, values: Any, state: Any, **kw: Any) -> None:
            super().trial_done(number, state_name, values, state, **kw)
            if state.stop_reason is None and log.steps() >= budget:
                state.stop_reason = "budget"

    return _BudgetProgress(quiet=True)


def tuner_spec(contender: Contender, problem: Problem, *, seed: int, concurrency: int) -> dict[str, Any]:
    """The study spec a tuner contender runs: sampler/pruner only when the contender names them."""
    spec: dict[str, Any] = {
        "version": 1, "name": f"efficiency-{problem.name}-s{seed}",
        "objective": "bench.efficiency_problems:BenchObjective",  # replaced by the instance passed to run()
        "search_space": problem.space, "metric": problem.metric, "direction": problem.direction,
        "n_trials": problem.budget,  # an upper bound: every trial spends at least one step
        "concurrency": concurrency, "resources": {"cpus": 1}, "seed": seed, "max_failures": 1_000,
    }
    if contender.sampler is not None:
        spec["sampler"] = ({"name": contender.sampler, "args": dict(contender.sampler_args)}
                           if contender.sampler_args else contender.sampler)
    if contender.pruner is not None:
        spec["pruner"] = ({"name": contender.pruner, "args": dict(contender.pruner_args)}
                          if contender.pruner_args else contender.pruner)
    return spec


def _run_tuner(contender: Contender, problem: Problem, objective: BenchObjective, *, seed: int, concurrency: int,
               workdir: Path) -> dict[str, Any]:
    import tuner
    from tuner.engine import _attrs

    spec = tuner_spec(contender, problem, seed=seed, concurrency=concurrency)
    study = tuner.run(spec, objective, storage=f"sqlite:///{workdir / 'study.db'}",
                      progress=_budget_progress(StepLog(objective.log_path), problem.budget))
    trials = study.get_trials(deepcopy=False)
    # Why each failed trial failed, kept with the run: its scratch folder and storage are removed.
    causes = [f"trial {t.number}: {(t.system_attrs.get(_attrs.ERROR) or {}).get('type', '?')}: "
              f"{(t.system_attrs.get(_attrs.ERROR) or {}).get('message', '')}"[:300]
              for t in trials if t.state.name == "FAIL"]
    return {"n_trials": len(trials), "errors": len(causes), "error_causes": causes}


def scratch_dir() -> Path:
    """A fresh temporary folder for one run (removed by the caller)."""
    return Path(tempfile.mkdtemp(prefix="tuner-eff-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

