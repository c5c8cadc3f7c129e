"""Problems of the sample-efficiency benchmark (``python -m bench efficiency``).

Every problem is one objective ``fn(params, ctx)`` that calls ``ctx.report(step, {metric: v})``
once per step (an epoch, a CV fold, a fidelity level) and may be stopped there by a pruner.
The same function runs under every contender; only ``ctx`` differs (tuner's own context, an
Optuna adapter, a Ray Tune adapter), wrapped by :class:`StepLog` so that every step spent and
every trial that reached full fidelity is written to one log the same way for all of them.

Synthetic problems use the multi-fidelity Branin and Hartmann-6 of Kandasamy et al. (2017,
"Multi-fidelity Bayesian optimisation with continuous approximations", BOCA): at fidelity
``z = step / T`` the function's constants are shifted by an amount that vanishes at ``z = 1``,
so low-fidelity rankings are informative but biased (a pruner can be fooled, as with real
learning curves), plus Gaussian noise of sd ``sigma / sqrt(step)`` (shrinking with fidelity).
The curve of a contender uses the noise-free full-fidelity value ``f(x, z=1)`` of each trial
that ran all ``T`` steps.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.efficiency_text import check_polarity_data, polarity_objective, polarity_space

__all__ = ["PROBLEMS", "QUICK", "BenchObjective", "Problem", "StepLog"]

# ---- synthetic functions ------------------------------------------------------------------------

_BRANIN_MIN = 0.397887357729738
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]], dtype=float)
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]], dtype=float)
_H6_MIN = -3.32236801141551


def branin(x1: float, x2: float, z: float = 1.0) -> float:
    """Branin at fidelity ``z`` in (0, 1] (BOCA's variant); ``z = 1`` is the usual function (min 0.3979)."""
    b = 5.1 / (4 * math.pi ** 2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x: np.ndarray, z: float = 1.0) -> float:
    """Hartmann-6 at fidelity ``z`` (BOCA's variant: ``alpha - 0.1 (1 - z)``); min -3.3224 at ``z = 1``."""
    alpha = _H6_ALPHA - 0.1 * (1 - z)
    return float(-np.sum(alpha * np.exp(-np.sum(_H6_A * (x[None, :] - _H6_P) ** 2, axis=1))))


def _branin_at(params: Mapping[str, Any], z: float) -> float:
    return branin(float(params["x1"]), float(params["x2"]), z)


def _hartmann_at(params: Mapping[str, Any], z: float) -> float:
    return hartmann6(np.array([float(params[f"x{i}"]) for i in range(1, 7)]), z)


# ---- the step log ---------------------------------------------------------------------------------


class StepLog:
    """Appends one JSON line per step spent, from any process (Ray workers included).

    A step line is ``{"t": unix time, "k": trial key, "s": step}``; the line of a trial's last
    step (``s == T``) also carries ``"v"`` (the trial's final value) and ``"true"`` (its
    noise-free value on synthetic problems). A trial that ends normally before step T (a built-in
    task's own early stopping) gets a completion line without ``"s"``, which is not a step.
    Lines are written with one ``write`` on an ``O_APPEND`` descriptor, so concurrent writers
    never interleave. The budget check of every contender and the anytime curves are computed
    from this file alone, identically for all of them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def steps(self) -> int:
        """Steps spent so far (all trials, all processes)."""
        try:
            with open(self.path, "rb") as fh:
                return sum(1 for line in fh if b'"s":' in line)
        except FileNotFoundError:
            return 0

    def records(self) -> list[dict[str, Any]]:
        """Every line, in time order (ties keep file order)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []
        return sorted(rows, key=lambda r: r["t"])


class _LoggedContext:
    """Wraps a contender's ``ctx``: logs each step before the contender's pruner sees it.

    The step is logged first because its compute is spent whether or not the trial is then
    stopped. At the last step the trial's final value is logged too, *before* the inner report
    (Ray Tune's ASHA stops a trial at ``max_t`` without letting its function return), so "the
    trial reached full fidelity" means the same thing under every contender.
    """

    def __init__(self, inner: Any, log: StepLog, key: str, problem: Problem, params: Mapping[str, Any],
                 seed: int) -> None:
        self._inner = inner
        self.bench_seed = seed  # the run's seed: seeds the synthetic noise (see _synthetic_objective)
        self._log = log
        self._key = key
        self._problem = problem
        self._params = params
        self._best: float | None = None
        self.completed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def report(self, step: int, value: float | Mapping[str, float]) -> None:
        metric = self._problem.metric
        v = float(value[metric]) if isinstance(value, Mapping) else float(value)
        if math.isfinite(v) and (self._best is None or self._problem.better(v, self._best)):
            self._best = v
        record: dict[str, Any] = {"t": time.time(), "k": self._key, "s": int(step)}
        if int(step) >= self._problem.steps and not self.completed:
            self._complete(record, v if self._problem.final == "last" else self._best)
        self._log.write(record)
        self._inner.report(step, value)

    def _complete(self, record: dict[str, Any], final: float | None) -> None:
        record["v"] = final
        record["true"] = self._problem.true_value(self._params, final)
        self.completed = True

    def returned(self, result: Any) -> None:
        """The objective ended normally: a trial that stopped itself before step T completes now."""
        if self.completed:
            return
        metric = self._problem.metric
        final = result.get(metric) if isinstance(result, Mapping) else result
        record: dict[str, Any] = {"t": time.time(), "k": self._key}
        self._complete(record, float(final) if final is not None else self._best)
        self._log.write(record)


class BenchObjective:
    """``fn(params, ctx)`` for every contender: the problem's objective behind the step log.

    Picklable by value (problem name, log path, seed), so it travels to Ray workers, which look
    the problem up again by name.
    """

    def __init__(self, problem: str, quick: bool, log_path: str, seed: int) -> None:
        self.problem = problem
        self.quick = quick
        self.log_path = log_path
        self.seed = seed

    def __call__(self, params: dict[str, Any], ctx: Any) -> Any:
        problem = (QUICK if self.quick else PROBLEMS)[self.problem]
        key = f"{os.getpid()}-{time.time_ns()}"
        logged = _LoggedContext(ctx, StepLog(self.log_path), key, problem, params, self.seed)
        result = problem.objective(dict(params), logged)
        logged.returned(result)
        return result


# ---- objectives -------------------------------------------------------------------------------------


def _synthetic_objective(at: Callable[[Mapping[str, Any], float], float], steps: int, sigma: float,
                         metric: str) -> Callable[[dict[str, Any], Any], float]:
    """``fn(params, ctx)``: step t reports ``f(x, t/T) + N(0, sigma^2 / t)``; returns the step-T value.

    The noise is seeded by the configuration and ``ctx.seed`` only (not by the trial number,
    which differs between libraries), so the same point gives the same curve everywhere.
    """

    def objective(params: dict[str, Any], ctx: Any) -> float:
        digest = zlib.crc32(json.dumps(params, sort_keys=True, default=str).encode())
        rng = np.random.default_rng([int(getattr(ctx, "bench_seed", 0)), digest])
        value = math.nan
        for step in range(1, steps + 1):
            value = at(params, step / steps) + sigma / math.sqrt(step) * float(rng.standard_normal())
            ctx.report(step, {metric: value})
        return value

    return objective


class _TaskObjective:
    """``fn(params, ctx)`` running one of tuner's built-in tasks (picklable for Ray workers)."""

    def __init__(self, task: str, task_args: dict[str, Any]) -> None:
        self.task = task
        self.task_args = task_args

    def __call__(self, params: dict[str, Any], ctx: Any) -> dict[str, float]:
        from tuner.tasks import get_task

        return get_task(self.task)(self.task_args, source="bench/efficiency").run(params, ctx)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: objective, space, steps per trial and the budget in steps."""

    name: str
    kind: str  # "synthetic" or "real"
    metric: str
    direction: str
    steps: int  # T: steps of a trial that runs to full fidelity
    budget: int  # steps across all trials
    space: dict[str, Any]  # tuner search-space mapping (flat: every contender gets the same space)
    objective: Callable[[dict[str, Any], Any], Any]
    optimum: float | None = None
    final: str = "best"  # a trial's value: "best" step (the built-in tasks' best epoch) or "last"
    truth: Callable[[Mapping[str, Any]], float] | None = None
    step_unit: str = "step"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    check: Callable[[], None] | None = None  # raises TunerError when the problem cannot run here (data missing)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b

    def true_value(self, params: Mapping[str, Any], final: float | None) -> float | None:
        """Noise-free full-fidelity value on synthetic problems; the trial's own value otherwise."""
        return self.truth(params) if self.truth is not None else final


def _synthetic(name: str, at: Callable[[Mapping[str, Any], float], float], dims: dict[str, list[float]],
               steps: int, budget_trials: int, sigma: float, optimum: float, note: str) -> Problem:
    return Problem(
        name=name, kind="synthetic", metric="value", direction="minimize", steps=steps,
        budget=budget_trials * steps, space={"params": {k: {"float": v} for k, v in dims.items()}},
        objective=_synthetic_objective(at, steps, sigma, "value"), optimum=optimum, final="last",
        truth=lambda p: at(p, 1.0), note=note)


def _mlp_space(epochs: int) -> dict[str, Any]:
    # The influential part of search_spaces/mlp.yaml, flattened (one width for every layer, one
    # lr range for both optimizers) so that Ray Tune's param_space can express it 1:1.
    return {"params": {
        "n_layers": {"int": [1, 3]},
        "width": {"int": [16, 512], "log": True},
        "activation": {"choice": ["relu", "tanh", "silu"]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "lr": {"float": [1.0e-4, 0.3], "log": True},
        "momentum": 0.9,
        "dropout": {"float": [0.0, 0.5]},
        "weight_decay": {"float": [1.0e-6, 1.0e-2], "log": True},
        "batch_size": {"choice": [32, 64, 128]},
        "epochs": epochs,
    }}


def _cnn_space(epochs: int) -> dict[str, Any]:
    # search_spaces/cnn.yaml, flattened the same way.
    return {"params": {
        "n_conv": {"int": [1, 2]},
        "channels": {"int": [8, 64], "log": True},
        "kernel": {"choice": [3, 5]},
        "batch_norm": {"choice": [True, False]},
        "head_width": {"choice": [0, 64, 128]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "lr": {"float": [1.0e-4, 0.3], "log": True},
        "momentum": 0.9,
        "dropout": {"float": [0.0, 0.5]},
        "batch_size": {"choice": [32, 64, 128]},
        "epochs": epochs,
    }}


def _gbm_space() -> dict[str, Any]:
    # search_spaces/sklearn_gbm.yaml with fewer boosting rounds (cost) and without its conditional.
    return {"params": {
        "learning_rate": {"float": [0.02, 0.5], "log": True},
        "max_iter": {"int": [10, 60], "log": True},
        "max_leaf_nodes": {"int": [4, 64], "log": True},
        "min_samples_leaf": {"int": [5, 60], "log": True},
        "l2_regularization": {"float": [1.0e-6, 10.0], "log": True},
        "max_features": {"float": [0.3, 1.0]},
    }}


def _build_problems(quick: bool) -> dict[str, Problem]:
    """The problems; ``quick`` shrinks the budgets (a smoke run, not a measurement)."""
    scale = 0.4 if quick else 1.0
    T = 16
    mlp_epochs, cnn_epochs, text_epochs = (4, 3, 4) if quick else (8, 6, 8)
    problems = [
        _synthetic("branin", _branin_at, {"x1": [-5.0, 10.0], "x2": [0.0, 15.0]}, T, round(25 * scale), 1.0,
                   _BRANIN_MIN, "2-d, BOCA fidelity bias, noise sd 1/sqrt(t)"),
        _synthetic("hartmann6", _hartmann_at, {f"x{i}": [0.0, 1.0] for i in range(1, 7)}, T, round(50 * scale), 0.1,
                   _H6_MIN, "6-d, BOCA fidelity bias, noise sd 0.1/sqrt(t)"),
        Problem(
            name="digits_mlp", kind="real", metric="val_loss", direction="minimize", steps=mlp_epochs,
            budget=round(15 * scale) * mlp_epochs, space=_mlp_space(mlp_epochs),
            objective=_TaskObjective("mlp", {"dataset": "digits"}), step_unit="epoch",
            note="tuner's mlp task on digits; value: best epoch's validation loss"),
        Problem(
            name="digits_cnn", kind="real", metric="val_loss", direction="minimize", steps=cnn_epochs,
            budget=round(12 * scale) * cnn_epochs, space=_cnn_space(cnn_epochs),
            objective=_TaskObjective("cnn", {"dataset": "digits"}), step_unit="epoch",
            note="tuner's cnn task on digits; value: best epoch's validation loss"),
        Problem(
            name="digits_gbm", kind="real", metric="val_accuracy", direction="maximize", steps=3,
            budget=round(15 * scale) * 3, space=_gbm_space(), final="last",
            objective=_TaskObjective("sklearn", {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                                 "dataset": "digits", "cv": 3}),
            step_unit="CV fold",
            note="tuner's sklearn task, HistGradientBoosting on digits; 1 step = 1 of 3 CV folds "
                 "(its fit costs more with more boosting rounds); value: 3-fold CV accuracy"),
        Problem(
            name="polarity_bow", kind="real", metric="val_loss", direction="minimize", steps=text_epochs,
            budget=round(15 * scale) * text_epochs, space=polarity_space(text_epochs), objective=polarity_objective,
            step_unit="epoch", check=check_polarity_data,
            note="bag-of-n-grams network on rt-polarity (../shared/datasets, 7,463 train / 1,599 validation "
                 "sentences); value: best epoch's validation loss"),
    ]
    return {p.name: p for p in problems}


PROBLEMS: dict[str, Problem] = _build_problems(quick=False)
QUICK: dict[str, Problem] = _build_problems(quick=True)
