"""MNIST-family data sets from IDX files in a local folder (MNIST, Fashion-MNIST, KMNIST, ...).

A folder holds the four files of the official distribution, gzipped or not::

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

(``train-images.idx3-ubyte``, as some mirrors name them, is accepted too). The ``t10k`` files are
the test part; the validation part is carved from the training files, stratified, with
``split_seed``. Nothing is downloaded unless you ask: :func:`download_idx` (or
``python -m tuner.data.idx download fashion-mnist data/fashion-mnist``) fetches the four files.

The IDX format: a big-endian header ``0x00 0x00 <dtype code> <ndim>`` (so ``2051`` for 3-d
unsigned bytes, images, and ``2049`` for 1-d unsigned bytes, labels), ``ndim`` big-endian
uint32 sizes, then the data in C order.
"""

from __future__ import annotations

import contextlib

import gzip
import os
import struct
import sys
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from tuner._process_cache import files_stamp
from tuner.data._paths import candidate_paths
from tuner.data._splits import DEFAULT_SPLIT, Splits
from tuner.exceptions import SpecError

__all__ = ["IDX_FILES", "IDX_SOURCES", "FASHION_CLASSES", "IdxError", "read_idx", "write_idx", "find_idx_files",
           "check_idx_folder", "read_idx_folder", "load_idx", "download_idx"]

#: The four files of a data set, by role (without the optional ``.gz``).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: Where the official files can be downloaded (``<url><file>.gz``).
IDX_SOURCES = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
}
#: Class names of Fashion-MNIST, used when the folder's name contains "fashion".
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(d).newbyteorder("=").str: code for code, d in _DTYPES.items()}
_MAX_BYTES = 2**34  # refuse headers that promise more than 16 GiB


class IdxError(ValueError):
    """A file is not a valid IDX file (wrong magic number, truncated, bad gzip)."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` is decompressed), in native byte order."""
    path = Path(path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = _gunzip(raw, path)
    return _parse_idx(raw, path)


def _gunzip(raw: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"{path}: not a readable gzip file ({exc})") from None


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4:
        raise IdxError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    magic = struct.unpack(">I", raw[:4])[0]
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise IdxError(f"{path}: wrong magic number {magic} (0x{magic:08x}); IDX files start with 2051 for "
                       f"images or 2049 for labels")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected > _MAX_BYTES:
        raise IdxError(f"{path}: header declares shape {shape}, too large")
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise IdxError(f"{path}: {what}: shape {shape} needs {expected} bytes of data, found {found}")
    array = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); the inverse of :func:`read_idx`."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError("IDX needs an array with 1 to 255 dimensions")
    data = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def find_idx_files(folder: str | Path) -> dict[str, Path]:
    """The IDX files present in ``folder`` by role (plain files preferred over ``.gz``); missing roles are absent."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for role, name in IDX_FILES.items():
        dotted = name.replace("-idx", ".idx")  # train-images.idx3-ubyte
        for candidate in (name, dotted, name + ".gz", dotted + ".gz"):
            if (folder / candidate).is_file():
                found[role] = folder / candidate
                break
    return found


def _source_for(folder: Path) -> tuple[str, str] | None:
    """``(name, url)`` of the known data set whose name the folder's name suggests."""
    name = folder.name.lower()
    for key in ("fashion-mnist", "kmnist", "mnist"):
        if key.replace("-", "") in name.replace("-", "").replace("_", ""):
            return key, IDX_SOURCES[key]
    return None


def _download_hint(folder: Path) -> str:
    files = ", ".join(f"{n}.gz" for n in IDX_FILES.values())
    known = _source_for(folder)
    if known is not None:
        name, url = known
        return (f"download {files} from {url} into {folder} "
                f"(or run: python -m tuner.data.idx download {name} {folder})")
    return f"put the MNIST-family IDX files ({files}) into {folder}"


def check_idx_folder(folder: str | Path, *, base_dir: str | Path | None = None, source: str = "<spec>",
                     key: str = "dataset") -> str:
    """Validate a folder of IDX files without reading them; return its absolute path.

    A relative path is looked up next to the spec (``base_dir``) first, then in the working
    directory. A missing folder or file is a :class:`SpecError` that says what to download and where.
    """
    path = Path(folder).expanduser()
    candidates = candidate_paths(path, base_dir)
    for candidate in candidates:
        if candidate.is_dir():
            found = find_idx_files(candidate)
            missing = [IDX_FILES[r] for r in IDX_FILES if r not in found]
            if missing:
                raise SpecError(source, key, f"folder {str(folder)!r} ({candidate.resolve()}) lacks "
                                f"{', '.join(m + '[.gz]' for m in missing)}", _download_hint(candidate.resolve()))
            return str(candidate.resolve())
    where = " or ".join(dict.fromkeys(str(c.resolve()) for c in candidates))
    raise SpecError(source, key, f"data folder {str(folder)!r} not found (looked at {where})",
                    _download_hint(candidates[0].resolve()))


@lru_cache(maxsize=2)
def _read_folder_cached(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, ...]:
    files = find_idx_files(folder)
    arrays = tuple(read_idx(files[role]) for role in IDX_FILES)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def read_idx_folder(folder: str | Path, *, source: str = "<spec>", key: str = "dataset"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train images (N, H, W), train labels (N,), test images, test labels)`` of an IDX folder.

    Read once per process (reused Ray workers do not read it again). Problems are :class:`SpecError`
    at ``source: key`` naming the file.
    """
    folder = Path(folder)
    files = find_idx_files(folder)
    missing = [IDX_FILES[r] for r in IDX_FILES if r not in files]
    if missing:
        raise SpecError(source, key, f"{folder} lacks {', '.join(m + '[.gz]' for m in missing)}",
                        _download_hint(folder.resolve()))
    stamp = files_stamp(files.values())
    try:
        X_train, y_train, X_test, y_test = _read_folder_cached(str(folder), stamp)
    except IdxError as exc:
        raise SpecError(source, key, str(exc), "download the files again") from None
    for part, X, y in (("train", X_train, y_train), ("t10k", X_test, y_test)):
        if X.ndim not in (3, 4):
            raise SpecError(source, key, f"{files[part.replace('t10k', 'test') + '_images']}: expected images "
                            f"(N, H, W) or (N, C, H, W), got shape {X.shape}", None)
        if y.ndim != 1:
            raise SpecError(source, key, f"{files[part.replace('t10k', 'test') + '_labels']}: expected labels (N,), "
                            f"got shape {y.shape}", None)
        if len(X) != len(y):
            raise SpecError(source, key, f"{folder}: {part} has {len(X)} images but {len(y)} labels",
                            "the image and label files do not belong together; download them again")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise SpecError(source, key, f"{folder}: train images are {X_train.shape[1:]} but test images "
                        f"{X_test.shape[1:]}", None)
    return X_train, y_train, X_test, y_test


def load_idx(
    folder: str | Path,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    split_seed: int = 0,
    max_samples: int | None = None,
    standardize: bool = True,
    classes: Sequence[int | str] | None = None,
    normalize: str | None = None,
    source: str = "<spec>",
    key: str = "dataset",
) -> Splits:
    """An IDX folder as :class:`Splits`: the ``t10k`` files are the test part, validation comes from train.

    ``split`` gives the proportions: validation is ``split[1] / (split[0] + split[1])`` of the
    training files; ``max_samples`` caps train + val + test together (in ``split``'s proportions).
    ``normalize`` (``pixel``, ``channel``, ``none``; see :func:`tuner.data.images.image_splits`)
    defaults to ``pixel`` when ``standardize`` else ``none``.
    """
    from tuner.data.images import image_splits

    folder = Path(folder)
    X_train, y_train, X_test, y_test = read_idx_folder(folder, source=source, key=key)
    labels = np.union1d(np.unique(y_train), np.unique(y_test))
    if len(labels) < 2:
        raise SpecError(source, key, f"{folder} has a single class",
                        "a classification data set needs at least 2 labels")
    if labels.min() < 0:
        raise SpecError(source, key, f"{folder}: negative labels", None)
    n_classes = int(labels.max()) + 1
    is_fashion = "fashion" in folder.name.lower() and n_classes == len(FASHION_CLASSES)
    class_names = list(FASHION_CLASSES) if is_fashion else [str(i) for i in range(n_classes)]
    input_shape = (1, *X_train.shape[1:]) if X_train.ndim == 3 else tuple(X_train.shape[1:])
    return image_splits(
        X_train, y_train.astype(np.int64), test=(X_test, y_test.astype(np.int64)), name=folder.name,
        class_names=class_names, input_shape=input_shape, split=split, split_seed=split_seed,
        max_samples=max_samples, classes=classes,
        normalize=normalize or ("pixel" if standardize else "none"), source=source, key=key)


def download_idx(name_or_url: str, folder: str | Path, *, timeout: float = 60.0) -> list[Path]:
    """Fetch the four ``.gz`` files of a known data set (``mnist``, ``fashion-mnist``, ``kmnist``)
    or from a base URL into ``folder``; existing files are kept. Returns the files' paths."""
    import urllib.request

    base = IDX_SOURCES.get(name_or_url, name_or_url)
    if "://" not in base:
        raise ValueError(f"unknown data set {name_or_url!r}; use one of {', '.join(IDX_SOURCES)} or a base URL")
    if not base.endswith("/"):
        base += "/"
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for name in IDX_FILES.values():
            target = folder / f"{name}.gz"
            if not target.is_file():
                url = base + target.name
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        data = response.read()
                except OSError as exc:  # URLError, a timeout, a refused connection
                    reason = getattr(exc, "reason", None) or exc.strerror or exc
                    raise OSError(f"cannot download {url}: {reason}; check the network, or fetch the files "
                                  f"{', '.join(n + '.gz' for n in IDX_FILES.values())} into {folder} by hand") from None
                _parse_idx(_gunzip(data, target), target)  # keep only a valid file
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(data)
                os.replace(partial, target)
            paths.append(target)
    except BaseException:
        # The folders this call made, left empty: an empty data/fashion-mnist turned the study's
        # "not found" into "lacks train-images-idx3-ubyte", as if the download had half worked.
        for made_folder in made:
            with contextlib.suppress(OSError):
                made_folder.rmdir()
        raise
    return paths


def _main(argv: list[str]) -> int:
    usage = f"usage: python -m tuner.data.idx download {{{'|'.join(IDX_SOURCES)}|BASE_URL}} FOLDER"
    if len(argv) != 3 or argv[0] != "download":
        print(usage, file=sys.stderr)
        return 2
    try:
        for path in download_idx(argv[1], argv[2]):
            print(path)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
