"""Which module a Ray worker was importing when it died before its first trial.

:mod:`tuner.engine._preload` survives any Python exception a preloaded module raises, but not
a crash of the interpreter itself (a segfault or an illegal instruction in a native library) or
a kill (the kernel's out-of-memory killer). Such a worker dies before any trial reaches it; Tune
then reports each trial sent there as a dead worker, and every new worker dies the same way, so
the run ends at ``max_failures`` with nothing in the stored errors that says why. So a
preloading worker notes, in a folder the driver made for the Ray it started, the module it is
about to import (one file per process, named by its pid) and removes the note when its imports
are done: a note whose process is gone names the import that killed it. The driver gives one
such note to each trial that failed before its worker started it (:func:`claim`), in the
trial's error, and says it on the console and in the run's final message.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["TRACE_ENV", "Note", "claim", "close", "open_folder"]

#: The folder, in the environment a preloading Ray's processes inherit.
TRACE_ENV = "TUNER_PRELOAD_TRACE"

#: This driver's folder while a preloading Ray it started is up (one Ray per driver process).
_folder: Path | None = None
_CLAIMED = ".claimed"


def open_folder() -> Path:
    """A new, empty folder for the workers of the Ray about to start (the last one's is removed)."""
    global _folder
    close()
    _folder = Path(tempfile.mkdtemp(prefix="tuner-preload-"))
    atexit.register(close)  # a driver that never reached its shutdown leaves nothing either
    return _folder


def close() -> None:
    """Forget and remove the folder (when the Ray it was made for shuts down)."""
    global _folder
    atexit.unregister(close)
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None


def claim() -> tuple[str, int] | None:
    """``(module, pid)`` of the oldest note of a dead worker not claimed yet, now claimed.

    One note per failed trial: every worker that dies preloading leaves its own (Tune starts a
    new process for each trial sent to a dead one), and the driver asks only for a trial that
    never reached its worker.
    """
    for pid, note in sorted(_dead_notes(), key=lambda item: _mtime(item[1])):
        module = _read(note)
        try:
            note.rename(note.with_name(note.name + _CLAIMED))
        except OSError:
            continue
        if module:
            return module, pid
    return None


def _dead_notes() -> list[tuple[int, Path]]:
    """``(pid, note)`` of the unclaimed notes whose process is gone."""
    if _folder is None:
        return []
    try:
        notes = list(_folder.iterdir())
    except OSError:
        return []
    found = []
    for note in notes:
        if note.name.isdigit() and not _alive(int(note.name)):
            found.append((int(note.name), note))
    return sorted(found)


def _read(note: Path) -> str:
    try:
        return note.read_text().strip()
    except OSError:  # removed as its worker finished: not a crash
        return ""


def _mtime(note: Path) -> float:
    try:
        return note.stat().st_mtime
    except OSError:
        return 0.0


class Note:
    """A worker's note of what it is importing; never raises (a worker must not die of its notes)."""

    def __init__(self) -> None:
        folder = os.environ.get(TRACE_ENV)
        self._path = Path(folder) / str(os.getpid()) if folder else None
        self._writable = self._path is not None

    def importing(self, module: str) -> None:
        if not self._writable:
            return
        try:
            # Written in place (no rename): a crash before the import leaves at worst an empty
            # note, which names nothing.
            with open(self._path, "w") as fh:  # type: ignore[arg-type]
                fh.write(module)
        except OSError:
            self._writable = False  # and done() still removes what an earlier write left

    def done(self) -> None:
        if self._path is not None:
            try:
                self._path.unlink(missing_ok=True)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
