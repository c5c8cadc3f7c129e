"""``tuner.load(FOLDER)``: a predictor over an export, and the input readers of ``tuner predict``.

The predictor runs the TorchScript file when there is one (no tuner model code needed), else
the state dict (rebuilt) or the ONNX file; scikit-learn models are unpickled only after their
SHA-256 matched the model card (a file swapped in the folder is refused, not run).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tuner.exceptions import UserInputError
from tuner.data.tabular import _is_number
from tuner.export._export import CARD_JSON, _sha256
from tuner.export._formats import EXPORTERS

__all__ = ["Predictor", "load", "read_inputs", "read_texts"]

_PREFERENCE = ("torchscript", "state_dict", "onnx", "sklearn")


class Predictor:
    """``predict(X)`` (class names or values) and ``predict_proba(X)`` over raw inputs, as the card says."""

    def __init__(self, folder: str | Path, *, format: str | None = None) -> None:  # noqa: A002 - the CLI's word
        self.folder = Path(folder)
        card_path = self.folder / CARD_JSON
        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no such export folder; write one with tuner export STUDY -o FOLDER")
        try:
            self.card: dict[str, Any] = json.loads(card_path.read_text())
            files = self.card["files"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(f"{self.folder}: {CARD_JSON} is missing or unreadable: not a tuner export "
                                 f"(re-run tuner export)") from None
        available = [f for f in _PREFERENCE if f in files]
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
        if self.kind == "text":
            return self._tokens(X)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        X = X.reshape(len(X), -1)
        if self.n_features is not None and X.shape[1] != self.n_features:
            raise UserInputError(f"inputs have {X.shape[1]} features per sample but the model takes {self.n_features}")
        return X

    def _tokens(self, texts: Any) -> np.ndarray:
        """Sentences (a string or a sequence of strings) as ``[n, 2, length]`` token ids and mask."""
        from tuner.tasks._encoder import tokenize

        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in list(texts)]
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
        """Class names (classification) or target values (regression), one per sample."""
        out = self.outputs(X)
        if self.task_type == "regression":
            return out.reshape(-1).astype(np.float64)
        index = out.reshape(-1).astype(np.int64) if self.kind == "sklearn" else out.argmax(axis=1)
        if self.class_names:
            return np.asarray(self.class_names, dtype=object)[index]
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


def read_inputs(path: str | Path, *, n_features: int | None = None) -> np.ndarray:
    """Inputs from ``.npy``, ``.npz`` (array ``X``, or its only array) or ``.csv`` (numbers; a header row is skipped,
    and with one column more than the model takes the last one — a label — is dropped)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: no such input file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            X = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if "X" in keys:
                    X = z["X"]
                elif len(keys) == 1:
                    X = z[keys[0]]
                else:
                    raise UserInputError(f"{p}: holds {', '.join(keys)}; name the inputs X")
        elif suffix == ".csv":
            X = _read_csv(p)
        else:
            raise UserInputError(f"{p}: unsupported input type {suffix!r}; use .npy, .npz or .csv")
    except (ValueError, OSError) as exc:
        raise UserInputError(f"{p}: cannot read it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise UserInputError(f"{p}: the inputs are not numbers (dtype {X.dtype})")
    X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(1, -1)
    if n_features is not None and X.shape[1] == n_features + 1 and suffix == ".csv":
        X = X[:, :-1]
    return X.astype(np.float32)


def _read_csv(p: Path) -> np.ndarray:
    with open(p, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if rows and not all(_is_number(c) for c in rows[0]):
        rows = rows[1:]
    bad = next((c for r in rows for c in r if not _is_number(c)), None)
    if bad is not None:
        raise UserInputError(f"{p}: {bad!r} is not a number; give numeric feature columns")
    if len({len(r) for r in rows}) > 1:
        raise UserInputError(f"{p}: rows have different numbers of columns")
    return np.asarray([[float(c) for c in r] for r in rows], dtype=np.float64)


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise UserInputError(f"{folder}: the tokenizer of this text model is missing; re-run tuner export")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _joblib_load(path: Path) -> Any:
    import joblib

    return joblib.load(path)
