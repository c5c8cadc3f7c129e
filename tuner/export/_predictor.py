"""``tuner.load(FOLDER)``: a predictor over an export, and the input readers of ``tuner predict``.

The predictor runs the TorchScript file when there is one (no tuner model code needed), else
the state dict (rebuilt) or the ONNX file; scikit-learn models are unpickled only after their
SHA-256 matched the model card (a file swapped in the folder is refused, not run).

Inputs are checked before they reach a model, because a model answers whatever it is given: a
CSV's columns are taken by name when the card knows the training file's header (any order,
other columns ignored), any width mismatch is refused rather than trimmed, and NaN/inf or
empty inputs are refused. Class labels come back with the type the training labels had.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from tuner.exceptions import UserInputError
from tuner.data.tabular import _is_number, first_row_is_header, read_csv_header
from tuner.export._export import CARD_JSON, _sha256
from tuner.export._formats import EXPORTERS

if TYPE_CHECKING:
    from tuner.export._trained import TrainedModel

__all__ = ["Predictor", "load", "read_inputs", "read_texts"]

#: The file a folder is loaded from when no format is named: the exact ones first, int8 (not
#: bit-exact) last, but it too: an export of int8 alone was unusable ("lists no model file").
_PREFERENCE = ("torchscript", "state_dict", "onnx", "exported_program", "sklearn", "torchscript_int8")
#: The label column's name when the card names none (tuner's CSV convention, see tuner.data.tabular).
_DEFAULT_LABEL = "label"
_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)")


class Predictor:
    """``predict(X)`` (class names or values) and ``predict_proba(X)`` over raw inputs, as the card says."""

    def __init__(self, folder: str | Path, *, format: str | None = None) -> None:  # noqa: A002 - the CLI's word
        self.folder = Path(folder)
        card_path = self.folder / CARD_JSON
        if self.folder.is_file():
            raise UserInputError(f"{self.folder}: a file, not an export folder; give the folder tuner export wrote "
                                 f"(tuner export STUDY -o FOLDER)")
        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no such export folder; write one with tuner export STUDY -o FOLDER")
        try:
            self.card: dict[str, Any] = json.loads(card_path.read_text())
            files = self.card["files"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(f"{self.folder}: {CARD_JSON} is missing or unreadable: not a tuner export "
                                 f"(re-run tuner export)") from None
        available = [f for f in _PREFERENCE if f in files]
        if format is not None and format not in EXPORTERS:
            raise UserInputError(f"--format: unknown format {format!r}; known formats: {', '.join(EXPORTERS)} "
                                 f"(this export has {', '.join(files) or 'none'})")
        if format is not None and format not in files:
            raise UserInputError(f"{self.folder}: the export has no {format} file; it has {', '.join(files) or 'none'}")
        if not available:
            raise UserInputError(f"{self.folder}: the model card lists no model file; re-run tuner export")
        self.format = format or available[0]
        entry = files[self.format]
        path = self.folder / str(entry.get("file", ""))
        if not path.is_file():
            raise UserInputError(f"{self.folder}: {path.name} is missing; re-run tuner export")
        if _sha256(path) != entry.get("sha256"):
            raise UserInputError(f"{path}: its SHA-256 does not match the model card (changed or corrupted); "
                                 f"re-run tuner export")
        self.kind = str(self.card.get("kind"))
        self.task_type = str(self.card.get("task_type") or "classification")
        self.class_names = self.card.get("class_names")
        shape = (self.card.get("input") or {}).get("shape")
        self.n_features = int(shape[1]) if isinstance(shape, list) and len(shape) == 2 and shape[1] else None
        schema = self.card.get("schema") or {}  # absent in exports written before it was recorded
        names = schema.get("feature_names")
        self.feature_names: list[str] | None = ([str(n) for n in names] if isinstance(names, list) and
                                                (self.n_features is None or len(names) == self.n_features) else None)
        self.label_column: str | None = schema.get("label_column")
        self.label_type: str | None = (schema.get("label_type") if "label_type" in schema
                                       else _label_type(self.class_names))
        self._tokenizer: Any = None
        if self.kind == "text":
            self._tokenizer = _load_tokenizer(self.folder / "tokenizer")
            self.max_length = int((self.card.get("preprocessing") or {}).get("max_length") or 64)
        try:
            self._run: Callable[[np.ndarray], np.ndarray] = EXPORTERS[self.format].runner(path)
            self._sk_model = _joblib_load(path) if self.kind == "sklearn" else None
        except Exception as exc:  # noqa: BLE001 - a file that does not load is a broken export
            raise UserInputError(f"{path}: cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                 f"re-run tuner export") from None

    def _inputs(self, X: Any) -> np.ndarray:
        """``X`` as float32 rows of the model's width, checked: a model answers NaN, an empty batch or a
        misaligned row without complaint, so nothing of the kind reaches it."""
        if self.kind == "text":
            return self._tokens(X)
        if hasattr(X, "columns") and self.feature_names:  # a DataFrame: its columns by name, as a CSV's
            names = [str(c).strip() for c in X.columns]
            unnamed = all(isinstance(c, (int, np.integer)) for c in X.columns)  # pd.DataFrame(array)'s 0, 1, ...
            index = _select_columns(names, self.feature_names, "inputs", hint=(
                "; a DataFrame made from an array has numbered columns: name them "
                "(pd.DataFrame(X, columns=model.feature_names)) or pass the array in that order"
                if unnamed and names else ""))
            X = X[[X.columns[i] for i in index]]
        try:
            X = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserInputError(f"inputs are not numbers ({reason})") from None
        if X.ndim <= 1:
            X = X.reshape(1, -1)
        if len(X) == 0 or X.size == 0:
            raise UserInputError(f"no rows to predict (inputs of shape {X.shape})")
        X = X.reshape(len(X), -1)
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise UserInputError(f"inputs have {X.shape[1]} features per sample but the model takes {self.n_features}"
                                 + (f" ({', '.join(self.feature_names)})" if self.feature_names else ""))
        _check_finite(X, "inputs")
        return X

    def _tokens(self, texts: Any) -> np.ndarray:
        """Sentences (a string or a sequence of strings) as ``[n, 2, length]`` token ids and mask."""
        from tuner.tasks._encoder import tokenize

        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in list(texts)]
        if not texts:
            raise UserInputError("no sentences to predict")
        return tokenize(self._tokenizer, texts, self.max_length)

    def outputs(self, X: Any) -> np.ndarray:
        """Raw outputs: logits (torch classification), values (regression) or class indices (sklearn)."""
        X = self._inputs(X)
        return np.concatenate([self._run(X[i:i + 4096]) for i in range(0, len(X), 4096)]) if len(X) else np.zeros((0,))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` (classification only)."""
        if self.task_type == "regression":
            raise UserInputError("predict_proba: this model is a regression model; use predict")
        if self.kind == "sklearn":
            if not hasattr(self._sk_model, "predict_proba"):
                raise UserInputError(f"predict_proba: {self.card.get('estimator')} gives no probabilities")
            return np.asarray(self._sk_model.predict_proba(self._inputs(X)))
        logits = self.outputs(X).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (classification) or target values (regression), one per sample.

        Labels have the type the training labels had (the card's ``schema.label_type``): integers
        for integer classes (so ``(predict(X) == y).mean()`` is the accuracy), text for named ones;
        the card stores every class name as text.
        """
        out = self.outputs(X)
        if self.task_type == "regression":
            return out.reshape(-1).astype(np.float64)
        index = out.reshape(-1).astype(np.int64) if self.kind == "sklearn" else out.argmax(axis=1)
        if self.class_names:
            return _typed_labels(self.class_names, self.label_type)[index]
        return index

    def __repr__(self) -> str:
        return f"Predictor({str(self.folder)!r}, format={self.format!r}, task={self.card.get('task')!r})"


def load(folder: str | Path, *, format: str | None = None) -> Predictor:  # noqa: A002
    """The predictor of an export folder written by ``tuner export``."""
    return Predictor(folder, format=format)


def read_texts(path: str | Path, *, column: str | int | None = None) -> list[str]:
    """Sentences from a ``.txt`` (one per line) or a ``.csv`` with a header (column ``text``, the given
    ``column``, or the only one)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: no such input file")
    if p.suffix.lower() == ".txt":
        return [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if p.suffix.lower() != ".csv":
        raise UserInputError(f"{p}: a text model reads a .csv with a text column or a .txt with one sentence per line")
    with open(p, newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise UserInputError(f"{p}: the file is empty")
    header = rows[0]
    wanted = column if column is not None else ("text" if "text" in header else (0 if len(header) == 1 else None))
    if wanted is None:
        raise UserInputError(f"{p}: no column named text (columns: {', '.join(header)}); name the sentences' column text")
    index = wanted if isinstance(wanted, int) else header.index(str(wanted)) if str(wanted) in header else None
    if index is None:
        raise UserInputError(f"{p}: no column {wanted!r} (columns: {', '.join(header)})")
    return [r[index] for r in rows[1:] if len(r) > index]


def read_inputs(path: str | Path, *, n_features: int | None = None, feature_names: Sequence[str] | None = None,
                label_column: str | None = None) -> np.ndarray:
    """Inputs from ``.npy``, ``.npz`` (array ``X``, or its only array) or ``.csv``, as float32 rows, checked.

    A CSV with a header gives the ``feature_names`` columns by name (any order; other columns, such as the
    label or an id, are ignored); without known names it gives all its columns but ``label_column``
    (default ``label``). Any other width than ``n_features``, NaN/inf values and no rows are refused,
    naming the file: a model would answer them without complaint.
    """
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: no such input file")
    suffix = p.suffix.lower()
    where: Callable[[int], str] = _row_index  # how a message names a row: a CSV's by its line
    try:
        if suffix == ".npy":
            _check_magic(p, b"\x93NUMPY", "a NumPy .npy file", "numpy.save")
            X = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            _check_magic(p, b"PK", "a NumPy .npz file", "numpy.savez(path, X=...)")
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise UserInputError(f"{p}: holds no arrays; save the inputs as X (numpy.savez(path, X=...))")
                if "X" in keys:
                    X = z["X"]
                elif len(keys) == 1:
                    X = z[keys[0]]
                else:
                    raise UserInputError(f"{p}: holds {', '.join(keys)}; name the inputs X")
        elif suffix == ".csv":
            X, where = _read_csv(p, n_features, feature_names, label_column or _DEFAULT_LABEL)
        else:
            raise UserInputError(f"{p}: unsupported input type {suffix!r}; use .npy, .npz or .csv")
    except (ValueError, OSError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickled" in text:  # numpy's advice to unpickle an unknown file is not ours to give
            text = "it holds Python objects, not an array of numbers"
        raise UserInputError(f"{p}: cannot read it ({text})") from None
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise UserInputError(f"{p}: the inputs are not numbers (dtype {X.dtype})")
    if X.size == 0:
        raise UserInputError(f"no rows in {p}: nothing to predict")
    X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(1, -1)
    if n_features is not None and X.shape[1] != n_features:
        raise UserInputError(f"{p}: {X.shape[1]} features per sample but the model takes {n_features}; "
                             f"give exactly the model's features")
    X = X.astype(np.float32)
    _check_finite(X, str(p), where)
    return X


def _check_magic(p: Path, magic: bytes, what: str, how: str) -> None:
    """Refuse a file whose first bytes are not ``magic``, saying what it should be (numpy's own message
    for a text file named .npy is advice about pickles)."""
    with open(p, "rb") as fh:
        if fh.read(len(magic)) != magic:
            raise UserInputError(f"{p}: not {what} (no NumPy header); write it with {how}")


def _read_csv(p: Path, n_features: int | None, feature_names: Sequence[str] | None,
              label_column: str) -> tuple[np.ndarray, Callable[[int], str]]:
    """The feature columns of a CSV as numbers, and how a message names row ``i`` (by its line in the file).

    Read as ``utf-8-sig``: a byte-order mark (Excel's and pandas' ``encoding="utf-8-sig"``) is not
    part of the first cell, which would otherwise turn a numeric first row into a "header" (a row
    lost) or rename a header's first column (a column "missing"). Whether the first row is a header
    is decided by :func:`_is_header`.
    """
    with open(p, newline="", encoding="utf-8-sig") as fh:
        rows = [(n, r) for n, r in enumerate(csv.reader(fh), start=1) if r and any(c.strip() for c in r)]
    if not rows:
        raise UserInputError(f"no rows in {p}: the file is empty")
    header = [c.strip() for c in rows[0][1]] if _is_header(p, rows, feature_names, label_column) else None
    if header is not None:
        rows = rows[1:]
        if not rows:
            raise UserInputError(f"no rows in {p}: only a header ({len(header)} columns), no data rows")
        if feature_names:
            index = _select_columns(header, feature_names, str(p))
        else:
            index = [i for i, name in enumerate(header) if name != label_column]
    else:
        index = list(range(len(rows[0][1])))
        if n_features is not None and len(index) != n_features:
            names = f" ({', '.join(feature_names)})" if feature_names else ""
            raise UserInputError(f"{p}: {len(index)} columns per row but the model takes {n_features} features{names}; "
                                 f"give exactly those columns, or a header row to select them by name")
    width = len(header) if header is not None else len(index)
    X = np.empty((len(rows), len(index)), dtype=np.float64)
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            first = "the header" if header is not None else "the first row"
            raise UserInputError(f"{p} line {line}: {len(row)} fields, but {first} has {width}")
        try:
            X[i] = [float(row[j]) for j in index]
        except ValueError:
            j = next(j for j in index if not _is_number(row[j]))
            column = f"column {header[j]!r}" if header is not None else f"column {j + 1}"
            if not row[j].strip():
                raise UserInputError(f"{p} line {line}: {column} is empty (a missing value); "
                                     f"fill it or drop the row") from None
            raise UserInputError(f"{p} line {line}: {column}: {row[j]!r} is not a number; "
                                 f"give numeric feature columns") from None
    lines = [line for line, _ in rows]
    return X, lambda i: f"line {lines[i]}"


def _is_header(p: Path, rows: list[tuple[int, list[str]]], feature_names: Sequence[str] | None,
               label_column: str) -> bool:
    """Whether the first of a CSV's ``(line, cells)`` rows is a header; refuses what cannot be told apart.

    A wrong guess costs a row silently (a data row taken as a header, or a header predicted as a
    sample), so the rules only say "header" or "data" where the file leaves no doubt:

    1. Cells equal to the model's feature names (as a set; the label column may be there too) make
       a header, numeric names ("0", ..., "63") included: the card says these are the columns.
    2. A cell that is empty among cells that are numbers is a data row with a missing value, and
       refused (a header names every column). Pandas' ``to_csv()`` with its index writes an empty
       first cell before the numbered columns ``0, 1, ...``: that is refused with ``index=False``
       as the fix, since the index column is not a feature.
    3. Any other cell that is not a number makes a header (a name), unless the rows below repeat it
       in its column: a text column of samples, such as a headerless file's labels
       (``5.1,3.5,1.4,0.2,Iris-setosa``), as the training loader reads it
       (:func:`tuner.data.tabular.first_row_is_header`). That row is a sample, and the file's
       width is refused (taken for a header, the sample was lost without a word).
    4. All numbers: a data row, unless it reads exactly ``0,1,...,k-1`` as bare integers, pandas'
       header for a frame made from an array (``pd.DataFrame(X).to_csv(index=False)``). Such a
       row is a header when the rows below are not all bare integers (pandas writes float data
       as ``5.0``, so the first row's form sets it apart); over integer data it could be either,
       and is refused with the ways out (``header=False``, or a ``.npy``). A model whose card
       names its features takes columns by name, so numbered columns are refused for it as for
       a DataFrame made from an array.
    """
    line, first = rows[0]
    cells = [c.strip() for c in first]
    if feature_names and set(cells) in (set(feature_names), set(feature_names) | {label_column}):
        return True
    numbers = [c for c in cells if c and _is_number(c)]
    if "" in cells and len(numbers) == len(cells) - cells.count(""):
        if cells[0] == "" and cells[1:] == [str(i) for i in range(len(cells) - 1)]:
            raise UserInputError(f"{p} line {line}: pandas' header with its index column (an unnamed first column, "
                                 f"then 0, 1, ...); write the file with to_csv(index=False)")
        j = cells.index("")
        raise UserInputError(f"{p} line {line}: column {j + 1} is empty (a missing value); fill it or drop the row")
    if len(numbers) < len(cells):
        return first_row_is_header([row for _, row in rows])
    if cells != [str(i) for i in range(len(cells))]:
        return False
    if feature_names:
        raise UserInputError(f"{p} line {line}: the columns are numbered 0..{len(cells) - 1} (pandas' header for a "
                             f"frame made from an array) but the model takes them by name: name them "
                             f"(pd.DataFrame(X, columns=model.feature_names)), or write no header (header=False)")
    if any(not _INT_RE.fullmatch(c.strip()) for _, row in rows[1:] for c in row):
        return True
    raise UserInputError(f"{p} line {line}: reads 0,1,...,{len(cells) - 1}, which is both pandas' header for a frame "
                         f"made from an array and a possible row of integer data; write the file with header=False "
                         f"(or with named columns), or give the inputs as a .npy file")


def _select_columns(header: list[str], feature_names: Sequence[str], source: str, *, hint: str = "") -> list[int]:
    """Where each feature is in ``header``; a missing one is refused by name (a model's columns are not
    interchangeable, and guessing by position gives confident wrong answers)."""
    missing = [name for name in feature_names if name not in header]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        what = "column {}, a feature" if len(missing) == 1 else "columns {}, features"
        raise UserInputError(f"{source}: no {what.format(shown)} the model was trained on "
                             f"(it takes {', '.join(feature_names)}; other columns are ignored){hint}")
    return [header.index(name) for name in feature_names]


def _row_index(i: int) -> str:
    return f"row index {i}"


def _check_finite(X: np.ndarray, source: str, where: Callable[[int], str] = _row_index) -> None:
    """Refuse NaN and infinite values: every model turns them into an answer."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        n, first = int(bad.sum()), int(np.argmax(bad))
        raise UserInputError(f"{source}: {n} row{'s' if n != 1 else ''} hold{'' if n != 1 else 's'} NaN or infinite "
                             f"values (first: {where(first)}); fill or drop them")


def _label_type(class_names: Sequence[Any] | None) -> str | None:
    """``int``, ``float`` or ``str``: what the training labels were, read from their names.

    tuner's tables turn numeric labels into numbers before naming the classes (``"1.0"`` -> ``1`` ->
    ``"1"``), and the bundled data sets name integer classes ``"0"``, ``"1"``, ...: class names that are
    all integers, or all numbers, came from numeric labels.
    """
    if not class_names:
        return None
    names = [str(c) for c in class_names]
    if all(_INT_RE.fullmatch(n) for n in names):
        return "int"
    if all(_is_number(n) and np.isfinite(float(n)) for n in names):
        return "float"
    return "str"


def _typed_labels(class_names: Sequence[Any], label_type: str | None) -> np.ndarray:
    if label_type == "int":
        return np.asarray([int(str(c)) for c in class_names], dtype=np.int64)
    if label_type == "float":
        return np.asarray([float(str(c)) for c in class_names], dtype=np.float64)
    return np.asarray([str(c) for c in class_names], dtype=object)


def _schema(trained: "TrainedModel") -> dict[str, Any]:
    """The card's ``schema``: the training CSV's feature and label column names (when it had a header)
    and the labels' type, so that ``tuner predict`` selects a CSV's columns by name and returns labels
    as the training data had them.

    The names are read from the training file's header with the rules of ``tuner.data.tabular``
    (label: ``task_args.label``, else the column ``label``, else the last column).
    """
    label_type = _label_type(trained.data.get("class_names")) if trained.task_type != "regression" else None
    schema: dict[str, Any] = {"feature_names": None, "label_column": None, "label_type": label_type}
    dataset = str(trained.task_args.get("dataset") or "")
    if trained.kind == "text" or not dataset.lower().endswith(".csv"):
        return schema
    try:  # the training loader's own rule: a headerless file's first sample is no header here either
        header = read_csv_header(Path(dataset))
    except (OSError, UnicodeDecodeError, csv.Error):
        return schema
    if header is None:
        return schema  # no header: nothing to select by
    label = trained.task_args.get("label")
    if isinstance(label, int) and not isinstance(label, bool) and -len(header) <= label < len(header):
        col = label % len(header)
    elif isinstance(label, str) and label in header:
        col = header.index(label)
    else:
        col = header.index(_DEFAULT_LABEL) if _DEFAULT_LABEL in header else len(header) - 1
    features = header[:col] + header[col + 1:]
    n_features = trained.data.get("n_features")
    if n_features and len(features) != int(n_features) or len(set(features)) != len(features):
        return schema  # the file changed since training, or names that cannot select: keep to the width check
    return {**schema, "feature_names": features, "label_column": header[col]}


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise UserInputError(f"{folder}: the tokenizer of this text model is missing; re-run tuner export")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _joblib_load(path: Path) -> Any:
    import joblib

    return joblib.load(path)
