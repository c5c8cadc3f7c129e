"""Values kept for the life of a worker process, so a study's trials do not redo the same work.

Ray reuses its worker processes across trials (``reuse_actors``), and every trial of a study
reads the same data set with the same split. Loading, splitting and normalising 60,000 images
takes about a second on a CPU, which is as long as a small CNN trains for on a GPU: without
this cache, packing trials on a GPU would mostly pack data loading.

Keys include what identifies the source on disk (:func:`path_stamp`), so a file rewritten
between two runs of a long-lived process is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, TypeVar

__all__ = ["cached", "files_stamp", "path_stamp", "remember"]

_T = TypeVar("_T")
_LOCK = threading.Lock()
_VALUES: "OrderedDict[Hashable, Any]" = OrderedDict()


def cached(key: Hashable, make: Callable[[], _T], size: int = 4) -> _T:
    """``make()``, remembered under ``key`` for the life of the process (the ``size`` latest)."""
    with _LOCK:
        if key in _VALUES:
            _VALUES.move_to_end(key)
            return _VALUES[key]
    value = make()
    with _LOCK:
        remember(_VALUES, key, value, size=size)
    return value


def remember(store: "OrderedDict[Any, Any]", key: Any, value: Any, *, size: int) -> None:
    """Put ``key: value`` last in ``store`` and drop the oldest entries beyond ``size``."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > size:
        store.popitem(last=False)


def path_stamp(path: str | Path) -> tuple[tuple[str, int, int], ...]:
    """:func:`files_stamp` of a file, or of every file under a folder; () for a name that is no path.

    Built-in data sets are named (``digits``), not paths: they cannot change under a process.
    """
    p = Path(path)
    try:
        if p.is_file():
            return files_stamp([p])
        if p.is_dir():
            return files_stamp(f for f in sorted(p.rglob("*")) if f.is_file())
    except OSError:
        pass
    return ()


def files_stamp(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """(resolved path, mtime_ns, size) of each file: a cache key that changes when a file is rewritten."""
    return tuple((str(f.resolve()), st.st_mtime_ns, st.st_size) for f in paths for st in (f.stat(),))
