"""Train/validation/test splits shared by every loader.

A loader reads features ``X`` and integer labels ``y`` and hands them to :func:`make_splits`,
which (optionally) subsamples, splits stratified by class with a fixed seed, and standardises
every part with the mean and standard deviation of the training part only. The statistics
travel with the :class:`Splits` so that an exported model can apply the same transform.

Regression data (a number to predict) goes through :func:`make_regression_splits` instead: the
subsample and the split are random (seeded, not stratified: there are no classes), the
features are standardised the same way, and so is the target, with the training part's
``y_mean``/``y_std``, which travel with the :class:`Splits` to turn predictions back into the
target's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tuner.exceptions import SpecError

__all__ = ["Part", "Splits", "make_splits", "make_regression_splits", "check_split", "check_parts", "split_sizes",
           "stratified_order", "DEFAULT_SPLIT", "PART_NAMES", "TASK_TYPES"]

#: Fractions of the data for train, validation and test.
DEFAULT_SPLIT: tuple[float, float, float] = (0.7, 0.15, 0.15)
#: The parts, in the order ``split`` gives their fractions.
PART_NAMES: tuple[str, str, str] = ("train", "val", "test")
#: What a data set's ``y`` holds: class indices or a number to predict.
TASK_TYPES = ("classification", "regression")


@dataclass(frozen=True)
class Part:
    """One part of a data set: features ``X`` (float32, one row per sample) and labels ``y``
    (int64 class indices; for regression float32 targets, standardised as :class:`Splits` says)."""

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

    ``task_type`` is ``"classification"`` or ``"regression"``. A regression data set has
    ``n_classes=1`` (one model output), no ``class_names``, and float32 targets ``y`` stored as
    ``(target - y_mean) / y_std`` with the training part's statistics: a prediction ``p`` in
    those units is ``p * y_std + y_mean`` in the target's. Both are None for classification.
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
    task_type: str = "classification"
    y_mean: float | None = None
    y_std: float | None = None

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
            "task_type": self.task_type,
            "y_mean": self.y_mean,
            "y_std": self.y_std,
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


def split_sizes(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` samples go to train, val and test: the one cut every split makes.

    The loaders, the scikit-learn task and ``tuner validate`` (for a data set whose size it
    knows) count with it, so that they agree on which part a small data set leaves empty.
    """
    n_train = round(split[0] * n)
    n_val = round(split[1] * n)
    return n_train, n_val, n - n_train - n_val


def check_parts(sizes: Mapping[str, int], *, n: int, name: str, split: Sequence[float], source: str,
                key: str) -> None:
    """Refuse a split that leaves a part of ``sizes`` (``{"val": 0, ...}``) with no samples.

    A part with no samples has no score: scored anyway, it read as an accuracy of 0 (a COMPLETE
    trial ranked on nothing) or failed every trial on a NaN. Each task names the parts it needs
    (the torch tasks all three, the scikit-learn task its test part).
    """
    for part, size in sizes.items():
        if size == 0:
            fractions = ", ".join(f"{f:g}" for f in split)
            raise SpecError(source, key, f"the {part} part of {name} is empty ({n} samples split [{fractions}])",
                            f"give the {part} part a larger fraction or use more samples")


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
    n_train, n_val, _ = split_sizes(len(y), fractions)
    parts = np.split(order, [n_train, n_train + n_val])
    train_idx, val_idx, test_idx = (np.sort(p) for p in parts)

    n_features = X.shape[1]
    mean, std = _feature_stats(X[train_idx], standardize)

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


def make_regression_splits(
    X: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    standardize: bool = True,
    standardize_target: bool = True,
) -> Splits:
    """Subsample (optional), split at random and standardise ``X`` (n, n_features) and the numeric target ``y`` (n,).

    With the same ``split_seed`` the parts are those of ``task: sklearn`` on the same data: the
    ``max_samples`` subsample is ``rng.permutation(n)[:max_samples]`` and the parts are cut from
    a second permutation in the order train, val, test (``rng = default_rng(split_seed)``).
    """
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"{len(X)} rows of X but {len(y)} targets")
    fractions = check_split(split, source="make_regression_splits", key="split")
    rng = np.random.default_rng(split_seed)

    if max_samples is not None and max_samples < len(y):
        keep = np.sort(rng.permutation(len(y))[:max_samples])
        X, y = X[keep], y[keep]

    order = rng.permutation(len(y))
    n_train, n_val, _ = split_sizes(len(y), fractions)
    train_idx, val_idx, test_idx = (np.sort(p) for p in np.split(order, [n_train, n_train + n_val]))

    n_features = X.shape[1]
    mean, std = _feature_stats(X[train_idx], standardize)
    y_mean, y_std = 0.0, 1.0
    if standardize_target and len(train_idx):
        y_mean = float(y[train_idx].mean())
        y_std = float(y[train_idx].std())
        if not y_std > 1e-12:  # a constant target is only centred
            y_std = 1.0

    def part(idx: np.ndarray) -> Part:
        Xp = (X[idx] - mean) / std if standardize else X[idx]
        return Part(np.ascontiguousarray(Xp, dtype=np.float32), ((y[idx] - y_mean) / y_std).astype(np.float32))

    return Splits(
        name=name,
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        n_features=n_features,
        n_classes=1,
        input_shape=(n_features,),
        class_names=(),
        mean=mean,
        std=std,
        task_type="regression",
        y_mean=y_mean,
        y_std=y_std,
    )


def _feature_stats(X_train: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the training part (0 and 1 when not standardising)."""
    n_features = X_train.shape[1]
    if not standardize:
        return np.zeros(n_features, dtype=np.float32), np.ones(n_features, dtype=np.float32)
    mean = X_train.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = X_train.std(axis=0, dtype=np.float64).astype(np.float32)
    std[std < 1e-8] = 1.0  # constant features (blank pixels) are only centred
    return mean, std
