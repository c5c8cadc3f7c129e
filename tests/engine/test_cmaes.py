"""tuner's CMA-ES sampler: Optuna's, with NaN-pruned trials ranked last (tuner/engine/_cmaes.py)."""

from __future__ import annotations

import math
from typing import Any

import cmaes
import optuna
import pytest

from tuner.engine._cmaes import CmaEsSampler
from tuner.engine._plugins import make_sampler, trial_seed


def _run(make: Any, n: int, nan_at: set[int], seed: int = 3) -> list[dict[str, float]]:
    """A study run as tuner's workers run one (a fresh sampler per trial, seeded by its number);
    the trials in ``nan_at`` report NaN (a diverged training) and are pruned, the rest complete."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    out = []
    for number in range(n):
        study.sampler = make(trial_seed(seed, number))
        trial = study.ask()
        params = {"x": trial.suggest_float("x", -5.0, 5.0), "y": trial.suggest_float("y", -5.0, 5.0)}
        if number in nan_at:
            trial.report(math.nan, 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            value = (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2
            trial.report(value, 1)
            study.tell(trial, value)
        out.append(params)
    return out


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """The values of every generation CMA-ES is told, as they reach it (before it sorts them)."""
    seen: list[list[float]] = []
    original = cmaes.CMA.tell

    def spy(self: Any, solutions: list[tuple[Any, float]]) -> None:
        seen.append([value for _, value in solutions])
        original(self, solutions)

    monkeypatch.setattr(cmaes.CMA, "tell", spy)
    return seen


def test_a_pruned_nan_trial_reaches_cma_es_as_the_worst_value(told: list[list[float]]) -> None:
    _run(lambda s: make_sampler("cmaes", {"consider_pruned_trials": True}, seed=s, space=None), 16, nan_at={2, 9})
    assert len(told) >= 2  # two generations (population 6 in 2-d) were ranked
    values = [v for generation in told for v in generation]
    assert math.inf in values and not any(math.isnan(v) for v in values)


def test_optunas_own_sampler_would_rank_on_nan(told: list[list[float]]) -> None:
    # The case the override exists for: Optuna hands CMA-ES the NaN, and a sort on it is no ranking.
    # Should this fail after an Optuna upgrade, Optuna handles NaN itself and the override can go.
    _run(lambda s: optuna.samplers.CmaEsSampler(seed=s, consider_pruned_trials=True), 16, nan_at={2, 9})
    assert any(math.isnan(v) for generation in told for v in generation)


@pytest.mark.parametrize("args", [{}, {"consider_pruned_trials": True}])
def test_the_same_samples_as_optunas_where_no_value_is_nan(args: dict[str, Any]) -> None:
    ours = _run(lambda s: make_sampler("cmaes", args, seed=s, space=None), 20, nan_at=set())
    theirs = _run(lambda s: optuna.samplers.CmaEsSampler(seed=s, warn_independent_sampling=False,
                                                         independent_sampler=optuna.samplers.RandomSampler(seed=s),
                                                         **args), 20, nan_at=set())
    assert ours == theirs


def test_cmaes_is_tuners_sampler() -> None:
    assert isinstance(make_sampler("cmaes", {}, seed=0, space=None), CmaEsSampler)
