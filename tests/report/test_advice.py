"""Search-space advice on studies whose answer is known (data functions only, no rendering)."""

from __future__ import annotations

import math

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tests.report._helpers import random_trials, study_data
from tuner.report import ImportanceInfo, _get_advice_info, _get_importance_info

SPACE = {"x": FloatDistribution(0.0, 10.0), "lr": FloatDistribution(1e-5, 1e-1, log=True), "z": FloatDistribution(0.0, 1.0),
         "n": IntDistribution(1, 4), "opt": CategoricalDistribution(["adam", "sgd", "rmsprop"])}


def _lr_at_bound(p):  # minimize: best with lr at its upper bound 0.1; x optimum inside the range
    return 0.2 * (p["x"] - 3.0) ** 2 + 10.0 * (math.log10(0.1) - math.log10(p["lr"]))


def _sgd_loses(p):  # minimize: sgd always costs 5; x optimum inside; z and n do nothing
    return (p["x"] - 3.0) ** 2 + 2.0 * (math.log10(0.1) - math.log10(p["lr"])) + 5.0 * (p["opt"] == "sgd")


def _kinds(info):
    return {(a.kind, a.param) for a in info.items}


def test_parameter_whose_best_values_sit_at_a_bound_gets_widen() -> None:
    data = study_data(random_trials(200, SPACE, _lr_at_bound, seed=0))
    info = _get_advice_info(data)
    widen = [a for a in info.items if a.kind == "widen"]
    assert [a.param for a in widen] == ["lr"]
    ev = widen[0].evidence
    assert ev["side"] == "high" and ev["bound"] == 0.1 and ev["n_top"] == 20 and ev["n_near"] >= 3
    assert "upper bound 0.1" in widen[0].message and "widen" in widen[0].message
    assert all(v >= 1e-5 for v in ev["top_values"])


def test_maximize_and_lower_bound() -> None:
    data = study_data(random_trials(200, SPACE, lambda p: -(p["x"] ** 2), seed=1), directions=["maximize"])
    widen = [a for a in _get_advice_info(data).items if a.kind == "widen"]
    assert [(a.param, a.evidence["side"], a.evidence["bound"]) for a in widen] == [("x", "low", 0.0)]


def test_categorical_choice_that_never_wins_is_dropped() -> None:
    data = study_data(random_trials(200, SPACE, _sgd_loses, seed=0))
    info = _get_advice_info(data)
    drops = [a for a in info.items if a.kind == "drop-choice"]
    assert [(a.param, a.evidence["choice"]) for a in drops] == [("opt", "sgd")]
    ev = drops[0].evidence
    tried = sum(1 for t in data.trials if t.params["opt"] == "sgd")
    assert ev["tried"] == tried and ev["top"] == 20 and ev["expected"] >= 3 and ev["best_rank"] > 20
    assert f"tried {tried} times" in drops[0].message and "sgd" not in ev["top_counts"]


def test_negligible_importance_is_fix_it_with_the_value() -> None:
    data = study_data(random_trials(200, SPACE, _sgd_loses, seed=1))
    imp = ImportanceInfo(evaluator="TestEvaluator", objectives=["value"], n_used=200, n_complete=200, sampled=False,
                         importances=[{"x": 0.9, "lr": 0.08, "opt": 0.015, "n": 0.004, "z": 0.001}])
    info = _get_advice_info(data, imp)
    fixes = {a.param: a for a in info.items if a.kind == "fix"}
    assert set(fixes) == {"n", "z"}
    assert fixes["z"].evidence["importance"] == 0.001 and "importance 0.0010" in fixes["z"].message
    assert "TestEvaluator" in fixes["z"].message and "best trial's value" in fixes["z"].message


def test_computed_importance_ranks_an_irrelevant_parameter_last_and_advises_fixing_it() -> None:
    data = study_data(random_trials(200, SPACE, _sgd_loses, seed=1))
    imp = _get_importance_info(data)
    assert imp.ranking()[:2] == ["x", "lr"]
    assert imp.importances[0]["z"] < 0.01
    assert ("fix", "z") in _kinds(_get_advice_info(data, imp))
    assert ("fix", "x") not in _kinds(_get_advice_info(data, imp))


def test_no_advice_from_too_few_trials_and_none_on_a_flat_study() -> None:
    few = _get_advice_info(study_data(random_trials(10, SPACE, _sgd_loses)))
    assert few.items == [] and "advice needs at least 20" in few.notes[0]
    flat = _get_advice_info(study_data(random_trials(200, SPACE, lambda p: (p["x"] - 5.0) ** 2, seed=3)))
    assert [a for a in flat.items if a.kind != "fix"] == []


def test_multi_objective_advice_names_the_objective() -> None:
    trials = random_trials(200, SPACE, lambda p: (_lr_at_bound(p), (p["x"] - 3.0) ** 2), seed=0)
    info = _get_advice_info(study_data(trials, directions=["minimize", "minimize"], metrics=["loss", "size"]))
    widen = [a for a in info.items if a.kind == "widen"]
    assert widen and widen[0].param == "lr" and "for loss" in widen[0].message
