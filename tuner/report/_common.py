"""Small helpers shared by the figure data functions: ranking, thinning, durations, labels."""

from __future__ import annotations

import datetime as _dt
import functools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tuner.engine import _attrs

__all__ = ["StudyData", "NoData", "is_complete", "complete_trials", "ranked", "thin", "duration_s", "worker_label",
           "STATE_ORDER", "STATE_COLORS"]

#: display order of trial states, and their colours in every figure
STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c",
                "WAITING": "#7f7f7f"}


class NoData(Exception):
    """A figure cannot be drawn from these trials; the message says why (shown in its place)."""


@dataclass
class StudyData:
    """What every figure is computed from: the trials (read once) and the study's description."""

    name: str
    directions: list[str]                      # "minimize" / "maximize", one per objective
    metric_names: list[str]                    # one per objective
    trials: list[FrozenTrial]
    spec: dict[str, Any] | None = None         # tuner:spec, when the study ran through tuner
    system_attrs: dict[str, Any] = field(default_factory=dict)
    #: Optuna's names of the params of trials whose names were changed for display (by trial number).
    optuna_params: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1


def is_complete(t: FrozenTrial) -> bool:
    """A COMPLETE trial with finite values (what rankings and value plots can use)."""
    return t.state == TrialState.COMPLETE and t.values is not None and all(math.isfinite(v) for v in t.values)


def complete_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_complete(t)]


def sort_key(direction: str) -> float:
    """Multiply a value by this to sort best first in ascending order."""
    return -1.0 if direction == "maximize" else 1.0


def ranked(trials: Sequence[FrozenTrial], directions: Sequence[str], objective: int = 0) -> list[FrozenTrial]:
    """Complete trials, best first by ``objective`` (ties: lower trial number first)."""
    s = sort_key(directions[objective])
    return sorted(complete_trials(trials), key=lambda t: (s * t.values[objective], t.number))


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The non-dominated complete trials (Optuna's own definition), ordered by the first objective."""
    from tuner.report._view import study_view

    complete = complete_trials(trials)
    if not complete:
        return []
    front = study_view(complete, directions).best_trials
    return ranked(front, directions)


def thin(trials: Sequence[FrozenTrial], max_n: int, keep: Iterable[FrozenTrial] = (), seed: int = 0) -> list[FrozenTrial]:
    """At most ``max_n`` of ``trials`` (all of ``keep`` plus a seeded random sample), in trial order."""
    if len(trials) <= max_n:
        return list(trials)
    kept = {t.number for t in keep}
    rest = [t for t in trials if t.number not in kept]
    k = max(0, max_n - len(kept))
    sample = random.Random(seed).sample(rest, min(k, len(rest)))
    chosen = kept | {t.number for t in sample}
    return [t for t in trials if t.number in chosen]


def duration_s(t: FrozenTrial) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def worker(t: FrozenTrial) -> dict[str, Any]:
    w = t.system_attrs.get(_attrs.WORKER)
    return w if isinstance(w, dict) else {}


def gpus_of(w: dict[str, Any]) -> float:
    """GPUs a trial held: the requested share (``gpus``), else the number of GPU ids it saw."""
    g = w.get("gpus")
    if isinstance(g, (int, float)) and not isinstance(g, bool) and g > 0:
        return float(g)
    ids = w.get("gpu_ids") or []
    return float(len(ids)) if isinstance(ids, list) else 0.0


def worker_label(t: FrozenTrial) -> str:
    """The timeline row of a trial: ``host:gpuN`` when it had GPUs, else ``host:pid``."""
    return label_of(worker(t))


def label_of(w: dict[str, Any]) -> str:
    """:func:`worker_label` from the placement dict itself."""
    if not w:
        return "(no placement recorded)"
    ids = w.get("gpu_ids")
    gpus = w.get("gpus")
    try:
        return _label(w.get("host"), w.get("ip"), w.get("pid"), tuple(ids) if isinstance(ids, list) else (), gpus)
    except TypeError:  # an unhashable value in a hand-written placement
        return _label.__wrapped__(w.get("host"), w.get("ip"), str(w.get("pid")), (), None)


@functools.lru_cache(maxsize=4096)
def _label(host: Any, ip: Any, pid: Any, gpu_ids: tuple[Any, ...], gpus: Any) -> str:
    name = str(host or ip or "?")
    if gpu_ids and gpus_of({"gpus": gpus, "gpu_ids": list(gpu_ids)}) > 0:
        return f"{name}:gpu{','.join(str(i) for i in gpu_ids)}"
    return f"{name}:{'?' if pid is None else pid}"


def fmt_value(value: Any) -> str:
    """A number for humans: 6 significant digits; other values as they are."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 86400:.1f} days"


def fmt_time(value: _dt.datetime | None) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="seconds")
