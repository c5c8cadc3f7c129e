"""Sweep settings of ``python -m bench efficiency_sweep`` (bench/efficiency_runners.py)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from bench.efficiency_problems import PROBLEMS
from bench.efficiency_runners import _OptunaContext, parse_setting


def test_a_setting_parses_into_sampler_and_pruner_arguments() -> None:
    assert parse_setting("tpe:n_startup_trials=5/asha:reduction_factor=3") == (
        "tpe", {"n_startup_trials": 5}, "asha", {"reduction_factor": 3})


def test_prune_on_best_is_kept_for_the_replay_and_a_wrong_value_is_refused() -> None:
    assert parse_setting("tpe/median:prune_on=best") == ("tpe", {}, "median", {"prune_on": "best"})
    # "last" is what every pruner sees anyway: it is dropped, so the setting equals the plain one.
    assert parse_setting("tpe/median:prune_on=last") == ("tpe", {}, "median", {})
    with pytest.raises(ValueError, match="prune_on must be last or best"):
        parse_setting("tpe/median:prune_on=first")


@pytest.mark.parametrize(("prune_on", "expected"), [("last", [0.5, 0.7, 0.4]), ("best", [0.5, 0.5, 0.4])])
def test_the_pruner_sees_the_latest_or_the_best_value_so_far(prune_on: str, expected: list[float],
                                                             tmp_path: Path) -> None:
    problem = PROBLEMS["digits_mlp"]  # val_loss, minimised
    study = optuna.create_study(direction=problem.direction, pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    ctx = _OptunaContext(trial, problem, 0, tmp_path, prune_on)
    for step, value in enumerate([0.5, 0.7, float("nan")], start=1):
        ctx.report(step, value)
    ctx.report(4, {problem.metric: 0.4})
    values = study._storage.get_trial(trial._trial_id).intermediate_values
    assert [values[s] for s in (1, 2, 4)] == expected
    assert math.isnan(values[3])  # a NaN epoch is passed through, not hidden behind the best so far
