"""A built-in task's trial cut short by a Ctrl-C goes on from its last epoch in the next run.

A real `tuner run` of an MLP study is interrupted once its trial has finished a few epochs; the
same command then runs that configuration again (``rerun_unfinished``), from the interrupted
trial's ``resume.pt``: the epochs it had are reported again as they were, not trained again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.engine._faults import ENV

SPEC = """\
name: resumed
task: mlp
task_args: {dataset: digits}
search_space:
  params:
    lr: {float: [0.001, 0.003], log: true}
    n_layers: 2
    width: [384, 384]
    batch_size: 8
    epochs: 40
    early_stopping_patience: 0
n_trials: 1
concurrency: 1
pruner: none
seed: 2
"""


def _trials(url: str) -> list:
    from tests._study_read import read_trials

    try:
        return read_trials(url, "resumed")
    except KeyError:  # the run has not created the study yet
        return []


def test_a_trial_stopped_by_ctrl_c_goes_on_from_its_last_epoch_in_the_next_run(tmp_path: Path) -> None:
    spec = tmp_path / "resumed.yaml"
    spec.write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    cmd = [sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--num-cpus", "1",
           "--artifacts-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(len(t.intermediate_values) >= 3 for t in _trials(url)):
        assert time.monotonic() < deadline and proc.poll() is None, "the trial never reached its third epoch"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    [cut] = _trials(url)
    assert cut.state.name == "FAIL" and cut.system_attrs["tuner:error"]["type"] == "Interrupted"
    assert 3 <= len(cut.intermediate_values) < 40, cut.intermediate_values  # stopped in the middle
    folder = Path(cut.system_attrs["tuner:worker"]["trial_dir"])
    assert (folder / "resume.pt").is_file()

    again = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    [rerun] = [t for t in _trials(url) if t.number == 1]
    assert rerun.state.name == "COMPLETE" and rerun.system_attrs["tuner:rerun_of"] == 0
    resumed_at = rerun.system_attrs["tuner:attr:resumed_at_epoch"]
    # it went on from the last point the interrupted trial saved (after epoch 1 always; then as often
    # as 2% of the training pays for: tuner.tasks._resume.TIME_SHARE)
    assert 1 <= resumed_at <= len(cut.intermediate_values), resumed_at
    assert sorted(rerun.intermediate_values) == list(range(1, 41))
    # the epochs it took over, and those it trained again after its point, as the cut trial had them
    assert {s: rerun.intermediate_values[s] for s in cut.intermediate_values} == cut.intermediate_values
    took_over = [row for row in rerun.system_attrs["tuner:curve"] if row["step"] <= resumed_at]
    assert took_over == [row for row in cut.system_attrs["tuner:curve"] if row["step"] <= resumed_at]  # same times
    assert rerun.system_attrs["tuner:metrics"]["epochs_run"] == 40
    assert not (folder / "resume.pt").exists()  # its job is done
    assert not (Path(rerun.system_attrs["tuner:worker"]["trial_dir"]) / "resume.pt").exists()

    shown = subprocess.run([sys.executable, "-m", "tuner.cli", "trial", "resumed", "1", "--storage", url],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert (f"(trial 0's parameters, run again from the end of its epoch {resumed_at}: its run left it unfinished)"
            in shown.stdout.splitlines()[0]), shown.stdout
