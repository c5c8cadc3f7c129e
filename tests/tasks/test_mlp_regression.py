"""Regression with the torch tabular task: ``task: mlp`` with ``task_args.task_type: regression``
and the shared training loop on a regression :class:`~tuner.data.Splits`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tuner.data import Splits, load_regression_dataset
from tuner.exceptions import SpecError, TrialPruned
from tuner.spec import spec_from_mapping
from tuner.tasks import get_task
from tuner.tasks._metrics import REGRESSION_EPOCH_METRICS, REGRESSION_FINAL_METRICS
from tuner.tasks._models import build_mlp
from tuner.tasks._training import train_classifier, train_model
from tuner.tasks.mlp import MLPTask

ROOT = Path(__file__).resolve().parents[2]
DIABETES = load_regression_dataset("diabetes")  # 309 train / 66 val / 67 test
TIMING = {"epoch_time_s", "train_time_s"}


def train(ctx: Any, params: dict[str, Any], data: Splits = DIABETES) -> dict[str, float]:
    return train_model(lambda: build_mlp(data.n_features, data.n_classes, params), data, params, ctx)


def base(**overrides: Any) -> dict[str, Any]:
    return {"width": 32, "n_layers": 1, "lr": 0.01, "epochs": 8, "batch_size": 32, **overrides}


def _rmse_of_checkpoint(path: Path, data: Splits, part: str) -> float:
    """The RMSE in the target's units of the saved best weights, recomputed from scratch."""
    ckpt = torch.load(path, weights_only=False)
    model = build_mlp(ckpt["data"]["n_features"], ckpt["data"]["n_classes"], ckpt["params"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    X, y = getattr(data, part)
    with torch.no_grad():
        pred = model(torch.from_numpy(X)).numpy().reshape(-1).astype(np.float64)
    y_mean, y_std = ckpt["data"]["y_mean"], ckpt["data"]["y_std"]
    return math.sqrt(np.mean((pred * y_std + y_mean - (y.astype(np.float64) * y_std + y_mean)) ** 2))


# ---- the loop ------------------------------------------------------------------------------------


def test_a_regression_model_has_one_output() -> None:
    model = build_mlp(10, 1, {"width": 8})
    assert model(torch.zeros(5, 10)).shape == (5, 1)


def test_reports_regression_metrics_every_epoch_in_the_target_units(make_ctx) -> None:
    ctx = make_ctx(metric="val_rmse", direction="minimize")
    final = train(ctx, base(early_stopping_patience=0))
    assert [step for step, _ in ctx.reports] == list(range(1, 9))
    assert all(list(m) == list(REGRESSION_EPOCH_METRICS) for _, m in ctx.reports)
    assert set(final) == set(REGRESSION_EPOCH_METRICS) | set(REGRESSION_FINAL_METRICS)
    assert final["n_params"] == 10 * 32 + 32 + 32 + 1 and final["epochs_run"] == 8
    # the loss is the MSE of the standardised target; RMSE and MAE are in the target's units
    for _, m in ctx.reports:
        assert m["val_rmse"] == pytest.approx(math.sqrt(m["val_loss"]) * DIABETES.y_std, rel=1e-4)
        assert 0 < m["val_mae"] <= m["val_rmse"]
    assert final["test_rmse"] == pytest.approx(math.sqrt(final["test_loss"]) * DIABETES.y_std, rel=1e-4)
    assert 35 < final["val_rmse"] < 75 and 35 < final["test_rmse"] < 75  # the target's std is about 78
    assert final["val_r2"] > 0.2 and final["test_r2"] > 0.1
    assert ctx.series("train_loss")[-1] < ctx.series("train_loss")[0]
    # recomputed from the saved best weights
    path = ctx.trial_dir / "best.pt"
    assert _rmse_of_checkpoint(path, DIABETES, "val") == pytest.approx(final["val_rmse"], rel=1e-4)
    assert _rmse_of_checkpoint(path, DIABETES, "test") == pytest.approx(final["test_rmse"], rel=1e-4)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["data"]["task_type"] == "regression" and ckpt["epoch"] == final["best_epoch"]
    assert ckpt["data"]["y_mean"] == pytest.approx(DIABETES.y_mean)
    # no confusion matrix; a summary of the test residuals instead
    assert "confusion_matrix" not in ctx.attrs and "per_class" not in ctx.attrs
    summary = ctx.attrs["residuals_summary"]
    assert summary["n"] == 67 and summary["p05"] <= summary["median"] <= summary["p95"]
    assert math.sqrt(summary["mean"] ** 2 + summary["std"] ** 2) == pytest.approx(final["test_rmse"], rel=1e-4)


@pytest.mark.parametrize("metric, direction", [("val_rmse", "minimize"), ("val_mae", "minimize"),
                                               ("val_r2", "maximize"), ("val_accuracy", "maximize")])
def test_best_epoch_follows_the_study_metric(make_ctx, metric: str, direction: str) -> None:
    ctx = make_ctx(metric=metric, direction=direction)
    final = train(ctx, base(lr=0.03, epochs=10, early_stopping_patience=0))
    monitored = metric if metric != "val_accuracy" else "val_loss"  # not reported: val_loss, minimised
    series = ctx.series(monitored)
    best = int(np.argmax(series) if direction == "maximize" and monitored != "val_loss" else np.argmin(series))
    assert final["best_epoch"] == best + 1
    assert final[monitored] == series[best]


def test_early_stopping_on_val_rmse(make_ctx) -> None:
    ctx = make_ctx(metric="val_rmse", direction="minimize")
    final = train(ctx, base(lr=0.0, epochs=20, early_stopping_patience=3))
    assert len(ctx.reports) == 4 and final["best_epoch"] == 1 and final["epochs_run"] == 4


def test_pruning_propagates(make_ctx) -> None:
    ctx = make_ctx(metric="val_rmse", direction="minimize", prune_at=2)
    with pytest.raises(TrialPruned):
        train(ctx, base())
    assert len(ctx.reports) == 2 and not (ctx.trial_dir / "best.pt").exists()


def test_label_smoothing_is_ignored_and_seeds_repeat(make_ctx) -> None:
    def run(seed: int, **options: Any) -> dict[str, float]:
        result = train(make_ctx(seed=seed, metric="val_rmse", direction="minimize"), base(dropout=0.1, **options))
        return {k: v for k, v in result.items() if k not in TIMING}

    plain = run(4)
    assert run(4, label_smoothing=0.2) == plain
    assert run(5) != plain


@pytest.mark.parametrize("options", [
    {"precision": "bf16"},
    {"precision": "fp16", "grad_clip": 1.0},
    {"l1": 1e-4, "weight_decay": 1e-3, "optimizer": "adamw"},
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "onecycle"},
    {"batch_norm": True, "dropout": 0.2, "activation": "tanh", "init": "he", "schedule": "cosine",
     "warmup_frac": 0.1},
    {"batch_size": 1000},  # one batch per epoch
])
def test_options_run_and_learn(make_ctx, options: dict[str, Any]) -> None:
    final = train(make_ctx(metric="val_rmse", direction="minimize"), base(**options))
    assert all(math.isfinite(v) for v in final.values())
    assert final["val_r2"] > 0.1


def test_latency_when_the_study_optimises_it(make_ctx) -> None:
    ctx = make_ctx(metric="val_rmse", direction="minimize")
    ctx.metrics = ("val_rmse", "latency_ms")
    assert 0 < train(ctx, base(epochs=1))["latency_ms"] < 1000


def test_train_classifier_is_the_same_loop() -> None:
    assert train_classifier is train_model


# ---- the task ------------------------------------------------------------------------------------


def test_regression_task_metrics_and_defaults() -> None:
    task = MLPTask({"task_type": "regression", "dataset": "diabetes"})
    assert task.task_type == "regression"
    assert (task.default_metric, task.default_direction) == ("val_rmse", "minimize")
    assert task.metric_names() == [*REGRESSION_EPOCH_METRICS, *REGRESSION_FINAL_METRICS, "latency_ms"]
    plain = MLPTask()
    assert plain.task_type == "classification" and (plain.default_metric, plain.default_direction) == \
        ("val_accuracy", "maximize") and "val_rmse" not in plain.metric_names()
    assert (MLPTask.default_metric, MLPTask.default_direction) == ("val_accuracy", "maximize")  # class unchanged


def test_regression_task_runs_on_diabetes(make_ctx) -> None:
    task = MLPTask({"task_type": "regression", "dataset": "diabetes", "max_samples": 300})
    ctx = make_ctx(metric="val_rmse", direction="minimize")
    final = task.run({"epochs": 3, "lr": 0.01, "width": 16}, ctx)
    assert set(final) <= set(task.metric_names()) and all(set(m) <= set(task.metric_names()) for _, m in ctx.reports)
    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=False)
    assert ckpt["task"] == "mlp" and ckpt["task_args"]["task_type"] == "regression"
    assert ckpt["data"]["sizes"] == {"train": 210, "val": 45, "test": 45}


def test_regression_on_a_csv_next_to_the_spec_in_the_target_units(tmp_path: Path, make_ctx) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    price = 1000 + 300 * X[:, 0] - 200 * X[:, 1] + rng.normal(scale=10, size=400)  # noise: 10 units
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "houses.csv").write_text(
        "\n".join(["a,price,b,c"] + [f"{r[0]},{p},{r[1]},{r[2]}" for r, p in zip(X, price)]) + "\n")
    spec = tmp_path / "study.yaml"
    spec.write_text("task: mlp\n")
    task = MLPTask({"task_type": "regression", "dataset": "data/houses.csv", "label": "price"}, source=str(spec))
    final = task.run({"epochs": 30, "lr": 0.01, "width": 32, "n_layers": 1}, make_ctx(metric="val_rmse",
                                                                                          direction="minimize"))
    assert final["val_r2"] > 0.98 and final["test_r2"] > 0.98
    assert 5 < final["test_rmse"] < 40  # in the price's units (its std is about 360)


@pytest.mark.parametrize("args, key, words", [
    ({"task_type": "ranking"}, "task_args.task_type",
     "unknown task type 'ranking'; use one of classification, regression"),
    ({"task_type": "regression"}, "task_args.dataset", "digits is a classification data set"),
    ({"task_type": "regression", "dataset": "data/mnist"}, "task_args.dataset", "not a regression table"),
    ({"dataset": "diabetes"}, "task_args.dataset", "diabetes is a regression data set"),
    ({"task_type": "regression", "dataset": "diabetes", "max_samples": 3}, "task_args.max_samples", ">= 10"),
])
def test_bad_task_args_are_one_line_spec_errors(args: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        MLPTask(args, source="studies/r.yaml")
    message = str(info.value)
    assert info.value.path == key and words in message
    assert message.startswith(f"studies/r.yaml: {key}: ") and "\n" not in message


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_image_tasks_are_classification_only(name: str) -> None:
    for value in ("regression", "classification"):
        with pytest.raises(SpecError) as info:
            get_task(name)({"task_type": value}, source="studies/i.yaml")
        assert info.value.path == "task_args.task_type"
        assert f"task {name} is classification only" in str(info.value) and "task mlp" in str(info.value)


# ---- the spec ----------------------------------------------------------------------------------------


def _study(**kw: Any) -> dict[str, Any]:
    return {"name": "r", "task": "mlp", "task_args": {"task_type": "regression", "dataset": "diabetes"},
            "search_space": "mlp_regression.yaml", **kw}


def test_a_regression_study_defaults_to_val_rmse() -> None:
    spec = spec_from_mapping(_study(), source="r.yaml", base_dir=ROOT)
    assert spec.metrics == ("val_rmse",) and spec.directions == ("minimize",)
    spec = spec_from_mapping(_study(metric="val_r2", direction="maximize"), source="r.yaml", base_dir=ROOT)
    assert spec.metrics == ("val_r2",) and spec.directions == ("maximize",)
    spec = spec_from_mapping(_study(metrics=["val_rmse", "latency_ms"], directions=["min", "min"], sampler="nsga2"),
                             source="r.yaml", base_dir=ROOT)
    assert spec.metrics == ("val_rmse", "latency_ms")


def test_a_regression_study_asking_for_accuracy_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_mapping(_study(metric="val_accuracy", direction="maximize"), source="r.yaml", base_dir=ROOT)
    message = str(info.value)
    assert info.value.path == "metric" and "\n" not in message
    assert message.startswith("r.yaml: metric: task mlp does not report 'val_accuracy'")
    assert "val_rmse" in message and "val_r2" in message
    with pytest.raises(SpecError) as info:  # and a classification study asking for RMSE
        spec_from_mapping({**_study(metric="val_rmse"), "task_args": {}, "search_space": "mlp.yaml"},
                          source="c.yaml", base_dir=ROOT)
    assert info.value.path == "metric" and "val_accuracy" in str(info.value)
