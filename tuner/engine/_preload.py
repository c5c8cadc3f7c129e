"""Imported by each of Ray's new Python workers, before any work arrives, when a run preloads.

Ray's own preloading (``preload_python_modules``) imports each named module but catches only
``ImportError``: a module whose import raises anything else (torch over a broken CUDA library,
a user's module with a bug) ends every worker as it starts, and the run with them. So tuner
names this module alone, and it imports the list the driver put in the environment Ray's
processes inherit (:data:`tuner.engine._prestart.WORKER_IMPORTS_ENV`), each in its own
``try``: a module that is not installed is skipped (the trial that needs it says so), one
that fails otherwise costs one line on the worker's stderr, which Ray forwards to the driver's console, and
the worker lives on (a crash of the interpreter itself is what :mod:`tuner.engine._preload_trace`
is for). What did import is kept in :data:`PRELOADED`, which the worker stores with
a process's first trial, so a benchmark reads back which processes were ready instead of
inferring it.
"""

from __future__ import annotations

import importlib
import os
import sys

from tuner.engine._preload_trace import Note
from tuner.engine._prestart import WORKER_IMPORTS_ENV

__all__ = ["PRELOADED", "import_each"]


def import_each(names: list[str]) -> tuple[str, ...]:
    """Import ``names`` in order; returns those that imported. Never raises, but for Ctrl-C.

    Quiet only about a module that is not there at all (nor its package): a trial that needs it
    says so. Any other failure, an ``ImportError`` from inside the module included (torch's
    ``libcudnn.so.9: cannot open shared object file``, a user's module missing a dependency),
    is the line the user needs to see.
    """
    done = []
    note = Note()  # what a crash no ``try`` catches leaves behind for the driver
    try:
        for name in names:
            note.importing(name)
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if not _is_absent(name, exc):
                    _say(name, exc)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure must leave the worker alive
                _say(name, exc)
            else:
                done.append(name)
    finally:  # a Ctrl-C is no crash: only a process that died mid-import keeps its note
        note.done()
    return tuple(done)


def _is_absent(name: str, exc: ModuleNotFoundError) -> bool:
    """Whether the module not found is ``name`` itself or a package above it (not one it imports)."""
    parts = name.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _say(name: str, exc: BaseException) -> None:
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    print(f"tuner: Ray worker {os.getpid()} could not preload {name} ({type(exc).__name__}: {first_line}); "
          f"its trials import it themselves (set TUNER_PRELOAD=0 to stop preloading)", file=sys.stderr, flush=True)


#: The modules this process imported ahead of its trials.
PRELOADED: tuple[str, ...] = import_each(
    [name.strip() for name in os.environ.get(WORKER_IMPORTS_ENV, "").split(",") if name.strip()])
