"""Train/validation/test splits shared by every loader.

A loader reads features ``X`` and integer labels ``y`` and hands them to :func:`make_splits`,
which (optionally) subsamples, splits stratified by class with a fixed seed, and standardises
every part with the mean and standard deviation of the training part only. The statistics
travel with the :class:`Splits` so that an exported model can apply the same transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from tuner.exceptions import SpecError

__all__ = ["Part", "Splits", "make_splits", "check_split", "stratified_order", "DEFAULT_SPLIT"]

#: Fractions of the data for train, validation and test.
DEFAULT_SPLIT: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class Part:
    """One part of a data set: features ``X`` (float32, one row per sample) and labels ``y`` (int64)."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[np.ndarray]:  # ``X, y = splits.train``
        return iter((self.X, self.y))


@dataclass(frozen=True)
class Splits:
    """A data set split into train, validation and test parts, plus what describes it.

    ``X`` of every part is flat, ``(n, n_features)``; ``input_shape`` gives the shape of one
    sample for models that want it back (``(1, 8, 8)`` for the digits images).
    ``mean`` and ``std`` (``(n_features,)``) are the training-part statistics already applied
    to every part (``mean=0``, ``std=1`` when standardisation was off).
    """

    name: str
    train: Part
    val: Part
    test: Part
    n_features: int
    n_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    def describe(self) -> dict[str, Any]:
        """JSON-able description, stored with checkpoints so a model can be used without the data."""
        return {
            "dataset": self.name,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "class_names": list(self.class_names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
        }


def check_split(split: Any, *, source: str = "<spec>", key: str = "split") -> tuple[float, float, float]:
    """Validate ``[train, val, test]`` fractions (each > 0, summing to 1) and return them."""
    fix = "give three fractions for train, val and test that sum to 1, e.g. [0.7, 0.15, 0.15]"
    if not isinstance(split, (list, tuple)) or len(split) != 3:
        raise SpecError(source, key, f"expected a list of 3 fractions, got {split!r}", fix)
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) for f in split):
        raise SpecError(source, key, f"fractions must be numbers, got {list(split)!r}", fix)
    if not all(0 < f < 1 for f in split):
        raise SpecError(source, key, f"every fraction must be between 0 and 1 (exclusive), got {list(split)!r}", fix)
    if abs(sum(split) - 1.0) > 1e-6:
        raise SpecError(source, key, f"fractions sum to {sum(split):g}, not 1", fix)
    return (float(split[0]), float(split[1]), float(split[2]))


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(y))`` in which every prefix holds each class in proportion.

    Samples are shuffled within their class, then ordered by their relative rank in the class
    (``(rank + 0.5) / class_count``). Cutting this order anywhere gives a stratified, random
    subset of exactly the requested size.
    """
    n = len(y)
    perm = rng.permutation(n)
    yp = y[perm]
    counts = np.bincount(yp)
    by_class = np.argsort(yp, kind="stable")  # grouped by class, random within a class
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.float64)
    rank[by_class] = np.arange(n) - starts[yp[by_class]]
    key = (rank + 0.5) / counts[yp]
    return perm[np.argsort(key, kind="stable")]


def make_splits(
    X: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    class_names: Sequence[str],
    input_shape: tuple[int, ...] | None = None,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    standardize: bool = True,
) -> Splits:
    """Subsample (optional), split stratified and standardise ``X`` (n, ...) with labels ``y`` in 0..K-1."""
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.int64)
    fractions = check_split(split, source="make_splits", key="split")
    rng = np.random.default_rng(split_seed)

    if max_samples is not None and max_samples < len(y):
        keep = np.sort(stratified_order(y, rng)[:max_samples])
        X, y = X[keep], y[keep]

    order = stratified_order(y, rng)
    n_train = round(fractions[0] * len(y))
    n_val = round(fractions[1] * len(y))
    parts = np.split(order, [n_train, n_train + n_val])
    train_idx, val_idx, test_idx = (np.sort(p) for p in parts)

    n_features = X.shape[1]
    if standardize:
        mean = X[train_idx].mean(axis=0, dtype=np.float64).astype(np.float32)
        std = X[train_idx].std(axis=0, dtype=np.float64).astype(np.float32)
        std[std < 1e-8] = 1.0  # constant features (blank pixels) are only centred
    else:
        mean = np.zeros(n_features, dtype=np.float32)
        std = np.ones(n_features, dtype=np.float32)

    def part(idx: np.ndarray) -> Part:
        Xp = (X[idx] - mean) / std if standardize else X[idx]
        return Part(np.ascontiguousarray(Xp, dtype=np.float32), y[idx].copy())

    return Splits(
        name=name,
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        n_features=n_features,
        n_classes=len(class_names),
        input_shape=tuple(input_shape) if input_shape is not None else (n_features,),
        class_names=tuple(str(c) for c in class_names),
        mean=mean,
        std=std,
    )
