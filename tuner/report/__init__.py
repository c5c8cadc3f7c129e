"""The study report: figures as pure functions of a study's trials, and one self-contained HTML page.

``tuner.report("study", "report.html")`` (this module is callable: it is :func:`write_report`)
reads the study's trials once, computes every figure's data, and writes a page that opens
offline. The parts are reusable (the dashboard draws the same figures):

- :func:`load_study_data` reads a study into a :class:`StudyData` (trials in a fixed number of
  queries, whatever their number);
- each figure has a data function ``_get_*_info(data, ...)`` returning a plain dataclass (tested
  without a browser) and a render function ``plot_*(info)`` returning a Plotly figure;
- :func:`compute_report` computes them all, :func:`build_report` returns the HTML text,
  :func:`write_report` writes the file.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from tuner.report._advice import Advice, AdviceInfo, _get_advice_info
from tuner.report._common import NoData, StudyData
from tuner.report._curves import CurvesInfo, _get_curves_info, plot_curves
from tuner.report._history import HistoryInfo, _get_history_info, plot_history
from tuner.report._importance import ImportanceInfo, _get_importance_info, plot_importances
from tuner._trial_read import read_trials
from tuner.report._report import Limits, ReportData, Section, build_report, compute_report, load_study_data, write_report
from tuner.report._summary import SummaryInfo, _get_summary_info
from tuner.report._table import TopTrialsInfo, _get_top_trials_info
from tuner.report._timeline import TimelineInfo, _get_timeline_info, plot_timeline
from tuner.report._view import study_view

__all__ = [
    "write_report", "build_report", "compute_report", "load_study_data", "read_trials", "study_view",
    "StudyData", "ReportData", "Section", "Limits", "NoData",
    "SummaryInfo", "TopTrialsInfo", "HistoryInfo", "ImportanceInfo", "CurvesInfo", "TimelineInfo", "AdviceInfo", "Advice",
    "plot_history", "plot_importances", "plot_curves", "plot_timeline",
    "_get_summary_info", "_get_top_trials_info", "_get_history_info", "_get_importance_info", "_get_curves_info",
    "_get_timeline_info", "_get_advice_info",
]


class _CallableModule(types.ModuleType):
    """``tuner.report(...)`` writes a report, and ``tuner.report.build_report`` etc. stay reachable."""

    def __call__(self, study_name: str, output: Any = None, storage: str | None = None, **kwargs: Any) -> Any:
        return write_report(study_name, output, storage, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
report = sys.modules[__name__]  # what ``tuner.report`` resolves to (see tuner/__init__.py's lazy names)
