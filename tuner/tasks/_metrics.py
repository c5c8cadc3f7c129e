"""Classification metrics from a confusion matrix, in NumPy (no scikit-learn on the hot path).

Conventions follow ``sklearn.metrics``: macro averages run over the classes present in the
true or the predicted labels, and a precision or recall whose denominator is 0 counts as 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["EPOCH_METRICS", "FINAL_METRICS", "OPTIONAL_METRICS", "confusion_matrix", "scores", "per_class"]

#: What a classification task reports every epoch.
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall", "lr", "epoch_time_s")
#: What it adds to the best epoch's metrics at the end of a trial.
FINAL_METRICS = ("test_loss", "test_accuracy", "test_f1", "test_precision", "test_recall",
                 "n_params", "best_epoch", "epochs_run", "train_time_s")
#: Final metrics measured only when the study optimises them (timings, which vary from run to run).
OPTIONAL_METRICS = ("latency_ms",)


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
    """Accuracy and macro precision, recall and F1 of a confusion matrix."""
    precision, recall, f1, support = _per_class_arrays(cm)
    present = (support + cm.sum(axis=0)) > 0
    total = cm.sum()
    return {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }


def per_class(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{class name: {precision, recall, f1, support}}`` (JSON-able)."""
    precision, recall, f1, support = _per_class_arrays(cm)
    return {
        str(name): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }
