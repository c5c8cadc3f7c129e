"""Faults a long study meets, injected for real: repeated kill -9 of the driver (with what the
next run recovers), a PostgreSQL restart and a longer outage, eight trials writing one SQLite
file at once, and a disk that fills up.

The short forms run here; ``python -m bench soak`` runs the long forms (ten kills, more trials).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import small_disk_at
from tests.engine import _faults
from tuner.engine import _attrs


def test_repeated_sigkill_then_rerun_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of ``tuner run`` three times (once while it starts, twice with trials in flight),
    a re-run after each: exactly n_trials finish, nothing is left RUNNING, no trial is lost or
    doubled, and each trial a kill caught in flight either finished in its orphaned worker or
    was failed as ``DriverLost`` by the next run's recovery."""
    report = _faults.sigkill_cycles(tmp_path, kills=3, n_trials=10, seed=1)
    assert report.kills == 3, report  # every kill landed on a live driver
    assert report.final_rc == 0, report.final_stderr[-3000:]
    assert report.lost == []  # no trial finished before a kill disappeared or changed after it
    finished = report.final.get("COMPLETE", 0) + report.final.get("PRUNED", 0)
    assert finished == 10 and "RUNNING" not in report.final, report.final
    assert max(report.running_at_kill) >= 1 and report.in_flight  # the kills really caught trials mid-flight
    trials = optuna.load_study(study_name="killed1", storage=f"sqlite:///{tmp_path / 'kill.db'}").get_trials()
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # numbered once each, no gap
    for t in trials:
        if t.number in report.in_flight:
            assert t.state == TrialState.COMPLETE or (
                t.state == TrialState.FAIL and t.system_attrs[_attrs.ERROR]["type"] == "DriverLost"), t
        else:
            assert t.state == TrialState.COMPLETE, t


CHATTY_SPEC = """\
name: chatty
objective: tests.objectives:chatty
search_space:
  params:
    x: {float: [0.0, 1.0]}
n_trials: 32
concurrency: 8
pruner: none
seed: 2
"""


def test_sqlite_with_eight_concurrent_writers_never_locks(tmp_path: Path) -> None:
    spec = tmp_path / "chatty.yaml"
    spec.write_text(CHATTY_SPEC)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    out = subprocess.run(_faults.tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "8"), cwd=_faults.ROOT,
                         env=_faults.ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "database is locked" not in out.stderr
    study = optuna.load_study(study_name="chatty", storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 32
    assert all(len(t.intermediate_values) == 20 for t in trials)  # every one of the 640 reports landed
    overlap = max(sum(1 for u in trials if u.datetime_start <= t.datetime_start <= u.datetime_complete)
                  for t in trials)
    assert overlap >= 4  # trials really wrote at the same time


DISK_SPEC = """\
name: diskfull
task: mlp
task_args: {{dataset: digits, max_samples: 400}}
search_space:
  params:
    n_layers: 1
    width: 256
    lr: {{float: [0.001, 0.01], log: true}}
    epochs: 2
    batch_size: 64
n_trials: 2
concurrency: 1
pruner: none
seed: 0
artifacts_dir: {artifacts}
"""


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 16 KiB tmpfs: a checkpoint of a 256-wide MLP (70 KB) does not fit.

    Mounting needs root (which CI has here). Elsewhere the test is skipped: it used to plant
    trial folders whose checkpoint name linked to /dev/full, but a trial never takes a folder
    that exists (another study's), so it cannot be handed one prepared in advance.
    """
    with small_disk_at(tmp_path / "small_disk", 16) as folder:
        yield folder


def _run_warned(tmp_path: Path, spec_text: str, expected: str, per_trial: int = 1) -> str:
    """Run a 2-trial spec quietly; it must succeed and print ``per_trial`` warnings per trial, each
    containing ``expected``."""
    spec = tmp_path / "warned.yaml"
    spec.write_text(spec_text)
    url = f"sqlite:///{tmp_path / 'warned.db'}"
    out = subprocess.run(_faults.tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "1", "--quiet"),
                         cwd=_faults.ROOT, env=_faults.ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: trial")]
    assert len(warnings) == 2 * per_trial and all(expected in w for w in warnings), out.stderr[-2000:]
    return url


def test_disk_full_keeps_the_trials_values_and_says_why(tmp_path: Path, full_disk: Path) -> None:
    # each trial says once that its resume points could not be saved, and that its checkpoint was not
    url = _run_warned(tmp_path, DISK_SPEC.format(artifacts=full_disk), "No space left on device", per_trial=2)
    study = optuna.load_study(study_name="diskfull", storage=url)
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE and 0.0 < t.value <= 1.0  # the values are recorded
        assert "No space left on device" in t.system_attrs[_attrs.ATTR_PREFIX + "artifact_warning"]
        trial_dir = Path(t.system_attrs[_attrs.WORKER]["trial_dir"])
        assert not (trial_dir / "best.pt").exists()
        assert not any(p.name == "best.pt.tmp" and not p.is_symlink() for p in trial_dir.iterdir())
        assert not any(p.name.startswith("resume.pt") for p in trial_dir.iterdir())
    export = subprocess.run(_faults.tuner_cmd("export", "diskfull", "--storage", url, "-o", str(tmp_path / "exp")),
                            cwd=_faults.ROOT, env=_faults.ENV, capture_output=True, text=True, timeout=300)
    assert export.returncode == 2 and export.stderr.count("\n") == 1, export.stderr[-2000:]
    assert "Traceback" not in export.stderr


UNWRITABLE_SPEC = """\
name: nowrite
objective: tests.objectives:writes_checkpoint
search_space:
  params:
    x: {{float: [0.0, 1.0]}}
n_trials: 2
concurrency: 1
pruner: none
seed: 0
artifacts_dir: {artifacts}
"""


def test_unusable_artifacts_folder_keeps_the_trials_and_says_where_files_went(tmp_path: Path) -> None:
    """artifacts_dir under a regular file cannot be created (even by root): each trial runs in a
    scratch folder, its values and files are recorded, and the run prints why."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the artifacts folder should be")
    url = _run_warned(tmp_path, UNWRITABLE_SPEC.format(artifacts=blocker / "runs"), "unusable (Not a directory)")
    for t in optuna.load_study(study_name="nowrite", storage=url).get_trials():
        assert t.state == TrialState.COMPLETE and t.value == t.params["x"]
        assert "unusable" in t.system_attrs[_attrs.ATTR_PREFIX + "artifact_warning"]
        (artifact,) = t.system_attrs[_attrs.ARTIFACTS]
        assert artifact["name"] == "model.txt" and "tuner-scratch" in artifact["uri"]


def test_postgres_restart_is_ridden_out_and_a_longer_outage_stops_cleanly_and_resumes(tmp_path: Path,
                                                                                      postgres_url: str) -> None:
    """One run on PostgreSQL meets two outages. A server restart, shorter than the retry window
    (TUNER_STORAGE_RETRY_S), is ridden out: every storage call is retried until the server is
    back, and trials go on finishing in the same run. A stop longer than the window ends the run
    with one line saying how to resume (exit 2, no traceback); finished trials are kept through
    both, and the re-run finishes the study. (One scenario: a run on PostgreSQL costs a Ray start.)
    A `tuner watch` follows the run from another process through both outages: it retries the
    lost database with one line, and ends when it finds the run gone."""
    spec = tmp_path / "down.yaml"
    spec.write_text(_faults.SLOW_SPEC.format(name="pgdown", n_trials=10, concurrency=2, seed=6))
    cmd = _faults.tuner_cmd("run", str(spec), "--storage", postgres_url, "--num-cpus", "2", "--quiet")
    proc = subprocess.Popen(cmd, cwd=_faults.ROOT, env={**_faults.ENV, "TUNER_STORAGE_RETRY_S": "10"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = subprocess.Popen(_faults.tuner_cmd("watch", "pgdown", "--storage", postgres_url, "--wait", "--interval",
                                               "0.3"), cwd=_faults.ROOT, env=_faults.ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    version = sorted(os.listdir("/etc/postgresql"))[0]

    def complete() -> int:
        return _faults.states(_faults.finished_snapshot(postgres_url, "pgdown")).get("COMPLETE", 0)

    try:
        assert _faults.wait_for(lambda: complete() >= 2, 180, proc), proc.communicate(timeout=60)
        first = _faults.finished_snapshot(postgres_url, "pgdown")
        started_at = _faults.postgres_start_time()
        _faults.postgres_restart()
        assert _faults.postgres_start_time() != started_at  # the server really restarted
        at_restart = complete()
        assert _faults.wait_for(lambda: complete() >= at_restart + 2, 180, proc)
        assert proc.poll() is None, proc.communicate(timeout=60)  # the same run went on
        before = _faults.finished_snapshot(postgres_url, "pgdown")
        assert _faults.lost_or_changed(first, before) == []
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"], check=True, timeout=120)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], timeout=120)
        try:
            watched, watch_err = watch.communicate(timeout=120)
        finally:
            if watch.poll() is None:
                watch.kill()
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("error: lost the storage for 10s") and "run the same command again to resume" in last
    assert _faults.wait_for(lambda: bool(_faults.postgres_start_time()), 60)
    at_stop = _faults.finished_snapshot(postgres_url, "pgdown")
    assert _faults.lost_or_changed(before, at_stop) == []
    # The watch: through both outages, every finished trial told once, and the stopped run seen as stopped.
    assert watch.returncode == 1 and watch_err == "", (watched[-3000:], watch_err[-2000:])
    lines = watched.splitlines()
    told = sorted(int(line.split()[1]) for line in lines if line.startswith("trial "))
    finished = sorted(n for n, (state, _values, _params) in at_stop.items() if state in ("COMPLETE", "PRUNED", "FAIL"))
    assert told == finished, (told, at_stop)
    assert any(line.startswith("the storage did not answer (") for line in lines), watched[-3000:]
    assert "the storage answers again" in lines and "Traceback" not in watched
    # the run could not give the study up (the database was down as it ended): told as such
    assert lines[-1].startswith("the run ended without giving the study up (killed, crashed, or cut off from the "
                                "storage; the next run marks its running trials FAIL): study 'pgdown' stopped"), lines[-1]
    rerun = subprocess.run(cmd, cwd=_faults.ROOT, env=_faults.ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    final = _faults.states(_faults.finished_snapshot(postgres_url, "pgdown"))
    assert final.get("COMPLETE", 0) == 10 and "RUNNING" not in final, final
