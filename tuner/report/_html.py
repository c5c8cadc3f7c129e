"""Render a computed report as one self-contained HTML page.

Plotly's JavaScript is inlined once (no CDN: the file opens offline); each figure's JSON sits in
a ``<script type="application/json">`` block with every ``<`` written as ``\\u003c`` so no value
can close the script element; every other user-supplied string (study name, parameter names and
values, error messages, the spec) goes through :func:`html.escape`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
from collections import Counter
from typing import TYPE_CHECKING, Any

from tuner.engine._study import RUN_LOG_KEEP, shown_counts
from tuner.report._common import fmt_duration, fmt_time, fmt_value

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.report._report import ReportData

__all__ = ["render_html", "figure_json"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24292f;color:#fff;padding:16px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1d9;font-size:13px}
nav{padding:8px 32px;background:#eaeef2;font-size:13px;position:sticky;top:0;z-index:10}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
main{padding:8px 32px 48px;max-width:1400px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 20px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #eaeef2;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}table.kv th{width:180px}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.caption{color:#57606a;font-size:12px;margin:4px 0}
.note{color:#57606a;font-style:italic;padding:16px;background:#f6f8fa;border-radius:4px}
.warn{color:#9a6700;background:#fff8c5;padding:8px 12px;border-radius:4px}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:1px 6px;border-radius:10px;margin-right:6px;color:#fff}
.badge.widen{background:#bf8700}.badge.drop-choice{background:#8250df}.badge.fix{background:#1a7f37}
ul.advice li{margin:6px 0}pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px}
.fig{width:100%;min-height:300px}
"""

_BOOT = """
document.querySelectorAll('script[type="application/json"][data-fig]').forEach(function (el) {
  var fig = JSON.parse(el.textContent);
  Plotly.newPlot(el.getAttribute('data-fig'), fig.data, fig.layout || {},
                 {responsive: true, displaylogo: false});
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _script_json(text: str) -> str:
    """JSON text safe inside a <script> element: ``<`` only occurs in strings, where \\u003c means the same."""
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_json(fig: "go.Figure") -> str:
    """A figure as JSON that can be inlined in a <script> element."""
    import plotly.io as pio

    return _script_json(pio.to_json(fig, validate=False, pretty=False))


def _fmt_values(values: list[float]) -> str:
    return ", ".join(fmt_value(v) for v in values)


def _param_text(value: Any) -> str:
    """A parameter's value; a per-layer list as ``[101, 380]``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return fmt_value(value)


def _summary(report: "ReportData") -> str:
    s = report.summary
    rows: list[tuple[str, str]] = []
    objectives = ", ".join(f"{_e(m)} ({_e(d)})" for m, d in zip(s.metric_names, s.directions))
    rows.append(("objective" + ("s" if len(s.directions) > 1 else ""), objectives))
    # the trials a run's stop ended are counted apart from the failures, as `tuner ls` counts them
    counts = ", ".join(f"{_e(k.lower())} {v:,}" for k, v in shown_counts(s.counts, len(s.unfinished)).items()) or "none"
    target = f" (the spec asks for {s.n_trials_target:,} finished)" if s.n_trials_target else ""
    rows.append(("trials", f"{s.n_trials:,}: {counts}{_e(target)}"))
    if s.best and not s.n_pareto:
        b = s.best[0]
        rows.append(("best value", f"<b>{_e(_fmt_values(b.values))}</b> (trial {b.number})"))
    elif s.n_pareto:
        rows.append(("Pareto front", f"{s.n_pareto:,} trial(s); see the top trials and the Pareto front below"))
    else:
        rows.append(("best value", "no complete trial yet"))
    rows.append(("wall time", f"{_e(fmt_duration(s.wall_time_s))} (first start {_e(fmt_time(s.first_start))}, "
                              f"last end {_e(fmt_time(s.last_end))})"))
    rows.append(("compute time", f"{_e(fmt_duration(s.compute_s))} (sum of trial durations)"))
    rows.append(("GPU-hours", f"{s.gpu_hours:,.2f} over {s.gpu_trials:,} trials (duration x GPUs held)" if s.gpu_trials
                 else "no trial held a GPU"))
    if s.peak_concurrency:
        busy = f", busy {s.busy_fraction:.0%} of wall time x peak" if s.busy_fraction is not None else ""
        rows.append(("workers", f"{s.n_workers:,} (host:gpu or host:pid), peak {s.peak_concurrency} trials at once{busy}"))
    total = sum(s.phase_s.values())
    if total > 0:
        # Where the trials' time went, largest first: a large share before training (worker start,
        # setup) says the trials are too short for their start-up, e.g. packed too finely on a GPU.
        shares = ", ".join(f"{_e(name)} {seconds / total:.0%}"
                           for name, seconds in sorted(s.phase_s.items(), key=lambda kv: -kv[1]))
        rows.append(("time in trials", f"{shares} (of {_e(fmt_duration(total))} over {s.timed_trials:,} trials "
                                       f"that recorded it; a trial's page splits its own)"))
    if s.unfinished:
        shown = ", ".join(str(n) for n in s.unfinished[:10]) + (", ..." if len(s.unfinished) > 10 else "")
        rows.append(("ended unfinished", f"{len(s.unfinished):,} trial(s) a Ctrl-C, a stop or a lost run ended "
                                         f"(stored FAIL, not failures of their own; {_e(shown)})"))
    if s.runs:
        ends = Counter(run["end_text"].replace("`", "") for run in s.runs)  # the terminal's quotes, not HTML's
        kept = f"the last {len(s.runs):,} logged" if len(s.runs) >= RUN_LOG_KEEP else f"{len(s.runs):,}"
        rows.append(("runs", f"{kept}: " + ", ".join(f"{_e(end)} {n:,}" for end, n in ends.most_common())
                             + " (listed below)"))
    out = ['<section id="summary"><h2>Summary</h2>']
    if not s.best:
        out.append('<p class="warn">No complete trial yet: the summary shows what there is, and figures that need '
                   'objective values say so in their place.</p>')
    out.append('<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
    if s.best and not s.n_pareto:
        b = s.best[0]
        from tuner.report._report import objective_params

        shown = objective_params(report.data, b)  # as the objective saw them: pasteable into a spec's enqueue
        out.append("<h3>Best parameters</h3><table>" + "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(_param_text(v))}</td></tr>" for k, v in shown.items()) + "</table>")
        if b.metrics:
            out.append("<h3>Best trial's metrics</h3><table>" + "".join(
                f"<tr><th>{_e(k)}</th><td>{_e(fmt_value(v))}</td></tr>" for k, v in sorted(b.metrics.items())) + "</table>")
    if s.failures:
        out.append("<h3>Failures</h3><table><tr><th>error</th><th>trials</th><th>e.g. trial</th></tr>" + "".join(
            f"<tr><td>{_e(msg)}</td><td class=num>{n:,}</td><td>{_e(', '.join(str(x) for x in nums[:5]))}</td></tr>"
            for msg, n, nums in s.failures) + "</table>")
    if s.runs:
        out.append(_runs_table(s.runs))
    if s.spec is not None:
        import yaml

        text = yaml.safe_dump(s.spec, sort_keys=False, default_flow_style=False, allow_unicode=True)
        out.append(f"<details><summary>The spec the study ran with</summary><pre>{_e(text)}</pre></details>")
    else:
        out.append('<p class="caption">No tuner spec stored with this study (it did not run through tuner).</p>')
    out.append("</section>")
    return "".join(out)


def _runs_table(runs: list[dict[str, Any]]) -> str:
    """Each run of the study (``tuner run`` and its resumes): when, how long, how it ended, its trials."""
    def count(run: dict[str, Any], key: str) -> str:
        return "—" if run[key] is None else f"{run[key]:,}"

    body = "".join(
        f"<tr><td>{_e((run['started'] or '—')[:19].replace('T', ' '))}</td><td class=num>{_e(fmt_duration(run['duration_s']))}</td>"
        f"<td>{_e(run['end_text'].replace('`', ''))}{_e(': ' + run['error']) if run['error'] else ''}</td>"
        + "".join(f"<td class=num>{count(run, k)}</td>" for k in ("complete", "pruned", "failed", "stopped_unfinished"))
        + f"<td>{_e(str(run['pid'] or '?'))} on {_e(run['host'])}</td></tr>" for run in runs[::-1])
    return ("<details open><summary>Runs, newest first</summary><table><tr><th>started</th><th>length</th>"
            "<th>how it ended</th><th>complete</th><th>pruned</th><th>failed</th><th>stopped unfinished</th>"
            f"<th>pid on host</th></tr>{body}</table></details>")


def _advice(report: "ReportData") -> str:
    a = report.advice
    out = ['<section id="advice"><h2>Search-space advice</h2>']
    if a.judged:  # "the best 5 of 0" said nothing true when no advice was judged
        out.append(f'<p class="caption">Judged on the best {a.top_k:,} of {a.n_complete:,} complete trials (top 10%, '
                   f'at least 5); importances from the figure below.</p>')
    for note in a.notes:
        out.append(f'<p class="note">{_e(note)}</p>')
    if a.items:
        out.append('<ul class="advice">' + "".join(
            f'<li><span class="badge {_e(i.kind)}">{_e(i.kind)}</span><b>{_e(i.param)}</b>: {_e(i.message)}</li>'
            for i in a.items) + "</ul>")
    elif not a.notes:
        out.append('<p class="note">Nothing to change: no parameter crowds a bound, every choice wins sometimes, '
                   'and every parameter matters.</p>')
    out.append("</section>")
    return "".join(out)


def _top(report: "ReportData") -> str:
    t = report.top
    if t.kind == "pareto":
        title = f"Pareto front ({t.n_candidates:,} trials; {len(t.rows)} shown, by {t.metric_names[0]})"
    else:
        title = f"Top {len(t.rows)} trials (of {t.n_candidates:,} complete)"
    out = [f'<section id="top"><h2>{_e(title)}</h2>']
    if not t.rows:
        out.append('<p class="note">No complete trial yet.</p></section>')
        return "".join(out)
    head = ["#", "trial"] + [f"{m} ({d[:3]})" for m, d in zip(t.metric_names, t.directions)] + t.params + ["duration", "worker"]
    out.append('<div class="scroll"><table class="top"><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for r in t.rows:
        cells = [f"<td class=num>{r.rank}</td>", f"<td class=num>{r.number}</td>"]
        cells += [f"<td class=num>{_e(fmt_value(v))}</td>" for v in r.values]
        cells += [f"<td>{_e(fmt_value(r.params[p])) if p in r.params else '-'}</td>" for p in t.params]
        cells += [f"<td class=num>{_e(fmt_duration(r.duration_s))}</td>", f"<td>{_e(r.worker)}</td>"]
        out.append('<tr class="trial">' + "".join(cells) + "</tr>")
    out.append("</table></div></section>")
    return "".join(out)


def render_html(report: "ReportData") -> str:
    import optuna
    import plotly

    import tuner

    name = report.data.name
    now = _dt.datetime.now().isoformat(sep=" ", timespec="seconds")
    nav = [("summary", "Summary"), ("advice", "Advice"), ("top", "Top trials")] + [(s.id, s.title.split(" (")[0])
                                                                                 for s in report.sections]
    parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>tuner report: {_e(name)}</title><style>{_CSS}</style>",
             f'<script type="text/javascript">{_plotly_js()}</script></head><body>',
             f"<header><h1>tuner report: {_e(name)}</h1><p>generated {_e(now)} by tuner {_e(tuner.__version__)}, "
             f"optuna {_e(optuna.__version__)}, plotly {_e(plotly.__version__)}</p></header>",
             "<nav>" + "".join(f'<a href="#{_e(i)}">{_e(t)}</a>' for i, t in nav) + "</nav><main>",
             _summary(report), _advice(report), _top(report)]
    for s in report.sections:
        parts.append(f'<section id="{_e(s.id)}"><h2>{_e(s.title)}</h2>')
        for c in s.captions:
            parts.append(f'<p class="caption">{_e(c)}</p>')
        if s.figure is None:
            parts.append(f'<p class="note">{_e(s.note or "nothing to draw")}</p>')
        else:
            fid = f"fig-{s.id}"
            parts.append(f'<div class="fig" id="{fid}"></div>'
                         f'<script type="application/json" data-fig="{fid}">{figure_json(s.figure)}</script>')
        parts.append("</section>")
    parts.append(f"</main><script type=\"text/javascript\">{_BOOT}</script></body></html>\n")
    return "".join(parts)
