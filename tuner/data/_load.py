"""One entry point for every data set: a built-in name or a path to a local file.

:func:`load_dataset` reads classification data (class labels); :func:`load_regression_dataset`
reads regression data (a number to predict): the bundled ``diabetes`` or a .csv/.npz table.
:func:`check_dataset` validates either kind without reading the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tuner.data._paths import candidate_paths
from tuner.data._splits import DEFAULT_SPLIT, TASK_TYPES, Splits
from tuner.exceptions import SpecError

__all__ = ["BUILTIN_DATASETS", "BUILTIN_TASK_TYPES", "check_dataset", "load_dataset", "load_regression_dataset"]

#: Data sets that ship with tuner's dependencies (no download), and what each one's target is.
BUILTIN_TASK_TYPES: dict[str, str] = {"digits": "classification", "diabetes": "regression"}
BUILTIN_DATASETS = tuple(BUILTIN_TASK_TYPES)


def check_dataset(dataset: Any, *, base_dir: str | Path | None = None, source: str = "<spec>",
                  key: str = "dataset", task_type: str = "classification") -> str:
    """Validate a ``dataset`` argument without reading it; return a built-in name or an absolute path.

    A relative path is looked up next to the spec (``base_dir``) first, then in the working
    directory. ``task_type`` says what the data set is for: a built-in data set of the other
    kind is refused with the fix, and so is an IDX folder (images with classes) for regression.
    """
    from tuner.data.tabular import TABULAR_SUFFIXES

    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    regression = task_type == "regression"
    builtins = [name for name, kind in BUILTIN_TASK_TYPES.items() if kind == task_type]
    fix = (f"use {' or '.join(builtins)} or a path to a {' or '.join(TABULAR_SUFFIXES)} file"
           + (" with a numeric target column" if regression else
              " or a folder of MNIST-family IDX files (e.g. data/fashion-mnist)"))
    if not isinstance(dataset, (str, Path)) or not str(dataset):
        raise SpecError(source, key, f"expected a data set name or a file path, got {dataset!r}", fix)
    kind = BUILTIN_TASK_TYPES.get(str(dataset))
    if kind == task_type:
        return str(dataset)
    if kind is not None:
        if kind == "regression":
            raise SpecError(source, key, f"{dataset} is a regression data set (a number to predict, not classes)",
                            f"set {_sibling(key, 'task_type')}: regression (task mlp), or {fix}")
        raise SpecError(source, key, f"{dataset} is a classification data set, but task_type is regression",
                        f"{fix}, or set {_sibling(key, 'task_type')}: classification")
    path = Path(dataset).expanduser()
    if path.suffix.lower() not in TABULAR_SUFFIXES:
        if _looks_like_folder(str(dataset), path, base_dir):
            if regression:
                raise SpecError(source, key, f"{str(dataset)!r} is a folder (IDX images with classes), "
                                "not a regression table", fix)
            from tuner.data.idx import check_idx_folder

            return check_idx_folder(path, base_dir=base_dir, source=source, key=key)
        raise SpecError(source, key, f"unknown data set {str(dataset)!r}", fix)
    candidates = candidate_paths(path, base_dir)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate.resolve())
    where = " or ".join(str(c) for c in candidates)
    raise SpecError(source, key, f"file {str(dataset)!r} not found (looked at {where})",
                    "give a path relative to the spec file or an absolute path")


def load_dataset(
    dataset: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    label: str | int | None = None,
    standardize: bool = True,
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """Load a built-in data set by name or a local .npz/.csv file, split and standardised."""
    dataset = check_dataset(dataset, source=source, key=key)
    common: dict[str, Any] = {"split": split, "split_seed": split_seed, "max_samples": max_samples,
                              "standardize": standardize}
    if dataset == "digits":
        from tuner.data.digits import load_digits

        return load_digits(**common)
    if Path(dataset).is_dir():
        from tuner.data.idx import load_idx

        return load_idx(dataset, source=source, key=key, **common)
    from tuner.data.tabular import load_tabular

    return load_tabular(dataset, label=label, source=source, key=key, **common)


def load_regression_dataset(
    dataset: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    label: str | int | None = None,
    standardize: bool = True,
    standardize_target: bool = True,
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """Load ``diabetes`` or a local .npz/.csv table with a numeric target (``label``), split at random
    and standardised, target included (see :func:`tuner.data.make_regression_splits`)."""
    from tuner.data._splits import make_regression_splits

    dataset = check_dataset(dataset, source=source, key=key, task_type="regression")
    if dataset in BUILTIN_TASK_TYPES:
        from tuner.data.bundled import load_bundled

        table = load_bundled(dataset)
        X, y, name = table.X, table.y, dataset
    else:
        from tuner.data.tabular import read_regression_table

        X, y = read_regression_table(Path(dataset), label=label, source=source, key=key)
        name = Path(dataset).name
    return make_regression_splits(X, y, name=name, split=split, split_seed=split_seed, max_samples=max_samples,
                                  standardize=standardize, standardize_target=standardize_target)


def _sibling(key: str, name: str) -> str:
    """``task_args.dataset`` -> ``task_args.task_type``: the key path of a neighbouring argument."""
    return key.rsplit(".", 1)[0] + "." + name if "." in key else name


def _looks_like_folder(text: str, path: Path, base_dir: str | Path | None) -> bool:
    """An existing folder, or a path without a file suffix (``data/mnist``, ``./mnist``, ``~/mnist``)."""
    places = [Path(base_dir)] if base_dir is not None else []
    if path.is_dir() or any((p / path).is_dir() for p in [*places, Path.cwd()]):
        return True
    return not path.suffix and ("/" in text or "\\" in text or text.startswith((".", "~")))
