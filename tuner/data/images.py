"""Image data sets for the vision tasks: digits, IDX folders and ``.npz`` image arrays.

:func:`load_images` returns the same :class:`Splits` as every loader (flat ``X``, ``input_shape``
``(C, H, W)``) with three additions the vision tasks need:

* ``classes``: keep only these classes (names or indices), relabelled 0..K-1 in the order given
  (e.g. digits ``[5, 6, 7, 8, 9]`` for a fine-tuning set disjoint from a pretraining one);
* an official test part (IDX ``t10k`` files, or ``X_test``/``y_test`` arrays in the ``.npz``)
  is kept as the test part, and validation is carved from the training part;
* ``normalize``: ``channel`` (one mean and standard deviation per colour channel, what image
  models and augmentation want), ``pixel`` (per feature, like the tabular loaders) or ``none``.
  ``Splits.mean``/``std`` always hold one value per feature, so a model can be used on raw
  flat images the same way whatever the mode.

An ``.npz`` file holds ``X`` (or ``x``/``images``) of shape ``(N, H, W)`` or ``(N, C, H, W)``
and labels ``y`` (or ``labels``); optionally ``X_test``/``y_test``. Channels last
``(N, H, W, C)`` (a last axis of 1, 3 or 4 after a second that is not) is refused with the
transpose that fixes it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tuner.data._splits import DEFAULT_SPLIT, Part, Splits, check_split, make_splits, stratified_order
from tuner.exceptions import SpecError

__all__ = ["NORMALIZATIONS", "check_image_dataset", "check_classes", "image_splits", "load_images"]

NORMALIZATIONS = ("channel", "pixel", "none")


def check_image_dataset(dataset: Any, *, base_dir: str | Path | None = None, source: str = "<spec>",
                        key: str = "dataset") -> str:
    """Like :func:`tuner.data.check_dataset`, for data sets that are images (no CSV)."""
    from tuner.data._load import check_dataset

    checked = check_dataset(dataset, base_dir=base_dir, source=source, key=key)
    if checked.lower().endswith(".csv"):
        raise SpecError(source, key, f"{dataset!r} is a CSV file, which holds no image shape",
                        "save the images as .npz with X of shape (N, H, W) or (N, C, H, W) and labels y, "
                        "or give digits or a folder of IDX files")
    return checked


def check_classes(classes: Any, *, source: str = "<spec>", key: str = "classes") -> list[int | str] | None:
    """``None`` or a list of at least 2 distinct class names or indices."""
    if classes is None:
        return None
    fix = "give at least 2 class names or indices, e.g. classes: [5, 6, 7, 8, 9]"
    if not isinstance(classes, (list, tuple)) or len(classes) < 2:
        raise SpecError(source, key, f"expected a list of classes, got {classes!r}", fix)
    for c in classes:
        if not (isinstance(c, str) and c or isinstance(c, int) and not isinstance(c, bool)):
            raise SpecError(source, key, f"a class must be a name or an integer, got {c!r}", fix)
    if len({str(c) for c in classes}) != len(classes):
        raise SpecError(source, key, f"classes repeat: {list(classes)!r}", "list each class once")
    return list(classes)


def load_images(
    dataset: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    classes: Sequence[int | str] | None = None,
    normalize: str = "channel",
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """``digits``, a folder of IDX files or an ``.npz`` of images, as :class:`Splits` with ``input_shape`` (C, H, W)."""
    dataset = check_image_dataset(dataset, source=source, key=key)
    common: dict[str, Any] = {"split": split, "split_seed": split_seed, "max_samples": max_samples,
                              "classes": classes, "normalize": normalize, "source": source, "key": key}
    if dataset == "digits":
        from tuner.data.digits import _raw_digits

        X, y = _raw_digits()
        return image_splits(X, y, name="digits", class_names=[str(i) for i in range(10)], input_shape=(1, 8, 8),
                            **common)
    path = Path(dataset)
    if path.is_dir():
        from tuner.data.idx import load_idx

        return load_idx(path, **common)
    X, y, test, class_names = _read_image_npz(path, source, key)
    input_shape = (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:])
    return image_splits(X, y, test=test, name=path.name, class_names=class_names, input_shape=input_shape, **common)


def _read_image_npz(path: Path, source: str, key: str
                    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None, list[str]]:
    from tuner.data.tabular import _encode_labels, check_labels_present

    if not path.is_file():
        raise SpecError(source, key, f"file {path} not found", "give an existing .npz file")
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        x_key = next((k for k in ("X", "x", "images") if k in names), None)
        y_key = next((k for k in ("y", "labels") if k in names), None)
        if x_key is None or y_key is None:
            raise SpecError(source, key, f"{path} has arrays {sorted(names)}",
                            "save the images as X and the labels as y (optionally X_test and y_test)")
        X, y = f[x_key], np.asarray(f[y_key]).reshape(-1)
        xt_key = next((k for k in ("X_test", "x_test") if k in names), None)
        test = (f[xt_key], np.asarray(f["y_test"]).reshape(-1)) if xt_key and "y_test" in names else None
    parts = [("X", X, y)] + ([("X_test", *test)] if test is not None else [])
    for what, images, labels in parts:
        if images.ndim not in (3, 4):
            raise SpecError(source, key, f"{path}: {what} must hold images (N, H, W) or (N, C, H, W), "
                            f"got shape {images.shape}", "reshape the array before saving it")
        if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
            raise SpecError(source, key, f"{path}: {what} must be numeric, got dtype {images.dtype}", None)
        if _channels_last(images.shape):
            raise SpecError(source, key, f"{path}: {what} of shape {images.shape} looks channels-last (N, H, W, C), "
                            f"but the layout is (N, C, H, W)",
                            f"save np.transpose({what}, (0, 3, 1, 2)) instead")
        if len(images) != len(labels):
            raise SpecError(source, key, f"{path}: {len(images)} images in {what} but {len(labels)} labels",
                            "give one label per image")
        if not np.isfinite(images).all():
            raise SpecError(source, key, f"{path}: {what} contains NaN or infinite values", None)
        check_labels_present(labels, f"{path}: {'y' if what == 'X' else 'y_test'}", source, key)
    if test is not None and test[0].shape[1:] != X.shape[1:]:
        raise SpecError(source, key, f"{path}: X images are {X.shape[1:]} but X_test images {test[0].shape[1:]}", None)
    all_labels = np.concatenate([y, test[1]]) if test is not None else y
    class_names, encoded = _encode_labels(all_labels)
    if len(class_names) < 2:
        raise SpecError(source, key, f"{path} has a single class", "a classification data set needs at least 2 labels")
    y_enc = encoded[:len(y)]
    return X, y_enc, ((test[0], encoded[len(y):]) if test is not None else None), class_names


def _channels_last(shape: tuple[int, ...]) -> bool:
    """(N, H, W, C) images: a last axis of 1, 3 or 4 (grey, RGB, RGBA) after a second that is not.

    Read as (N, C, H, W) they trained without a word on 8 "channels" of 8 x 3 pixels. Refused
    rather than transposed: an exported model takes its inputs flattened in the layout it was
    trained on, so one layout everywhere keeps ``tuner predict`` from the same mistake.
    """
    return len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4)


def image_splits(
    X: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    class_names: Sequence[str],
    input_shape: tuple[int, ...],
    test: tuple[np.ndarray, np.ndarray] | None = None,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    classes: Sequence[int | str] | None = None,
    normalize: str = "channel",
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """Subset classes, subsample, split stratified (keeping an official ``test``) and normalise images.

    ``X`` is ``(N, ...)`` with ``prod(input_shape)`` values per sample, ``y`` labels in 0..K-1.
    Without ``test`` the split is exactly :func:`tuner.data.make_splits`'s (same seed, same parts).
    With ``test``, validation is ``split[1] / (split[0] + split[1])`` of ``X`` and ``max_samples``
    caps the total in ``split``'s proportions.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    fractions = check_split(split, source=source, key=_sibling(key, "split"))
    X = np.asarray(X).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if X.shape[1] != math.prod(input_shape):
        raise ValueError(f"input_shape {input_shape} does not match {X.shape[1]} values per sample")
    if test is not None:
        X_test = np.asarray(test[0]).reshape(len(test[0]), -1)
        y_test = np.asarray(test[1], dtype=np.int64).reshape(-1)
    class_names = [str(c) for c in class_names]

    if classes is not None:
        wanted = _class_indices(classes, class_names, source, _sibling(key, "classes"))
        remap = np.full(len(class_names), -1, dtype=np.int64)
        remap[wanted] = np.arange(len(wanted))
        keep = remap[y] >= 0
        X, y = X[keep], remap[y[keep]]
        if test is not None:
            keep_t = remap[y_test] >= 0
            X_test, y_test = X_test[keep_t], remap[y_test[keep_t]]
        class_names = [class_names[i] for i in wanted]
    if len(y) == 0:
        raise SpecError(source, key, f"{name}: no samples (of the classes asked for)", None)

    if test is None:
        raw = make_splits(X, y, name=name, class_names=class_names, input_shape=input_shape, split=fractions,
                          split_seed=split_seed, max_samples=max_samples, standardize=False)
    else:
        raw = _splits_with_test(X, y, X_test, y_test, name=name, class_names=class_names, input_shape=input_shape,
                                fractions=fractions, split_seed=split_seed, max_samples=max_samples)
    return _normalized(raw, normalize)


def _splits_with_test(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, *, name: str,
                      class_names: list[str], input_shape: tuple[int, ...], fractions: tuple[float, float, float],
                      split_seed: int, max_samples: int | None) -> Splits:
    rng = np.random.default_rng(split_seed)
    if max_samples is not None and max_samples < len(y) + len(y_test):
        n_test = min(len(y_test), max(1, round(max_samples * fractions[2])))
        n_pool = min(len(y), max_samples - n_test)
        X, y = _subsample(X, y, n_pool, rng)
        X_test, y_test = _subsample(X_test, y_test, n_test, rng)
    order = stratified_order(y, rng)
    n_val = round(fractions[1] / (fractions[0] + fractions[1]) * len(y))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def part(Xp: np.ndarray, yp: np.ndarray) -> Part:
        return Part(np.ascontiguousarray(Xp, dtype=np.float32), np.ascontiguousarray(yp, dtype=np.int64))

    n_features = X.shape[1]
    return Splits(name=name, train=part(X[train_idx], y[train_idx]), val=part(X[val_idx], y[val_idx]),
                  test=part(X_test, y_test), n_features=n_features, n_classes=len(class_names),
                  input_shape=tuple(input_shape), class_names=tuple(class_names),
                  mean=np.zeros(n_features, dtype=np.float32), std=np.ones(n_features, dtype=np.float32))


def _subsample(X: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    keep = np.sort(stratified_order(y, rng)[:n])
    return X[keep], y[keep]


def _normalized(raw: Splits, normalize: str) -> Splits:
    """``raw`` (unnormalised) with every part normalised by training statistics as ``normalize`` says."""
    n_features = raw.n_features
    if normalize == "none" or len(raw.train) == 0:
        return raw
    X = raw.train.X
    if normalize == "pixel":
        mean, std = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
    else:
        channels = raw.input_shape[0] if len(raw.input_shape) == 3 else 1
        per_channel = X.reshape(len(X), channels, -1)
        mean_c = per_channel.mean(axis=(0, 2), dtype=np.float64)
        std_c = per_channel.std(axis=(0, 2), dtype=np.float64)
        mean = np.repeat(mean_c, n_features // channels)
        std = np.repeat(std_c, n_features // channels)
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    std[std < 1e-8] = 1.0  # constant features (blank pixels) are only centred

    def norm(p: Part) -> Part:
        return Part(np.ascontiguousarray((p.X - mean) / std, dtype=np.float32), p.y)

    return replace(raw, train=norm(raw.train), val=norm(raw.val), test=norm(raw.test), mean=mean, std=std)


def _class_indices(classes: Sequence[int | str], class_names: list[str], source: str, key: str) -> list[int]:
    indices = []
    for c in classes:
        if str(c) in class_names:
            indices.append(class_names.index(str(c)))
        elif isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(class_names):
            indices.append(c)
        else:
            shown = ", ".join(class_names) if len(class_names) <= 20 else f"{class_names[0]} .. {class_names[-1]}"
            raise SpecError(source, key, f"class {c!r} is not in the data set", f"its classes are {shown}")
    if len(set(indices)) != len(indices):
        raise SpecError(source, key, f"classes {list(classes)!r} name the same class twice", "list each class once")
    return indices


def _sibling(key: str, name: str) -> str:
    """``task_args.dataset`` -> ``task_args.split``."""
    return key.rsplit(".", 1)[0] + "." + name if "." in key else name
