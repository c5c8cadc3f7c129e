"""Data set loaders: built-in data sets and local files, split and standardised the same way.

Every loader returns a :class:`Splits` (train/val/test :class:`Part` s of NumPy arrays plus
``n_features``, ``n_classes``, ``input_shape``, ``class_names`` and the training ``mean``/``std``).
Importing this package does not import torch or scikit-learn.
"""

from tuner.data._load import BUILTIN_DATASETS, check_dataset, load_dataset
from tuner.data._splits import DEFAULT_SPLIT, Part, Splits, check_split, make_splits, stratified_order
from tuner.data.digits import load_digits
from tuner.data.tabular import TABULAR_SUFFIXES, load_tabular, read_table

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_SPLIT",
    "TABULAR_SUFFIXES",
    "Part",
    "Splits",
    "check_dataset",
    "check_split",
    "load_dataset",
    "load_digits",
    "load_tabular",
    "make_splits",
    "read_table",
    "stratified_order",
]
