"""Which module a Ray worker was importing when it died before its first trial.

:mod:`tuner.engine._preload` survives any Python exception a preloaded module raises, but not
a crash of the interpreter itself (a segfault or an illegal instruction in a native library, the
kernel's out-of-memory kill). Such a worker dies before any trial reaches it; Tune then reports
each trial sent there as a dead worker, and every new worker dies the same way, so the run ends
at ``max_failures`` with nothing in the stored errors that says why. So a preloading worker
notes, in a folder the driver made for the Ray it started, the module it is about to import
(one file per process, named by its pid) and removes the note when its imports are done: a
note whose process is gone names the import that killed it, which the driver adds to the dead
workers' errors and to its final message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["TRACE_ENV", "Note", "close", "crashes", "open_folder"]

#: The folder, in the environment a preloading Ray's processes inherit.
TRACE_ENV = "TUNER_PRELOAD_TRACE"

#: This driver's folder while a preloading Ray it started is up (one Ray per driver process).
_folder: Path | None = None


def open_folder() -> Path:
    """A new, empty folder for the workers of the Ray about to start (the last one's is removed)."""
    global _folder
    close()
    _folder = Path(tempfile.mkdtemp(prefix="tuner-preload-"))
    return _folder


def close() -> None:
    """Forget and remove the folder (when the Ray it was made for shuts down)."""
    global _folder
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
        _folder = None


def crashes() -> dict[str, int]:
    """Module -> pid of a worker that died importing it, for this driver's Ray (empty if none)."""
    found: dict[str, int] = {}
    if _folder is None:
        return found
    try:
        notes = sorted(_folder.iterdir())
    except OSError:
        return found
    for note in notes:
        if not note.name.isdigit() or _alive(int(note.name)):
            continue
        try:
            module = note.read_text().strip()
        except OSError:  # removed as its worker finished: not a crash
            continue
        if module:
            found.setdefault(module, int(note.name))
    return found


class Note:
    """A worker's note of what it is importing; never raises (a worker must not die of its notes)."""

    def __init__(self) -> None:
        folder = os.environ.get(TRACE_ENV)
        self._path = Path(folder) / str(os.getpid()) if folder else None

    def importing(self, module: str) -> None:
        self._write(module)

    def done(self) -> None:
        if self._path is not None:
            try:
                self._path.unlink(missing_ok=True)
            except OSError:
                pass

    def _write(self, text: str) -> None:
        if self._path is None:
            return
        try:
            # Written in place (no rename): a crash before the import leaves at worst an empty
            # note, which names nothing.
            with open(self._path, "w") as fh:
                fh.write(text)
        except OSError:
            self._path = None


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
