"""Summary and top-trials data: counts, best, wall/compute time, GPU-hours, failures, sorting."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from tests.report._helpers import T0, make_trial, study_data
from tuner.engine import _attrs
from tuner.report import _get_summary_info, _get_top_trials_info

D = {"x": FloatDistribution(0.0, 1.0), "c": CategoricalDistribution(["a", "b"])}
GPU0 = {"host": "n1", "pid": 7, "gpu_ids": ["0"], "gpus": 0.5}
GPU1 = {"host": "n1", "pid": 8, "gpu_ids": ["1"], "gpus": 1}


def _trials():
    return [
        make_trial(0, {"x": 0.5, "c": "a"}, D, [3.0], start_s=0, duration_s=3600, worker=GPU0),
        make_trial(1, {"x": 0.1, "c": "b"}, D, [1.0], start_s=0, duration_s=1800, worker=GPU1),
        make_trial(2, {"x": 0.9, "c": "a"}, D, None, TrialState.PRUNED, start_s=1800, duration_s=600),
        make_trial(3, {"x": 0.3, "c": "a"}, D, None, TrialState.FAIL, start_s=4000, duration_s=100,
                   system_attrs={_attrs.ERROR: {"type": "RuntimeError", "message": "CUDA out of memory\nmore", "traceback": ""}}),
        make_trial(4, {"x": 0.3, "c": "b"}, D, None, TrialState.FAIL, start_s=4200, duration_s=100,
                   system_attrs={_attrs.ERROR: {"type": "RuntimeError", "message": "CUDA out of memory", "traceback": ""}}),
        make_trial(5, {"x": 0.2, "c": "b"}, D, [2.0], start_s=4400, duration_s=200),
        make_trial(6, {"x": 0.2, "c": "b"}, D, None, TrialState.RUNNING, start_s=4600),
    ]


def test_summary_counts_best_times_and_gpu_hours() -> None:
    s = _get_summary_info(study_data(_trials(), spec={"n_trials": 10}))
    assert s.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 2, "RUNNING": 1}
    assert s.n_trials == 7 and s.n_trials_target == 10
    assert [b.number for b in s.best] == [1] and s.best[0].values == [1.0] and s.best[0].params == {"x": 0.1, "c": "b"}
    assert s.wall_time_s == pytest.approx(4600.0)  # first start 0 to last end 4400 + 200
    assert s.compute_s == pytest.approx(3600 + 1800 + 600 + 100 + 100 + 200)
    assert s.gpu_hours == pytest.approx(0.5 * 1.0 + 1 * 0.5) and s.gpu_trials == 2
    assert s.peak_concurrency == 2
    assert s.failures == [("RuntimeError: CUDA out of memory", 2, [3, 4])]


def test_summary_of_maximize_and_of_an_empty_study() -> None:
    s = _get_summary_info(study_data(_trials(), directions=["maximize"]))
    assert s.best[0].number == 0
    empty = _get_summary_info(study_data([]))
    assert empty.n_trials == 0 and empty.best == [] and empty.wall_time_s is None and empty.compute_s == 0


def test_top_trials_sorted_best_first_both_directions() -> None:
    values = [5.0, 1.0, 4.0, 1.0, 3.0, 9.0, 2.0, 0.5, 7.0, 6.0, 8.0, 2.5]
    trials = [make_trial(i, {"x": v / 10}, D, [v]) for i, v in enumerate(values)]
    top = _get_top_trials_info(study_data(trials), top=10)
    assert [r.values[0] for r in top.rows] == sorted(values)[:10]
    assert [r.number for r in top.rows[:3]] == [7, 1, 3]  # ties broken by trial number
    assert [r.rank for r in top.rows] == list(range(1, 11)) and top.n_candidates == 12
    top_max = _get_top_trials_info(study_data(trials, directions=["maximize"]), top=3)
    assert [r.values[0] for r in top_max.rows] == [9.0, 8.0, 7.0] and top_max.params == ["x"]


def test_top_trials_of_a_multi_objective_study_are_the_pareto_front() -> None:
    pts = [(1.0, 5.0), (2.0, 2.0), (5.0, 1.0), (3.0, 3.0), (6.0, 6.0)]
    trials = [make_trial(i, {"x": 0.1}, D, list(v)) for i, v in enumerate(pts)]
    top = _get_top_trials_info(study_data(trials, directions=["minimize", "minimize"]), top=10)
    assert top.kind == "pareto" and [r.number for r in top.rows] == [0, 1, 2]


def _timing(start_s: float, *, first: bool, setup: float, train: float) -> dict:
    """Moments of a trial created at ``start_s`` (make_trial's clock): a first trial starts its process."""
    t0 = T0.timestamp() + start_s
    moments = {"picked_up": t0 + (2.0 if first else 0.5), "process_trial": 1 if first else 2}
    if first:
        moments["process_started"] = t0 + 0.5
    moments["asked"] = moments["picked_up"] + 0.5
    moments["training_started"] = moments["asked"] + setup
    moments["training_ended"] = moments["training_started"] + train
    moments["finished"] = moments["training_ended"] + 1.0
    return moments


def test_summary_adds_up_where_the_trials_time_went() -> None:
    trials = [
        make_trial(0, {"x": 0.5, "c": "a"}, D, [3.0], start_s=0, duration_s=20,
                   system_attrs={_attrs.TIMING: _timing(0, first=True, setup=6.0, train=10.0)}),
        make_trial(1, {"x": 0.1, "c": "b"}, D, [1.0], start_s=20, duration_s=13,
                   system_attrs={_attrs.TIMING: _timing(20, first=False, setup=1.0, train=10.0)}),
        make_trial(2, {"x": 0.9, "c": "a"}, D, [2.0], start_s=40, duration_s=5),  # ran before timings were kept
    ]
    s = _get_summary_info(study_data(trials))
    assert s.timed_trials == 2
    assert s.phase_s == pytest.approx({"queued": 0.5 + 0.5, "worker start": 1.5, "sampling": 1.0, "setup": 7.0,
                                       "training": 20.0, "wrap-up": 2.0}, abs=1e-4)
    assert _get_summary_info(study_data(_trials())).phase_s == {}  # no trial recorded its timing
