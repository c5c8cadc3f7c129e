"""Data set loaders: built-in data sets and local files, split and standardised the same way.

Every loader returns a :class:`Splits` (train/val/test :class:`Part` s of NumPy arrays plus
``n_features``, ``n_classes``, ``input_shape``, ``class_names`` and the training ``mean``/``std``).
:func:`load_regression_dataset` returns one for a numeric target (``task_type="regression"``,
target standardised with the training ``y_mean``/``y_std``).
Importing this package does not import torch or scikit-learn.
"""

from typing import TYPE_CHECKING, Any

from tuner.data._load import BUILTIN_DATASETS, BUILTIN_TASK_TYPES, check_dataset, load_dataset, load_regression_dataset
from tuner.data._splits import (DEFAULT_SPLIT, PART_NAMES, TASK_TYPES, Part, Splits, check_parts, check_split,
                                make_regression_splits, make_splits, split_sizes, stratified_order)
from tuner.data.bundled import BUNDLED_DATASETS, BUNDLED_SIZES, BundledTable, load_bundled
from tuner.data.digits import load_digits
from tuner.data.images import load_images
from tuner.data.tabular import TABULAR_SUFFIXES, load_tabular, read_regression_table, read_table
from tuner.data.text import TEXT_SUFFIXES, TextPart, TextSplits, load_text, read_texts

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_TASK_TYPES",
    "BUNDLED_DATASETS",
    "BUNDLED_SIZES",
    "BundledTable",
    "DEFAULT_SPLIT",
    "PART_NAMES",
    "TABULAR_SUFFIXES",
    "TASK_TYPES",
    "TEXT_SUFFIXES",
    "TextPart",
    "TextSplits",
    "Part",
    "Splits",
    "check_dataset",
    "check_parts",
    "check_split",
    "load_bundled",
    "load_dataset",
    "load_digits",
    "load_idx",
    "load_images",
    "load_regression_dataset",
    "load_tabular",
    "load_text",
    "make_regression_splits",
    "make_splits",
    "read_idx",
    "read_regression_table",
    "read_table",
    "read_texts",
    "split_sizes",
    "stratified_order",
    "write_idx",
]

if TYPE_CHECKING:
    from tuner.data.idx import load_idx, read_idx, write_idx

_LAZY = {"load_idx": "tuner.data.idx", "read_idx": "tuner.data.idx", "write_idx": "tuner.data.idx"}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m tuner.data.idx download ...` runs that module fresh.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner.data' has no attribute {name!r}")
