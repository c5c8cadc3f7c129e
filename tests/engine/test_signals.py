"""Ctrl-C (SIGINT) on `tuner run`, and `tuner stop` from another process: trials stopped and marked,
a resume hint, exit 130 (1 for a requested stop), resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, trial_counts

SPEC = """\
name: sigint
objective: tests.objectives:slow_steps
search_space:
  params:
    x: {float: [0.0, 1.0]}
n_trials: 6
concurrency: 2
pruner: none
seed: 5
"""


def _states(url: str) -> dict[str, int]:
    return trial_counts(url, "sigint")


ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _start(tmp_path: Path, *, complete_first: int) -> tuple[list[str], str, subprocess.Popen[str]]:
    """Start `tuner run` on the 6-trial spec; return once ``complete_first`` trials finished and one runs."""
    spec = tmp_path / "sigint.yaml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 's.db'}"
    cmd = [sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    states = _states(url)
    while time.monotonic() < deadline and (states.get("RUNNING", 0) < 1 or states.get("COMPLETE", 0) < complete_first):
        time.sleep(0.2)
        states = _states(url)
    # Checked on the read the loop stopped at: a second read could find that trial just finished.
    assert states.get("RUNNING", 0) >= 1, states
    return cmd, url, proc


def test_sigterm_stops_the_run_as_a_ctrl_c_does(tmp_path: Path) -> None:
    """`kill PID`, a batch scheduler or `timeout`: Ray's fault handler printed a stack dump and the
    process died (exit 1), its running trials left RUNNING until the next run called them lost."""
    from tests._study_read import read_trials

    _cmd, url, proc = _start(tmp_path, complete_first=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(t.state.name == "RUNNING" and t.intermediate_values
                                                  for t in read_trials(url, "sigint")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "stopping (SIGTERM): marking " in err and "a second SIGTERM to quit at once" in err, err[-2000:]
    assert "SIGTERM received" not in err and "Traceback" not in err, err[-2000:]
    assert "RUNNING" not in _states(url)
    errors = {(t.system_attrs.get("tuner:error") or {}).get("type") for t in read_trials(url, "sigint")
              if t.state.name == "FAIL"}
    assert errors == {"Interrupted"}, errors


def test_sigint_says_so_stops_marks_and_resumes_and_a_second_sigint_exits_at_once(tmp_path: Path) -> None:
    """One Ctrl-C: tuner says what it does at once (Tune's own handling waited 10 s, silent, for
    trials that answer its stop only when they end), kills the trials' workers, stores them as
    interrupted, exits 130 with a resume hint. The same command resumes; Ctrl-C twice there
    exits without waiting for trials to be stopped; the next run recovers what was left and
    finishes the study. (One scenario: each `tuner run` costs a Ray start.)"""
    from tests._study_read import read_trials

    cmd, url, proc = _start(tmp_path, complete_first=0)
    deadline = time.monotonic() + 60  # until a running trial has sampled its parameters (it reports every 0.4 s)
    while time.monotonic() < deadline and not any(t.state.name == "RUNNING" and t.intermediate_values
                                                  for t in read_trials(url, "sigint")):
        time.sleep(0.1)
    running = _states(url).get("RUNNING", 0)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)  # how fast it ends is a benchmark's business, not a test's
    assert proc.returncode == 130, err[-2000:]
    assert "stopping: marking " in err and "press Ctrl-C again to quit at once" in err, err[-2000:]
    assert err.index("stopping: marking ") < err.index("interrupted: study 'sigint'")
    assert "stopped unfinished" in err and "run the same command again to resume" in err
    assert "Tuner.restore" not in err and "Traceback" not in err  # Ray's own resume advice does not apply to tuner
    after = _states(url)
    assert "RUNNING" not in after and after.get("COMPLETE", 0) < 6
    errors = [t.system_attrs.get("tuner:error") or {} for t in read_trials(url, "sigint") if t.state.name == "FAIL"]
    assert len(errors) >= running and {e.get("type") for e in errors} == {"Interrupted"}, errors
    cut = {t.number: t.params for t in read_trials(url, "sigint") if t.state.name == "FAIL" and t.params}
    assert cut  # the interrupted trials had sampled their parameters: the resume runs them again

    # The resume, interrupted twice once one of its trials has finished and another runs.
    cmd, url, proc = _start(tmp_path, complete_first=after.get("COMPLETE", 0) + 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    # 130, or ended by the SIGINT itself when it came as the process was already exiting (its
    # handlers gone): a shell reports both as 130, and either way the second Ctrl-C quit at once.
    assert proc.returncode in (130, -signal.SIGINT), err[-2000:]
    # The first Ctrl-C's orderly stop takes about a second now, so the second may find it done.
    last = err.rstrip().splitlines()[-1]
    assert last == "error: interrupted; run the same command again to resume" or (
        last.startswith("interrupted: study 'sigint'") and last.endswith("run the same command again to resume")), last
    assert err.count("run the same command again to resume") == 1, err[-2000:]  # said once, whichever said it
    assert "Traceback" not in err

    # The next resume is stopped from another process by `tuner stop`, as at a Ctrl-C: exit 1,
    # its running trials stored as stopped by the request; `tuner stop` waits for it to end.
    stopped_before = {t.number for t in read_trials(url, "sigint")
                      if (t.system_attrs.get("tuner:error") or {}).get("type") == "StoppedByRequest"}
    assert stopped_before == set()
    cmd, url, proc = _start(tmp_path, complete_first=_states(url).get("COMPLETE", 0))
    asked = subprocess.run([sys.executable, "-m", "tuner.cli", "stop", "sigint", "--storage", url], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=120)
    _out, err = proc.communicate(timeout=60)
    assert asked.returncode == 0 and asked.stdout.startswith("asked the run of study 'sigint' (pid "), asked
    # `tuner stop` says how the run ended, from the entry the run logged as it gave the study up
    assert re.fullmatch(r"the run has stopped \(stopped by `tuner stop`; this run: \d+ complete, 0 pruned, 0 failed"
                        r"(, \d+ stopped unfinished)?\); run its spec again to resume", asked.stdout.splitlines()[-1]), asked
    assert proc.returncode == 1, err[-2000:]
    assert "stopping: `tuner stop` from pid " in err and "Traceback" not in err, err[-2000:]
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("stopped by `tuner stop`: study 'sigint'") and "run the same command again" in last
    stopped = [t for t in read_trials(url, "sigint")
               if (t.system_attrs.get("tuner:error") or {}).get("type") == "StoppedByRequest"]
    assert stopped and all("stopped by `tuner stop`" in t.system_attrs["tuner:error"]["message"] for t in stopped)
    assert "RUNNING" not in _states(url)

    done_before = _states(url).get("COMPLETE", 0)
    rerun = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]  # an old request names the old run: this one is not stopped
    final = _states(url)
    assert final.get("COMPLETE", 0) == 6 and "RUNNING" not in final
    assert final.get("COMPLETE", 0) >= done_before

    # Each run logged how it ended (they used to be told once, in their own terminal), and
    # `tuner show` lists them.
    shown = subprocess.run([sys.executable, "-m", "tuner.cli", "show", "sigint", "--storage", url, "--json"],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    runs = json.loads(shown.stdout)["runs"]
    assert [run["end"] for run in runs] == ["interrupted", "interrupted", "stop_requested", "done"], runs
    assert runs[0]["stopped_unfinished"] >= running and runs[2]["stopped_unfinished"] == len(stopped), runs
    assert runs[3]["complete"] == 6 - done_before and runs[3]["failed"] == 0, runs
    assert all(run["pid"] and run["duration_s"] > 0 for run in runs), runs
    assert json.loads(shown.stdout)["state"] == "finished"
    # the first run's interrupted trials ran again in the next run, with their parameters
    reruns = {t.system_attrs["tuner:rerun_of"]: t.params for t in read_trials(url, "sigint")
              if "tuner:rerun_of" in t.system_attrs}
    assert any(reruns.get(number) == params for number, params in cut.items()), (cut, reruns)
