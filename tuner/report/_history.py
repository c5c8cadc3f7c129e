"""Optimization history: every complete trial's value and the best value so far.

Optuna's ``plot_optimization_history`` draws one point per trial and indexes values by trial
number, so it can neither thin a large study nor take a subset of its trials. This version keeps
the best-so-far line exact (it is drawn through the trials that improved it) and draws at most
``max_points`` trial points: the improving ones plus a seeded random sample of the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.report._common import NoData, StudyData, complete_trials, sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["HistoryInfo", "ObjectiveHistory", "_get_history_info", "plot_history"]


@dataclass
class ObjectiveHistory:
    name: str
    direction: str
    numbers: list[int]          # trials drawn as points (all, or a thinned subset), ascending
    values: list[float]
    best_numbers: list[int]     # the trials that improved the best value, ascending (the best-so-far steps)
    best_values: list[float]
    last_number: int            # the line runs to the last trial of the study


@dataclass
class HistoryInfo:
    objectives: list[ObjectiveHistory]
    n_complete: int
    n_points: int               # points drawn per objective
    thinned: bool


def _get_history_info(data: StudyData, *, max_points: int = 20_000, seed: int = 0) -> HistoryInfo:
    complete = complete_trials(data.trials)
    if not complete:
        raise NoData("no complete trial yet")
    last = max(t.number for t in data.trials)
    rng = random.Random(seed)
    objectives = []
    n_points = 0
    for i, (name, direction) in enumerate(zip(data.metric_names, data.directions)):
        s = sort_key(direction)
        best_numbers, best_values = [], []
        best = None
        for t in complete:  # trials are in number order
            v = t.values[i]
            if best is None or s * v < s * best:
                best = v
                best_numbers.append(t.number)
                best_values.append(v)
        if len(complete) > max_points:
            improving = set(best_numbers)
            rest = [t for t in complete if t.number not in improving]
            sample = {t.number for t in rng.sample(rest, max(0, min(len(rest), max_points - len(improving))))}
            shown = [t for t in complete if t.number in improving or t.number in sample]
        else:
            shown = complete
        n_points = len(shown)
        objectives.append(ObjectiveHistory(name=name, direction=direction, numbers=[t.number for t in shown],
                                           values=[t.values[i] for t in shown], best_numbers=best_numbers,
                                           best_values=best_values, last_number=last))
    return HistoryInfo(objectives=objectives, n_complete=len(complete), n_points=n_points,
                       thinned=len(complete) > max_points)


def plot_history(info: HistoryInfo) -> "go.Figure":
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(info.objectives)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.08) if n > 1 else go.Figure()
    big = info.n_points > 2_000
    for row, obj in enumerate(info.objectives, start=1):
        scatter = go.Scattergl if big else go.Scatter
        points = scatter(x=obj.numbers, y=obj.values, mode="markers", name=f"{obj.name}", legendgroup=str(row),
                         marker={"size": 4 if big else 6, "color": "#1f77b4", "opacity": 0.5 if big else 0.8},
                         hovertemplate="trial %{x}<br>" + obj.name + " %{y:.6g}<extra></extra>")
        # The best-so-far steps: hold each best value until the next improvement, then to the last trial.
        xs = list(obj.best_numbers) + [obj.last_number]
        ys = list(obj.best_values) + [obj.best_values[-1]]
        line = go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": "#d62728", "width": 2},
                          name=f"best {obj.name} so far ({obj.direction})", legendgroup=str(row),
                          hovertemplate="best so far %{y:.6g} (from trial %{x})<extra></extra>")
        if n > 1:
            fig.add_trace(points, row=row, col=1)
            fig.add_trace(line, row=row, col=1)
            fig.update_yaxes(title_text=obj.name, row=row, col=1)
        else:
            fig.add_trace(points)
            fig.add_trace(line)
            fig.update_yaxes(title_text=obj.name)
    fig.update_xaxes(title_text="trial")
    fig.update_layout(title="Optimization history", height=max(420, 300 * n), hovermode="closest")
    return fig
