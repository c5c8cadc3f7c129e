"""Parallel coordinates and the contour of two parameters, built to stay small at any study size.

Optuna's versions draw one Scatter trace per trial (parallel coordinates) and a grid with a cell
per distinct pair of values (contour): fine for hundreds of trials, minutes and tens of
megabytes for 100,000. Here the parallel coordinates are one ``Parcoords`` trace over at most
``max_lines`` trials, and the contour is a fixed grid (``bins`` cells a side on each parameter's
own scale, log for log parameters, one cell per choice for categorical ones) holding the best
value seen in each cell, with a sample of the trials on top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial

from tuner.report._common import NoData, StudyData, fmt_value, sort_key

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Dimension", "ParallelInfo", "_get_parallel_info", "plot_parallel", "ContourAxis", "ContourInfo",
           "_get_contour_info", "plot_contour"]

_ABSENT = "(absent)"


def _kind(trials: Sequence[FrozenTrial], name: str) -> tuple[bool, bool]:
    """(categorical, log) for parameter ``name``, from the latest trial that has it."""
    for t in reversed(trials):
        dist = t.distributions.get(name)
        if dist is not None:
            if isinstance(dist, CategoricalDistribution):
                return True, False
            return False, bool(getattr(dist, "log", False))
    return True, False


@dataclass
class Dimension:
    label: str
    values: list[float]                 # position of each line on this axis (log10 for log parameters)
    tickvals: list[float] | None        # None: plain numeric axis
    ticktext: list[str] | None


@dataclass
class ParallelInfo:
    objective: str
    direction: str
    dimensions: list[Dimension]         # the objective first, then the parameters
    color: list[float]                  # the objective value of each line
    n_lines: int


def _numeric_dimension(name: str, raw: list[Any], log: bool) -> Dimension:
    present = [float(v) for v in raw if v is not None]
    if log and all(v > 0 for v in present):
        vals = [math.log10(float(v)) if v is not None else None for v in raw]
        lo, hi = min(v for v in vals if v is not None), max(v for v in vals if v is not None)
        ticks = [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1)]  # the decades inside the range
        ticks = sorted(set([lo] + ticks + [hi]))
        text = [fmt_value(float(f"{10.0 ** k:.3g}")) for k in ticks]
    else:
        vals = [float(v) if v is not None else None for v in raw]
        lo, hi = min(present), max(present)
        ticks, text = [], []
    if any(v is None for v in vals):
        absent = lo - 0.1 * ((hi - lo) or 1.0)
        vals = [absent if v is None else v for v in vals]
        if log:
            ticks, text = ticks + [absent], text + [_ABSENT]
        else:
            ticks = [absent] + [lo + (hi - lo) * i / 4 for i in range(5)]
            text = [_ABSENT] + [fmt_value(x) for x in ticks[1:]]
    return Dimension(name + (" (log)" if log else ""), vals, ticks or None, text or None)  # type: ignore[arg-type]


def _sorted_labels(raw: list[Any]) -> list[str]:
    """Distinct values as labels: numbers in numeric order first, then the rest alphabetically."""
    distinct = {fmt_value(v): v for v in raw if v is not None}
    return sorted(distinct, key=lambda lab: (0, float(distinct[lab]), lab)
                  if isinstance(distinct[lab], (int, float)) and not isinstance(distinct[lab], bool) else (1, 0.0, lab))


def _categorical_dimension(name: str, raw: list[Any]) -> Dimension:
    labels = _sorted_labels(raw)
    if any(v is None for v in raw):
        labels.append(_ABSENT)
    index = {lab: i for i, lab in enumerate(labels)}
    vals = [float(index[_ABSENT if v is None else fmt_value(v)]) for v in raw]
    return Dimension(name, vals, [float(i) for i in range(len(labels))], labels)


def _get_parallel_info(data: StudyData, trials: Sequence[FrozenTrial], params: list[str] | None = None,
                       objective: int = 0) -> ParallelInfo:
    if not trials:
        raise NoData("no complete trial yet")
    names = params if params is not None else sorted({k for t in trials for k in t.params})
    if not names:
        raise NoData("the trials have no parameters")
    metric = data.metric_names[objective]
    color = [t.values[objective] for t in trials]
    dims = [Dimension(metric, list(color), None, None)]
    for name in names:
        raw = [t.params.get(name) for t in trials]
        if all(v is None for v in raw):
            continue
        categorical, log = _kind(trials, name)
        dims.append(_categorical_dimension(name, raw) if categorical else _numeric_dimension(name, raw, log))
    return ParallelInfo(objective=metric, direction=data.directions[objective], dimensions=dims, color=color,
                        n_lines=len(trials))


def plot_parallel(info: ParallelInfo) -> "go.Figure":
    import plotly.graph_objects as go

    dims = []
    for d in info.dimensions:
        dim: dict[str, Any] = {"label": d.label, "values": d.values}
        if d.tickvals is not None:
            dim["tickvals"], dim["ticktext"] = d.tickvals, d.ticktext
        dims.append(dim)
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line={"color": info.color, "colorscale": "Viridis", "showscale": True,
              "reversescale": info.direction == "minimize", "colorbar": {"title": {"text": info.objective}}}))
    fig.update_layout(title=f"Parallel coordinates ({info.n_lines:,} trials; colour: {info.objective}, yellow is best)",
                      height=480, margin={"l": 80, "r": 80})
    return fig


@dataclass
class ContourAxis:
    name: str
    is_log: bool
    categories: list[str] | None        # categorical axis: one cell per label
    centers: list[float] | None         # numeric axis: cell centres (in the parameter's units)


@dataclass
class ContourInfo:
    objective: str
    direction: str
    x: ContourAxis
    y: ContourAxis
    z: list[list[float | None]]         # z[row of y][column of x]: best value in that cell, None if empty
    points_x: list[Any]                 # a sample of the trials, drawn on top
    points_y: list[Any]
    n_trials: int


def _axis_cells(name: str, trials: Sequence[FrozenTrial], bins: int) -> tuple[ContourAxis, list[int | None]]:
    raw = [t.params.get(name) for t in trials]
    categorical, log = _kind(trials, name)
    if categorical:
        # A choice of null (`grad_clip: {choice: [null, 1.0]}`) is a category of its own, "None",
        # as in the slice plot: the trials here all have the parameter, so None is its value.
        labels = _sorted_labels(raw) + ([fmt_value(None)] if any(v is None for v in raw) else [])
        index = {lab: i for i, lab in enumerate(labels)}
        return ContourAxis(name, False, labels, None), [index[fmt_value(v)] for v in raw]
    vals = [None if v is None else float(v) for v in raw]
    if log and all(v is None or v > 0 for v in vals):
        tr = [None if v is None else math.log10(v) for v in vals]
    else:
        log, tr = False, vals
    present = [v for v in tr if v is not None]
    lo, hi = min(present), max(present)
    n = bins if hi > lo else 1
    width = (hi - lo) / n if hi > lo else 1.0
    centers = [lo + width * (i + 0.5) for i in range(n)] if hi > lo else [lo]
    cells = [None if v is None else min(n - 1, int((v - lo) / width)) if hi > lo else 0 for v in tr]
    return ContourAxis(name, log, None, [10.0 ** c if log else c for c in centers]), cells


def _get_contour_info(data: StudyData, trials: Sequence[FrozenTrial], params: Sequence[str], *, bins: int = 30,
                      max_points: int = 2_000, objective: int = 0) -> ContourInfo:
    if len(params) < 2:
        raise NoData("a contour needs two parameters that vary")
    x_name, y_name = params[0], params[1]
    both = [t for t in trials if x_name in t.params and y_name in t.params]
    if len(both) < 2:
        raise NoData(f"fewer than 2 complete trials have both {x_name} and {y_name}")
    x_axis, xc = _axis_cells(x_name, both, bins)
    y_axis, yc = _axis_cells(y_name, both, bins)
    nx = len(x_axis.categories or x_axis.centers or [])
    ny = len(y_axis.categories or y_axis.centers or [])
    s = sort_key(data.directions[objective])
    z: list[list[float | None]] = [[None] * nx for _ in range(ny)]
    for t, i, j in zip(both, xc, yc):
        v = t.values[objective]
        cur = z[j][i]
        if cur is None or s * v < s * cur:
            z[j][i] = v
    step = max(1, math.ceil(len(both) / max_points))
    shown = both[::step]
    return ContourInfo(objective=data.metric_names[objective], direction=data.directions[objective], x=x_axis, y=y_axis,
                       z=z, points_x=[fmt_value(t.params[x_name]) if x_axis.categories else t.params[x_name] for t in shown],
                       points_y=[fmt_value(t.params[y_name]) if y_axis.categories else t.params[y_name] for t in shown],
                       n_trials=len(both))


def plot_contour(info: ContourInfo) -> "go.Figure":
    import plotly.graph_objects as go

    x = info.x.categories or info.x.centers
    y = info.y.categories or info.y.centers
    common = {"x": x, "y": y, "z": info.z, "colorscale": "Viridis", "reversescale": info.direction == "minimize",
              "colorbar": {"title": {"text": f"best {info.objective}"}},
              "hovertemplate": f"{info.x.name} %{{x}}<br>{info.y.name} %{{y}}<br>best %{{z:.6g}}<extra></extra>"}
    if info.x.categories or info.y.categories:
        surface = go.Heatmap(**common)
    else:
        surface = go.Contour(connectgaps=True, contours_coloring="heatmap", line_smoothing=0.85, **common)
    points = go.Scattergl(x=info.points_x, y=info.points_y, mode="markers", showlegend=False,
                          marker={"size": 4, "color": "black", "opacity": 0.35}, hoverinfo="skip")
    fig = go.Figure([surface, points])
    fig.update_layout(title=f"{info.objective}: best value over {info.x.name} and {info.y.name} ({info.n_trials:,} trials)",
                      xaxis={"title": info.x.name, "type": "log" if info.x.is_log else None},
                      yaxis={"title": info.y.name, "type": "log" if info.y.is_log else None}, height=520)
    return fig
