"""`tuner watch`: following a study another process runs, from the storage alone.

The run is played by the test, writing to a real SQLite file or PostgreSQL database between the
watch's polls (its ``sleep``), with a live lease of this process as the run's driver; one
test follows a real `tuner run` in another process (tests/test_cli.py's study).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Callable

import optuna
import pytest
import sqlalchemy.exc
from click.testing import CliRunner
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tuner import _watch
from tuner import storage as st
from tuner._watch import _Trials, watch
from tuner.cli import main
from tuner.engine import _attrs
from tuner.engine._progress import Progress
from tuner.engine._study import _own_record, record_run
from tuner.exceptions import StudyNotFoundError, UserInputError

_X = {"x": FloatDistribution(0.0, 1.0)}


def _study(url: str, *, n_trials: int = 4, directions: tuple[str, ...] = ("maximize",),
           metrics: tuple[str, ...] = ("acc",), running: bool = True) -> optuna.Study:
    study = optuna.create_study(study_name="w", storage=st.open_storage(url), directions=list(directions))
    study.set_metric_names(list(metrics))
    study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, {"n_trials": n_trials, "max_failures": 5})
    if running:  # this process stands for the run's driver: its lease is alive
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, _own_record())
    return study


def _end_run(study: optuna.Study, **run: Any) -> None:
    """The run gives the study up, logging itself first (``run``: its entry) as the driver does."""
    if run:  # as the driver logs it: its start is the process's, a little before it took the lease
        lease = study._storage.get_study_system_attrs(study._study_id)[_attrs.DRIVER]
        record_run(study, {"started": lease["started"] - 3.0, "ended": lease["started"] + 1.0, "host": lease["host"],
                           "pid": lease["pid"], **run, "claimed": lease["started"]})
    study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, None)


def _script(*steps: Callable[[], None]) -> Callable[[float], None]:
    """A ``sleep`` for the watch that plays the run: step k runs at the watch's k-th pause."""
    pending = list(steps)

    def sleep(seconds: float) -> None:
        assert seconds == 0.5
        if pending:
            pending.pop(0)()

    return sleep


def _lines(out: io.StringIO) -> list[str]:
    return [re.sub(r"\[ *[0-9.]+s\] ", "", line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_watch_prints_each_trial_as_the_run_did_and_ends_with_the_run(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = _study(url)
    study.tell(study.ask(_X), 0.5)  # trial 0: finished before the watch
    running = study.ask(_X)  # trial 1: running when the watch starts

    def first() -> None:
        study.tell(study.ask(_X), 0.9)  # trial 2 finishes before trial 1: printed first
        for step, value in ((1, 0.3), (2, 0.2), (3, 0.1)):
            running.report(value, step)
        study.tell(running, state=TrialState.PRUNED)

    def second() -> None:
        failed = study.ask(_X)  # trial 3
        study._storage.set_trial_system_attr(failed._trial_id, _attrs.ERROR,
                                             {"type": "ValueError", "message": "boom", "traceback": ""})
        study.tell(failed, state=TrialState.FAIL)
        study.tell(study.ask(_X), 0.7)  # trial 4: the fourth finished trial
        _end_run(study, end="done", complete=3, pruned=1, failed=1, stopped_unfinished=0)

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, progress=Progress(stream=out, live=False), sleep=_script(first, second))
    lines = _lines(out)
    assert lines[0].startswith(f"watching study 'w' (maximize acc) in {st.redact(url)}: 1/4 trials finished; run by pid ")
    assert [line.split("  running")[0] for line in lines[1:5]] == [
        "trial 2 complete value=0.9 | finished 2/4",
        "trial 1 pruned at step 3 value=0.1 | finished 3/4",
        "trial 3 failed: ValueError: boom | finished 3/4",
        "trial 4 complete value=0.7 | finished 4/4"]
    # each line carries the counts as they stood when its trial finished, not the poll's last ones
    assert [line.split("  ", 2)[2] for line in lines[1:5]] == [
        "complete 2  pruned 0  failed 0  best 0.9", "complete 2  pruned 1  failed 0  best 0.9",
        "complete 2  pruned 1  failed 1  best 0.9", "complete 3  pruned 1  failed 1  best 0.9"]
    assert lines[5:] == ["the run ended (done; this run: 3 complete, 1 pruned, 1 failed): study 'w' finished, 4/4 "
                         "trials finished (3 complete, 1 pruned, 1 failed); best 0.9"]
    assert (summary.state, summary.seen, summary.counts) == ("finished", 4, {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1})


def test_each_poll_reads_only_new_and_unfinished_trials(tmp_path: Path) -> None:
    """A poll's cost must not grow with the study: 300 finished trials are never read again."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=1000)
    for i in range(300):
        study.tell(study.ask(_X), i / 300)
    held = study.ask(_X)
    trials = _Trials(st.open_storage(url, readonly=True).engine, study._study_id)
    assert trials.counts == {"COMPLETE": 300, "RUNNING": 1} and list(trials.unfinished) == [held._trial_id]
    rows_read: list[int] = []
    engine = trials._engine

    class _Counting:  # the engine, counting the rows each query returns
        def connect(self) -> Any:
            outer = engine.connect()

            class _Conn:
                def __enter__(self) -> "_Conn":
                    self.conn = outer.__enter__()
                    return self

                def __exit__(self, *exc: Any) -> None:
                    outer.__exit__(*exc)

                def execute(self, statement: Any) -> Any:
                    rows = self.conn.execute(statement).all()
                    rows_read.append(len(rows))
                    return type("Result", (), {"all": lambda _self: rows})()

            return _Conn()

    trials._engine = _Counting()
    study.tell(held, 0.5)
    study.tell(study.ask(_X), 0.1)
    assert trials.poll() == [held._trial_id, held._trial_id + 1] and trials.unfinished == {}
    assert trials.counts == {"COMPLETE": 302} and rows_read == [2]
    assert trials.poll() == [] and rows_read == [2, 0]  # nothing new: nothing read, nothing told twice


def test_a_study_no_run_is_running_gets_its_standing_and_the_exit_code_says_how_it_ended(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=10, running=False)
    for value in (0.2, 0.4):
        study.tell(study.ask(_X), value)
    out = CliRunner().invoke(main, ["watch", "w", "--storage", url])
    assert out.exit_code == 1, out.output  # stopped short of n_trials
    assert out.output == (f"study 'w' (maximize acc) in {url} is not running: stopped, 2/10 trials finished "
                          f"(2 complete, 0 pruned, 0 failed); best 0.4; run its spec again to resume it "
                          f"(--wait waits for a run to start)\n")
    for _ in range(8):
        study.tell(study.ask(_X), 0.1)
    assert CliRunner().invoke(main, ["watch", "w", "--storage", url]).exit_code == 0  # finished


def test_wait_waits_for_the_study_and_its_run_to_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with pytest.raises(UserInputError, match="no storage at"):  # without --wait: the usual one-line error
        watch("w", url, interval=0.5, progress=Progress(stream=io.StringIO(), live=False))
    made: dict[str, optuna.Study] = {}

    def create() -> None:
        made["study"] = _study(url, n_trials=1, running=False)

    def start() -> None:
        made["study"]._storage.set_study_system_attr(made["study"]._study_id, _attrs.DRIVER, _own_record())

    def finish() -> None:
        made["study"].tell(made["study"].ask(_X), 0.8)
        _end_run(made["study"])

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, wait=True, progress=Progress(stream=out, live=False),
                    sleep=_script(create, start, finish))
    lines = _lines(out)
    assert lines[0] == f"waiting for study 'w' to be created in {url} (Ctrl-C stops waiting)"
    assert lines[1] == "waiting for a run of study 'w' to start (it is stopped; Ctrl-C stops waiting)"
    assert lines[2].startswith("watching study 'w' (maximize acc)") and lines[3].startswith("trial 0 complete value=0.8")
    assert summary.state == "finished"
    with pytest.raises(StudyNotFoundError):
        watch("other", url, interval=0.5, progress=Progress(stream=io.StringIO(), live=False))


@pytest.mark.parametrize("stored", ["none yet", "the last run's"])
def test_a_watch_that_began_before_the_run_recorded_its_spec_reads_the_runs_target(stored: str,
                                                                                  tmp_path: Path) -> None:
    """A run takes the study, then records its spec: a watch that read the study in between saw
    no spec (a new study) or the previous run's (a resume with a raised n_trials). It counts
    against the running spec's target from its next poll on."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=1)
    study.tell(study.ask(_X), 0.5)
    if stored == "none yet":
        study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, None)

    def record_spec_and_finish_a_trial() -> None:
        study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, {"n_trials": 2, "max_failures": 5})
        study.tell(study.ask(_X), 0.7)

    def end() -> None:
        _end_run(study, end="done", complete=1, pruned=0, failed=0, stopped_unfinished=0)

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, progress=Progress(stream=out, live=False),
                    sleep=_script(record_spec_and_finish_a_trial, end))
    lines = _lines(out)
    assert ": 1 trials finished; run by pid " in lines[0] if stored == "none yet" else ": 1/1 trials finished;" in lines[0]
    assert lines[1].startswith("trial 1 complete value=0.7 | finished 2/2"), lines
    assert lines[-1] == ("the run ended (done; this run: 1 complete, 0 pruned, 0 failed): study 'w' finished, 2/2 trials "
                         "finished (2 complete, 0 pruned, 0 failed); best 0.7")
    assert summary.n_trials == 2 and summary.state == "finished"


def test_several_objectives_are_followed_by_their_pareto_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=3, directions=("maximize", "minimize"), metrics=("acc", "size"))
    study.tell(study.ask(_X), [0.9, 100.0])

    def run() -> None:
        study.tell(study.ask(_X), [0.8, 200.0])  # dominated
        study.tell(study.ask(_X), [0.95, 300.0])
        _end_run(study)

    out = io.StringIO()
    watch("w", url, interval=0.5, progress=Progress(stream=out, live=False), sleep=_script(run))
    lines = _lines(out)
    assert lines[0].startswith("watching study 'w' (maximize acc, minimize size)")
    assert lines[1].endswith("pareto front 1") and lines[2].endswith("pareto front 2")
    assert lines[3].endswith("; pareto front of 2 trials (tuner best w lists them)")


def test_a_storage_that_stops_answering_is_tried_again_with_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The outage itself is real elsewhere (tests/engine/test_faults.py stops PostgreSQL under a
    run); here the watch's handling of the error a lost database raises: said once, retried."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=2)
    lost = sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))
    real_poll, real_read = _Trials.poll, _watch._read
    poll_fails = iter([True, True])
    read_fails = iter([False, True])  # the second read: after the poll that found trial 1 finished

    def poll(self: _Trials) -> list[int]:
        if next(poll_fails, False):
            raise lost
        return real_poll(self)

    def read(study: optuna.Study, trial_ids: list[int]) -> list[Any]:
        if trial_ids and next(read_fails, False):
            raise lost
        return real_read(study, trial_ids)

    monkeypatch.setattr(_Trials, "poll", poll)
    monkeypatch.setattr(_watch, "_read", read)

    def first() -> None:
        study.tell(study.ask(_X), 0.3)

    def second() -> None:
        study.tell(study.ask(_X), 0.6)
        _end_run(study)

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, progress=Progress(stream=out, live=False),
                    sleep=_script(lambda: None, first, second))
    lines = _lines(out)
    assert lines[1] == "the storage did not answer (server closed the connection); trying again every 0.5s"
    assert lines[2] == "the storage answers again" and lines[3].startswith("trial 0 complete value=0.3")
    # trial 1 was found finished by a poll whose read then failed: it is told once the storage answers
    assert lines[4:7] == [lines[1], "the storage answers again", lines[6]] and lines[6].startswith("trial 1 complete")
    assert summary.state == "finished" and summary.seen == 2


def test_a_bad_interval_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _study(url, running=False)
    for bad in ("0", "-1", "nan", "inf", "1e300", "86401"):  # inf and 1e300 overflowed time.sleep
        for wait in ([], ["--wait"]):
            out = CliRunner().invoke(main, ["watch", "w", "--storage", url, "--interval", bad, *wait])
            assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
            assert out.output.startswith("error: --interval must be a number of seconds > 0 and at most 86400 (a day)")


RUN_SPEC = """\
name: followed
objective: tests.objectives:curve
search_space:
  params:
    x: {float: [0.0, 4.0]}
metric: loss
n_trials: 5
concurrency: 1
sampler: random
pruner: {name: median, args: {n_startup_trials: 1, n_warmup_steps: 2}}
seed: 5
"""


def test_a_real_run_watched_from_another_process_gets_the_runs_own_trial_lines(tmp_path: Path) -> None:
    """`tuner run` in the background and `tuner watch --wait` started at the same moment, as a user
    would: the watch waits for the database and the study, then prints what the run printed."""
    import subprocess

    from tests.engine._faults import ENV, ROOT, tuner_cmd

    spec = tmp_path / "followed.yaml"
    spec.write_text(RUN_SPEC)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    run = subprocess.Popen(tuner_cmd("run", str(spec), "--storage", url, "--num-cpus", "1"), cwd=ROOT, env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = subprocess.run(tuner_cmd("watch", "followed", "--storage", url, "--wait", "--interval", "0.3"),
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    run_err = run.communicate(timeout=300)[1]
    assert run.returncode == 0 and watched.returncode == 0, (run_err[-2000:], watched.stdout, watched.stderr)

    def trial_lines(text: str) -> list[str]:
        return sorted(line.split(" | ")[0] for line in text.splitlines() if line.startswith("trial "))

    assert len(trial_lines(run_err)) == 5 and trial_lines(watched.stdout) == trial_lines(run_err)
    last = watched.stdout.splitlines()[-1]  # the run's own entry in the run log says how it ended
    assert re.fullmatch(r"the run ended \(done; this run: (\d) complete, (\d) pruned, 0 failed\): study 'followed' "
                        r"finished, 5/5 trials finished \(\1 complete, \2 pruned, 0 failed\); best .*", last), last
    assert watched.stderr == ""


def test_a_storage_lost_while_the_watch_waits_for_a_run_is_waited_for_too(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`tuner watch --wait` for a run a scheduler will start: a database restart meanwhile raised
    SQLAlchemy's error out of the watch (a traceback) instead of the one line and a retry."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=1, running=False)
    real_init = _Trials.__init__
    fails = iter([False, True, True])

    def init(self: _Trials, engine: Any, study_id: int) -> None:
        if next(fails, False):
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))
        real_init(self, engine, study_id)

    monkeypatch.setattr(_Trials, "__init__", init)

    def start() -> None:
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, _own_record())

    def finish() -> None:
        study.tell(study.ask(_X), 0.4)
        _end_run(study)

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, wait=True, progress=Progress(stream=out, live=False),
                    sleep=_script(lambda: None, start, lambda: None, finish))
    lines = _lines(out)
    assert lines[:2] == ["waiting for a run of study 'w' to start (it is stopped; Ctrl-C stops waiting)",
                         "the storage did not answer (server closed the connection); trying again every 0.5s"]
    assert lines[2].startswith("watching study 'w'") and summary.state == "finished"


def test_a_stopped_runs_unfinished_trials_are_told_apart_and_do_not_make_the_study_failed(tmp_path: Path) -> None:
    """A Ctrl-C ends the run's running trials, stored FAIL as ``Interrupted``. The run prints no
    failure line for them and counts them apart, and so does the watch. The study's state comes
    from the run log: its FAIL trials over all runs (2 failures in an earlier run, 1 trial the
    Ctrl-C ended) are more than ``max_failures=2``, but no run stopped on failures, so the study
    is ``stopped`` (exit 1), not ``failed`` (exit 3), as it was judged before."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=10, running=False)
    study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, {"n_trials": 10, "max_failures": 2})
    for _ in range(2):
        failed = study.ask(_X)
        study._storage.set_trial_system_attr(failed._trial_id, _attrs.ERROR,
                                             {"type": "ValueError", "message": "boom", "traceback": ""})
        study.tell(failed, state=TrialState.FAIL)
    record_run(study, {"started": 1.0, "ended": 2.0, "host": "h", "pid": 1, "end": "timeout", "complete": 0,
                       "pruned": 0, "failed": 2, "stopped_unfinished": 0})
    study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, _own_record())
    cut = study.ask(_X)

    def interrupted() -> None:
        study.tell(study.ask(_X), 0.5)
        study._storage.set_trial_system_attr(cut._trial_id, _attrs.ERROR, {
            "type": "Interrupted", "message": "the run was interrupted before this trial finished", "traceback": ""})
        study.tell(cut, state=TrialState.FAIL)
        _end_run(study, end="interrupted", complete=1, pruned=0, failed=0, stopped_unfinished=1)

    out = io.StringIO()
    summary = watch("w", url, interval=0.5, progress=Progress(stream=out, live=False), sleep=_script(interrupted))
    lines = _lines(out)
    assert [line for line in lines if line.startswith("trial ")] == [
        "trial 3 complete value=0.5 | finished 1/10  running 0  complete 1  pruned 0  failed 2  best 0.5"]
    assert lines[-1] == ("the run ended (interrupted; this run: 1 complete, 0 pruned, 0 failed, 1 stopped unfinished): "
                         "study 'w' stopped, 1/10 trials finished (1 complete, 0 pruned, 2 failed, 1 stopped "
                         "unfinished); best 0.5; run its spec again to resume it")
    assert (summary.state, summary.stopped_unfinished) == ("stopped", 1)
    assert CliRunner().invoke(main, ["watch", "w", "--storage", url]).exit_code == 1
    # a later watch counts the stopped trial apart from the start
    assert "(1 complete, 0 pruned, 2 failed, 1 stopped unfinished)" in CliRunner().invoke(
        main, ["watch", "w", "--storage", url]).output
    # the run log decides: a last run that stopped at max_failures makes the study failed
    record_run(study, {"started": 3.0, "ended": 4.0, "host": "h", "pid": 2, "end": "max_failures", "complete": 0,
                       "pruned": 0, "failed": 3, "stopped_unfinished": 0})
    assert CliRunner().invoke(main, ["watch", "w", "--storage", url]).exit_code == 3


def test_a_run_that_dies_is_told_as_killed(tmp_path: Path) -> None:
    """A run killed with SIGKILL logs nothing and keeps the study's lease: the watch, which sees its
    process gone, says so and ends, where the run's trials are left RUNNING. An earlier run of the
    same host and pid (a notebook's, a container's) that ended well is not taken for it."""
    import signal
    import subprocess

    from tuner.engine._study import _proc_start_time

    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=3, running=False)
    driver = subprocess.Popen(["sleep", "120"])
    try:
        lease = {**_own_record(), "pid": driver.pid, "proc_start": _proc_start_time(driver.pid)}
        record_run(study, {"started": lease["started"] - 100, "ended": lease["started"] - 50, "host": lease["host"],
                           "pid": driver.pid, "end": "done", "complete": 7, "pruned": 0, "failed": 0,
                           "claimed": lease["started"] - 99})
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, lease)
        study.ask(_X)  # left RUNNING by the killed run

        def kill() -> None:
            study.tell(study.ask(_X), 0.2)
            driver.send_signal(signal.SIGKILL)
            driver.wait()

        out = io.StringIO()
        summary = watch("w", url, interval=0.5, progress=Progress(stream=out, live=False), sleep=_script(kill))
    finally:
        driver.kill()
        driver.wait()
    assert _lines(out)[-1] == ("the run ended without giving the study up (killed, crashed, or cut off from the storage; the next run marks its "
                               "running trials FAIL): study 'w' stopped, 1/3 trials finished (1 complete, 0 pruned, "
                               "0 failed); best 0.2; run its spec again to resume it")
    assert summary.state == "stopped" and summary.run is None


def test_a_trial_stopped_between_the_watchs_first_two_reads_is_counted_once(tmp_path: Path) -> None:
    """The watch reads the trials' states, then which failures were a stop's: a trial RUNNING at
    the first read and ended by a Ctrl-C before the second is counted when a poll sees it end."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    study = _study(url, n_trials=5)
    running = study.ask(_X)
    trials = _Trials(st.open_storage(url, readonly=True).engine, study._study_id)
    study._storage.set_trial_system_attr(running._trial_id, _attrs.ERROR, {
        "type": "Interrupted", "message": "the run was interrupted before this trial finished", "traceback": ""})
    study.tell(running, state=TrialState.FAIL)
    trials.count_stopped()
    assert trials.stopped == 0
    out = io.StringIO()
    finished = _watch._read(study, trials.poll())
    assert _watch._tell_all(Progress(stream=out, live=False), finished, trials, 5) == 1
    assert trials.stopped == 1 and trials.counts == {"FAIL": 1} and out.getvalue() == ""
    assert _watch._RunView(trials, 5).failed == 0


def test_a_lost_runs_entry_is_told_without_counts() -> None:
    lost = {"end": "lost", "complete": None, "pruned": None, "failed": None, "stopped_unfinished": 2}
    assert _watch._run_text(lost, died=False) == (
        " (lost (killed, crashed, or cut off from the storage); the next run marked the 2 trials it left running FAIL)")
