"""Learning curves (intermediate values), coloured by each trial's final state.

Optuna's ``plot_intermediate_values`` draws one trace per trial in one colour scale, which neither
shows which curves were pruned nor survives 100,000 trials. Here all curves of one final state
share one trace (segments separated by gaps), and at most ``max_curves`` are drawn: the best
complete trials' curves plus a seeded random sample of the others.

Values come from Optuna's intermediate values (the study metric, what the pruner saw); a study
with several objectives has none, so its curves come from ``tuner:curve`` (every reported
metric per epoch), for the first objective's metric.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuner.engine import _attrs
from tuner.report._common import STATE_COLORS, STATE_ORDER, NoData, StudyData, ranked

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Curve", "CurvesInfo", "_get_curves_info", "plot_curves"]


@dataclass
class Curve:
    number: int
    state: str
    steps: list[int]
    values: list[float]


@dataclass
class CurvesInfo:
    metric: str
    source: str                 # "intermediate values" or "tuner:curve"
    curves: list[Curve]         # drawn curves, grouped by state in STATE_ORDER
    n_with_curves: int          # trials that reported any step
    thinned: bool


def _curve_of(t, metric: str, use_intermediate: bool) -> tuple[list[int], list[float]]:  # type: ignore[no-untyped-def]
    if use_intermediate:
        items = sorted(t.intermediate_values.items())
    else:
        raw = t.system_attrs.get(_attrs.CURVE)
        items = []
        if isinstance(raw, list):
            for point in raw:
                if isinstance(point, dict) and isinstance(point.get(metric), (int, float)) and "step" in point:
                    items.append((int(point["step"]), float(point[metric])))
            items.sort()
    steps = [s for s, v in items if v is not None and math.isfinite(v)]
    values = [v for s, v in items if v is not None and math.isfinite(v)]
    return steps, values


def _get_curves_info(data: StudyData, *, max_curves: int = 1_000, keep_best: int = 50, seed: int = 0) -> CurvesInfo:
    use_intermediate = any(t.intermediate_values for t in data.trials)
    metric = data.metric_names[0]
    if not use_intermediate and not any(_attrs.CURVE in t.system_attrs for t in data.trials):
        raise NoData("no trial reported intermediate values (ctx.report) yet")
    with_curves = [t for t in data.trials if (t.intermediate_values if use_intermediate else t.system_attrs.get(_attrs.CURVE))]
    thinned = len(with_curves) > max_curves
    if thinned:
        best = {t.number for t in ranked(with_curves, data.directions)[:keep_best]}
        rest = [t for t in with_curves if t.number not in best]
        sample = {t.number for t in random.Random(seed).sample(rest, max(0, min(len(rest), max_curves - len(best))))}
        chosen = [t for t in with_curves if t.number in best or t.number in sample]
    else:
        chosen = with_curves
    order = {s: i for i, s in enumerate(STATE_ORDER)}
    curves = []
    for t in sorted(chosen, key=lambda t: (order.get(t.state.name, 99), t.number)):
        steps, values = _curve_of(t, metric, use_intermediate)
        if steps:
            curves.append(Curve(number=t.number, state=t.state.name, steps=steps, values=values))
    if not curves:
        raise NoData(f"no finite intermediate value of {metric} recorded")
    return CurvesInfo(metric=metric, source="intermediate values" if use_intermediate else _attrs.CURVE, curves=curves,
                      n_with_curves=len(with_curves), thinned=thinned)


def plot_curves(info: CurvesInfo) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure()
    states = []
    for c in info.curves:
        if c.state not in states:
            states.append(c.state)
    for state in states:
        xs: list[float | None] = []
        ys: list[float | None] = []
        text: list[str] = []
        n = 0
        for c in info.curves:
            if c.state != state:
                continue
            n += 1
            xs += list(c.steps) + [None]
            ys += list(c.values) + [None]
            text += [f"trial {c.number}"] * len(c.steps) + [""]
        fig.add_trace(go.Scattergl(
            x=xs, y=ys, mode="lines+markers" if len(xs) < 2_000 else "lines", name=f"{state.lower()} ({n})",
            line={"color": STATE_COLORS.get(state, "#7f7f7f"), "width": 1}, marker={"size": 3}, opacity=0.6,
            connectgaps=False, hovertext=text, hovertemplate="%{hovertext}<br>step %{x}: %{y:.6g}<extra>" + state.lower() + "</extra>"))
    fig.update_layout(title=f"Learning curves ({info.metric}, by final state)", xaxis={"title": "step (epoch)"},
                      yaxis={"title": info.metric}, height=450)
    return fig
