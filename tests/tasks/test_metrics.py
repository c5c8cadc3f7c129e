"""tuner.tasks._metrics agrees with sklearn.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from tuner.tasks._metrics import confusion_matrix, per_class, scores


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = 6
    y_true = rng.integers(0, n_classes, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, n_classes, 200))
    if seed == 1:  # a class never predicted and never present, another only predicted
        y_true[y_true == 5] = 0
        y_pred[y_pred == 5] = 0
        y_true[y_true == 4] = 1
    cm = confusion_matrix(y_true, y_pred, n_classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=range(n_classes)))
    got = scores(cm)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert got[name] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0)), name

    report = per_class(cm, [f"c{i}" for i in range(n_classes)])
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(n_classes), zero_division=0)
    for i in range(n_classes):
        assert report[f"c{i}"] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})


def test_confusion_matrix_shape_and_sum() -> None:
    cm = confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), 4)
    assert cm.shape == (4, 4) and cm.sum() == 4 and np.trace(cm) == 2


def test_no_samples_have_no_score() -> None:
    # An accuracy of 0 for an empty part read as a result; NaN says there is none (as regression's).
    assert all(np.isnan(v) for v in scores(np.zeros((3, 3), dtype=np.int64)).values())
