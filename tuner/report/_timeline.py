"""Timeline of trials per worker: which GPU (or process) ran what, when, and how busy it was.

One row per GPU (``host:gpuN``) for trials that held GPUs, per process (``host:pid``) otherwise,
from the placement the worker records (``tuner:worker``). A bar runs from a trial's start to its
end, coloured by its final state; a trial still RUNNING ends at the study's last recorded moment.
Past ``max_bars`` trials, consecutive bars of one row and state that are closer than the drawing
resolution are merged (a merged bar says how many trials it holds), so the picture of how busy
each resource was stays exact at screen resolution. A trial left RUNNING by a dead driver ends where
its worker process started its next trial.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.report._common import STATE_COLORS, STATE_ORDER, NoData, StudyData, label_of, worker

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["TimelineBar", "TimelineInfo", "_get_timeline_info", "plot_timeline"]


@dataclass
class TimelineBar:
    row: str
    start: float                # seconds since the epoch (of the naive local datetimes Optuna hands out)
    end: float
    state: str
    n_trials: int               # > 1 for merged bars
    first_number: int
    last_number: int


@dataclass
class TimelineInfo:
    rows: list[str]             # sorted labels (host, then gpu/pid)
    bars: list[TimelineBar]
    busy: dict[str, float]      # row -> fraction of the wall time it ran trials (overlaps counted once)
    n_trials: int               # trials drawn (those with a start time)
    merged: bool
    resolution_s: float         # merge tolerance when merged, else 0


def _row_key(label: str) -> tuple[str, int, str]:
    host, _, rest = label.rpartition(":")
    digits = "".join(ch for ch in rest if ch.isdigit())
    return (host, int(digits) if digits and len(digits) < 12 else 0, rest)


def _merge(bars: list[TimelineBar], tol: float) -> list[TimelineBar]:
    out: list[TimelineBar] = []
    by_key: dict[tuple[str, str], list[TimelineBar]] = {}
    for b in bars:
        by_key.setdefault((b.row, b.state), []).append(b)
    for group in by_key.values():
        group.sort(key=lambda b: b.start)
        cur = TimelineBar(**group[0].__dict__)
        for b in group[1:]:
            if b.start - cur.end <= tol:
                if b.end > cur.end:
                    cur.end = b.end
                cur.n_trials += b.n_trials
                cur.first_number = min(cur.first_number, b.first_number)
                cur.last_number = max(cur.last_number, b.last_number)
            else:
                out.append(cur)
                cur = TimelineBar(**b.__dict__)
        out.append(cur)
    return out


def _busy(bars: list[TimelineBar], wall_s: float) -> dict[str, float]:
    by_row: dict[str, list[TimelineBar]] = {}
    for b in bars:
        by_row.setdefault(b.row, []).append(b)
    out = {}
    for row, group in by_row.items():
        group.sort(key=lambda b: b.start)
        total = 0.0
        cur_s, cur_e = group[0].start, group[0].end
        for b in group[1:]:
            if b.start <= cur_e:
                cur_e = max(cur_e, b.end)
            else:
                total += cur_e - cur_s
                cur_s, cur_e = b.start, b.end
        total += cur_e - cur_s
        out[row] = total / wall_s if wall_s > 0 else 1.0
    return out


def _get_timeline_info(data: StudyData, *, max_bars: int = 20_000, pixels: int = 2_000) -> TimelineInfo:
    started = [t for t in data.trials if t.datetime_start is not None]
    if not started:
        raise NoData("no trial has started yet")
    epoch = _dt.datetime(1970, 1, 1)
    spans = []
    for t in started:
        s = (t.datetime_start - epoch).total_seconds()
        e = (t.datetime_complete - epoch).total_seconds() if t.datetime_complete is not None else None
        spans.append((t, worker(t), s, e))
    first = min(x[2] for x in spans)
    last = max(max(x[2] for x in spans), max((x[3] for x in spans if x[3] is not None), default=first))
    # A trial with no end is still running, drawn to the last recorded moment, unless its worker process started
    # another trial later (one trial at a time per process): then it was left RUNNING and ends where that one starts.
    next_start: dict[int, float] = {}
    if any(x[3] is None for x in spans):
        latest: dict[tuple[Any, Any], float] = {}
        for t, w, s, _ in sorted(spans, key=lambda x: -x[2]):
            key = (w.get("host"), w.get("pid"))
            if key[1] is not None and key in latest:
                next_start[t.number] = latest[key]
            latest[key] = s
    bars = [TimelineBar(row=label_of(w), start=s, end=max(e if e is not None else next_start.get(t.number, last), s),
                        state=t.state.name, n_trials=1, first_number=t.number, last_number=t.number)
            for t, w, s, e in spans]
    wall = max(last - first, 0.0)
    busy = _busy(bars, wall)
    merged = False
    tol = 0.0
    if len(bars) > max_bars:
        tol = max(wall / pixels, 1e-3)
        while True:
            bars = _merge(bars, tol)
            merged = True
            if len(bars) <= max_bars:
                break
            tol *= 4
    rows = sorted({b.row for b in bars}, key=_row_key)
    order = {s: i for i, s in enumerate(STATE_ORDER)}
    bars.sort(key=lambda b: (order.get(b.state, 99), b.row, b.start))
    return TimelineInfo(rows=rows, bars=bars, busy=busy, n_trials=len(started), merged=merged, resolution_s=tol)


def _iso(seconds: float, sep: str = "T") -> str:
    return (_dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=seconds)).isoformat(sep=sep, timespec="milliseconds")


def plot_timeline(info: TimelineInfo) -> "go.Figure":
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = {r: f"{r} ({info.busy.get(r, 0.0):.0%} busy)" for r in info.rows}
    states = [s for s in STATE_ORDER if any(b.state == s for b in info.bars)]
    states += sorted({b.state for b in info.bars} - set(states))
    for state in states:
        bars = [b for b in info.bars if b.state == state]
        text = [(f"trial {b.first_number}" if b.n_trials == 1 else f"{b.n_trials} trials, {b.first_number}..{b.last_number}")
                for b in bars]
        fig.add_trace(go.Bar(
            orientation="h", name=state.lower(), y=[labels[b.row] for b in bars],
            base=[_iso(b.start) for b in bars],
            x=[max((b.end - b.start) * 1000.0, 1.0) for b in bars],
            marker={"color": STATE_COLORS.get(state, "#7f7f7f"), "line": {"width": 0}}, opacity=0.85,
            customdata=[[_iso(b.start, " ")[:19], _iso(b.end, " ")[:19]] for b in bars],
            hovertext=text, hovertemplate="%{hovertext}<br>%{customdata[0]} to %{customdata[1]}<extra>" + state.lower() + "</extra>"))
    fig.update_layout(title="Trials per worker over time", barmode="overlay", xaxis={"type": "date", "title": "time"},
                      yaxis={"title": "worker (host:gpu or host:pid)", "categoryorder": "array",
                             "categoryarray": [labels[r] for r in reversed(info.rows)], "automargin": True},
                      height=max(320, 60 + 26 * len(info.rows)), bargap=0.15)
    return fig
