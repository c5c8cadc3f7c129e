"""Build the report: read the trials once, compute every figure's data, render, write one HTML file."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tuner.engine import _attrs
from tuner.engine._study import metric_names, shown_spec
from tuner.exceptions import UserInputError
from tuner.report._advice import AdviceInfo, _get_advice_info
from tuner.report._common import NoData, StudyData, complete_trials
from tuner.report._curves import _get_curves_info, plot_curves
from tuner.report._history import _get_history_info, plot_history
from tuner.report._importance import ImportanceInfo, _get_importance_info, plot_importances
from tuner.report._params import _get_contour_info, _get_parallel_info, plot_contour, plot_parallel
from tuner._trial_read import read_trials
from tuner.report._summary import SummaryInfo, _get_summary_info
from tuner.report._table import TopTrialsInfo, _get_top_trials_info
from tuner.report._timeline import _get_timeline_info, plot_timeline

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

# Below this many complete trials importances are mostly noise (the advice section waits for as many).
_FEW_FOR_IMPORTANCE = 20

__all__ = ["Section", "ReportData", "load_study_data", "compute_report", "build_report", "write_report"]


@dataclass
class Section:
    id: str
    title: str
    figure: "go.Figure | None"          # None when it cannot be drawn; ``note`` says why
    note: str | None = None
    captions: list[str] = field(default_factory=list)   # what was thinned or sampled, in words


@dataclass
class ReportData:
    data: StudyData
    summary: SummaryInfo
    top: TopTrialsInfo
    advice: AdviceInfo
    importance: ImportanceInfo | None
    sections: list[Section]
    timings: dict[str, float] = field(default_factory=dict)   # seconds per step, for benchmarks


@dataclass
class Limits:
    """How much each figure draws; past these, figures are thinned and the report says so."""

    max_points: int = 20_000            # points of the optimization history and the Pareto front
    max_slice_points: int = 10_000      # points per slice plot (Optuna's slice plot is the slowest figure to build)
    max_lines: int = 10_000             # parallel-coordinate lines
    max_contour_points: int = 2_000     # dots over the contour (the grid itself uses every trial)
    max_curves: int = 1_000             # learning curves
    max_bars: int = 20_000              # timeline bars before merging
    max_importance_trials: int = 5_000  # complete trials given to the importance evaluator
    seed: int = 0


def load_study_data(study: "optuna.Study") -> StudyData:
    """Everything a report needs from ``study``, read in a fixed number of queries."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    directions = [d.name.lower() for d in study.directions]
    spec = shown_spec(attrs)  # the report is a file people pass around: no password in it
    names = metric_names(attrs, len(directions))
    if not names:
        names = ["value"] if len(directions) == 1 else [f"objective {i}" for i in range(len(directions))]
    trials = read_trials(study, skip_attr_prefixes=(_attrs.ATTR_PREFIX,))
    optuna_params = _show_variant_names(trials, attrs.get(_attrs.SPACE))
    return StudyData(name=study.study_name, directions=directions, metric_names=[str(n) for n in names],
                     trials=trials, spec=spec, system_attrs=attrs, optuna_params=optuna_params)


def _show_variant_names(trials: list[Any], stored_space: Any) -> dict[int, dict[str, Any]]:
    """Give the trials' variant params the names a reader sees on every axis, table and advice of
    the report (``lr (optimizer=adam/adamw)``, not Optuna's ``lr|optimizer=adam/adamw``); returns
    the Optuna-named params of the trials renamed, by number (the params as the objective saw
    them are rebuilt from those: :func:`objective_params`).

    In place: the trials are the report's own copies (:func:`read_trials` builds them), and
    only trials holding such a param are touched. A space that cannot be read keeps Optuna's names.
    """
    if not isinstance(stored_space, dict):
        return {}
    names = {name for t in trials for name in t.params if "|" in name}
    if not names:
        return {}
    try:
        from tuner.space import SearchSpace

        shown = SearchSpace.from_mapping(stored_space, source="<stored>").display_names(names)
    except Exception:  # noqa: BLE001 - a stored space from another version: Optuna's names then
        return {}
    renamed = {old: new for old, new in shown.items() if old != new}
    originals: dict[int, dict[str, Any]] = {}
    for t in trials:
        if any(name in renamed for name in t.params):
            originals[t.number] = dict(t._params)
            t._params = {renamed.get(k, k): v for k, v in t._params.items()}
            t._distributions = {renamed.get(k, k): v for k, v in t._distributions.items()}
    return originals


def objective_params(data: StudyData, trial: Any) -> dict[str, Any]:
    """``trial``'s params as its objective saw them (``lr``, ``width: [101, 380]``, fixed values
    included), as ``tuner best`` and ``tuner trial`` show them and a spec's ``enqueue`` takes them;
    the report's own names where the stored space cannot rebuild them."""
    from tuner.space import stored_params_reader

    read = stored_params_reader(data.system_attrs.get(_attrs.SPACE))
    return read(data.optuna_params.get(trial.number, trial.params)) or dict(trial.params)


def _timed(timings: dict[str, float], key: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def _section(timings: dict[str, float], sid: str, title: str, draw: Callable[[], Any],
             captions: list[str] | None = None, third_party: bool = False) -> Section:
    try:
        fig = _timed(timings, sid, draw)
    except NoData as exc:
        return Section(sid, title, None, note=str(exc))
    except Exception as exc:  # noqa: BLE001 - only around Optuna's plots: one odd figure must not sink the report
        if not third_party:
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Section(sid, title, None, note=f"Optuna could not draw this figure ({type(exc).__name__}: {text})")
    return Section(sid, title, fig, captions=list(captions or []))


def _needs_complete(complete: list[Any], draw: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        if not complete:
            raise NoData("no complete trial yet")
        return draw()

    return run


def compute_report(data: StudyData, *, top: int = 10, limits: Limits | None = None) -> ReportData:
    """Every table, advice item and figure of the report, from ``data`` alone (no storage access)."""
    from tuner.report import _optuna_figs as of

    lim = limits or Limits()
    timings: dict[str, float] = {}
    summary = _timed(timings, "summary", lambda: _get_summary_info(data))
    table = _timed(timings, "top", lambda: _get_top_trials_info(data, top=top))
    complete = complete_trials(data.trials)
    n_complete = len(complete)

    importance: ImportanceInfo | None = None
    importance_note: str | None = None
    try:
        importance = _timed(timings, "importance", lambda: _get_importance_info(
            data, max_trials=lim.max_importance_trials, seed=lim.seed))
    except NoData as exc:
        importance_note = str(exc)
    advice = _timed(timings, "advice", lambda: _get_advice_info(data, importance))

    sections: list[Section] = []
    no_complete = "no complete trial yet" if not complete else None

    def thinned_caption(n_shown: int, what: str = "complete trials") -> list[str]:
        if n_shown >= n_complete:
            return []
        return [f"Showing {n_shown:,} of {n_complete:,} {what}: the best 100 and a seeded random sample of the rest."]

    # optimization history
    hist_caps: list[str] = []

    def draw_history() -> Any:
        info = _get_history_info(data, max_points=lim.max_points, seed=lim.seed)
        if info.thinned:
            hist_caps.append(f"Showing {info.n_points:,} of {info.n_complete:,} complete trials: every trial that "
                             f"improved the best value and a seeded random sample of the rest; the best-so-far line is exact.")
        return plot_history(info)

    sections.append(_section(timings, "history", "Optimization history", draw_history))
    sections[-1].captions = hist_caps

    # importances
    if importance is not None:
        caps = []
        if importance.sampled:
            caps.append(f"Evaluated on a seeded random sample of {importance.n_used:,} of {importance.n_complete:,} "
                        f"complete trials ({importance.evaluator}).")
        else:
            caps.append(f"Evaluated on {importance.n_used:,} complete trials ({importance.evaluator}).")
        if importance.n_used < _FEW_FOR_IMPORTANCE:
            caps.append(f"Only {importance.n_used} complete trials: these importances are rough, and a parameter may "
                        f"show some only by chance (read them from {_FEW_FOR_IMPORTANCE} or more).")
        caps += [f"Not evaluated for {e}" for e in importance.errors]
        sections.append(_section(timings, "importance", "Parameter importances", lambda: plot_importances(importance), caps))
    else:
        sections.append(Section("importance", "Parameter importances", None, note=importance_note))

    scatter = of.scatter_trials(data, lim.max_points, seed=lim.seed)
    first = f" (for {data.metric_names[0]}, the first objective)" if data.multi_objective else ""
    ranking = importance.ranking() if importance else []
    lines = of.scatter_trials(data, lim.max_lines, seed=lim.seed)
    params = ranking + sorted({k for t in lines for k in t.params} - set(ranking))
    sections.append(_section(timings, "parallel", "Parallel coordinates" + first,
                             lambda: plot_parallel(_get_parallel_info(data, lines, params or None)),
                             thinned_caption(len(lines))))
    slice_trials = of.scatter_trials(data, lim.max_slice_points, seed=lim.seed)
    sections.append(_section(timings, "slice", "Slice plots" + first, lambda: of.plot_slices(data, slice_trials),
                             thinned_caption(len(slice_trials)), third_party=True))
    varying = [p for p in params if len({repr(t.params.get(p)) for t in complete}) > 1]
    pair = ranking[:2] if len(ranking) >= 2 else varying[:2]
    why = "the two most important" if len(ranking) >= 2 else "importances unavailable: the first two that vary"
    sections.append(_section(
        timings, "contour", "Contour of the two most important parameters" + first,
        _needs_complete(complete, lambda: plot_contour(_get_contour_info(data, complete, pair,
                                                                         max_points=lim.max_contour_points))),
        ([f"Parameters: {pair[0]} and {pair[1]} ({why}); each cell shows the best value of the trials in it; dots are "
          f"{'a sample of ' if len(complete) > lim.max_contour_points else ''}the trials."] if len(pair) >= 2 else [])))

    curve_caps: list[str] = []

    def draw_curves() -> Any:
        info = _get_curves_info(data, max_curves=lim.max_curves, seed=lim.seed)
        curve_caps.append(f"{info.n_with_curves:,} trials reported {info.metric} per step (source: {info.source}).")
        if info.thinned:
            curve_caps.append(f"Showing {len(info.curves):,} of them: the best 50 complete and a seeded random sample.")
        return plot_curves(info)

    sections.append(_section(timings, "curves", "Learning curves", draw_curves))
    sections[-1].captions = curve_caps

    tl_caps: list[str] = []

    def draw_timeline() -> Any:
        info = _get_timeline_info(data, max_bars=lim.max_bars)
        if info.merged:
            tl_caps.append(f"{info.n_trials:,} trials drawn as {len(info.bars):,} bars: consecutive trials of one worker "
                           f"and state less than {info.resolution_s:.3g} s apart are merged (hover shows how many).")
        return plot_timeline(info)

    sections.append(_section(timings, "timeline", "Timeline of trials per worker", draw_timeline))
    sections[-1].captions = tl_caps

    sections.append(_section(timings, "edf", "Empirical distribution of values" + first,
                             _needs_complete(complete, lambda: of.plot_edf(data)),
                             third_party=True))
    if data.multi_objective:
        sections.append(_section(timings, "pareto", "Pareto front", lambda: of.plot_pareto(data, scatter),
                                 thinned_caption(len(scatter)), third_party=True))
    for s in sections:
        if s.figure is None and s.note is None:
            s.note = no_complete or "nothing to draw"
    return ReportData(data=data, summary=summary, top=table, advice=advice, importance=importance, sections=sections,
                      timings=timings)


def build_report(study: "optuna.Study | StudyData", *, top: int = 10, limits: Limits | None = None,
                 timings: dict[str, float] | None = None) -> str:
    """The report of ``study`` as one self-contained HTML document (Plotly's JavaScript inline)."""
    from tuner.report._html import render_html

    t0 = time.perf_counter()
    data = study if isinstance(study, StudyData) else load_study_data(study)
    t_read = time.perf_counter() - t0
    report = compute_report(data, top=top, limits=limits)
    report.timings["read"] = t_read
    html = _timed(report.timings, "render", lambda: render_html(report))
    if timings is not None:
        timings.update(report.timings)
    return html


def _check_output(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise UserInputError(f"cannot write the report to {path}: it is a folder; pass a file name with -o")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"cannot write the report to {path}: {existing} is not a folder; choose another -o path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"cannot write the report to {path}: folder {existing} is not writable; choose another -o path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserInputError(f"cannot write the report to {path}: the file is read-only; choose another -o path")


def write_report(study_name: str, output: str | os.PathLike[str] | None = None, storage: str | None = None, *,
                 top: int = 10, limits: Limits | None = None, timings: dict[str, float] | None = None) -> Path:
    """Write the HTML report of study ``study_name`` to ``output`` (default ``report.html``); returns the path."""
    from tuner._api import load_study

    if top < 0:
        raise UserInputError("top must be >= 0")
    path = Path(output) if output is not None else Path("report.html")
    _check_output(path)
    html = build_report(load_study(study_name, storage), top=top, limits=limits, timings=timings)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_text(html, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot write the report to {path}: {exc.strerror or exc}; choose another -o path") from None
    return path
