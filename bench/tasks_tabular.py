"""Tabular task benchmark: the shipped sklearn_gbm, sklearn_regression and mlp_pareto studies with
their real budgets, each through ``tuner.run`` on a fresh SQLite file.

For every study the table gives the finished trials (complete / pruned / failed), the best
validation score (the CV estimate for the scikit-learn task; for the two-objective mlp_pareto,
the most accurate trial of the Pareto front, with its size and the front's length), the test
score of that same trial (its held-out test part, never used for choosing), and the wall time
of ``tuner.run`` (Ray start and shutdown included).

    .venv/bin/python -m bench.tasks_tabular [--studies sklearn_gbm mlp_pareto] [--n-trials N]

Results go to ``bench/results/tasks_tabular-YYYYmmdd-HHMMSS.{md,json}``; the Markdown table is
also printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._args import count

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
STUDIES = ("sklearn_gbm", "sklearn_regression", "mlp_pareto")


def run_one(name: str, n_trials: int | None, workdir: Path) -> dict[str, Any]:
    """Run ``studies/<name>.yaml`` in ``workdir`` and summarise its best trial from the storage."""
    import optuna

    import tuner
    from tuner.engine import _attrs

    url = f"sqlite:///{workdir / 'study.db'}"
    overrides = {"n_trials": n_trials} if n_trials else None
    start = time.perf_counter()
    study = tuner.run(REPO_ROOT / "studies" / f"{name}.yaml", storage=url, overrides=overrides)
    wall = time.perf_counter() - start

    metrics = list(study.metric_names or ["value"])
    directions = [d.name.lower() for d in study.directions]
    states = [t.state for t in study.trials]
    counts = {s.name.lower(): states.count(s) for s in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED,
                                                         optuna.trial.TrialState.FAIL)}
    row: dict[str, Any] = {"study": name, "metrics": metrics, "directions": directions, "counts": counts,
                           "wall_s": wall, "trials": counts["complete"] + counts["pruned"]}
    if len(metrics) == 1:
        best = study.best_trial
        front_size = None
    else:
        front = study.best_trials
        sign = 1 if directions[0] == "maximize" else -1
        best = max(front, key=lambda t: sign * t.values[0])
        front_size = len(front)
    final = best.system_attrs.get(_attrs.METRICS) or {}
    test_metric = metrics[0].replace("val_", "test_", 1)
    row.update({
        "best_number": best.number,
        "best_values": list(best.values),
        "best_params": best.params,
        "test_metric": test_metric,
        "test_value": final.get(test_metric),
        "front_size": front_size,
        "final_metrics": final,
    })
    return row


def markdown(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    lines = [
        f"# Tabular tasks benchmark ({facts['date']})",
        "",
        f"Machine: {facts['cpus']} CPUs, load average {facts['load_before']} before the first run; "
        f"Python {facts['python']}, scikit-learn {facts['versions'].get('scikit-learn')}, "
        f"torch {facts['versions'].get('torch')}, optuna {facts['versions'].get('optuna')}, "
        f"ray {facts['versions'].get('ray')}.",
        f"Command: `{facts['command']}`",
        "",
        "| study | trials (complete / pruned / failed) | best validation score | test score of that trial | wall time |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["counts"]
        val = f"{r['metrics'][0]} = {r['best_values'][0]:.4f}"
        if r["front_size"] is not None:
            extra = ", ".join(f"{m} = {v:,.0f}" if abs(v) >= 100 else f"{m} = {v:.4g}"
                              for m, v in zip(r["metrics"][1:], r["best_values"][1:]))
            val += f" ({extra}; most accurate of a {r['front_size']}-trial Pareto front)"
        test = f"{r['test_metric']} = {r['test_value']:.4f}" if r["test_value"] is not None else "-"
        lines.append(f"| {r['study']} | {r['trials']} ({c['complete']} / {c['pruned']} / {c['fail']}) | {val} | "
                     f"{test} | {r['wall_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("scikit-learn", "torch", "optuna", "ray", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tasks_tabular", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    parser.add_argument("--n-trials", type=count(1), default=None, help="override every study's n_trials (quick checks)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    facts = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "versions": _versions(),
        "command": " ".join([".venv/bin/python -m bench.tasks_tabular", *(argv if argv is not None else sys.argv[1:])]),
    }
    rows = []
    for name in args.studies:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:  # study.db and tuner_runs/ (models)
            rows.append(run_one(name, args.n_trials, Path(tmp)))
        print(f"{name}: done in {rows[-1]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    facts["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())

    text = markdown(rows, facts)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"tasks_tabular-{stamp}.md").write_text(text)
    (args.out / f"tasks_tabular-{stamp}.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=2,
                                                                      default=str) + "\n")
    print(text)
    failed = [r["study"] for r in rows if r["counts"]["fail"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
