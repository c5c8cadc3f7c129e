"""Load held: many trivial trials at concurrency 16 (declared CPUs) against PostgreSQL (and SQLite,
marked slow), every trial recorded exactly once. The short form of ``python -m bench scale`` (2,000 trials)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import run_one
from tests.conftest import _pg_available

TRIALS = 48  # three rounds of 16 in flight; `python -m bench scale` runs 2,000


# SQLite at concurrency 16 is a slow scenario here (16 new worker processes on 2 CPUs, ~45 s):
# SQLite's write contention is held in the default run by test_faults.py's eight writers (32
# trials, 640 reports at once), and `python -m bench scale` runs it with 2,000 trials.
@pytest.mark.parametrize("kind", [pytest.param("sqlite", marks=pytest.mark.slow),
                                  pytest.param("postgres", marks=pytest.mark.postgres)])
def test_concurrency_16_records_every_trial_once(kind: str, tmp_path: Path) -> None:
    if kind == "postgres" and not _pg_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it: pg_ctlcluster ... main start)")
    result = run_one(kind, 16, TRIALS, "tpe", tmp_path, tmp_path / "run.log")
    log = (tmp_path / "run.log").read_text()
    assert result.exit_code == 0, log[-3000:]
    assert result.complete == TRIALS and result.recorded_once, log[-3000:]
    assert "database is locked" not in log and "Traceback" not in log
    print(f"\n{kind}: {TRIALS} trials at concurrency 16 in {result.wall_s:.1f}s "
          f"({result.trials_per_s:.1f} trials/s, driver {result.cpu_ms_per_trial:.1f} ms CPU/trial)")
