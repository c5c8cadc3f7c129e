"""The figures Optuna already draws well, fed from the trials the report read once.

Parallel coordinates and the contour are tuner's own (``_params.py``): Optuna's do not scale.
Each function takes the study's :class:`~tuner.report._common.StudyData` and draws through a
:func:`~tuner.report._view.study_view` of (a thinned part of) its trials, so no figure reads
the database again. Studies with several objectives are drawn for the first objective, except
the Pareto front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from optuna.trial import FrozenTrial

from tuner.report._common import NoData, StudyData, complete_trials, pareto_front, ranked, thin
from tuner.report._view import study_view

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["plot_slices", "plot_edf", "plot_pareto", "scatter_trials"]


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs a warning for every empty or degenerate plot; the report says it in words instead."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def scatter_trials(data: StudyData, max_points: int, seed: int = 0) -> list[FrozenTrial]:
    """The complete trials a scatter-type figure draws: all, or the best 100 (and the Pareto front) plus a sample."""
    complete = complete_trials(data.trials)
    if len(complete) <= max_points:
        return complete
    keep = ranked(complete, data.directions)[:100]
    if data.multi_objective:
        keep += pareto_front(complete, data.directions)[:max_points // 2]
    return thin(complete, max_points, keep=keep, seed=seed)


def _target(data: StudyData) -> tuple[Callable[[FrozenTrial], float] | None, str]:
    if data.multi_objective:
        return (lambda t: t.values[0]), data.metric_names[0]
    return None, data.metric_names[0]


def _view(data: StudyData, trials: Sequence[FrozenTrial]) -> Any:
    if not trials:
        raise NoData("no complete trial yet")
    return study_view(trials, data.directions, name=data.name, metric_names=data.metric_names)


def plot_slices(data: StudyData, trials: Sequence[FrozenTrial], params: list[str] | None = None) -> "go.Figure":
    import optuna.visualization as ov

    target, name = _target(data)
    with _quiet_optuna():
        fig = ov.plot_slice(_view(data, trials), params=params, target=target, target_name=name)
    if len(trials) > 2_000:
        # Optuna's hover text repeats every parameter of every point; at this size it would be most of the file.
        fig.update_traces(hovertext=None, hovertemplate="%{x}: %{y:.6g}<extra></extra>", selector={"type": "scatter"})
    _unquote_categories(fig)
    return fig


def _unquote_categories(fig: "go.Figure") -> None:
    """Categorical slices label a string choice by its repr (``'adam'``, quotes and all, beside
    ``None`` and ``1.0``): the labels the rest of the report uses, without the quotes."""
    def unquote(values: Any) -> Any:
        if values is None or not all(isinstance(v, str) for v in values):
            return values
        return [v[1:-1] if len(v) >= 2 and v[0] == v[-1] == "'" else v for v in values]

    for trace in fig.data:
        if getattr(trace, "x", None) is not None and len(trace.x) and isinstance(trace.x[0], str):
            trace.x = unquote(list(trace.x))
    for key in fig.layout:
        if key.startswith("xaxis") and fig.layout[key].categoryarray is not None:
            fig.layout[key].categoryarray = unquote(list(fig.layout[key].categoryarray))


def plot_edf(data: StudyData) -> "go.Figure":
    import optuna.visualization as ov

    complete = complete_trials(data.trials)
    target, name = _target(data)
    with _quiet_optuna():
        return ov.plot_edf(_view(data, complete), target=target, target_name=name)


def plot_pareto(data: StudyData, trials: Sequence[FrozenTrial]) -> "go.Figure":
    import optuna.visualization as ov

    if not data.multi_objective:
        raise NoData("the study has one objective")
    n = len(data.directions)
    kwargs: dict[str, Any] = {}
    if n > 3:
        kwargs = {"targets": lambda t: (t.values[0], t.values[1]), "target_names": data.metric_names[:2]}
    with _quiet_optuna():
        return ov.plot_pareto_front(_view(data, trials), **kwargs)
