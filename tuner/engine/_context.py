"""What an objective sees of its trial: ``ctx.report``, ``ctx.trial_dir``, ``ctx.device``.

The context writes straight to the study's storage from the worker process, so learning
curves are visible while a trial runs and the pruner decides on the latest values of every
trial, also those running in parallel elsewhere.
"""

from __future__ import annotations

import math
import numbers
import operator
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tuner._json import jsonable
from tuner.engine import _attrs
from tuner.exceptions import TrialPruned

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialContext", "real_number"]


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
        missing_metric_fails: bool = False,
        resumable: bool = False,
        resumed_from: Path | None = None,
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
        #: The folder of the unfinished trial whose parameters this trial runs again (see
        #: ``rerun_unfinished``; the nearest one that had a folder, when that one was stopped
        #: before it started), or None: an objective that saves its own checkpoints in
        #: ``trial_dir`` can load them from here and go on where the interrupted trial stopped.
        #: The built-in tasks do so from ``resume.pt`` (:mod:`tuner.tasks._resume`).
        self.resumed_from = resumed_from
        #: Built-in tasks save resume points between epochs (off where the study never reruns a trial).
        self.resumable = resumable
        self._prune = prune and len(metrics) == 1
        # A built-in task's study may rank trials by a metric known only at the end (test_accuracy,
        # n_params): its reports cannot carry it, which is the spec's choice, not a typo (warned).
        self._missing_metric_fails = missing_metric_fails
        self._metric_reported = False  # a report of this trial has carried the study metric
        self._missing_metric_warned = False
        self.curve: list[dict[str, Any]] = []
        self._rows: dict[int, dict[str, Any]] = {}  # step -> its row of the curve
        self._repeat_warned = False
        self._curve_changed = False  # reported since the curve was last stored
        self._curve_stored_at = 0.0  # when (time.monotonic()), and what that write cost
        self._curve_write_s = 0.0
        self.last_step: int | None = None
        #: The study metric at the last report that carried it (NaN kept, unlike the stored curve).
        self.last_value: float | None = None
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
        ``step`` is a whole number >= 0 (a bool or a string is a mistake, refused with a
        TypeError); steps should increase. A step may be reported in several calls (the training
        loss, then the validation metrics): the curve has one row per step, which gathers them. A
        value reported again for a step keeps its first value, as Optuna keeps the first for the
        pruner (once both were kept, the curve and what the pruner saw disagreed), with a
        UserWarning the first time.

        When a pruner is on and a trial's first report lacks the study metric (``acc`` in a
        ``metric: loss`` study, a typo), the trial is warned, once (stored with it and printed):
        pruning runs on that metric alone, so such reports left the study unpruned with no word.
        It is a warning, not a failure: an objective may log other values before its first
        evaluation (``val_loss`` from epoch 5), and that is legitimate. A key present with None
        means "not measured at this step" and counts as reported. Multi-objective studies are
        never pruned, and ``pruner: none`` may use reports as a log of anything, so neither checks.
        """
        step = _whole_step(step)
        if isinstance(value, Mapping):
            names = [str(k) for k in value]
            metrics = {str(k): float(v) for k, v in value.items() if _is_number(v)}  # other non-numbers: left out
            if (given := value.get(self.metric)) is not None:  # None: not measured at this step
                if (number := real_number(given)) is None:
                    raise TypeError(f"ctx.report: {self.metric!r} must be a number, got "
                                    f"{type(given).__name__} {given!r}"[:300])
                metrics[self.metric] = number
        elif (number := real_number(value)) is not None:
            names, metrics = [self.metric], {self.metric: number}
        else:
            raise TypeError(f"ctx.report: value must be a number or a dict of numbers, got "
                            f"{type(value).__name__} {value!r}"[:300])
        if self.metric in metrics or (isinstance(value, Mapping) and self.metric in value):
            self._metric_reported = True  # present, if only as None ("not measured at this step")
        elif self._prune and not self._metric_reported:
            self._missing_metric(step, names)
        row = self._rows.get(step)
        first = row is None
        if row is None:
            row = self._rows[step] = {"step": step}
            self.curve.append(row)
        again = [k for k in metrics if k in row]
        if again:
            if not self._repeat_warned:  # a Python warning, as Optuna's own for it: not the trial's stored warnings
                self._repeat_warned = True
                import warnings

                warnings.warn(f"ctx.report: {', '.join(again)} at step {step} reported before; a step keeps its "
                              f"first values (later ones are left out, as Optuna leaves them out for the pruner)",
                              UserWarning, stacklevel=2)
            metrics = {k: v for k, v in metrics.items() if k not in row}
        if not metrics and not first:
            return
        row.update({k: jsonable(v) for k, v in metrics.items()})
        self._curve_changed = True
        self.last_step = step
        self.last_value = metrics.get(self.metric, self.last_value)
        if self._study is None or self._trial_id is None:
            return
        self._store_curve(final=False)
        if len(self.metrics) == 1 and self.metric in metrics:
            # Through optuna.Trial, so that its cached view (which the pruner reads) sees every step.
            # NaN and inf go to the pruner too: Optuna's pruners stop a trial reporting NaN (a
            # diverged training) at their next decision, and TPE ranks it last at that step.
            assert self._trial is not None
            self._trial.report(metrics[self.metric], step)
            if self._prune and self._trial.should_prune():
                raise TrialPruned(f"pruned at step {step} ({self.metric}={metrics[self.metric]:.6g})")

    #: Up to this many rows the curve is stored at every report; past it, see _store_curve.
    _CURVE_ALWAYS_ROWS = 100
    #: The longest a long curve waits for its next write (one slow write, through a storage outage
    #: the retries rode out, must not hold the curve back for 20 times that).
    _CURVE_MAX_WAIT_S = 10.0

    def _store_curve(self, *, final: bool) -> None:
        """Store the curve (one attribute, the whole list): at every report while it is short,
        then only once the time since its last write is 20 times what that write took (and at
        least a second), and always when the trial ends (``final``, from the worker).

        Written at every report, a curve of n steps cost n writes of up to n rows: a trial
        reporting per batch spent 13 s of 3,000 reports writing it (4.4 ms a report, growing).
        This way its writes take at most about 5% of the trial, and a viewer of a running trial
        sees a curve a second or so old (at most ``_CURVE_MAX_WAIT_S``). Optuna's own intermediate
        values, which the pruner reads, are still written at every report. A trial whose worker
        is killed (a stop, its process lost) keeps the curve of its last write; the study metric
        of every step is in its intermediate values.
        """
        if self._study is None or self._trial_id is None or not self._curve_changed:
            return
        now = time.monotonic()
        if not final and len(self.curve) > self._CURVE_ALWAYS_ROWS and \
                now - self._curve_stored_at < min(self._CURVE_MAX_WAIT_S, max(1.0, 20 * self._curve_write_s)):
            return
        self._study._storage.set_trial_system_attr(self._trial_id, _attrs.CURVE, self.curve)
        self._curve_changed, self._curve_stored_at = False, time.monotonic()
        self._curve_write_s = self._curve_stored_at - now

    def store_curve(self) -> None:
        """Store the reports the throttle held back; the worker calls it as the trial ends."""
        self._store_curve(final=True)

    def _missing_metric(self, step: int, reported: list[str]) -> None:
        """A report without the study metric before any report carried it: fail, or warn once (see report)."""
        message = (f"ctx.report(step {step}) has no {self.metric!r}, the study's metric, which the pruner decides on "
                   f"(reported: {sorted(reported)}); report {self.metric!r} "
                   f"at each step the pruner may stop the trial, change the spec's metric, or set pruner: none")
        if self._missing_metric_fails:
            raise ValueError(message)
        if not self._missing_metric_warned:
            self._missing_metric_warned = True
            self.warn(message + " (this trial cannot be pruned)")

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
        try:
            self.set_attr("artifact_warning", "; ".join(self.warnings))
        except Exception:  # noqa: BLE001 - a warning must not cost the trial; the driver prints it anyway
            pass

    def __repr__(self) -> str:
        return f"TrialContext(number={self.number}, device={self.device!r}, trial_dir={str(self.trial_dir)!r})"


def real_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number, else None.

    Real numbers: ``int``, ``float``, ``Fraction``, ``Decimal``, NumPy's integers and floats,
    and arrays or tensors of a real numeric dtype that hold one value (a 0-d NumPy array, a
    torch scalar; torch also converts a one-element tensor). A bool, a string (even ``"0.5"``),
    a complex number and anything else is not: ``float()`` would turn ``True`` into 1.0 and
    ``"0.5"`` into 0.5, so a returned flag or an unparsed line of text would rank the trial.
    """
    if _is_boolean(value) or isinstance(value, (str, bytes)):
        return None
    if isinstance(value, (numbers.Real, Decimal)):
        return float(value)
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    kind = getattr(dtype, "kind", None)  # NumPy; torch's dtypes have no kind, only a name
    if (kind not in ("i", "u", "f")) if kind is not None else any(w in str(dtype) for w in ("bool", "complex")):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # more than one value (torch raises RuntimeError)
        return None


def _is_boolean(value: Any) -> bool:
    """True for ``bool``, NumPy's ``bool_`` and bool arrays or tensors."""
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (getattr(dtype, "kind", None) == "b" or str(dtype) in ("bool", "torch.bool"))


def _whole_step(step: Any) -> int:
    """``step`` as an int: a whole number >= 0 (an int, NumPy integer, or a float such as 3.0)."""
    number = None if _is_boolean(step) else real_number(step)
    if number is None or not math.isfinite(number) or not number.is_integer():
        raise TypeError(f"ctx.report: step must be a whole number (the epoch or batch count), "
                        f"got {type(step).__name__} {step!r}"[:300])
    if number < 0:
        raise ValueError(f"ctx.report: step must be >= 0, got {step!r}")
    try:
        return operator.index(step)  # exact for ints beyond float precision
    except TypeError:
        return int(number)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))
