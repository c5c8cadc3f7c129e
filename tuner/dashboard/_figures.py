"""The study page's figures: the report's figures, computed once per change of the study.

Computing every figure reads the whole study (about 17 s at 100,000 trials), so results are
cached by the study's version marker (:meth:`DashboardData.version`). While a study runs its
version changes with every trial; to keep a big running study from pinning a core, a stale
result is served until ``max(min_interval_s, 3 x the last compute time)`` has passed, and only
one request per study computes at a time (the others get the stale result, marked ``stale``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner._json import jsonable

if TYPE_CHECKING:
    from tuner.dashboard._queries import DashboardData

__all__ = ["FigureCache"]


@dataclass
class _Entry:
    version: str
    body: str          # the JSON response, figures included as raw JSON text
    computed_at: float
    compute_s: float


class FigureCache:
    """Figures of each study as one JSON document, cached per study version."""

    def __init__(self, data: "DashboardData", *, min_interval_s: float = 2.0) -> None:
        self._data = data
        self._min_interval_s = min_interval_s
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def figures_json(self, name: str) -> str:
        """``{"version", "stale", "compute_s", "sections": [...], "advice": {...}}`` as JSON text."""
        version = self._data.version(name)
        entry = self._entries.get(name)
        if entry is not None and entry.version == version:
            return _with_stale(entry.body, False)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if entry is not None:
            too_soon = time.monotonic() - entry.computed_at < max(self._min_interval_s, 3 * entry.compute_s)
            if too_soon or not lock.acquire(blocking=False):
                return _with_stale(entry.body, True)
        else:
            lock.acquire()
        try:
            entry = self._entries.get(name)
            if entry is not None and entry.version == version:
                return _with_stale(entry.body, False)
            entry = self._compute(name, version)
            self._entries[name] = entry
            return _with_stale(entry.body, False)
        finally:
            lock.release()

    def _compute(self, name: str, version: str) -> _Entry:
        import optuna

        from tuner.report import compute_report, load_study_data
        from tuner.report._html import figure_json

        t0 = time.perf_counter()
        report = compute_report(load_study_data(optuna.Study(name, self._data.storage)))
        sections = []
        for s in report.sections:
            head = json.dumps({"id": s.id, "title": s.title, "note": s.note, "captions": s.captions})
            fig = figure_json(s.figure) if s.figure is not None else "null"
            sections.append(head[:-1] + ', "figure": ' + fig + "}")
        advice = json.dumps(jsonable(dataclasses.asdict(report.advice))).replace("<", "\\u003c")
        compute_s = time.perf_counter() - t0
        body = ('{"version": ' + json.dumps(version) + ', "compute_s": ' + f"{compute_s:.3f}"
                + ', "sections": [' + ", ".join(sections) + '], "advice": ' + advice + ', "stale": false}')
        return _Entry(version, body, time.monotonic(), compute_s)


def _with_stale(body: str, stale: bool) -> str:
    return body[:-len('false}')] + ("true}" if stale else "false}")
