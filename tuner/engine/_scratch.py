"""The scratch folder Ray Tune needs for a run (its experiment state; tuner's record is the storage).

A run removes its folder when it ends, but a run killed (SIGKILL, the machine's OOM killer, a
third Ctrl-C during clean-up) cannot, and each such run left a ``tuner-ray-*`` folder in the
temporary directory for good. The folder's name carries the run's pid, so the next run on the
machine removes those whose process is gone and that have not changed for a while.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["make_scratch", "sweep_stale"]

_PREFIX = "tuner-ray-"
_NAME = re.compile(rf"{_PREFIX}(\d+)-[^/]+")

#: A folder untouched for this long, of a process that is gone, is left over. The wait guards
#: against a pid that another pid namespace (a container sharing /tmp) is still using.
STALE_AFTER_S = 600.0


def make_scratch() -> Path:
    """A new scratch folder for this run, after removing the ones killed runs left behind."""
    try:
        sweep_stale()
    except Exception:  # noqa: BLE001 - housekeeping: whatever lies in /tmp must never stop a run
        pass
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))


def sweep_stale(root: Path | None = None, *, min_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the scratch folders in ``root`` (the temporary directory) of processes that are gone
    and that nothing touched for ``min_age_s``; returns those removed. Best effort: a folder that
    cannot be read or removed (another user's) is left."""
    root = Path(tempfile.gettempdir()) if root is None else root
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            if entry.is_symlink() or not entry.is_dir() or now - _last_change(entry) < min_age_s:
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no pid at all (tuner-ray-99999999999999-x)
        return False
    except OSError:  # another user's process (PermissionError): alive
        return True
    return True


def _last_change(folder: Path) -> float:
    """The latest modification time of ``folder`` and what lies in it, two levels down (Tune
    writes its experiment state in ``run/``)."""
    latest = folder.stat().st_mtime
    for child in folder.iterdir():
        latest = max(latest, child.lstat().st_mtime)
        if child.is_dir() and not child.is_symlink():
            for grandchild in child.iterdir():
                latest = max(latest, grandchild.lstat().st_mtime)
    return latest
