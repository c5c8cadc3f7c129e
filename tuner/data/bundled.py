"""The small data sets bundled with scikit-learn: offline, read as raw ``(X, y)`` tables.

``digits`` (1,797 x 64, 10 classes), ``iris`` (150 x 4, 3 classes), ``wine`` (178 x 13,
3 classes), ``breast_cancer`` (569 x 30, 2 classes) and ``diabetes`` (442 x 10, a regression
target). California housing and the other ``fetch_*`` sets are downloads, so they are not
here. Unlike :func:`tuner.data.load_dataset` nothing is split or standardised: the
scikit-learn task cross-validates on these tables itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["BUNDLED_DATASETS", "BUNDLED_SIZES", "BundledTable", "load_bundled"]

#: Name -> ``"classification"`` or ``"regression"``.
BUNDLED_DATASETS: dict[str, str] = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}

#: Name -> number of samples, known without reading the data (``tuner validate`` checks a split with it).
BUNDLED_SIZES: dict[str, int] = {"digits": 1797, "iris": 150, "wine": 178, "breast_cancer": 569, "diabetes": 442}


class BundledTable(NamedTuple):
    """A whole bundled data set: features, targets and what names them."""

    name: str
    X: np.ndarray  # (n, n_features) float32 (float64 for diabetes, which is already scaled)
    y: np.ndarray  # int64 class indices 0..K-1, or float64 targets
    class_names: tuple[str, ...] | None  # None for regression
    feature_names: tuple[str, ...]
    task_type: str  # "classification" | "regression"


@lru_cache(maxsize=None)
def load_bundled(name: str) -> BundledTable:
    """The bundled data set ``name`` (one of :data:`BUNDLED_DATASETS`), read once per process."""
    if name not in BUNDLED_DATASETS:
        raise KeyError(f"unknown bundled data set {name!r}; known: {', '.join(BUNDLED_DATASETS)}")
    if name == "digits":
        from tuner.data.digits import _raw_digits

        X, y = _raw_digits()  # read without importing scikit-learn
        return BundledTable(name, X, y, tuple(str(i) for i in range(10)),
                            tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)), "classification")
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    task_type = BUNDLED_DATASETS[name]
    if task_type == "classification":
        X = np.ascontiguousarray(bunch.data, dtype=np.float32)
        y = np.asarray(bunch.target, dtype=np.int64)
        class_names: tuple[str, ...] | None = tuple(str(c) for c in bunch.target_names)
    else:
        X = np.ascontiguousarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target, dtype=np.float64)
        class_names = None
    X.setflags(write=False)
    y.setflags(write=False)
    return BundledTable(name, X, y, class_names, tuple(str(f) for f in bunch.feature_names), task_type)
