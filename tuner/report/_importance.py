"""Parameter importances, from Optuna's default evaluator on a bounded sample of complete trials.

Optuna 5 evaluates importances with PED-ANOVA by default (conditional parameters included, fast);
other evaluators (fANOVA) grow slow with the number of trials. Past ``max_trials`` complete
trials, a seeded random sample of that many is evaluated and the report says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner.report._common import NoData, StudyData, complete_trials

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["ImportanceInfo", "_get_importance_info", "plot_importances"]


@dataclass
class ImportanceInfo:
    evaluator: str
    objectives: list[str]                           # metric names, one per objective evaluated
    importances: list[dict[str, float]]             # per objective: param -> importance (sums to 1), largest first
    n_used: int                                     # complete trials evaluated
    n_complete: int
    sampled: bool
    errors: list[str] = field(default_factory=list)  # objectives that could not be evaluated, and why

    def ranking(self) -> list[str]:
        """Parameters by their largest importance over the objectives, most important first."""
        best: dict[str, float] = {}
        for imp in self.importances:
            for k, v in imp.items():
                best[k] = max(best.get(k, 0.0), v)
        return sorted(best, key=lambda k: (-best[k], k))


def _get_importance_info(data: StudyData, *, max_trials: int = 5_000, seed: int = 0,
                         evaluator: Any = None) -> ImportanceInfo:
    import warnings

    import optuna

    from tuner.report._view import study_view

    complete = complete_trials(data.trials)
    if len(complete) < 2:
        raise NoData(f"parameter importances need at least 2 complete trials (have {len(complete)})")
    sampled = len(complete) > max_trials
    used = sorted(random.Random(seed).sample(complete, max_trials), key=lambda t: t.number) if sampled else complete
    names = sorted({k for t in used for k in t.distributions if not _single_valued(t.distributions[k])})
    if not names:
        raise NoData("no parameter varies in this study")
    evaluator = evaluator or optuna.importance.PedAnovaImportanceEvaluator()
    view = study_view(used, data.directions, name=data.name, metric_names=data.metric_names)
    first = data.directions[0]
    importances, objectives, errors = [], [], []
    for i, (metric, direction) in enumerate(zip(data.metric_names, data.directions)):
        # Evaluators rank by the study's first direction; flip objectives that go the other way.
        sign = 1.0 if direction == first else -1.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    view, evaluator=evaluator, params=names,
                    target=(lambda t, i=i, sign=sign: sign * t.values[i]) if data.multi_objective else None)
        except (ValueError, RuntimeError) as exc:  # Optuna's evaluators refuse degenerate inputs this way
            errors.append(f"{metric}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        objectives.append(metric)
        importances.append(dict(sorted(imp.items(), key=lambda kv: (-kv[1], kv[0]))))
    if not importances:
        raise NoData("parameter importances could not be evaluated: " + "; ".join(errors))
    return ImportanceInfo(evaluator=type(evaluator).__name__, objectives=objectives, importances=importances,
                          n_used=len(used), n_complete=len(complete), sampled=sampled, errors=errors)


def _single_valued(dist: Any) -> bool:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices) <= 1
    return getattr(dist, "low", 0) == getattr(dist, "high", 1)


def plot_importances(info: ImportanceInfo) -> "go.Figure":
    import plotly.graph_objects as go

    order = info.ranking()
    fig = go.Figure()
    for metric, imp in zip(info.objectives, info.importances):
        ys = [p for p in reversed(order)]
        xs = [imp.get(p, 0.0) for p in ys]
        fig.add_trace(go.Bar(x=xs, y=ys, orientation="h", name=metric, text=[f"{x:.3f}" for x in xs],
                             textposition="outside", hovertemplate="%{y}: %{x:.4f}<extra>" + metric + "</extra>"))
    fig.update_layout(title=f"Parameter importances ({info.evaluator})", barmode="group",
                      xaxis={"title": "importance (sums to 1 per objective)"}, yaxis={"automargin": True},
                      height=max(300, 80 + 28 * len(order) * max(1, len(info.objectives))),
                      showlegend=len(info.objectives) > 1)
    return fig
