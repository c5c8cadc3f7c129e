"""Fault scenarios shared by the CI tests (short forms) and ``python -m bench soak`` (long forms).

Each scenario runs the real ``tuner`` CLI in a subprocess against a real storage, injects the
fault from outside (a signal, a database restart, a lost Ray node) and returns what it saw; the
caller asserts. Nothing here is mocked.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests._study_read import read_trials

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}

SLOW_SPEC = """\
name: {name}
objective: tests.objectives:slow_steps
search_space:
  params:
    x: {{float: [0.0, 1.0]}}
n_trials: {n_trials}
concurrency: {concurrency}
pruner: none
seed: {seed}
"""


def tuner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def finished_snapshot(url: str, name: str) -> dict[int, tuple[str, tuple[float, ...] | None, dict[str, Any]]]:
    """Every trial of the study by number: (state, values, params), read fresh from the storage."""
    try:
        trials = read_trials(url, name)
    except KeyError:
        return {}
    out: dict[int, tuple[str, tuple[float, ...] | None, dict[str, Any]]] = {}
    for t in trials:
        if t.number in out:
            raise AssertionError(f"trial number {t.number} appears twice in study {name!r}")
        out[t.number] = (t.state.name, tuple(t.values) if t.values else None, dict(t.params))
    return out


def states(snapshot: dict[int, tuple[str, Any, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state, _values, _params in snapshot.values():
        counts[state] = counts.get(state, 0) + 1
    return counts


def lost_or_changed(before: dict[int, tuple[str, Any, Any]], after: dict[int, tuple[str, Any, Any]]) -> list[int]:
    """Numbers of trials that were finished (COMPLETE/PRUNED) before and are gone or changed after."""
    return [n for n, row in before.items() if row[0] in ("COMPLETE", "PRUNED") and after.get(n) != row]


def wait_for(predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.2)
    return False


@dataclass
class KillReport:
    """What ``sigkill_cycles`` did and saw."""

    kills: int = 0
    kill_delays_s: list[float] = field(default_factory=list)
    running_at_kill: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # finished trials that disappeared or changed
    in_flight: set[int] = field(default_factory=set)  # trials RUNNING at a kill (read just before and after it)
    final: dict[str, int] = field(default_factory=dict)
    final_rc: int | None = None
    final_stderr: str = ""
    wall_s: float = 0.0


def sigkill_cycles(workdir: Path, *, kills: int, n_trials: int, seed: int = 0, concurrency: int = 2,
                   url: str | None = None) -> KillReport:
    """``tuner run`` killed with SIGKILL ``kills`` times at random moments, re-run after each.

    A third of the kills (drawn from ``seed``) land at a random moment of the start (0.5-4 s in:
    Ray starting, the study being opened or recovered); the others at a random moment 0-2.5 s
    after a trial of that run is seen RUNNING, so they catch trials mid-flight. After every kill
    the storage is read: no trial finished before may be gone or changed. A last run without a
    kill must finish the study.
    """
    rng = random.Random(seed)
    name = f"killed{seed}"
    spec = workdir / f"{name}.yaml"
    spec.write_text(SLOW_SPEC.format(name=name, n_trials=n_trials, concurrency=concurrency, seed=seed))
    url = url or f"sqlite:///{workdir / 'kill.db'}"
    cmd = tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", str(concurrency), "--quiet")
    report = KillReport()
    started = time.monotonic()
    seen: dict[int, tuple[str, Any, Any]] = {}
    for i in range(kills):
        snapshot = finished_snapshot(url, name)
        if sum(1 for r in snapshot.values() if r[0] in ("COMPLETE", "PRUNED")) >= n_trials:
            break  # the study finished before every kill could land; later runs would do nothing
        at_start = i % 3 == 0
        delay = rng.uniform(0.5, 4.0) if at_start else rng.uniform(0.0, 2.5)
        old_running = {n for n, r in snapshot.items() if r[0] == "RUNNING"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        if not at_start:  # wait for this run to have a trial in flight
            wait_for(lambda: any(r[0] == "RUNNING" and n not in old_running
                                 for n, r in finished_snapshot(url, name).items()), 120, proc)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            before_kill = {n for n, r in finished_snapshot(url, name).items() if r[0] == "RUNNING"}
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # A trial started between the read and the kill is caught by the read after it; one
            # in flight may still finish in its orphaned worker, which tells the study itself.
            report.in_flight |= before_kill | {n for n, r in finished_snapshot(url, name).items() if r[0] == "RUNNING"}
            running = len(before_kill)
            report.kills += 1
            report.kill_delays_s.append(round(time.monotonic() - t0, 2))
            report.running_at_kill.append(running)
        else:
            if proc.returncode != 0:
                raise AssertionError(f"tuner run failed before its kill: {proc.stderr.read().decode()[-2000:]}")
        proc.stderr.close()
        after = finished_snapshot(url, name)
        report.lost.extend(lost_or_changed(seen, after))
        seen = after
    final = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    report.final_rc, report.final_stderr = final.returncode, final.stderr
    end = finished_snapshot(url, name)
    report.lost.extend(lost_or_changed(seen, end))
    report.final = states(end)
    report.wall_s = time.monotonic() - started
    return report


def postgres_restart() -> float:
    """Restart the machine's PostgreSQL cluster (as an operator would); returns the seconds it took."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    t0 = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=120)
    return time.monotonic() - t0


def postgres_start_time() -> str:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=10) as conn:
        return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])


@dataclass
class RestartReport:
    """What ``postgres_restarts`` did and saw."""

    restarts: int = 0
    restart_s: list[float] = field(default_factory=list)
    server_restarted: bool = False
    completed_after_last: int = 0
    lost: list[int] = field(default_factory=list)
    final: dict[str, int] = field(default_factory=dict)
    rc: int | None = None
    stderr: str = ""
    wall_s: float = 0.0


def postgres_restarts(workdir: Path, url: str, *, restarts: int, n_trials: int, seed: int = 4,
                      every: int = 2) -> RestartReport:
    """One ``tuner run`` on PostgreSQL while the server is restarted ``restarts`` times, one restart
    each time ``every`` more trials have completed. The run must ride them all out."""
    import datetime as dt

    name = f"pgrestart{seed}"
    spec = workdir / f"{name}.yaml"
    spec.write_text(SLOW_SPEC.format(name=name, n_trials=n_trials, concurrency=2, seed=seed))
    proc = subprocess.Popen(tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "2", "--quiet"), cwd=ROOT,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    report = RestartReport()
    started = time.monotonic()
    seen: dict[int, tuple[str, Any, Any]] = {}
    last_restart = dt.datetime.now()
    try:
        first_start = None
        for i in range(restarts):
            target = every * (i + 1)
            if not wait_for(lambda: states(finished_snapshot(url, name)).get("COMPLETE", 0) >= target, 300, proc):
                break
            if proc.poll() is not None:
                break
            before = finished_snapshot(url, name)
            report.lost.extend(lost_or_changed(seen, before))
            seen = before
            first_start = first_start or postgres_start_time()
            last_restart = dt.datetime.now()
            report.restart_s.append(round(postgres_restart(), 2))
            report.restarts += 1
        _out, report.stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    report.rc = proc.returncode
    report.server_restarted = first_start is not None and postgres_start_time() != first_start
    end = finished_snapshot(url, name)
    report.lost.extend(lost_or_changed(seen, end))
    report.final = states(end)
    report.completed_after_last = sum(1 for t in read_trials(url, name)
                                      if t.state.name == "COMPLETE" and t.datetime_complete > last_restart)
    report.wall_s = time.monotonic() - started
    return report
