"""What an objective sees of its trial: ``ctx.report``, ``ctx.trial_dir``, ``ctx.device``.

The context writes straight to the study's storage from the worker process, so learning
curves are visible while a trial runs and the pruner decides on the latest values of every
trial, also those running in parallel elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tuner._json import jsonable
from tuner.engine import _attrs
from tuner.exceptions import TrialPruned

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialContext"]


class TrialContext:
    """Handed to ``objective(params, ctx)`` and to built-in tasks."""

    def __init__(
        self,
        *,
        study: "optuna.Study | None",
        trial: "optuna.Trial | None",
        number: int,
        params: dict[str, Any],
        metrics: tuple[str, ...],
        directions: tuple[str, ...],
        trial_dir: Path,
        device: str,
        seed: int,
        num_threads: int,
        prune: bool,
    ) -> None:
        self._study = study
        self._trial = trial
        self._trial_id = trial._trial_id if trial is not None else None
        self.number = number
        self.params = params
        self.metrics = metrics
        self.directions = directions
        self.trial_dir = trial_dir
        self.device = device
        self.seed = seed
        self.num_threads = num_threads
        self._prune = prune and len(metrics) == 1
        self.curve: list[dict[str, Any]] = []
        self.last_step: int | None = None
        #: Problems that did not cost the trial (e.g. a checkpoint the disk had no room for);
        #: the worker hands them to the driver, which prints them.
        self.warnings: list[str] = []
        #: Moments of the trial (Unix seconds) named by :meth:`mark`; stored with the trial's timing.
        self.marks: dict[str, float] = {}

    @property
    def metric(self) -> str:
        """The study's (first) metric, e.g. ``val_accuracy``."""
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    @property
    def storage(self) -> "optuna.storages.BaseStorage | None":
        return self._study._storage if self._study is not None else None

    def report(self, step: int, value: float | Mapping[str, float]) -> None:
        """Record the value(s) at ``step`` (an epoch) and raise :class:`TrialPruned` if told to stop.

        ``value`` is the study metric itself, or a dict of metrics that contains it.
        Steps must increase; a repeated step overwrites nothing and is ignored by Optuna.
        """
        if isinstance(value, Mapping):
            # A study metric missing here (e.g. n_params, known only at the end) just means no
            # intermediate value and no pruning at this step; the curve is still recorded.
            metrics = {str(k): float(v) for k, v in value.items() if _is_number(v)}
        elif _is_number(value):
            metrics = {self.metric: float(value)}
        else:
            raise TypeError(f"ctx.report: value must be a number or a dict of numbers, got {type(value).__name__}")
        step = int(step)
        self.curve.append({"step": step, **{k: jsonable(v) for k, v in metrics.items()}})
        self.last_step = step
        if self._study is None or self._trial_id is None:
            return
        self._study._storage.set_trial_system_attr(self._trial_id, _attrs.CURVE, self.curve)
        if len(self.metrics) == 1 and self.metric in metrics:
            # Through optuna.Trial, so that its cached view (which the pruner reads) sees every step.
            # NaN and inf go to the pruner too: Optuna's pruners stop a trial reporting NaN (a
            # diverged training) at their next decision, and TPE ranks it last at that step.
            assert self._trial is not None
            self._trial.report(metrics[self.metric], step)
            if self._prune and self._trial.should_prune():
                raise TrialPruned(f"pruned at step {step} ({self.metric}={metrics[self.metric]:.6g})")

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able result with the trial (a confusion matrix, per-class scores, ...)."""
        if self._study is not None and self._trial_id is not None:
            self._study._storage.set_trial_system_attr(self._trial_id, _attrs.ATTR_PREFIX + key, jsonable(value))

    def mark(self, name: str) -> None:
        """Note that the trial reached ``name`` now (e.g. ``"training_started"``).

        Kept in memory and stored once, with the trial's timing, when it ends: a trial's time
        outside its training (a worker's start, data loading, a CUDA context) is what fine GPU
        packing and short trials lose, and it is invisible in the trial's duration alone. The
        built-in tasks mark ``training_started`` and ``training_ended``; an objective may add its
        own names. A name marked twice keeps its first moment.
        """
        self.marks.setdefault(str(name), time.time())

    def warn(self, message: str) -> None:
        """Record a problem that leaves the trial's values valid (stored as ``artifact_warning``)."""
        self.warnings.append(message)
        self.set_attr("artifact_warning", "; ".join(self.warnings))

    def __repr__(self) -> str:
        return f"TrialContext(number={self.number}, device={self.device!r}, trial_dir={str(self.trial_dir)!r})"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))
