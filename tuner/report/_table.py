"""The top trials: the best ``top`` complete trials (the Pareto front when several objectives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuner.engine import _attrs
from tuner.report._common import StudyData, duration_s, pareto_front, ranked, worker_label

__all__ = ["TopRow", "TopTrialsInfo", "_get_top_trials_info"]


@dataclass
class TopRow:
    rank: int
    number: int
    values: list[float]
    params: dict[str, Any]
    duration_s: float | None
    worker: str
    metrics: dict[str, Any] | None


@dataclass
class TopTrialsInfo:
    kind: str                   # "best" (one objective) or "pareto"
    metric_names: list[str]
    directions: list[str]
    params: list[str]           # column order: parameters of the listed trials, first seen first
    rows: list[TopRow]
    n_candidates: int           # complete trials (or Pareto-front trials) the rows were taken from


def _get_top_trials_info(data: StudyData, *, top: int = 10) -> TopTrialsInfo:
    if data.multi_objective:
        candidates = pareto_front(data.trials, data.directions)
        kind = "pareto"
    else:
        candidates = ranked(data.trials, data.directions)
        kind = "best"
    chosen = candidates[:max(0, top)]
    params: list[str] = []
    for t in chosen:
        for k in t.params:
            if k not in params:
                params.append(k)
    rows = [TopRow(rank=i, number=t.number, values=list(t.values), params=dict(t.params), duration_s=duration_s(t),
                   worker=worker_label(t), metrics=t.system_attrs.get(_attrs.METRICS))
            for i, t in enumerate(chosen, start=1)]
    return TopTrialsInfo(kind=kind, metric_names=list(data.metric_names), directions=list(data.directions),
                         params=params, rows=rows, n_candidates=len(candidates))
