"""kill -9 of a running `tuner run`, then a re-run: exactly n_trials finished, nothing RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from optuna.trial import TrialState

from tests._study_read import read_trials
from tests.conftest import ROOT, trial_counts
from tuner.engine import _attrs

SPEC = """\
name: killme
objective: tests.objectives:slow_steps
search_space:
  params:
    x: {float: [0.0, 1.0]}
n_trials: 6
concurrency: 2
pruner: none
seed: 3
"""


def _tuner(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuner.cli", *args]


def _counts(url: str) -> dict[str, int]:
    return trial_counts(url, "killme")


def _running(url: str) -> set[int]:
    return {t.number for t in read_trials(url, "killme", states=(TrialState.RUNNING,))}


def test_kill_9_then_rerun_finishes_exactly_n_trials(tmp_path: Path) -> None:
    spec = tmp_path / "killme.yaml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = _tuner("run", str(spec), "--storage", url, "--num-cpus", "2")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    counts: dict[str, int] = {}
    left_running: set[int] = set()
    while time.monotonic() < deadline:  # wait until one trial finished and others are mid-flight
        counts = _counts(url)
        # The running set is read again here, right before the kill, not taken from the counts:
        # the two trials of a round end within milliseconds of each other, and a read between
        # the second's end and the driver creating the next round's trials finds none running.
        if counts.get("COMPLETE", 0) >= 1 and (left_running := _running(url)):
            break
        if proc.poll() is not None:
            raise AssertionError(f"tuner run ended early: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.2)
    # The trials in flight at the kill: those RUNNING just before it, and any started since that
    # are still RUNNING after it. A worker orphaned by the kill may still finish its trial and
    # tell the study (CI saw the only one complete before the post-kill read), so the kill is
    # checked against the read before it.
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left_running |= _running(url)
    assert left_running  # the kill really caught trials in flight

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _counts(url)
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == 6
    assert "RUNNING" not in after
    trials = read_trials(url, "killme")
    # Each trial the dead driver left RUNNING either finished in its orphaned worker before Ray
    # tore it down (the worker tells the study itself) or was failed by the re-run's recovery.
    for t in trials:
        if t.number in left_running:
            assert t.state == TrialState.COMPLETE or (
                t.state == TrialState.FAIL and t.system_attrs[_attrs.ERROR]["type"] == "DriverLost"), t
        else:
            assert t.state == TrialState.COMPLETE
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no duplicates
    if after.get("FAIL", 0):
        assert "marked" in rerun.stderr and "FAIL" in rerun.stderr
