"""What `tuner run` prints: its own lines, never Ray's tracebacks, warnings or worker noise."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.engine._faults import ENV, tuner_cmd

SPEC = """\
name: console
objective: tests.objectives:{objective}
search_space:
  params:
    x: {{float: [0.0, 1.0]}}
n_trials: {n_trials}
concurrency: 1
pruner: none
seed: 3
max_failures: 5
"""


def _run(tmp_path: Path, objective: str, n_trials: int, *flags: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "console.yaml"
    spec.write_text(SPEC.format(objective=objective, n_trials=n_trials))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    return subprocess.run(tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "1", *flags), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_quiet_prints_the_final_line_alone_though_workers_warn_print_and_die(tmp_path: Path) -> None:
    warned = _run(tmp_path, "warns_and_prints", 2, "--quiet")
    assert warned.returncode == 0, warned.stderr[-2000:]
    assert warned.stderr == ""  # no Ray token warning, no `(trainable pid=...)` warnings or prints
    assert warned.stdout.startswith("done: study 'console' has 2/2 finished trials") and warned.stdout.count("\n") == 1


def test_a_dying_worker_gets_tuners_one_line_not_rays_console_output(tmp_path: Path) -> None:
    """Trial 1 kills its own worker: Ray printed the raylet's OOM guesses, Tune's ERROR and a traceback."""
    run = _run(tmp_path, "kills_worker", 3)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stderr.splitlines()
    assert lines[0].startswith(f"starting study 'console' (minimize value) in sqlite:///{tmp_path / 'c.db'}: "
                               f"0/3 trials finished")
    assert [line for line in lines if " failed: " in line] == [
        next(line for line in lines if line.startswith("trial 1 failed: WorkerDied: the worker process running this "
                                                       "trial died"))]
    everything = run.stdout + run.stderr
    for ray_text in ("(raylet)", "OOM", "Traceback", "ERROR", "Token authentication", "Trials did not complete"):
        assert ray_text not in everything, everything[-3000:]
    assert run.stdout == ""


def test_a_second_run_of_a_running_study_is_refused_before_ray_starts(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal came after Ray's start (about 4 s): the lease is read first now."""
    import tuner
    from tuner.engine import _driver
    from tests.engine._faults import finished_snapshot, wait_for

    spec = tmp_path / "console.yaml"
    spec.write_text(SPEC.format(objective="slow_steps", n_trials=20))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    first = subprocess.Popen(tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "1", "--quiet"), cwd=ROOT,
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(r[0] == "RUNNING" for r in finished_snapshot(url, "console").values()), 120, first)

        def no_ray(*args: object, **kwargs: object) -> bool:
            raise AssertionError("Ray was started for a run that must be refused")

        monkeypatch.setattr(_driver, "_init_ray_importing_tune", no_ray)
        with pytest.raises(tuner.UserInputError, match=f"study 'console' is being run right now by pid {first.pid} "):
            tuner.run(str(spec), storage=url)
    finally:
        first.send_signal(signal.SIGINT)
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err[-2000:]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-n", "0"]))
