"""One entry point for every data set: a built-in name or a path to a local file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tuner.data._splits import DEFAULT_SPLIT, Splits
from tuner.exceptions import SpecError

__all__ = ["BUILTIN_DATASETS", "check_dataset", "load_dataset"]

#: Data sets that ship with tuner's dependencies (no download).
BUILTIN_DATASETS = ("digits",)


def check_dataset(dataset: Any, *, base_dir: str | Path | None = None, source: str = "<spec>",
                  key: str = "dataset") -> str:
    """Validate a ``dataset`` argument without reading it; return a built-in name or an absolute path.

    A relative path is looked up next to the spec (``base_dir``) first, then in the working
    directory.
    """
    from tuner.data.tabular import TABULAR_SUFFIXES

    fix = (f"use one of {', '.join(BUILTIN_DATASETS)}, a path to a {' or '.join(TABULAR_SUFFIXES)} file "
           f"or a folder of MNIST-family IDX files (e.g. data/fashion-mnist)")
    if not isinstance(dataset, (str, Path)) or not str(dataset):
        raise SpecError(source, key, f"expected a data set name or a file path, got {dataset!r}", fix)
    if str(dataset) in BUILTIN_DATASETS:
        return str(dataset)
    path = Path(dataset).expanduser()
    if path.suffix.lower() not in TABULAR_SUFFIXES:
        if _looks_like_folder(str(dataset), path, base_dir):
            from tuner.data.idx import check_idx_folder

            return check_idx_folder(path, base_dir=base_dir, source=source, key=key)
        raise SpecError(source, key, f"unknown data set {str(dataset)!r}", fix)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(base_dir) / path] if base_dir is not None else []
        candidates.append(Path.cwd() / path)
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


def _looks_like_folder(text: str, path: Path, base_dir: str | Path | None) -> bool:
    """An existing folder, or a path without a file suffix (``data/mnist``, ``./mnist``, ``~/mnist``)."""
    places = [Path(base_dir)] if base_dir is not None else []
    if path.is_dir() or any((p / path).is_dir() for p in [*places, Path.cwd()]):
        return True
    return not path.suffix and ("/" in text or "\\" in text or text.startswith((".", "~")))
