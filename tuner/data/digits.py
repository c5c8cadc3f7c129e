"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): offline, small and fast.

The images are flattened to 64 features; ``input_shape`` is ``(1, 8, 8)`` for image models.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from tuner.data._splits import DEFAULT_SPLIT, Splits, make_splits

__all__ = ["load_digits"]


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(X (1797, 64) float32, y (1797,) int64)``, read once per process.

    The file bundled with scikit-learn is read directly, which avoids importing scikit-learn
    (about a second in a fresh worker); ``sklearn.datasets.load_digits`` is the fallback.
    """
    sklearn_spec = importlib.util.find_spec("sklearn")
    locations = list(sklearn_spec.submodule_search_locations or []) if sklearn_spec else []
    bundled = [Path(p) / "datasets" / "data" / "digits.csv.gz" for p in locations]
    if bundled and bundled[0].is_file():
        table = np.loadtxt(bundled[0], delimiter=",", dtype=np.float32)
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits as sk_load_digits

        bunch = sk_load_digits()
        X, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    X = np.ascontiguousarray(X)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_digits(
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    standardize: bool = True,
) -> Splits:
    """The digits data set, split stratified into train/val/test with ``split_seed``."""
    X, y = _raw_digits()
    return make_splits(
        X,
        y,
        name="digits",
        class_names=[str(i) for i in range(10)],
        input_shape=(1, 8, 8),
        split=split,
        split_seed=split_seed,
        max_samples=max_samples,
        standardize=standardize,
    )
