"""Metric names of the torch tasks, and their scores in NumPy (no scikit-learn on the hot path).

Classification scores come from a confusion matrix; conventions follow ``sklearn.metrics``:
macro averages run over the classes present in the true or the predicted labels, and a
precision or recall whose denominator is 0 counts as 0. Regression scores (RMSE, MAE, R^2)
follow ``sklearn.metrics`` too: R^2 is 1 - SS_res / SS_tot with the true values' own mean.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["EPOCH_METRICS", "FINAL_METRICS", "OPTIONAL_METRICS", "REGRESSION_EPOCH_METRICS",
           "REGRESSION_FINAL_METRICS", "SCORES", "REGRESSION_SCORES", "confusion_matrix", "scores", "per_class",
           "regression_scores"]

#: What a classification task reports every epoch.
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall", "lr", "epoch_time_s")
#: What it adds to the best epoch's metrics at the end of a trial.
FINAL_METRICS = ("test_loss", "test_accuracy", "test_f1", "test_precision", "test_recall",
                 "n_params", "best_epoch", "epochs_run", "train_time_s")
#: Final metrics measured only when the study optimises them (timings, which vary from run to run).
OPTIONAL_METRICS = ("latency_ms",)
#: What a regression task reports every epoch (RMSE and MAE in the target's units).
REGRESSION_EPOCH_METRICS = ("train_loss", "val_loss", "val_rmse", "val_mae", "val_r2", "lr", "epoch_time_s")
#: What it adds at the end of a trial.
REGRESSION_FINAL_METRICS = ("test_loss", "test_rmse", "test_mae", "test_r2",
                            "n_params", "best_epoch", "epochs_run", "train_time_s")
#: The scores of one part, reported as ``val_<name>`` and ``test_<name>``.
SCORES = ("accuracy", "f1", "precision", "recall")
REGRESSION_SCORES = ("rmse", "mae", "r2")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (int64, n_classes x n_classes)."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _per_class_arrays(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = predicted + support  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def scores(cm: np.ndarray) -> dict[str, float]:
    """Accuracy and macro precision, recall and F1 of a confusion matrix (NaN for no samples).

    No samples give no score: NaN, as :func:`regression_scores`, never 0, which a study would
    rank as a (bad) result of a trial that was measured on nothing.
    """
    if not cm.sum():
        return {name: math.nan for name in SCORES}
    precision, recall, f1, support = _per_class_arrays(cm)
    present = (support + cm.sum(axis=0)) > 0
    return {
        "accuracy": float(np.trace(cm) / cm.sum()),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }


def per_class(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{class name: {precision, recall, f1, support}}`` (JSON-able)."""
    precision, recall, f1, support = _per_class_arrays(cm)
    return {
        str(name): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Root-mean-squared error, mean absolute error and R^2 of ``y_pred`` (NaN for no samples).

    R^2 of a constant ``y_true`` is 1 for a perfect prediction and 0 otherwise (as scikit-learn).
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(y_true) == 0:
        return {"rmse": math.nan, "mae": math.nan, "r2": math.nan}
    error = y_pred - y_true
    ss_res = float(np.sum(error ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "rmse": math.sqrt(ss_res / len(y_true)),
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0),
    }
