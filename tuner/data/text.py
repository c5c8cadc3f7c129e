"""Labelled sentences from local files, split stratified like every other data set.

Three forms of ``dataset`` are read:

- a ``.csv`` (or ``.tsv``) file with a header row: one example per row, the text in column
  ``text`` and the class in column ``label`` (both configurable, by name or 0-based index);
- a folder of ``<class>.txt`` files, one example per line (``README*`` files are skipped);
- a folder of ``*.pos`` and ``*.neg`` files, one example per line: the sentence-polarity form
  of ``rt-polarity.pos`` / ``rt-polarity.neg`` (classes ``neg`` = 0 and ``pos`` = 1).

Files are decoded as UTF-8 and, where that fails, as Windows-1252 and then Latin-1
(``encoding: auto``, per file: the original sentence-polarity files are Latin-1), or with the
codec given. Blank lines are skipped and whitespace is stripped. Class names are sorted and
mapped to 0..K-1. The split (optional stratified ``max_samples`` subsample, then a stratified
train/val/test split with ``split_seed``) is the one :func:`tuner.data.make_splits` makes.
Importing this module does not import torch.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tuner.data._paths import candidate_paths
from tuner.data._splits import DEFAULT_SPLIT, check_split, split_sizes, stratified_order
from tuner.exceptions import SpecError

__all__ = ["TextPart", "TextSplits", "TEXT_SUFFIXES", "check_text_dataset", "check_encoding", "read_texts",
           "load_text", "decode_bytes", "split_indices"]

#: File types read as tables of ``text,label`` rows (a folder is the other form).
TEXT_SUFFIXES = (".csv", ".tsv")
_AUTO_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


@dataclass(frozen=True)
class TextPart:
    """One part of a text data set: the sentences and their labels (int64 in 0..K-1)."""

    texts: tuple[str, ...]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[Any]:  # ``texts, y = splits.train``
        return iter((self.texts, self.y))


@dataclass(frozen=True)
class TextSplits:
    """A text data set split into train, validation and test parts."""

    name: str
    train: TextPart
    val: TextPart
    test: TextPart
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with checkpoints)."""
        return {
            "dataset": self.name,
            "n_classes": self.n_classes,
            "class_names": list(self.class_names),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
        }


# ---- checking (cheap: no file is read) ---------------------------------------------------------


def check_text_dataset(dataset: Any, *, base_dir: str | Path | None = None, source: str = "<spec>",
                       key: str = "dataset") -> str:
    """Validate a text ``dataset`` (a folder or a .csv/.tsv file) and return its absolute path.

    A relative path is looked up next to the spec (``base_dir``) first, then in the working
    directory.
    """
    fix = f"give a folder of <class>.txt or *.pos/*.neg files, or a {' or '.join(TEXT_SUFFIXES)} file"
    if not isinstance(dataset, (str, Path)) or not str(dataset):
        raise SpecError(source, key, f"expected a folder or file path, got {dataset!r}", fix)
    path = Path(dataset).expanduser()
    candidates = candidate_paths(path, base_dir)
    for candidate in candidates:
        if candidate.is_dir() or (candidate.is_file() and candidate.suffix.lower() in TEXT_SUFFIXES):
            return str(candidate.resolve())
    for candidate in candidates:
        if candidate.is_file():
            raise SpecError(source, key, f"unsupported file type {candidate.suffix or candidate.name!r} for text", fix)
    where = " or ".join(str(c) for c in candidates)
    raise SpecError(source, key, f"{str(dataset)!r} not found (looked at {where})",
                    "give a path relative to the spec file or an absolute path")


def check_encoding(encoding: Any, *, source: str = "<spec>", key: str = "encoding") -> str:
    """``auto`` or the name of a Python text codec."""
    if encoding == "auto":
        return "auto"
    if isinstance(encoding, str) and encoding:
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            pass
        else:
            if getattr(info, "_is_text_encoding", True):
                return encoding
    raise SpecError(source, key, f"unknown text encoding {encoding!r}", "use auto, utf-8, latin-1, cp1252, ...")


# ---- reading -------------------------------------------------------------------------------------


def decode_bytes(data: bytes, encoding: str = "auto") -> str:
    """Text of ``data``: ``auto`` tries UTF-8 (a BOM is dropped), then Windows-1252, then Latin-1."""
    if encoding != "auto":
        return data.decode(encoding)
    for name in _AUTO_ENCODINGS:
        try:
            return data.decode(name)
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: latin-1 decodes any bytes")


def _lines(path: Path, encoding: str, source: str, key: str) -> list[str]:
    """Non-blank, stripped lines of a file (\\n, \\r\\n and \\r all end a line)."""
    text = _read(path, encoding, source, key)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [s for s in (line.strip() for line in lines) if s]


def _read(path: Path, encoding: str, source: str, key: str) -> str:
    try:
        return decode_bytes(path.read_bytes(), encoding)
    except UnicodeDecodeError as exc:
        raise SpecError(source, key, f"{path} is not valid {encoding} ({exc.reason} at byte {exc.start})",
                        "set task_args.encoding (e.g. latin-1) or use encoding: auto") from None
    except OSError as exc:
        raise SpecError(source, key, f"cannot read {path}: {exc.strerror or exc}", None) from None


def read_texts(
    path: str | Path,
    *,
    text: str | int = "text",
    label: str | int = "label",
    encoding: str = "auto",
    source: str = "<spec>",
    key: str = "dataset",
) -> tuple[list[str], np.ndarray, list[str]]:
    """``(texts, y (n,) int64 in 0..K-1, class names)`` of a text data set in any of the three forms."""
    path = Path(path)
    if path.is_dir():
        texts, labels = _read_folder(path, encoding, source, key)
    elif path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        texts, labels = _read_table(path, text, label, encoding, source, key)
    elif path.exists():
        raise SpecError(source, key, f"unsupported file type {path.suffix or path.name!r} for text",
                        f"give a folder or a {' or '.join(TEXT_SUFFIXES)} file")
    else:
        raise SpecError(source, key, f"{path} not found", "give an existing folder or file")
    if not texts:
        raise SpecError(source, key, f"{path} holds no examples", None)
    class_names, y = _encode_labels(labels)
    if len(class_names) < 2:
        raise SpecError(source, key, f"{path} has a single class {class_names[0]!r}",
                        "a classification data set needs at least 2 labels")
    return texts, y, class_names


def _read_folder(folder: Path, encoding: str, source: str, key: str) -> tuple[list[str], list[str]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    pos = [p for p in files if p.suffix.lower() == ".pos"]
    neg = [p for p in files if p.suffix.lower() == ".neg"]
    if pos or neg:
        if not (pos and neg):
            have, missing = ("pos", "neg") if pos else ("neg", "pos")
            raise SpecError(source, key, f"{folder} has *.{have} files but no *.{missing} file",
                            "the polarity form needs both (e.g. rt-polarity.pos and rt-polarity.neg)")
        by_class = [("neg", neg), ("pos", pos)]
    else:
        txt = [p for p in files if p.suffix.lower() == ".txt" and not p.name.lower().startswith("readme")]
        if not txt:
            shown = ", ".join(p.name for p in files[:8]) or "nothing"
            raise SpecError(source, key, f"{folder} holds no <class>.txt or *.pos/*.neg files (found {shown})",
                            "put one file per class, one example per line")
        by_class = [(p.stem, [p]) for p in txt]
    texts: list[str] = []
    labels: list[str] = []
    for name, paths in by_class:
        for p in paths:
            lines = _lines(p, encoding, source, key)
            texts.extend(lines)
            labels.extend([name] * len(lines))
    return texts, labels


def _read_table(path: Path, text: str | int, label: str | int, encoding: str, source: str,
                key: str) -> tuple[list[str], list[str]]:
    # Excel's "CSV UTF-8" starts with a byte-order mark, which utf-8 (unlike auto) keeps: the first
    # column was then named '\ufefftext' and "not found".
    content = _read(path, encoding, source, key).removeprefix("\ufeff")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise SpecError(source, key, f"{path} is empty", None)
    header = [h.strip() for h in header]
    text_col = _column(header, text, path, source, _sibling(key, "text"))
    label_col = _column(header, label, path, source, _sibling(key, "label"))
    if text_col == label_col:
        raise SpecError(source, _sibling(key, "label"), f"the label column is the text column ({header[text_col]!r})",
                        "give two different columns")
    texts: list[str] = []
    labels: list[str] = []
    need = max(text_col, label_col) + 1
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < need:
            raise SpecError(source, key, f"{path} line {reader.line_num}: {len(row)} fields, expected {len(header)}",
                            "quote texts that contain the delimiter")
        sentence, value = row[text_col].strip(), row[label_col].strip()
        if not value:
            raise SpecError(source, key, f"{path} line {reader.line_num}: empty label", "give every row a label")
        if sentence:
            texts.append(sentence)
            labels.append(value)
    return texts, labels


def _column(header: list[str], column: str | int, path: Path, source: str, key: str) -> int:
    if isinstance(column, int) and not isinstance(column, bool):
        if not -len(header) <= column < len(header):
            raise SpecError(source, key, f"column {column} out of range for {len(header)} columns", None)
        return column % len(header)
    if column in header:
        return header.index(column)
    raise SpecError(source, key, f"{path} has no column named {column!r}; its header is {header}",
                    "name the column (the first row is the header) or give its 0-based index")


def _sibling(key: str, name: str) -> str:
    """``task_args.dataset`` -> ``task_args.text``: the key path of a neighbouring argument."""
    return key.rsplit(".", 1)[0] + "." + name if "." in key else name


def _encode_labels(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels (integers in numeric order) and each example's index among them."""
    def order(value: str) -> tuple[int, float, str]:
        try:
            number = float(value)
        except ValueError:
            return (1, 0.0, value)
        return (0, number, value) if math.isfinite(number) else (1, 0.0, value)

    numbers = [order(v) for v in labels]
    if all(kind == 0 and number == int(number) for kind, number, _ in numbers):
        labels = [str(int(number)) for _, number, _ in numbers]  # "1" and "1.0" are the same class
    values = sorted(set(labels), key=order)
    index = {v: i for i, v in enumerate(values)}
    y = np.fromiter((index[v] for v in labels), dtype=np.int64, count=len(labels))
    return values, y


# ---- splitting -----------------------------------------------------------------------------------


def load_text(
    path: str | Path,
    *,
    text: str | int = "text",
    label: str | int = "label",
    encoding: str = "auto",
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    source: str = "<spec>",
    key: str = "dataset",
) -> TextSplits:
    """Read a text data set and split it stratified into train/val/test with ``split_seed``."""
    path = Path(path)
    texts, y, class_names = read_texts(path, text=text, label=label, encoding=encoding, source=source, key=key)
    train_idx, val_idx, test_idx = split_indices(y, split=split, split_seed=split_seed, max_samples=max_samples)

    def part(idx: np.ndarray) -> TextPart:
        return TextPart(tuple(texts[i] for i in idx), y[idx].copy())

    name = path.name if path.is_file() else path.name + "/"
    return TextSplits(name=name, train=part(train_idx), val=part(val_idx), test=part(test_idx),
                      class_names=tuple(class_names))


def split_indices(y: np.ndarray, *, split: Sequence[float] = DEFAULT_SPLIT, split_seed: int = 0,
                  max_samples: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train/val/test indices: the same subsample and split :func:`make_splits` makes."""
    fractions = check_split(split, source="split_indices", key="split")
    rng = np.random.default_rng(split_seed)
    keep = np.arange(len(y))
    if max_samples is not None and max_samples < len(y):
        keep = np.sort(stratified_order(y, rng)[:max_samples])
    order = keep[stratified_order(y[keep], rng)]
    n_train, n_val, _ = split_sizes(len(keep), fractions)
    parts = np.split(order, [n_train, n_train + n_val])
    return tuple(np.sort(p) for p in parts)  # type: ignore[return-value]
