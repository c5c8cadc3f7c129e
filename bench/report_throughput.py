"""``ctx.report`` of a trial that reports many steps (per batch, say): the cost per report.

A trial's curve (every report's metrics) is one attribute of the trial. Stored at every report,
as tuner did before 2026-12-07, a trial of n reports wrote n copies of up to n rows: the cost per
report grew with the curve (3,000 reports spent 13 s writing it in a user's run). Now a long
curve is stored about once a second and whole when the trial ends
(``TrialContext._store_curve``), while Optuna's intermediate values, which the pruner reads,
are still written at every report. Both ways run here on the same machine, in-process, on a
fresh SQLite study each (WAL, as tuner opens it), reporting three metrics per step.

    python -m bench report_throughput [--reports 200,1000,3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench._args import count, counts


def _run(reports: int, always: int) -> float:
    """Seconds for ``reports`` reports (and the final store), the curve stored at every report up to ``always`` rows."""
    import optuna

    from tuner import storage as st
    from tuner.engine._context import TrialContext

    with tempfile.TemporaryDirectory() as folder:
        study = optuna.create_study(storage=st.open_storage(f"sqlite:///{folder}/r.db"),
                                    pruner=optuna.pruners.NopPruner())
        trial = study.ask()
        ctx = TrialContext(study=study, trial=trial, number=trial.number, params={}, metrics=("loss",),
                           directions=("minimize",), trial_dir=Path(folder), device="cpu", seed=0, num_threads=1,
                           prune=False)
        ctx._CURVE_ALWAYS_ROWS = always  # type: ignore[misc]  # an instance attribute: this context only
        start = time.perf_counter()
        for step in range(1, reports + 1):
            ctx.report(step, {"loss": 1.0 / step, "accuracy": 0.5, "lr": 0.1})
        ctx.store_curve()
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench report_throughput", description=__doc__.splitlines()[0])
    p.add_argument("--reports", type=counts, default=[200, 1000, 3000], help="comma-separated report counts")
    p.add_argument("--repeats", type=count(), default=3, help="runs of each, alternated; the median is shown")
    args = p.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"ctx.report, 3 metrics per step, SQLite, in-process, median of {args.repeats}\n")
    print("| reports | curve stored at every report: s (ms per report) | tuner: s (ms per report) | x faster |")
    print("|---:|---:|---:|---:|")
    for n in args.reports:
        every, tuner = [], []
        for _ in range(args.repeats):  # alternated, so that a busy moment of the machine hits both
            every.append(_run(n, always=10**12))
            tuner.append(_run(n, always=100))
        a, b = statistics.median(every), statistics.median(tuner)
        print(f"| {n:,} | {a:.2f} ({a / n * 1000:.2f}) | {b:.2f} ({b / n * 1000:.2f}) | {a / b:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
