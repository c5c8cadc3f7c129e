"""The shipped tabular studies, end to end through ``tuner.run`` on a real Ray instance and SQLite.

Each runs the study file as shipped with fewer trials and a smaller budget per trial (fewer
samples, folds, boosting rounds or epochs, set through overrides; the search space is the
shipped one, included, with one value pinned), one trial at a time: a second trial process
costs its imports (torch, Ray Tune) again, a third of this module's CPU time, and trials in
parallel are tested in tests/engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import optuna
import pytest
import torch

import tuner
from tests.conftest import ROOT
from tuner.engine import _attrs

pytestmark = pytest.mark.usefixtures("ray_cluster")

STUDIES = ROOT / "studies"


def _run(name: str, storage: str, overrides: dict[str, Any]) -> optuna.Study:
    """The shipped study ``name`` with ``overrides``, one trial at a time (see the module docstring)."""
    return tuner.run(STUDIES / f"{name}.yaml", storage=storage, overrides={**overrides, "concurrency": 1})


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in states]


def _check_curves_and_metrics(study: optuna.Study, n_trials: int, steps: int, metric: str) -> None:
    finished = _finished(study)
    assert len(finished) == n_trials
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL], \
        [t.system_attrs.get(_attrs.ERROR) for t in study.trials]
    for trial in finished:
        curve = trial.system_attrs[_attrs.CURVE]
        assert [point["step"] for point in curve] == list(range(1, len(curve) + 1))
        assert all(metric in point for point in curve)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(curve) == steps
        if len(study.directions) == 1:  # what the pruner reads; multi-objective studies have no pruner
            assert sorted(trial.intermediate_values) == [point["step"] for point in curve]
        # The task marks its training; a complete trial's marks bound the training time it reports.
        timing = trial.system_attrs[_attrs.TIMING]
        assert timing["asked"] <= timing["training_started"] <= timing["finished"]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert timing["training_started"] <= timing["training_ended"] <= timing["finished"]
            marked = timing["training_ended"] - timing["training_started"]
            assert marked == pytest.approx(trial.system_attrs[_attrs.METRICS]["train_time_s"], abs=0.05)


def test_sklearn_gbm_study(sqlite_url: str, tmp_path: Path) -> None:
    overrides: dict[str, Any] = {
        "n_trials": 3, "task_args.max_samples": 300, "task_args.cv": 3,
        "search_space": {"include": ["../search_spaces/sklearn_gbm.yaml"], "params": {"max_iter": 15}},
    }
    study = _run("sklearn_gbm", sqlite_url, overrides)
    _check_curves_and_metrics(study, 3, steps=3, metric="val_accuracy")
    best = study.best_trial
    metrics = best.system_attrs[_attrs.METRICS]
    assert metrics["val_accuracy"] == pytest.approx(best.value) and metrics["val_accuracy"] > 0.5
    assert {"test_accuracy", "test_f1", "latency_ms", "n_folds"} <= set(metrics)
    cm = best.system_attrs[_attrs.ATTR_PREFIX + "confusion_matrix"]
    assert sum(map(sum, cm)) == 45  # 15% of 300 samples
    assert best.params["learning_rate"] > 0 and "max_iter" not in best.params  # pinned, not sampled
    trial_dir = Path(best.system_attrs[_attrs.WORKER]["trial_dir"])
    model = joblib.load(trial_dir / "model.joblib")
    assert model.max_iter == 15 and (trial_dir / "model.json").is_file()


def test_sklearn_regression_study(sqlite_url: str) -> None:
    overrides: dict[str, Any] = {
        "n_trials": 3, "task_args.cv": 3,
        "search_space": {"include": ["../search_spaces/sklearn_gbm.yaml"], "params": {"max_iter": 30}},
    }
    study = _run("sklearn_regression", sqlite_url, overrides)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    _check_curves_and_metrics(study, 3, steps=3, metric="val_rmse")
    metrics = study.best_trial.system_attrs[_attrs.METRICS]
    assert 30 < metrics["val_rmse"] < 90 and {"test_rmse", "test_mae", "test_r2", "val_r2"} <= set(metrics)


def test_diabetes_mlp_study(sqlite_url: str) -> None:
    overrides: dict[str, Any] = {
        "n_trials": 3,
        "search_space": {"include": ["../search_spaces/mlp_regression.yaml"],
                         "params": {"epochs": 4, "early_stopping_patience": 0}},
    }
    study = _run("diabetes_mlp", sqlite_url, overrides)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    _check_curves_and_metrics(study, 3, steps=4, metric="val_rmse")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete  # the pruner waits 5 epochs: none is pruned in 4
    for trial in complete:
        curve = trial.system_attrs[_attrs.CURVE]
        assert all({"val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"} <= set(point) for point in curve)
        assert trial.intermediate_values == {p["step"]: pytest.approx(p["val_rmse"]) for p in curve}
        metrics = trial.system_attrs[_attrs.METRICS]
        assert metrics["val_rmse"] == pytest.approx(trial.value) and "val_accuracy" not in metrics
        assert {"test_rmse", "test_mae", "test_r2", "n_params", "best_epoch"} <= set(metrics)
        assert "residuals_summary" in (k.removeprefix(_attrs.ATTR_PREFIX) for k in trial.system_attrs)
    assert 30 < study.best_value < 100  # the target's std is about 78
    trial_dir = Path(study.best_trial.system_attrs[_attrs.WORKER]["trial_dir"])
    ckpt = torch.load(trial_dir / "best.pt", weights_only=False)
    assert ckpt["data"]["task_type"] == "regression" and ckpt["data"]["y_std"] > 0
    assert "label_smoothing" not in study.best_trial.params  # pinned in the shipped space


def test_mlp_pareto_study(sqlite_url: str) -> None:
    overrides: dict[str, Any] = {
        "n_trials": 3, "task_args.max_samples": 300,
        "search_space": {"include": ["../search_spaces/mlp_pareto.yaml"], "params": {"epochs": 3}},
    }
    study = _run("mlp_pareto", sqlite_url, overrides)
    assert len(study.directions) == 2
    _check_curves_and_metrics(study, 3, steps=3, metric="val_accuracy")
    front = study.best_trials
    assert front and all(len(t.values) == 2 for t in front)
    for trial in front:
        metrics = trial.system_attrs[_attrs.METRICS]
        assert trial.values == [pytest.approx(metrics["val_accuracy"]), pytest.approx(metrics["n_params"])]
    # no trial of the front is beaten on both objectives by another trial
    values = [t.values for t in _finished(study)]
    for t in front:
        assert not any(v[0] >= t.values[0] and v[1] <= t.values[1] and v != t.values for v in values)


def test_a_diverging_configuration_is_pruned_at_its_first_epoch_not_failed(sqlite_url: str) -> None:
    """The quickstart with a learning rate its SGD cannot survive: each trial stops at the epoch
    where its loss became NaN and is PRUNED (the sampler ranks it last) instead of training on
    NaN weights for every remaining epoch and ending FAIL (which TPE ignores)."""
    overrides: dict[str, Any] = {
        "n_trials": 2, "pruner": "none", "task_args.max_samples": 400,
        "search_space": {"params": {"n_layers": 1, "width": 64, "optimizer": "sgd", "lr": 1.0e6,
                                    "batch_size": 64, "epochs": 5, "early_stopping_patience": 0}},
    }
    study = _run("quickstart", sqlite_url, overrides)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2, \
        [(t.params, t.system_attrs.get(_attrs.CURVE)) for t in study.trials]
    for trial in study.trials:
        assert len(trial.system_attrs[_attrs.CURVE]) == 1  # one epoch run, not five
        assert trial.system_attrs[_attrs.ATTR_PREFIX + "diverged_at_epoch"] == 1
        # What TPE ranks it by: the study metric at its last step (NaN outputs predict one class).
        assert list(trial.intermediate_values) == [1] and trial.intermediate_values[1] < 0.2
        assert trial.system_attrs[_attrs.CURVE][0]["train_loss"] is None  # NaN, stored as JSON null


def test_mlp_pareto_latency_variant_validates_and_measures(tmp_path: Path) -> None:
    spec = tuner.validate(STUDIES / "mlp_pareto.yaml", {"metrics": ["val_accuracy", "latency_ms"],
                                                         "directions": ["maximize", "minimize"]})
    assert spec.metrics == ("val_accuracy", "latency_ms")

    from tests.tasks.conftest import FakeContext
    from tuner.tasks.mlp import MLPTask

    ctx = FakeContext(tmp_path / "t")
    ctx.metrics = ("val_accuracy", "latency_ms")  # type: ignore[attr-defined]
    final = MLPTask({"max_samples": 200}).run({"epochs": 1, "width": 16}, ctx)
    assert 0 < final["latency_ms"] < 1000
    plain = MLPTask({"max_samples": 200}).run({"epochs": 1, "width": 16}, FakeContext(tmp_path / "u"))
    assert "latency_ms" not in plain  # measured only when the study asks for it


@pytest.mark.parametrize("name", ["sklearn_gbm", "sklearn_regression", "mlp_pareto", "diabetes_mlp"])
def test_shipped_studies_validate(name: str) -> None:
    spec = tuner.validate(STUDIES / f"{name}.yaml")
    assert spec.name == name and spec.n_trials >= 30
