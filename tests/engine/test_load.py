"""Load held: many trivial trials at concurrency 8 against PostgreSQL, and at 16 (declared CPUs)
against PostgreSQL and SQLite (marked slow), every trial recorded exactly once. The short form of
``python -m bench scale`` (2,000 trials at concurrency 2, 8 and 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import run_one
from tests.conftest import _pg_available

ROUNDS = 3  # rounds of `concurrency` trials in flight; `python -m bench scale` runs 2,000


# Concurrency 16 is a slow scenario here: 16 new worker processes on 2 CPUs took 41-61 s per
# database. The default run holds PostgreSQL at 8 (SQLite's write contention at 8 is held by
# test_faults.py's eight writers: 32 trials, 640 reports at once); `-m slow` runs 16 on both.
@pytest.mark.parametrize("kind,concurrency", [
    pytest.param("postgres", 8, marks=pytest.mark.postgres),
    pytest.param("postgres", 16, marks=[pytest.mark.postgres, pytest.mark.slow]),
    pytest.param("sqlite", 16, marks=pytest.mark.slow),
])
def test_many_trials_in_flight_record_every_trial_once(kind: str, concurrency: int, tmp_path: Path) -> None:
    if kind == "postgres" and not _pg_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it: pg_ctlcluster ... main start)")
    trials = ROUNDS * concurrency
    result = run_one(kind, concurrency, trials, "tpe", tmp_path, tmp_path / "run.log")
    log = (tmp_path / "run.log").read_text()
    assert result.exit_code == 0, log[-3000:]
    assert result.complete == trials and result.recorded_once, log[-3000:]
    assert "database is locked" not in log and "Traceback" not in log
    print(f"\n{kind}: {trials} trials at concurrency {concurrency} in {result.wall_s:.1f}s "
          f"({result.trials_per_s:.1f} trials/s, driver {result.cpu_ms_per_trial:.1f} ms CPU/trial)")
