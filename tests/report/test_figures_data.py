"""Figure data functions (history, timeline, curves, parallel coordinates, contour), without rendering."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from tests.report._helpers import make_trial, random_trials, study_data
from tuner.engine import _attrs
from tuner.report import NoData, _get_curves_info, _get_history_info, _get_timeline_info
from tuner.report._params import _get_contour_info, _get_parallel_info

D = {"x": FloatDistribution(0.0, 1.0), "lr": FloatDistribution(1e-4, 1e-1, log=True),
     "c": CategoricalDistribution(["a", "b", "c"])}


def test_history_best_so_far_is_exact_even_when_thinned() -> None:
    trials = random_trials(3000, D, lambda p: p["x"] + p["lr"], seed=0)
    full = _get_history_info(study_data(trials))
    thinned = _get_history_info(study_data(trials), max_points=500)
    assert not full.thinned and full.n_points == 3000
    assert thinned.thinned and thinned.n_points == 500
    best, running = [], math.inf
    for t in trials:
        if t.values[0] < running:
            running = t.values[0]
            best.append((t.number, running))
    for info in (full, thinned):
        o = info.objectives[0]
        assert list(zip(o.best_numbers, o.best_values)) == best and o.last_number == 2999
        assert set(o.best_numbers) <= set(o.numbers) and o.numbers == sorted(o.numbers)
    with pytest.raises(NoData):
        _get_history_info(study_data([make_trial(0, {"x": 0.1}, D, None, TrialState.FAIL)]))


def test_timeline_rows_per_gpu_or_process_and_busy_share() -> None:
    g0 = {"host": "n1", "pid": 1, "gpu_ids": ["0"], "gpus": 1}
    cpu = {"host": "n2", "pid": 42, "gpu_ids": [], "gpus": 0}
    trials = [make_trial(0, {"x": 0.1}, D, [1.0], start_s=0, duration_s=50, worker=g0),
              make_trial(1, {"x": 0.1}, D, None, TrialState.PRUNED, start_s=50, duration_s=50, worker=g0),
              make_trial(2, {"x": 0.1}, D, [1.0], start_s=0, duration_s=25, worker=cpu),
              make_trial(3, {"x": 0.1}, D, None, TrialState.RUNNING, start_s=75, worker=cpu),
              make_trial(4, {"x": 0.1}, D, [1.0], start_s=0, duration_s=10, worker={})]
    info = _get_timeline_info(study_data(trials))
    assert info.rows == ["(no placement recorded)", "n1:gpu0", "n2:42"]
    assert info.busy["n1:gpu0"] == pytest.approx(1.0) and info.busy["n2:42"] == pytest.approx(0.5)
    running = [b for b in info.bars if b.state == "RUNNING"][0]
    assert running.end - running.start == pytest.approx(25.0)  # to the last recorded moment (t=100)
    assert not info.merged
    stale = trials + [make_trial(5, {"x": 0.1}, D, [1.0], start_s=90, duration_s=20, worker=cpu)]
    left = [b for b in _get_timeline_info(study_data(stale)).bars if b.state == "RUNNING"][0]
    assert left.end - left.start == pytest.approx(15.0)  # the same process started trial 5 at t=90


def test_timeline_merges_bars_past_the_limit_and_keeps_coverage() -> None:
    w = {"host": "n1", "pid": 1, "gpu_ids": ["0"], "gpus": 1}
    trials = [make_trial(i, {"x": 0.1}, D, [1.0], start_s=i * 10.0, duration_s=9.9, worker=w) for i in range(500)]
    info = _get_timeline_info(study_data(trials), max_bars=50)
    assert info.merged and len(info.bars) <= 50
    assert sum(b.n_trials for b in info.bars) == 500
    assert info.bars[0].first_number == 0 and max(b.last_number for b in info.bars) == 499
    assert info.busy["n1:gpu0"] == pytest.approx(0.99, abs=0.01)


def test_curves_grouped_by_final_state_and_thinned_keeping_the_best() -> None:
    trials = []
    for i in range(40):
        state = TrialState.COMPLETE if i % 4 else TrialState.PRUNED
        steps = {s: 1.0 / s + i for s in range(1, 6 if state == TrialState.COMPLETE else 3)}
        trials.append(make_trial(i, {"x": 0.1}, D, [steps[max(steps)]], state, intermediate=steps))
    info = _get_curves_info(study_data(trials))
    assert info.source == "intermediate values" and info.n_with_curves == 40 and not info.thinned
    assert [c.state for c in info.curves] == ["COMPLETE"] * 30 + ["PRUNED"] * 10
    assert info.curves[0].steps == [1, 2, 3, 4, 5]
    thin = _get_curves_info(study_data(trials), max_curves=10, keep_best=5)
    assert thin.thinned and len(thin.curves) == 10
    assert {1, 2, 3, 5, 6} <= {c.number for c in thin.curves}  # the five best complete trials (lowest values)


def test_curves_of_a_multi_objective_study_come_from_tuner_curve() -> None:
    curve = [{"step": 1, "loss": 2.0, "acc": 0.1}, {"step": 2, "loss": 1.0, "acc": 0.5}]
    trials = [make_trial(0, {"x": 0.1}, D, [1.0, 0.5], system_attrs={_attrs.CURVE: curve})]
    info = _get_curves_info(study_data(trials, directions=["minimize", "maximize"], metrics=["loss", "acc"]))
    assert info.source == _attrs.CURVE and info.metric == "loss" and info.curves[0].values == [2.0, 1.0]
    with pytest.raises(NoData):
        _get_curves_info(study_data([make_trial(0, {"x": 0.1}, D, [1.0])]))


def test_parallel_coordinates_dimensions() -> None:
    trials = random_trials(30, D, lambda p: p["x"], seed=0)
    trials.append(make_trial(30, {"x": 0.5}, D, [0.5]))  # lr and c absent (conditional parameters)
    info = _get_parallel_info(study_data(trials), trials, ["lr", "c", "x"])
    labels = [d.label for d in info.dimensions]
    assert labels == ["value", "lr (log)", "c", "x"] and info.n_lines == 31
    lr = info.dimensions[1]
    assert lr.ticktext is not None and "(absent)" in lr.ticktext and min(lr.values[:30]) >= -4.0
    c = info.dimensions[2]
    assert c.ticktext == ["a", "b", "c", "(absent)"] and c.values[30] == 3.0


def test_contour_grid_holds_the_best_value_per_cell() -> None:
    trials = [make_trial(i, {"x": x, "c": c}, D, [v]) for i, (x, c, v) in enumerate(
        [(0.0, "a", 5.0), (0.01, "a", 1.0), (1.0, "b", 2.0), (0.5, "c", 3.0), (0.99, "b", 0.5)])]
    info = _get_contour_info(study_data(trials), trials, ["x", "c"], bins=10)
    assert info.y.categories == ["a", "b", "c"] and info.x.centers is not None and len(info.x.centers) == 10
    assert info.z[0][0] == 1.0 and info.z[1][9] == 0.5 and info.z[2][5] == 3.0
    assert sum(v is not None for row in info.z for v in row) == 3
    with pytest.raises(NoData):
        _get_contour_info(study_data(trials), trials, ["x"])


def test_a_null_choice_is_a_contour_category_of_its_own() -> None:
    """`grad_clip: {choice: [null, 1.0, 5.0]}` among the two most important parameters failed the
    whole report and the dashboard's figures (TypeError: list indices must be integers, not NoneType)."""
    dists = {"x": FloatDistribution(0.0, 1.0), "clip": CategoricalDistribution([None, 1.0, 5.0])}
    trials = [make_trial(i, {"x": x, "clip": c}, dists, [v]) for i, (x, c, v) in enumerate(
        [(0.0, None, 5.0), (0.5, 1.0, 2.0), (1.0, None, 1.0), (0.2, 5.0, 3.0)])]
    info = _get_contour_info(study_data(trials), trials, ["x", "clip"], bins=2)
    assert info.y.categories == ["1", "5", "None"]
    assert info.z[2] == [5.0, 1.0] and info.z[0] == [None, 2.0] and info.points_y.count("None") == 2
