"""Anytime curves, summary statistics, target checks and the Markdown/Plotly output of
``python -m bench efficiency``. Pure functions of the runs' step logs (compute the data, then
draw it).

Definitions, identical for every contender:

* **compute** is the step log's line count: every step (epoch, CV fold, fidelity level) any
  trial ran, pruned trials included, ordered by the time it was written;
* a trial **completes** when it reports its last step ``T`` (or, stopping itself earlier, e.g.
  a built-in task's early stopping, when it returns); its value is the noise-free
  full-fidelity value ``f(x)`` on synthetic problems and, on real ones, the trial's own final
  metric (the best epoch's validation loss, or the CV accuracy). A pruned trial never counts:
  its partial value is not a valid "best";
* the **anytime curve** is, after ``c`` steps, the best value among trials that completed
  within those ``c`` steps; steps after the budget are ignored;
* **compute to reach random's best**: the first ``c`` at which a contender's mean curve (over
  seeds) is at least as good as random search's mean final best, and the same for random
  itself; their ratio is the fraction of random's compute.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["curve_from_log", "markdown", "paired_lead", "plot_html", "reach_interval", "summarise"]

FRACTIONS = (0.25, 0.5, 1.0)


def curve_from_log(records: Sequence[dict[str, Any]], budget: int, direction: str) -> dict[str, Any]:
    """The anytime curve of one run: ``points`` = [(steps spent, best so far)] at each improvement."""
    better = (lambda a, b: a > b) if direction == "maximize" else (lambda a, b: a < b)
    best: float | None = None
    points: list[tuple[int, float]] = []
    keys: set[str] = set()
    completed = 0
    spent = 0
    budget_t = None
    for rec in records:
        if "s" in rec:  # a step; a line without "s" only marks a trial that ended early as complete
            if spent == budget:
                break
            spent += 1
            if spent == budget:
                budget_t = rec["t"]
        keys.add(rec["k"])
        value = rec.get("true")
        if "v" not in rec or value is None or not math.isfinite(value):
            continue
        completed += 1
        if best is None or better(value, best):
            best = value
            points.append((spent, value))
    return {"points": points, "steps": spent, "trials": len(keys), "completed": completed,
            "budget_reached_t": budget_t}


def best_at(points: Sequence[Sequence[float]], steps: float) -> float | None:
    """The curve's value after ``steps`` steps (None before the first completed trial)."""
    value = None
    for c, v in points:
        if c > steps:
            break
        value = v
    return value


def _grid(curves: Iterable[Sequence[Sequence[float]]], budget: int) -> np.ndarray:
    """One row per run: its best value after each step 1..budget (NaN before its first completed trial)."""
    rows = []
    for points in curves:
        row = np.full(budget, np.nan)
        for c, v in points:
            row[int(c) - 1:] = v
        rows.append(row)
    return np.array(rows).reshape(len(rows), budget)


def _mean_curve(curves: Iterable[Sequence[Sequence[float]]], budget: int) -> np.ndarray:
    """Rows: mean, min, max over seeds at each step 1..budget (NaN until every seed has a value)."""
    grid = _grid(curves, budget)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a first completed trial
        complete = ~np.isnan(grid).any(axis=0)
        mean = np.where(complete, np.nanmean(grid, axis=0) if len(grid) else np.nan, np.nan)
        low = np.where(complete, np.nanmin(grid, axis=0) if len(grid) else np.nan, np.nan)
        high = np.where(complete, np.nanmax(grid, axis=0) if len(grid) else np.nan, np.nan)
    return np.vstack([mean, low, high])


def reach_interval(random_runs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], budget: int,
                   direction: str, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95 % bootstrap interval of the share of random's compute a contender needs.

    The share is a ratio of two first-crossing points of mean curves, and random search's own
    final best moves with its seeds (on the digits MLP, 0.0386 over one set of 15 seeds and
    0.0422 over 20), so one number can land on either side of a target by luck. Seeds are
    resampled with replacement, the same seeds for both (a seed fixes the problem noise), and
    the share recomputed each time; a resample in which the contender never reaches the
    target counts as infinite. None with fewer than three common seeds; the upper end is
    ``inf`` when more than 2.5 % of resamples never reach the target.
    """
    by_seed_r = {r["seed"]: r["curve"]["points"] for r in random_runs}
    by_seed_c = {r["seed"]: r["curve"]["points"] for r in runs}
    seeds = sorted(set(by_seed_r) & set(by_seed_c))
    if len(seeds) < 3:
        return None
    grid_r = _grid([by_seed_r[s] for s in seeds], budget)
    grid_c = _grid([by_seed_c[s] for s in seeds], budget)
    rng = np.random.default_rng(seed)
    shares = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(seeds), len(seeds))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_r, mean_c = grid_r[idx].mean(axis=0), grid_c[idx].mean(axis=0)  # NaN until every seed has one
        target = mean_r[-1]
        reach_r = _first_reach(mean_r, target, direction) if not math.isnan(target) else None
        reach_c = _first_reach(mean_c, target, direction) if reach_r else None
        shares[b] = reach_c / reach_r if reach_c and reach_r else math.inf
    shares.sort()  # order statistics, not interpolation: the upper tail may be infinite
    return float(shares[int(0.025 * (n_boot - 1))]), float(shares[math.ceil(0.975 * (n_boot - 1))])


def _first_reach(mean: np.ndarray, target: float, direction: str) -> int | None:
    ok = (mean >= target - 1e-12) if direction == "maximize" else (mean <= target + 1e-12)
    idx = np.flatnonzero(ok & ~np.isnan(mean))
    return int(idx[0]) + 1 if len(idx) else None


def _stats(values: list[float | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(np.mean(known)), "sd": float(np.std(known, ddof=1)) if len(known) > 1 else 0.0,
            "n": len(known)}


def summarise(runs: list[dict[str, Any]], problems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per problem and contender: best at 25/50/100 %, compute to reach random's best, wall time."""
    out: dict[str, Any] = {}
    for pname, prob in problems.items():
        budget, direction = prob["budget"], prob["direction"]
        by_contender: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            if r["problem"] == pname and r.get("curve"):
                by_contender.setdefault(r["contender"], []).append(r)
        rows: dict[str, Any] = {}
        for cname, rs in by_contender.items():
            mean = _mean_curve([r["curve"]["points"] for r in rs], budget)
            rows[cname] = {
                "label": rs[0]["label"], "seeds": len(rs),
                "at": {str(f): _stats([best_at(r["curve"]["points"], f * budget) for r in rs]) for f in FRACTIONS},
                "trials": _stats([r["curve"]["trials"] for r in rs]),
                "completed": _stats([r["curve"]["completed"] for r in rs]),
                "wall_s": _stats([r["wall_s"] for r in rs]),
                "budget_wall_s": _stats([r["budget_wall_s"] for r in rs]),
                "mean_curve": mean,
                # The final best of each seed, for the paired comparison in _checks.
                "final_by_seed": {str(r["seed"]): best_at(r["curve"]["points"], budget) for r in rs},
            }
        random = rows.get("random")
        target = random["at"]["1.0"]["mean"] if random else None
        random_reach = _first_reach(random["mean_curve"][0], target, direction) if random and target is not None else None
        for cname, row in rows.items():
            reach = _first_reach(row["mean_curve"][0], target, direction) if target is not None else None
            row["reach_random"] = reach
            row["reach_fraction"] = (reach / random_reach) if reach and random_reach else None
            row["reach_fraction_ci"] = (None if cname == "random" or "random" not in by_contender else
                                        reach_interval(by_contender["random"], by_contender[cname], budget, direction))
            per_seed = []
            for r in by_contender[cname]:
                seed_target = next((best_at(x["curve"]["points"], budget) for x in by_contender.get("random", [])
                                    if x["seed"] == r["seed"]), None)
                if seed_target is None:
                    continue
                pts = r["curve"]["points"]
                per_seed.append(any((v >= seed_target if direction == "maximize" else v <= seed_target)
                                    for _c, v in pts))
            row["reached_seeds"] = [sum(per_seed), len(per_seed)]
            row["mean_curve"] = [[None if math.isnan(x) else float(x) for x in line] for line in row["mean_curve"]]
        out[pname] = {"problem": prob, "target": target, "random_reach": random_reach, "rows": rows,
                      "checks": _checks(rows, direction)}
    return out


def _checks(rows: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    """The issue's targets for tuner's default: <= 1/3 of random's compute; beats Optuna and Ray Tune."""
    checks: list[dict[str, Any]] = []
    tuner = rows.get("tuner")
    if tuner is None:
        return checks
    frac = tuner["reach_fraction"]
    checks.append({"check": "tuner default reaches random's final best with <= 1/3 of random's compute",
                   "ok": frac is not None and frac <= 1 / 3,
                   "detail": ("not reached within the budget" if frac is None else f"{frac:.2f} of random's compute")
                   + _share_ci(tuner.get("reach_fraction_ci"))})
    mine = tuner["at"]["1.0"]["mean"]
    for other in ("optuna", "raytune"):
        theirs = rows.get(other, {}).get("at", {}).get("1.0", {}).get("mean")
        if theirs is None or mine is None:
            continue
        ok = mine > theirs if direction == "maximize" else mine < theirs
        checks.append({"check": f"tuner default beats {rows[other]['label']} at the full budget (mean over seeds)",
                       "ok": ok, "detail": f"{_fmt(mine)} vs {_fmt(theirs)}"
                       + _paired(tuner.get("final_by_seed", {}), rows[other].get("final_by_seed", {}), direction)})
    return checks


def paired_lead(mine: dict[str, float | None], theirs: dict[str, float | None], direction: str) -> dict[str, Any] | None:
    """Seed-by-seed comparison of two contenders' final bests: wins, mean lead and its 95 % t-interval.

    A mean over a handful of seeds can favour either side by luck (the digits MLP's final bests
    spread by about a fifth of their mean); the interval says whether a lead is more than that.
    The same seed gives both contenders the same problem noise, so the differences are paired.
    A positive lead means ``mine`` is better. None with fewer than two common seeds.
    """
    from scipy import stats

    seeds = [k for k in mine if mine[k] is not None and theirs.get(k) is not None]
    if len(seeds) < 2:
        return None
    sign = 1.0 if direction == "maximize" else -1.0
    diff = np.array([sign * (float(mine[k]) - float(theirs[k])) for k in seeds])
    half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
    m = float(diff.mean())
    return {"wins": int((diff > 0).sum()), "n": len(diff), "lead": m, "low": m - half, "high": m + half,
            "verdict": "ahead" if m - half > 0 else "behind" if m + half < 0 else "within noise"}


def _paired(mine: dict[str, float | None], theirs: dict[str, float | None], direction: str) -> str:
    p = paired_lead(mine, theirs, direction)
    if p is None:
        return ""
    verdict = {"ahead": "tuner ahead", "behind": "tuner behind"}.get(p["verdict"], p["verdict"])
    return (f"; per seed: tuner better on {p['wins']}/{p['n']}, lead {p['lead']:+.3g} "
            f"(95% CI {p['low']:+.3g} to {p['high']:+.3g}: {verdict})")


def _share_ci(ci: Sequence[float] | None) -> str:
    if ci is None:
        return ""
    high = "not reached" if math.isinf(ci[1]) else f"{ci[1]:.2f}"
    return f" (95% bootstrap interval over seeds {ci[0]:.2f} to {high})"


def share_cell(row: dict[str, Any]) -> str:
    """A table cell: the share of random's compute, with its bootstrap interval when there is one."""
    frac = "-" if row.get("reach_fraction") is None else f"{row['reach_fraction']:.2f}"
    ci = row.get("reach_fraction_ci")
    if ci is None:
        return frac
    return f"{frac} ({ci[0]:.2f}-{'inf' if math.isinf(ci[1]) else f'{ci[1]:.2f}'})"


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000 or (abs(v) < 1e-3 and v != 0):
        return f"{v:.3g}"
    return f"{v:.{digits}g}"


def _pm(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{_fmt(stat['mean'])} ± {_fmt(stat['sd'], 2)}"
    return text if stat["n"] == stat.get("of", stat["n"]) else f"{text} ({stat['n']})"


def markdown(summary: dict[str, Any], facts: dict[str, Any], runs: Sequence[dict[str, Any]] = ()) -> str:
    """The report: one table per problem, runs with failed trials, then the target checks."""
    runs_of = "\n".join(f"- `{c}`" for c in facts.get("commands", [facts["command"]]))
    lines = [f"# Sample efficiency ({facts['date']})", "", "Runs:", "", runs_of, "",
             f"Seeds: {facts['seeds']}, concurrency {facts['concurrency']}, {facts['machine']}; "
             f"Optuna {facts['optuna']}, Ray {facts['ray']}. Values: best *completed* trial so far "
             f"(synthetic: noise-free f(x); real: the trial's validation metric); mean ± sd over seeds "
             f"(a count in brackets: seeds with a completed trial by then). Compute = steps (epochs, CV "
             f"folds, fidelity levels) run by all trials, pruned ones included.", ""]
    verdicts: list[str] = []
    for pname, s in summary.items():
        prob = s["problem"]
        unit = prob["step_unit"]
        opt = f"; optimum {_fmt(prob['optimum'])}" if prob.get("optimum") is not None else ""
        n_seeds = max((row["seeds"] for row in s["rows"].values()), default=0)
        lines += [f"## {pname}: {prob['direction']} {prob['metric']}, budget {prob['budget']} {unit}s "
                  f"({prob['budget'] // prob['steps']} full trials of {prob['steps']}){opt}; {n_seeds} seeds", "",
                  f"{prob['note']}.", "",
                  f"| contender | best @25% | best @50% | best @100% | {unit}s to reach random's best "
                  f"({_fmt(s['target'])}) | × random's (95% CI) | seeds reaching own-seed random best | trials (completed) "
                  f"| wall s (to budget) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for cname, row in s["rows"].items():
            for f in FRACTIONS:
                row["at"][str(f)]["of"] = row["seeds"]
            reach = "not reached" if row["reach_random"] is None else str(row["reach_random"])
            frac = share_cell(row)
            k, n = row["reached_seeds"]
            lines.append(
                f"| {row['label']} | {_pm(row['at']['0.25'])} | {_pm(row['at']['0.5'])} | {_pm(row['at']['1.0'])} "
                f"| {reach} | {frac} | {k}/{n} | {row['trials']['mean']:.1f} ({row['completed']['mean']:.1f}) "
                f"| {row['wall_s']['mean']:.1f} ({row['budget_wall_s']['mean']:.1f}) |")
        lines.append("")
        for c in s["checks"]:
            verdict = "PASS" if c["ok"] else "FAIL"
            lines.append(f"- **{verdict}** {c['check']}: {c['detail']}")
            verdicts.append(f"| {pname} | {c['check']} | {verdict} | {c['detail']} |")
        lines.append("")
    failed = [f"{r['problem']} seed {r['seed']} {r['contender']}: {r.get('lib_errors')} failed trials"
              + (f" ({'; '.join(r['lib_error_causes'])})" if r.get("lib_error_causes") else "")
              + (f", {r['error']}" if r.get("error") else "")
              for r in runs if r.get("lib_errors") or r.get("error")]
    if failed:
        lines += ["Runs with failed trials or errors: " + "; ".join(failed) + ".", ""]
    if verdicts:
        lines += ["## Targets", "", "| problem | target | result | measured |", "|---|---|---|---|", *verdicts, ""]
    return "\n".join(lines)


def plot_html(summary: dict[str, Any], title: str) -> str:
    """Anytime curves (mean over seeds, min-max band) per problem, one Plotly figure, as HTML."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    names = list(summary)
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names)
    palette = qualitative.Dark24
    contenders = list(dict.fromkeys(c for s in summary.values() for c in s["rows"]))
    for i, pname in enumerate(names):
        s = summary[pname]
        prob = s["problem"]
        optimum = prob.get("optimum")
        r, c = i // cols + 1, i % cols + 1
        for cname, row in s["rows"].items():
            color = palette[contenders.index(cname) % len(palette)]
            mean, low, high = (np.array([np.nan if v is None else v for v in line]) for line in row["mean_curve"])
            if optimum is not None:  # regret on a log axis: the differences near the optimum are the point
                mean, low, high = (np.maximum(a - optimum, 1e-9) for a in (mean, low, high))
            x = np.arange(1, len(mean) + 1)
            keep = ~np.isnan(mean)
            fig.add_trace(go.Scatter(x=np.concatenate([x[keep], x[keep][::-1]]),
                                     y=np.concatenate([high[keep], low[keep][::-1]]), fill="toself",
                                     fillcolor=color, opacity=0.12, line={"width": 0}, hoverinfo="skip",
                                     legendgroup=cname, showlegend=False), row=r, col=c)
            fig.add_trace(go.Scatter(x=x[keep], y=mean[keep], name=row["label"], legendgroup=cname,
                                     line={"color": color}, showlegend=i == 0), row=r, col=c)
        fig.update_xaxes(title_text=f"{prob['step_unit']}s spent", row=r, col=c)
        fig.update_yaxes(title_text=("regret (log)" if optimum is not None else f"best {prob['metric']}"),
                         type="log" if optimum is not None else None, row=r, col=c)
    fig.update_layout(title=title + " (mean over seeds; band: min to max)", height=420 * rows, width=1300)
    return fig.to_html(include_plotlyjs=True, full_html=True)
