"""Creating or resuming the stored study at the start of a run (tuner/engine/_study.py)."""

from __future__ import annotations

import multiprocessing.synchronize
import os
import socket
from pathlib import Path
from typing import Any

import optuna
import pytest

from tuner import storage as st
from tuner.engine import _attrs, _study
from tuner.engine._study import DriverLease, _proc_start_time, open_for_run, record_spec
from tuner.exceptions import UserInputError
from tuner.spec import spec_from_mapping

_SPEC = {"name": "raced", "objective": "tests.objectives:slow_steps", "n_trials": 2,
         "search_space": {"params": {"x": {"float": [0.0, 1.0]}}}}


class _LookedEarly(optuna.storages.RDBStorage):
    """A storage whose list of studies was read just before another run created ``raced``."""

    def get_all_studies(self) -> list[optuna.study.FrozenStudy]:
        return []


def test_a_study_created_by_another_run_between_look_and_create_is_a_one_line_refusal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'raced.db'}"
    st.open_storage(url)
    other = optuna.create_study(study_name="raced", storage=url)
    other.enqueue_trial({"x": 0.5})
    storage = _LookedEarly(url, skip_table_creation=True)
    try:
        with pytest.raises(UserInputError, match="created by another run at the same moment.*run this command again"):
            open_for_run(storage, spec_from_mapping(_SPEC), force=False)
        # The other run's study is left exactly as it was.
        (kept,) = optuna.get_all_study_summaries(url)
        assert kept.study_name == "raced" and kept.n_trials == 1
    finally:
        storage.engine.dispose()
        st._CACHE.pop((url, False)).engine.dispose()


def _acquire_together(url: str, start: "multiprocessing.synchronize.Barrier",
                      done: "multiprocessing.synchronize.Barrier", results: "multiprocessing.Queue[str]") -> None:
    """One of several drivers that take the lease of one study at the same moment."""
    study = optuna.load_study(study_name="raced", storage=st.open_storage(url))
    start.wait(timeout=60)
    try:
        DriverLease(study).acquire()
        results.put("acquired")
    except UserInputError as exc:
        results.put(f"refused: {exc}")
    done.wait(timeout=60)  # the winner stays alive (its lease live) until every racer has tried


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_drivers_started_at_the_same_moment_get_one_lease(backend: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    """Two runs of one study started together (a scheduler's retry, two terminals): exactly one
    drives it; the others are refused naming it, instead of both passing the check and writing."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'lease.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    st.open_storage(url)
    optuna.create_study(study_name="raced", storage=url)
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):  # three rounds: without an atomic claim most rounds let two drivers in
        start, done, results = ctx.Barrier(3), ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_acquire_together, args=(url, start, done, results)) for _ in range(3)]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=120) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes[0] == "acquired" and all(o.startswith("refused: study 'raced' is being run right now by pid")
                                                 for o in outcomes[1:]), outcomes


def _lease_row(url: str) -> Any:
    storage = st.open_storage(url)
    study_id = storage.get_study_id_from_name("raced")
    return storage.get_study_system_attrs(study_id).get(_attrs.DRIVER)


def test_a_lease_taken_over_is_neither_renewed_nor_erased_by_its_old_driver(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Driver A's heartbeat went stale (a long storage outage) and run B took the study over:
    A's heartbeat notices, stops, and A's release leaves B's lease alone."""
    import time

    monkeypatch.setattr(_study, "LEASE_HEARTBEAT_S", 0.05)
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    optuna.create_study(study_name="raced", storage=st.open_storage(url))
    lease = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    lease.acquire()
    first = _lease_row(url)["heartbeat"]
    deadline = time.monotonic() + 10
    while _lease_row(url)["heartbeat"] == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _lease_row(url)["heartbeat"] > first and _lease_row(url)["pid"] == os.getpid()  # renewed while ours
    taken = {"host": "other-host", "pid": 4242, "proc_start": "1", "started": 1.0, "heartbeat": time.time()}
    storage = st.open_storage(url)
    storage.set_study_system_attr(storage.get_study_id_from_name("raced"), _attrs.DRIVER, taken)
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lease.lost
    lease.release({"end": "done", "complete": 1, "pruned": 0, "failed": 0, "stopped_unfinished": 0})
    assert _lease_row(url) == taken
    assert _study.run_log(storage.get_study_system_attrs(storage.get_study_id_from_name("raced"))) == []  # B's to log


def test_a_run_whose_lease_was_just_taken_over_neither_logs_itself_nor_releases(tmp_path: Path) -> None:
    """Run B took the study over a moment before A ends, before A's heartbeat could notice: A's
    release finds the lease no longer its own, so it writes neither its entry (B logs A as lost)
    nor over B's lease; the check and both writes are one transaction."""
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    optuna.create_study(study_name="raced", storage=st.open_storage(url))
    lease = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    lease.acquire()
    taken = {"host": "other-host", "pid": 4242, "proc_start": "1", "started": 1.0, "heartbeat": 2.0}
    storage = st.open_storage(url)
    storage.set_study_system_attr(storage.get_study_id_from_name("raced"), _attrs.DRIVER, taken)
    assert not lease.lost  # its heartbeat has not looked yet
    lease.release({"end": "done", "complete": 1, "pruned": 0, "failed": 0, "stopped_unfinished": 0})
    assert lease.lost and _lease_row(url) == taken
    assert _study.run_log(storage.get_study_system_attrs(storage.get_study_id_from_name("raced"))) == []


def test_a_run_is_logged_as_it_releases_and_a_dead_one_by_the_run_that_finds_it(tmp_path: Path) -> None:
    """The run log (``tuner:runs``) gets one entry per run: the run's own as it gives the study up,
    and, for a run that died holding it, one written by the next run, with the trials it left."""
    import subprocess
    import time

    url = f"sqlite:///{tmp_path / 'lease.db'}"
    study = optuna.create_study(study_name="raced", storage=st.open_storage(url))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = {"host": socket.gethostname(), "pid": dead.pid, "proc_start": "1", "started": 100.0, "heartbeat": 160.0}
    study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, stale)
    study.ask()  # left RUNNING by the dead run
    lease = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    assert lease.acquire() == [0]
    before = time.time()
    lease.release({"started": before - 5.0, "end": "interrupted", "complete": 2, "pruned": 1, "failed": 0,
                   "stopped_unfinished": 1, "recovered": 1})
    runs = _study.run_log(study._storage.get_study_system_attrs(study._study_id))
    assert runs[0] == {"started": 100.0, "claimed": 100.0, "ended": None, "last_heard": 160.0,
                       "host": socket.gethostname(), "pid": dead.pid, "end": "lost", "complete": None, "pruned": None,
                       "failed": None, "stopped_unfinished": 1}
    assert runs[1]["started"] == before - 5.0 and before <= runs[1]["ended"] <= time.time()
    assert runs[1]["claimed"] == lease._record["started"]  # tells it from an earlier run with its pid
    assert {k: runs[1][k] for k in ("host", "pid", "end", "complete", "stopped_unfinished")} == {
        "host": socket.gethostname(), "pid": os.getpid(), "end": "interrupted", "complete": 2, "stopped_unfinished": 1}
    assert len(runs) == 2 and _lease_row(url) is None
    # as shown: times as text, the length, the end in words
    row = _study.run_row(runs[1])
    assert row["end_text"] == "interrupted" and row["duration_s"] == pytest.approx(runs[1]["ended"] - runs[1]["started"])
    assert _study.run_row(runs[0])["duration_s"] is None and _study.run_row(runs[0])["end_text"] == "lost (killed, crashed, or cut off from the storage)"
    # an entry written by hand: what cannot be a time, a count or a pid is shown as missing
    odd = _study.run_row({"started": "x", "ended": float("inf"), "complete": True, "failed": 2, "pid": "7", "end": None})
    assert (odd["started"], odd["ended"], odd["duration_s"], odd["complete"], odd["failed"], odd["pid"], odd["end"]) == (
        None, None, None, None, 2, None, "?")
    assert _study.run_row({"started": 0.0}, utc=True)["started"] == "1970-01-01T00:00:00+00:00"


def test_the_run_log_keeps_the_latest_runs(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="long", storage=st.open_storage(f"sqlite:///{tmp_path / 'l.db'}"))
    for i in range(_study.RUN_LOG_KEEP + 3):
        _study.record_run(study, {"started": float(i), "end": "done"})
    runs = _study.run_log(study._storage.get_study_system_attrs(study._study_id))
    assert len(runs) == _study.RUN_LOG_KEEP and runs[0]["started"] == 3.0 and runs[-1]["started"] == _study.RUN_LOG_KEEP + 2


@pytest.mark.parametrize(("counts", "spec", "runs", "dead_lease", "state"), [
    ({"COMPLETE": 2, "FAIL": 4}, {"n_trials": 10, "max_failures": 2}, [{"end": "interrupted"}], False, "stopped"),
    ({"COMPLETE": 2, "FAIL": 1}, {"n_trials": 10, "max_failures": 2}, [{"end": "max_failures"}], False, "failed"),
    ({"COMPLETE": 2, "FAIL": 3}, {"n_trials": 10, "max_failures": 2}, [{"end": "max_failures"}, {"end": "lost"}], False,
     "stopped"),
    ({"COMPLETE": 10, "FAIL": 3}, {"n_trials": 10, "max_failures": 2}, [{"end": "max_failures"}], False, "finished"),
    ({"COMPLETE": 2, "FAIL": 3}, {"n_trials": 10, "max_failures": 2}, None, False, "failed"),  # no log: the old guess
    ({"COMPLETE": 2}, {}, None, False, "finished"),  # plain Optuna
    # a lease left behind: a run died after the one that stopped at max_failures, and logged nothing
    ({"COMPLETE": 2, "FAIL": 3}, {"n_trials": 10, "max_failures": 2}, [{"end": "max_failures"}], True, "stopped"),
])
def test_the_study_state_follows_the_last_logged_run(counts: dict[str, int], spec: dict[str, Any], runs: Any,
                                                     dead_lease: bool, state: str) -> None:
    dead = {"host": socket.gethostname(), "pid": 999_999_999, "proc_start": "1", "started": 1.0, "heartbeat": 2.0}
    assert _study.study_state(counts, spec, dead if dead_lease else None, runs) == state


def test_release_clears_the_lease_so_the_next_run_starts_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    optuna.create_study(study_name="raced", storage=st.open_storage(url))
    first = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    first.acquire()
    first.release()
    assert _lease_row(url) is None
    second = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    assert second.acquire() == []
    assert _lease_row(url)["pid"] == os.getpid()
    second.release()


def test_the_spec_is_stored_only_by_the_run_that_holds_the_lease(tmp_path: Path) -> None:
    """A second run of the study (here with another n_trials) that is then refused the lease
    must not have replaced the driving run's stored spec on its way in."""
    url = f"sqlite:///{tmp_path / 'spec.db'}"
    storage = st.open_storage(url)
    study, resumed = open_for_run(storage, spec_from_mapping(_SPEC), force=False)
    assert not resumed
    record_spec(study, spec_from_mapping(_SPEC))
    again, resumed = open_for_run(storage, spec_from_mapping({**_SPEC, "n_trials": 50}), force=False)
    assert resumed
    assert storage.get_study_system_attrs(again._study_id)[_attrs.SPEC]["n_trials"] == 2


def test_force_does_not_delete_a_study_another_live_run_drives(tmp_path: Path) -> None:
    """--force with a changed space deletes and restarts the study, but not while another live
    process holds its lease (here a sleeping child process, recorded as the study's driver)."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'force.db'}"
    storage = st.open_storage(url)
    study, _ = open_for_run(storage, spec_from_mapping(_SPEC), force=False)
    study.enqueue_trial({"x": 0.5})
    changed = spec_from_mapping({**_SPEC, "search_space": {"params": {"y": {"float": [0.0, 1.0]}}}})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        storage.set_study_system_attr(study._study_id, _attrs.DRIVER, {
            "host": socket.gethostname(), "pid": child.pid, "proc_start": _proc_start_time(child.pid),
            "started": time.time(), "heartbeat": time.time()})
        with pytest.raises(UserInputError, match=f"is being run right now by pid {child.pid}"):
            open_for_run(storage, changed, force=True)
        assert len(optuna.load_study(study_name="raced", storage=url).trials) == 1  # kept
    finally:
        child.kill()
        child.wait()
    # With its driver gone, --force starts over.
    fresh, resumed = open_for_run(storage, changed, force=True)
    assert not resumed and fresh.trials == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stop_request_reaches_the_run_it_names_and_no_later_one(backend: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`tuner stop` writes a request naming the live run (host, pid, start); the run's lease thread
    sees it within a poll. A run started later (a resume) is not stopped by the old request."""
    import time

    from tuner.engine._study import request_stop

    monkeypatch.setattr(_study, "STOP_POLL_S", 0.02)
    url = f"sqlite:///{tmp_path / 'stop.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    optuna.create_study(study_name="raced", storage=st.open_storage(url))
    storage = st.open_storage(url)
    assert request_stop(storage, "raced") is None  # no run: nothing asked
    assert _attrs.STOP not in storage.get_study_system_attrs(storage.get_study_id_from_name("raced"))
    lease = DriverLease(optuna.load_study(study_name="raced", storage=storage))
    lease.acquire()
    time.sleep(0.1)
    assert lease.stop_requested is None
    asked = request_stop(storage, "raced")
    assert asked is not None and asked["pid"] == os.getpid()
    deadline = time.monotonic() + 10
    while lease.stop_requested is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lease.stop_requested is not None and lease.stop_requested["by"].startswith(f"pid {os.getpid()} on ")
    lease.release()
    later = DriverLease(optuna.load_study(study_name="raced", storage=storage))
    later._record["started"] += 1  # the next run of the study (same process here: its start tells them apart)
    later.acquire()
    time.sleep(0.2)
    assert later.stop_requested is None
    later.release()


def test_a_heartbeat_after_the_release_began_writes_nothing_and_a_retried_release_is_recognised(tmp_path: Path) -> None:
    """The release gives up waiting for a heartbeat stuck in an outage after 5 s: that beat must
    not write the lease back over the release. And a release whose commit a lost connection did
    not acknowledge is retried: the retry finds it done (not "taken over"), logged once."""
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    optuna.create_study(study_name="raced", storage=st.open_storage(url))
    lease = DriverLease(optuna.load_study(study_name="raced", storage=st.open_storage(url)))
    lease.acquire()
    held = lease._held
    lease._stop.set()
    assert lease._write() is True and lease._held == held  # nothing written
    storage = st.open_storage(url)
    study_id = storage.get_study_id_from_name("raced")
    entry = {"started": 1.0, "ended": 2.0, "end": "done", "claimed": 1.0}
    assert _study._log_and_release(_study._engine(storage), study_id, held, entry) is True
    assert _study._log_and_release(_study._engine(storage), study_id, held, entry) is True  # the retry
    assert _study.run_log(storage.get_study_system_attrs(study_id)) == [entry] and _lease_row(url) is None
    other = {**entry, "ended": 3.0}
    assert _study._log_and_release(_study._engine(storage), study_id, held, other) is False  # not this one's
    lease.release()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_unfinished_trials_read_for_a_rerun_are_those_with_parameters_to_run(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A trial that drew parameters, or was enqueued with some, can run again; one stopped before
    either (Tune held it for a free slot) is left out by the query, not read at every resume. An
    objective's own exception named like the run's is a failure; a rerun's chain is read back."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="rr", storage=st.open_storage(url))
    stopped = {"type": "Interrupted", "message": "the run was interrupted before this trial finished", "traceback": ""}

    def trial(error: dict[str, Any], x: float | None = None, **attrs: Any) -> int:
        t = study.ask()
        if x is not None:
            study._storage.set_trial_param(t._trial_id, "x", x, FloatDistribution(0, 1))
        for key, value in {_attrs.ERROR: error, **attrs}.items():
            study._storage.set_trial_system_attr(t._trial_id, key, value)
        study.tell(t, state=TrialState.FAIL)
        return t._trial_id

    drew = trial(stopped, 0.5)
    trial(stopped)  # nothing chosen
    enqueued = trial(stopped, fixed_params={"x": 0.25})
    trial({**stopped, "traceback": "Traceback ..."}, 0.75)  # the objective's own Interrupted
    trial({"type": "ValueError", "message": "boom", "traceback": "Traceback ..."}, 0.1)
    rerun = study.ask()
    study._storage.set_trial_system_attr(rerun._trial_id, _attrs.RERUN_OF, 0)
    origins, unfinished = _study._rerun_records(_study._engine(study._storage), study._study_id)
    assert [trial_id for trial_id, _number in unfinished] == [drew, enqueued]
    assert origins == {rerun.number: 0}
    assert _study._times_left_unfinished(9, {9: 5, 5: 2}) == 3 and _study._times_left_unfinished(1, {1: 1}) == 1


def test_a_configuration_given_up_loses_its_built_in_resume_point_wherever_its_chain_left_it(tmp_path: Path) -> None:
    """Left unfinished three times, a configuration is not run again: its resume point would
    only take disk space. Its last trial may never have started (no folder of its own), so the
    point can sit in an earlier trial's folder of the chain. A user objective's study keeps
    every file (a file named resume.pt is its own there)."""
    from types import SimpleNamespace

    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    def study_with_chain(name: str) -> tuple[optuna.Study, Path]:
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / (name + '.db')}")
        folder = tmp_path / name / "first"
        folder.mkdir(parents=True)
        (folder / "resume.pt").write_bytes(b"point")
        previous = None
        for attrs in ({_attrs.WORKER: {"trial_dir": str(folder)}}, {}, {}):  # first ran; its reruns never started
            trial = study.ask()
            study._storage.set_trial_param(trial._trial_id, "x", 0.5, FloatDistribution(0.0, 1.0))
            for key, value in {_attrs.ERROR: {"type": "Interrupted", "message": "", "traceback": ""}, **attrs,
                               **({_attrs.RERUN_OF: previous} if previous is not None else {})}.items():
                study._storage.set_trial_system_attr(trial._trial_id, key, value)
            study.tell(trial, state=TrialState.FAIL)
            previous = trial.number
        return study, folder

    spec = SimpleNamespace(rerun_unfinished=True, sampler="tpe", n_trials=10, task="mlp")
    study, folder = study_with_chain("task")
    assert _study.requeue_unfinished(study, spec) == ([], [2])  # type: ignore[arg-type]
    assert not (folder / "resume.pt").exists()
    study, folder = study_with_chain("objective")
    objective_spec = SimpleNamespace(**{**vars(spec), "task": None})
    assert _study.requeue_unfinished(study, objective_spec) == ([], [2])  # type: ignore[arg-type]
    assert (folder / "resume.pt").exists()


def test_a_missing_studys_hint_names_the_closest_studies_first_and_counts_the_ones_left_out() -> None:
    # It listed the first 20 names in order and silently dropped the rest.
    import optuna

    from tuner.engine._study import load_study
    from tuner.exceptions import StudyNotFoundError

    storage = optuna.storages.InMemoryStorage()
    for i in range(25):
        optuna.create_study(study_name=f"s{i:02d}", storage=storage)
    optuna.create_study(study_name="resnet_pretrain", storage=storage)
    with pytest.raises(StudyNotFoundError) as info:
        load_study(storage, "resnet_pretrian")
    message = str(info.value)
    assert message.startswith("no study named 'resnet_pretrian' in this storage; did you mean 'resnet_pretrain'? "
                              "existing studies: resnet_pretrain, s00, s01,")
    assert message.endswith(", s18 and 6 more (tuner ls lists them)")
    with pytest.raises(StudyNotFoundError, match=r"; the storage holds no studies yet$"):
        load_study(optuna.storages.InMemoryStorage(), "x")
