"""Keep the checkpoints of the best K trials only, so a 1,000-trial study does not fill the disk.

The driver calls :meth:`CheckpointRetention.trial_finished` as each trial ends. A complete
trial that ranks among the best ``keep`` (by the first objective) keeps its checkpoint; the one
it pushes out, and every trial outside the best ``keep``, loses its checkpoint files
(:data:`CHECKPOINT_FILES` in its trial folder; the trial's other files and its record in the
storage stay). The best trials are read from the storage once, when the run starts (a resumed
study), then followed in memory: no query per trial beyond the finished trial's folder.

Only built-in tasks' studies are pruned (their checkpoints are tuner's files); multi-objective
studies keep every checkpoint (any Pareto-optimal trial may be the one a user exports).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.engine import _attrs

if TYPE_CHECKING:
    import optuna

__all__ = ["CheckpointRetention", "CHECKPOINT_FILES"]

#: The files a built-in task writes as its trial's model (see tuner.tasks).
CHECKPOINT_FILES = ("best.pt", "model.joblib", "model.json")


class CheckpointRetention:
    """Deletes the checkpoint files of trials outside the best ``keep``."""

    def __init__(self, study: "optuna.Study", keep: int | None, *, enabled: bool = True) -> None:
        self._study = study
        self.keep = keep
        self.enabled = enabled and keep is not None and len(study.directions) == 1
        self._sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
        self._kept: list[tuple[float, int]] = []   # (sign * value, number), best first
        self._dirs: dict[int, str] = {}
        self.removed: list[int] = []
        if self.enabled:
            self._start()

    def _start(self) -> None:
        """Rank the complete trials already in the study; prune what is already outside the best ``keep``."""
        from tuner.storage import trial_outcomes

        ranked = []
        for t in trial_outcomes(self._study._storage, self._study._study_id, ("COMPLETE", "PRUNED", "FAIL"),
                                _attrs.WORKER):
            folder = (t.attr or {}).get("trial_dir")
            if folder:
                self._dirs[t.number] = folder
            if t.state == "COMPLETE" and t.value is not None:
                ranked.append((self._sign * t.value, t.number))
            else:
                self._remove(t.number)
        ranked.sort()
        self._kept = ranked[: self.keep]
        for _, number in ranked[self.keep:]:
            self._remove(number)

    def trial_finished(self, trial_id: int, number: int, state: str, values: list[float] | None) -> None:
        """Account for a trial that just ended (``state`` COMPLETE, PRUNED or FAIL)."""
        if not self.enabled:
            return
        folder = (self._study._storage.get_trial_system_attrs(trial_id).get(_attrs.WORKER) or {}).get("trial_dir")
        if folder:
            self._dirs[number] = folder
        if state != "COMPLETE" or not values:
            self._remove(number)
            return
        assert self.keep is not None
        entry = (self._sign * float(values[0]), number)
        bisect.insort(self._kept, entry)
        if len(self._kept) > self.keep:
            _, out = self._kept.pop()
            self._remove(out)

    def _remove(self, number: int) -> None:
        folder = self._dirs.get(number)
        if not folder:
            return
        gone = False
        for name in CHECKPOINT_FILES:
            path = Path(folder) / name
            try:
                path.unlink()
                gone = True
            except FileNotFoundError:
                pass
            except OSError:  # an unwritable folder keeps its files; the study goes on
                pass
        if gone:
            self.removed.append(number)

    def kept(self) -> list[int]:
        """Numbers of the trials whose checkpoints are kept, best first."""
        return [n for _, n in self._kept]

    def __repr__(self) -> str:
        return f"CheckpointRetention(keep={self.keep}, enabled={self.enabled}, kept={self.kept()})"


def _unused(_: Any) -> None:  # pragma: no cover - keeps the TYPE_CHECKING import honest for linters
    pass
