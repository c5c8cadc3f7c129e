"""The report's summary: best trial(s), counts, wall and compute time, GPU-hours, failures."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from tuner.engine import _attrs
from tuner.engine._study import ended_unfinished, run_log, run_row
from tuner.report._common import STATE_ORDER, StudyData, duration_s, gpus_of, pareto_front, ranked, worker, worker_label
from tuner.report._timing import PHASES, trial_phases

__all__ = ["SummaryInfo", "BestInfo", "_get_summary_info"]


@dataclass
class BestInfo:
    number: int
    values: list[float]
    params: dict[str, Any]
    metrics: dict[str, Any] | None


@dataclass
class SummaryInfo:
    name: str
    directions: list[str]
    metric_names: list[str]
    n_trials: int
    counts: dict[str, int]                      # state name -> trials, in STATE_ORDER, zero counts left out
    best: list[BestInfo]                        # the best trial, or the Pareto front (best first by objective 0)
    n_pareto: int                               # size of the Pareto front (multi-objective), else 0
    first_start: _dt.datetime | None
    last_end: _dt.datetime | None
    wall_time_s: float | None                   # first start to last end
    compute_s: float                            # sum of finished trials' durations
    gpu_hours: float                            # sum of duration x GPUs held, over trials that had GPUs
    gpu_trials: int
    n_workers: int                              # distinct timeline rows (host:gpu or host:pid)
    peak_concurrency: int                       # most trials running at the same moment
    busy_fraction: float | None                 # compute / (wall x peak concurrency)
    n_trials_target: int | None
    spec: dict[str, Any] | None
    failures: list[tuple[str, int, list[int]]] = field(default_factory=list)  # (type: message, count, trial numbers)
    phase_s: dict[str, float] = field(default_factory=dict)  # seconds per phase (PHASES order), summed over trials
    timed_trials: int = 0                       # finished trials that recorded their timing
    unfinished: list[int] = field(default_factory=list)  # FAIL trials their run ended (a stop, a dead run): not failures
    runs: list[dict[str, Any]] = field(default_factory=list)  # the study's logged runs (run_row), oldest first


def _peak_concurrency(intervals: list[tuple[_dt.datetime, _dt.datetime]]) -> int:
    events = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    events.sort(key=lambda x: (x[0], x[1]))  # ends before starts at the same instant
    peak = cur = 0
    for _, delta in events:
        cur += delta
        peak = max(peak, cur)
    return peak


def _get_summary_info(data: StudyData, *, max_failure_groups: int = 10) -> SummaryInfo:
    trials = data.trials
    counts = Counter(t.state.name for t in trials)
    ordered = {s: counts[s] for s in STATE_ORDER if counts.get(s)}
    ordered.update({s: n for s, n in counts.items() if s not in ordered})

    if data.multi_objective:
        front = pareto_front(trials, data.directions)
        best_trials, n_pareto = front, len(front)
    else:
        top = ranked(trials, data.directions)
        best_trials, n_pareto = top[:1], 0
    best = [BestInfo(t.number, list(t.values), dict(t.params), t.system_attrs.get(_attrs.METRICS)) for t in best_trials]

    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    first_start = min(starts) if starts else None
    last_end = max(ends) if ends else None
    wall = (last_end - first_start).total_seconds() if first_start and last_end and last_end >= first_start else None

    compute = 0.0
    gpu_s = 0.0
    gpu_trials = 0
    intervals = []
    rows = set()
    for t in trials:
        rows.add(worker_label(t))
        d = duration_s(t)
        if d is None or d < 0:
            continue
        compute += d
        intervals.append((t.datetime_start, t.datetime_complete))
        g = gpus_of(worker(t))
        if g > 0:
            gpu_s += d * g
            gpu_trials += 1
    phase_s = dict.fromkeys(PHASES, 0.0)
    timed = 0
    for t in trials:
        phases = trial_phases(t.system_attrs.get(_attrs.TIMING), t.datetime_start) if t.datetime_complete else {}
        timed += bool(phases)
        for name, seconds in phases.items():
            phase_s[name] += seconds
    peak = _peak_concurrency(intervals) if intervals else 0
    busy = compute / (wall * peak) if wall and peak else None

    groups: dict[str, list[int]] = {}
    unfinished: list[int] = []
    for t in trials:
        if t.state != TrialState.FAIL:
            continue
        err = t.system_attrs.get(_attrs.ERROR)
        if ended_unfinished(err):  # a Ctrl-C's, a stop's or a dead run's: listed apart, not as failures
            unfinished.append(t.number)
            continue
        if isinstance(err, dict):
            key = f"{err.get('type', 'Error')}: {str(err.get('message', '')).strip().splitlines()[0] if str(err.get('message', '')).strip() else ''}"
        else:
            key = "no error recorded"
        groups.setdefault(key[:300], []).append(t.number)
    failures = sorted(((k, len(v), v[:10]) for k, v in groups.items()), key=lambda x: (-x[1], x[0]))[:max_failure_groups]

    spec = data.spec if isinstance(data.spec, dict) else None
    target = spec.get("n_trials") if spec else None
    return SummaryInfo(
        name=data.name, directions=list(data.directions), metric_names=list(data.metric_names), n_trials=len(trials),
        counts=ordered, best=best, n_pareto=n_pareto, first_start=first_start, last_end=last_end, wall_time_s=wall,
        compute_s=compute, gpu_hours=gpu_s / 3600.0, gpu_trials=gpu_trials, n_workers=len(rows) if trials else 0,
        peak_concurrency=peak, busy_fraction=busy, n_trials_target=target if isinstance(target, int) else None,
        spec=spec, failures=failures, phase_s={k: v for k, v in phase_s.items() if v > 0},
        timed_trials=timed, unfinished=unfinished, runs=[run_row(run) for run in run_log(data.system_attrs)])
