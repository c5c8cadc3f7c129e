"""Tables from local files: NumPy ``.npz`` (arrays ``X``/``y`` or ``x``/``y``) and ``.csv``.

CSV files may have a header row (detected: a first row with a name, text that is not a number and
that the rows below do not repeat in its column as a headerless file's text labels repeat; see
:func:`first_row_is_header`). The label column is ``label`` (a column name or a 0-based index,
negative counts from the end); by default the column named ``label`` if the header has one,
else the last column. Labels may be
numbers or strings; they are mapped to 0..K-1 in sorted order and their text kept as class
names. Features must be numbers with no missing values. A missing value (an empty cell, ``nan``,
``NA``, ``N/A``, ``NULL``, ``None``, ``?``) or a missing label (an empty cell, ``nan``, ``NA``, ``N/A``,
``NULL``; NaN or empty text in an ``.npz``'s ``y``) is refused in one
line naming it and its line: tuner fills nothing in, and a missing label used to become a class.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from tuner.data._splits import DEFAULT_SPLIT, Splits, make_splits
from tuner.exceptions import SpecError

__all__ = ["load_tabular", "read_table", "read_regression_table", "read_csv_header", "first_row_is_header",
           "check_labels_present", "TABULAR_SUFFIXES"]

TABULAR_SUFFIXES = (".npz", ".csv")


def load_tabular(
    path: str | Path,
    *,
    label: str | int | None = None,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    standardize: bool = True,
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """Read ``path`` (.npz or .csv) and split it like every other data set.

    Problems with the file are reported as :class:`SpecError` at ``source: key``.
    """
    path = Path(path)
    X, y, class_names, input_shape = read_table(path, label=label, source=source, key=key)
    if len(class_names) < 2:
        raise SpecError(source, key, f"{path} has a single class", "a classification data set needs at least 2 labels")
    return make_splits(
        X,
        y,
        name=path.name,
        class_names=class_names,
        input_shape=input_shape,
        split=split,
        split_seed=split_seed,
        max_samples=max_samples,
        standardize=standardize,
    )


def _read_features_and_labels(path: Path, label: str | int | None, source: str, key: str
                              ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``(X (n, n_features) float32, raw labels, input shape)`` of a .npz or .csv, checked."""
    if not path.is_file():
        raise SpecError(source, key, f"file {path} not found", "give an existing .npz or .csv file")
    if path.suffix.lower() == ".npz":
        X, labels = _read_npz(path, source, key)
    elif path.suffix.lower() == ".csv":
        X, labels = _read_csv(path, label, source, key)
    else:
        raise SpecError(source, key, f"unsupported file type {path.suffix!r}", "use a .npz or .csv file")
    if len(X) == 0:
        raise SpecError(source, key, f"{path} holds no samples", None)
    if len(X) != len(labels):
        raise SpecError(source, key, f"{path}: {len(X)} rows of X but {len(labels)} labels", "give one label per row")
    input_shape = tuple(int(d) for d in X.shape[1:]) or (1,)
    if len(input_shape) == 2:  # (n, H, W) images: one channel
        input_shape = (1, *input_shape)
    X = X.reshape(len(X), -1).astype(np.float32)
    if not np.isfinite(X).all():
        raise SpecError(source, key, f"{path}: features contain NaN or infinite values", "fill or drop missing values")
    return X, labels, input_shape


def read_table(
    path: Path, *, label: str | int | None = None, source: str = "<spec>", key: str = "dataset"
) -> tuple[np.ndarray, np.ndarray, list[str], tuple[int, ...]]:
    """``(X (n, n_features) float32, y (n,) int64 in 0..K-1, class names, input shape)``."""
    X, labels, input_shape = _read_features_and_labels(path, label, source, key)
    if path.suffix.lower() == ".npz":  # a CSV's labels were checked row by row
        check_labels_present(labels, f"{path}: y", source, key)
    class_names, y = _encode_labels(labels)
    return X, y, class_names, input_shape


def read_regression_table(
    path: Path, *, label: str | int | None = None, source: str = "<spec>", key: str = "dataset"
) -> tuple[np.ndarray, np.ndarray]:
    """``(X (n, n_features) float32, y (n,) float64)``: a table whose label column is a number to predict.

    Same files and ``label`` rules as :func:`read_table`; the target must be numeric and finite.
    """
    X, labels, _ = _read_features_and_labels(path, label, source, key)
    try:
        y = np.asarray(labels).astype(np.float64).reshape(-1)
    except ValueError:
        bad = next(str(v) for v in labels if not _is_number(str(v)))
        raise SpecError(source, key, f"{path}: target {bad!r} is not a number",
                        "a regression target must be numeric (or use a classifier)") from None
    if not np.isfinite(y).all():
        raise SpecError(source, key, f"{path}: the target contains NaN or infinite values", "fill or drop missing values")
    return X, y


def _read_npz(path: Path, source: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
        x_key = "X" if "X" in names else "x" if "x" in names else None
        if x_key is None or "y" not in names:
            raise SpecError(source, key, f"{path} has arrays {sorted(names)}", "save the features as X (or x) and the labels as y")
        X, y = f[x_key], f["y"]
    if X.ndim < 2:
        raise SpecError(source, key, f"{path}: X must have one row per sample, got shape {X.shape}", None)
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise SpecError(source, key, f"{path}: X must be numeric, got dtype {X.dtype}", None)
    return X, np.asarray(y).reshape(-1)


def _read_csv(path: Path, label: str | int | None, source: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    numbered = _csv_rows(path)
    if not numbered:
        raise SpecError(source, key, f"{path} is empty", None)
    rows = [row for _, row in numbered]
    numbered_header = _numbered_header(rows)
    if numbered_header is None:
        raise SpecError(source, key, f"{path} line {numbered[0][0]}: the first row reads 0, 1, ... over integer "
                        "data: pandas' header of a frame made from an array, or a sample",
                        "name the columns (a header of names) or write the file with to_csv(header=False)")
    header = [h.strip() for h in numbered[0][1]] if numbered_header or first_row_is_header(rows) else None
    if header is not None:
        numbered = numbered[1:]
        if header[0] == "" and len(header) > 1:
            # pandas' default to_csv() writes its index as an unnamed first column; trained on as a
            # feature, it leaks the row order (and with it, in a sorted file, the label)
            raise SpecError(source, key, f"{path} line {numbered[0][0] - 1 if numbered else 1}: the first column has "
                            "no name: pandas' index column?", "write the file with to_csv(index=False), or name it")
    elif _is_pandas_index_header(numbered[0][1]):
        raise SpecError(source, key, f"{path} line {numbered[0][0]}: pandas' header with its index column (an unnamed "
                        "first column, then 0, 1, ...)", "write the file with to_csv(index=False)")
    n_cols = len(header) if header is not None else len(numbered[0][1])
    if n_cols < 2:
        raise SpecError(source, key, f"{path} needs at least one feature column and a label column", None)

    if label is None:
        col = header.index("label") if header is not None and "label" in header else n_cols - 1
    elif isinstance(label, int) and not isinstance(label, bool):
        if not -n_cols <= label < n_cols:
            raise SpecError(source, _sibling(key, "label"), f"column {label} out of range for {n_cols} columns", None)
        col = label % n_cols
    elif header is not None and label in header:
        col = header.index(label)
    else:
        known = f"columns are {header}" if header is not None else f"{path} has no header row; give a column index"
        raise SpecError(source, _sibling(key, "label"), f"no column named {label!r}", known)

    names = [h for j, h in enumerate(header) if j != col] if header is not None else None
    features = np.empty((len(numbered), n_cols - 1), dtype=np.float32)
    labels = []
    for i, (line, row) in enumerate(numbered):
        if len(row) != n_cols:
            raise SpecError(source, key, f"{path} line {line}: {len(row)} fields, expected {n_cols}", None)
        labels.append(_label(row[col], path, line, source, key))
        cells = row[:col] + row[col + 1:]
        try:
            features[i] = [float(c) for c in cells]
        except ValueError:
            j = next(j for j, c in enumerate(cells) if not _is_number(c))
            if not cells[j].strip() or cells[j].strip().lower() in _MISSING_FEATURE_TOKENS:
                shown = f" ({cells[j].strip()!r})" if cells[j].strip() else ""
                raise SpecError(source, key, f"{path} line {line}: missing value{shown} in {_feature(names, j, col)}",
                                _MISSING_FIX) from None
            raise SpecError(source, key, f"{path} line {line}: feature {cells[j]!r} is not a number",
                            "encode categorical features as numbers") from None
    _check_finite(features, names, col, [line for line, _ in numbered], path, source, key)
    return features, np.asarray(labels)


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The CSV's non-blank rows with the line each ends on (what a message names).

    A byte-order mark (Excel's, pandas' ``utf-8-sig``) is not part of the first cell: it made a
    headerless file's first row text, so a header (a sample lost).
    """
    with path.open(newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    if rows and rows[0][1][0].startswith("\ufeff"):
        rows[0][1][0] = rows[0][1][0][1:]
    return rows


def first_row_is_header(rows: Sequence[Sequence[str]]) -> bool:
    """Whether the first of a CSV's (non-blank) rows names its columns rather than holding a sample.

    A cell that is not a number is a name, unless a row below holds the same text in its column:
    then it is a value of a text column, such as a headerless file's class labels
    (``5.1,3.5,1.4,0.2,Iris-setosa``), and the row is a sample. "Any text makes a header" lost
    that sample and made its numbers the feature names. Empty cells name nothing (a sample with
    a missing value, refused as one). A headerless file whose first row is the only sample of its
    class still reads as having a header: nothing in the file tells the two apart.
    ``tuner export`` reads the training file's column names with this rule too.
    """
    first = [cell.strip() for cell in rows[0]]
    for j, cell in enumerate(first):
        if not cell or _is_number(cell):
            continue
        if not any(j < len(row) and row[j].strip() == cell for row in rows[1:]):
            return True
    return False


def _numbered_header(rows: Sequence[Sequence[str]]) -> bool | None:
    """Whether a first row reading exactly ``0,1,...,k-1`` is pandas' header of a frame made from an
    array (``pd.DataFrame(np.c_[X, y]).to_csv(index=False)``): True over rows that are not all bare
    integers (pandas writes floats as ``5.0``), None (cannot be told) over integer rows, False for
    any other first row. Read as a sample, it was a class of one (``'4'``) and a row of data, and
    ``tuner predict`` already read it as a header (the same rule)."""
    first = [cell.strip() for cell in rows[0]]
    if first != [str(i) for i in range(len(first))]:
        return False
    if all(_INT_RE.fullmatch(cell.strip()) for row in rows[1:] for cell in row):
        return None
    return True


_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)")


def _is_pandas_index_header(cells: Sequence[str]) -> bool:
    """``,0,1,...``: what ``DataFrame(X).to_csv()`` writes first. It names no column, so it reads as a
    sample with a missing value; the index column it announces is no feature (it was trained on)."""
    return [c.strip() for c in cells] == ["", *(str(i) for i in range(len(cells) - 1))]


def read_csv_header(path: Path) -> list[str] | None:
    """The column names of a CSV (stripped), or None when its first row is a sample."""
    rows = [row for _, row in _csv_rows(path)]
    return [cell.strip() for cell in rows[0]] if rows and (_numbered_header(rows) or first_row_is_header(rows)) \
        else None


#: What to do about a missing value (tuner fills none in: any guess would be trained on as data).
_MISSING_FIX = "fill or drop rows with missing values"
#: How R (write.csv), Excel and pandas write a missing value (lower case): in a label it was a
#: class of its own ('NA'), in a feature "not a number; encode categorical features as numbers".
#: A label may still be 'none' or 'null' (a class "nothing found"); a number column may not.
_MISSING_LABEL_TOKENS = frozenset({"na", "n/a", "#n/a", "<na>", "nan", "-nan", "null", "#null!"})
_MISSING_FEATURE_TOKENS = _MISSING_LABEL_TOKENS | {"none", "nil", "?"}


def _label(cell: str, path: Path, line: int, source: str, key: str) -> str:
    """A row's label text; an empty or NaN label is refused (it was a class of its own, '' or 'nan')."""
    label = cell.strip()
    if not label:
        raise SpecError(source, key, f"{path} line {line}: empty label", "give every row a label")
    if (_is_number(label) and math.isnan(float(label))) or label.lower() in _MISSING_LABEL_TOKENS:
        raise SpecError(source, key, f"{path} line {line}: label {label!r} is a missing value",
                        "give every row a label")
    return label


def check_labels_present(labels: np.ndarray, what: str, source: str, key: str) -> None:
    """Refuse a missing label in an array of labels (NaN, or empty text): it became a class of its own."""
    if labels.dtype.kind == "f":
        missing = np.isnan(labels)
    elif labels.dtype.kind in "US":
        missing = np.char.strip(labels) == ""
    else:
        return
    if missing.any():
        i = int(np.argmax(missing))
        raise SpecError(source, key, f"{what}[{i}] is a missing label ({str(labels[i])!r})", "give every sample a label")


def _feature(names: list[str] | None, j: int, col: int) -> str:
    """How a message names feature ``j`` (of the row without its label column ``col``)."""
    if names is not None:
        return f"feature {names[j]!r}"
    return f"column {j + 1 if j < col else j + 2}"


def _check_finite(features: np.ndarray, names: list[str] | None, col: int, lines: list[int], path: Path,
                  source: str, key: str) -> None:
    """Refuse the first NaN ('nan', 'NaN': a missing value) or infinite feature value, naming its line."""
    bad = ~np.isfinite(features)
    if not bad.any():
        return
    i, j = (int(k) for k in np.argwhere(bad)[0])
    line = lines[i]
    if np.isnan(features[i, j]):
        raise SpecError(source, key, f"{path} line {line}: missing value (NaN) in {_feature(names, j, col)}",
                        _MISSING_FIX)
    raise SpecError(source, key, f"{path} line {line}: {_feature(names, j, col)} is infinite",
                    "give finite numbers")


def _sibling(key: str, name: str) -> str:
    """``task_args.dataset`` -> ``task_args.label``: the key path of a neighbouring argument."""
    return key.rsplit(".", 1)[0] + "." + name if "." in key else name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encode_labels(labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels as text and each sample's index among them."""
    if labels.dtype.kind in "US" and all(_is_number(str(v)) for v in labels):
        numbers = labels.astype(np.float64)
        if np.all(numbers == np.round(numbers)):
            labels = numbers.astype(np.int64)  # "1" and "1.0" are the same class; sort 2 before 10
        else:
            labels = numbers
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    values, y = np.unique(labels, return_inverse=True)
    return [str(v) for v in values], y.astype(np.int64).reshape(-1)
