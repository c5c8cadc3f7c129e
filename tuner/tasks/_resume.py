"""Where a rerun trial picks up: the training state a built-in task saves between epochs.

A Ctrl-C, a ``tuner stop``, ``max_failures`` or a killed ``tuner run`` ends the trials in flight;
the next run runs their configurations again (``rerun_unfinished``). Without a saved state a rerun would
train from epoch 1 again, spending the epochs the interrupted trial had already paid for, which
on an hour-long fine-tuning is the whole point of resuming. So the training loop writes
``resume.pt`` in its trial folder between epochs: the model, the optimizer, the learning-rate
schedule, the loss scaler, every random generator the loop draws from, the best epoch so far
and each epoch's reported metrics. When the configuration runs again, the engine moves the file
into the rerun's folder (:func:`take_over`) before the task starts; the loop loads it, reports
the epochs it had again (so the curve is whole and the pruner decides on the same values), and
trains on from the next epoch. On a CPU the rerun ends with the same weights and metrics, bit
for bit, as a trial never interrupted; on a GPU as exactly as its kernels repeat themselves.

A point costs milliseconds (gathering and writing the model's and the optimizer's state: 3 to
16 ms for the digits MLPs and CNN measured on this project's 2-CPU VM), which on a 25 ms epoch was 18% of
the training. So a point is written only once the training since the last one took at least
1 / :data:`TIME_SHARE` times what the last one took: at most 2% of the training time goes to
them after the first (which is written before its cost is known), an epoch 50 times longer than a point is always followed by one, and a trial of short
epochs loses at most 50 points' time of training (a fraction of a second for these models)
when it is cut short. The first epoch is always followed by one. (At 5% whole runs on a
2-CPU VM came out 5 to 9% slower: writing files costs more than the write's own time.)

The file is written aside and renamed (a kill mid-write leaves the previous point), is moved,
not copied, from trial to trial (a rerun stopped before its first point still holds it, for the
next rerun), and is deleted when nothing will resume it: the trial ended on its own (complete,
pruned, diverged, failed, timed out, its worker died) or its configuration was given up. The
rerun must see the interrupted trial's folder: one machine, or an ``artifacts_dir`` shared by
the cluster's nodes; elsewhere it trains from epoch 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from tuner.tasks._base import save_torch_file

__all__ = ["RESUME_FILE", "TIME_SHARE", "ResumePoint", "take_over", "drop"]

#: The file name, in a trial's folder.
RESUME_FILE = "resume.pt"
#: The most of a trial's training time its resume points may take.
TIME_SHARE = 0.02
#: The layout of the saved state (part of every point's identity: a change makes old points unread).
_FORMAT = 1


class ResumePoint:
    """One trial's ``resume.pt``: loaded if the engine moved one in, saved between epochs, dropped at the end.

    Active only for a context that asks for it (``ctx.resumable``: the engine's trials of a study
    that reruns what a stop cut short); a re-training for export or a test's bare context writes
    nothing. A file that cannot be written (a full disk) is told once and the trial goes on
    without resume points: they are a convenience, and the trial's values do not depend on them.

    ``identity()``: what a saved state must have been saved for to be resumed (the parameters,
    the data, the steps per epoch, the model's tensor shapes; called only where points are on):
    a data file edited in place or a changed model passes the parameters' check alone, and
    would fail or, worse, resume a state that does not belong to this training. The format of
    the file and torch's version are part of it: a point an older tuner or torch saved is not
    read as this one's.
    """

    def __init__(self, ctx: Any, identity: Callable[[], Mapping[str, Any]]) -> None:
        import torch

        self._ctx = ctx
        folder = getattr(ctx, "trial_dir", None)
        self._file = Path(folder) / RESUME_FILE if getattr(ctx, "resumable", False) and folder is not None else None
        self._folder = self._file.parent if self._file is not None else None  # kept when saving stops
        self._identity = _fingerprint({"format": _FORMAT, "torch": torch.__version__, **identity()}) \
            if self._file is not None else None
        if self._identity is None:
            self._file = None  # parameters that cannot be told apart: no resume points, the trial runs
        self._since = time.perf_counter()  # the last point's end (or the training's start)
        self._cost = 0.0  # what the last point took: unknown before the first, which is always written

    def load(self) -> dict[str, Any] | None:
        """The state the engine moved into this trial's folder from the interrupted trial, or None.

        A file saved for another training, or one that cannot be read, is told as a warning and
        deleted: training from epoch 1 is always correct, resuming a wrong state never is. Read
        as weights only (tensors, numbers, strings, containers): no pickled code runs.
        """
        import torch

        if self._file is None or not _is_file(self._file):
            return None
        try:
            state = torch.load(self._file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file costs the epochs it held, not the trial
            self._warn(f"the resume point of the trial this one runs again could not be read ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); trained from epoch 1")
            self.discard()
            return None
        if not isinstance(state, dict) or state.get("identity") != self._identity:
            self._warn("the resume point of the trial this one runs again was saved for other parameters, data or "
                       "model; trained from epoch 1")
            self.discard()
            return None
        return state

    def save(self, state: Callable[[], dict[str, Any]]) -> None:
        """Write ``state()`` (built only when it will be written) as this trial's resume point,
        when the training since the last one was long enough to pay for it (:data:`TIME_SHARE`)."""
        started = time.perf_counter()
        if self._file is None or (started - self._since) * TIME_SHARE < self._cost:
            return
        try:
            save_torch_file(self._file, {**state(), "identity": self._identity})
        except (OSError, RuntimeError) as exc:  # torch reports a failed write of its own as a RuntimeError
            drop(self._file.parent)  # an older point too: this trial will not keep one up to date
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc).splitlines()[0][:200]
            where = (exc.filename if isinstance(exc, OSError) else None) or self._file.parent
            self._warn(f"{RESUME_FILE} not saved: {reason} ({where}); a rerun of this trial would start from epoch 1")
            self._file = None
            return
        self._since = time.perf_counter()
        self._cost = self._since - started

    def discard(self) -> None:
        """The trial ended on its own: nothing will resume it."""
        if self._folder is not None:
            drop(self._folder)

    def _warn(self, message: str) -> None:
        warn = getattr(self._ctx, "warn", None)
        if callable(warn):
            warn(message)


def take_over(folders: list[Path], folder: Path) -> Path | None:
    """Move the nearest resume point of ``folders`` (the trials a rerun runs again, nearest
    first) into ``folder``; returns the folder it came from, or None where none holds one.

    A move, not a copy: one file per configuration however often it is cut short, and a rerun
    stopped again before its first point of its own still holds the one it took, where the
    next rerun finds it. A rename where both folders share a file system (they do, under one
    ``artifacts_dir``); a copy and a delete otherwise.
    """
    for source in folders:
        path = source / RESUME_FILE
        if not _is_file(path):
            continue
        target = folder / RESUME_FILE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)
            except OSError:  # another file system (EXDEV), or one that refuses renames across folders
                tmp = target.with_name(RESUME_FILE + ".tmp")
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
                path.unlink()
        except OSError:
            return None  # unreachable or full: the rerun trains from epoch 1
        return source
    return None


def drop(folder: Path) -> None:
    """Delete ``folder``'s resume point and any half-written one (that one first: a write being
    renamed into place meanwhile then has nothing to rename).

    Never raises: a folder made read-only meanwhile keeps its file, and nothing else is lost."""
    for name in (RESUME_FILE + ".tmp", RESUME_FILE):
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the folder cannot be read (Python 3.11 raises on EACCES)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _fingerprint(identity: Mapping[str, Any]) -> str | None:
    """``identity`` as one short comparable string, or None where it cannot be written as JSON
    (keys of mixed types, a value without a plain form): such a trial saves no resume points."""
    try:
        text = json.dumps(identity, sort_keys=True, default=_plain)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples, paths: as JSON would hold them."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)
