"""The engine end to end: real Ray local cluster, real SQLite files, user objectives."""

from __future__ import annotations

import io
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import tuner
from tuner._retry_storage import RetryingRDBStorage
from tuner.engine import _attrs
from tuner.engine._progress import Progress
from tuner.engine._study import run_log
from tests import objectives

pytestmark = pytest.mark.usefixtures("ray_cluster")

SPACE_X = {"params": {"x": {"float": [-5.0, 5.0]}}}
SPACE_XY = {"params": {"x": {"float": [-5.0, 5.0]}, "y": {"float": [-3.0, 3.0]}}}


def _spec(**kw: Any) -> dict[str, Any]:
    """A study of ``kw``; one trial at a time unless a test is about concurrency: each trial
    process costs seconds of imports (Ray Tune, Optuna), and the suite is CPU-bound."""
    base = {"name": "s", "search_space": SPACE_X, "n_trials": 6, "concurrency": 1, "seed": 1, "pruner": "none"}
    base.update(kw)
    return base


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_user_objective_runs_and_everything_is_stored(sqlite_url: str, tmp_path: Path) -> None:
    study = tuner.run(_spec(search_space=SPACE_XY, n_trials=8, concurrency=2), objectives.quadratic, storage=sqlite_url)
    assert _states(study) == {"COMPLETE": 8}
    # SQLite's write-ahead log holds recent writes beside the file until a checkpoint; a run
    # folds it in when it ends, so tuner.db copied on its own (a backup, another machine) is whole.
    copy = tmp_path / "alone" / "tuner.db"
    copy.parent.mkdir()
    shutil.copyfile(sqlite_url.removeprefix("sqlite:///"), copy)
    copied = optuna.load_study(study_name="s", storage=f"sqlite:///{copy}")
    assert [t.state.name for t in copied.get_trials()] == ["COMPLETE"] * 8
    assert copied._storage.get_study_system_attrs(copied._study_id)[_attrs.DRIVER] is None
    # Read back through a fresh storage object: it is in the SQLite file, not in memory.
    fresh = optuna.load_study(study_name="s", storage=sqlite_url)
    trials = fresh.get_trials()
    assert len(trials) == 8
    by_process: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        assert set(t.params) == {"x", "y"}
        assert t.value == pytest.approx(objectives.quadratic(t.params, None))
        worker = t.system_attrs[_attrs.WORKER]
        assert worker["host"] and worker["pid"] > 0 and worker["node_id"]
        assert t.datetime_start is not None and t.datetime_complete is not None
        timing = t.system_attrs[_attrs.TIMING]
        assert timing["process_started"] <= timing["picked_up"] <= timing["asked"] <= timing["finished"]
        assert timing["finished"] <= t.datetime_complete.timestamp() + 0.001  # stored to the millisecond
        by_process.setdefault(worker["pid"], []).append(timing)
    # Each worker process counts the trials it ran, in the order it picked them up, from one start.
    # At most two processes (concurrency 2, actors reused); eight trivial trials can all end in the
    # first before Tune has the second actor up on a loaded machine (parallel trials are asserted
    # with sleeping objectives by test_parallel_trials_overlap_in_time).
    assert 1 <= len(by_process) <= 2
    for timings in by_process.values():
        timings.sort(key=lambda x: x["picked_up"])
        counts = [x["process_trial"] for x in timings]
        assert counts == list(range(counts[0], counts[0] + len(counts)))
        assert len({x["process_started"] for x in timings}) == 1
    attrs = fresh._storage.get_study_system_attrs(fresh._study_id)
    assert attrs[_attrs.SPEC]["name"] == "s"
    assert attrs[_attrs.SPACE]["params"].keys() == {"x", "y"}
    assert attrs[_attrs.DRIVER] is None  # lease released


def test_parallel_trials_overlap_in_time(sqlite_url: str, tmp_path: Path) -> None:
    space = {"params": {"x": {"float": [-5.0, 5.0]}, "folder": str(tmp_path)}}
    spec = _spec(search_space=space, n_trials=4, metric="value", concurrency=2)
    study = tuner.run(spec, objectives.rendezvous, storage=sqlite_url)
    spans = sorted((t.system_attrs[_attrs.METRICS]["start"], t.system_attrs[_attrs.METRICS]["end"])
                   for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert len(spans) == 4
    overlaps = sum(1 for (s1, e1), (s2, e2) in zip(spans, spans[1:]) if s2 < e1)
    assert overlaps >= 1, spans
    pids = {t.system_attrs[_attrs.WORKER]["pid"] for t in study.get_trials()}
    assert len(pids) == 2  # two reused actors, not one process per trial


def test_pruned_trials_exist_and_carry_intermediate_values(sqlite_url: str) -> None:
    spec = _spec(n_trials=14, metric="loss", direction="minimize",
                 pruner={"name": "median", "args": {"n_startup_trials": 3, "n_warmup_steps": 3}},
                 sampler="random")
    console = io.StringIO()
    study = tuner.run(spec, objectives.curve, storage=sqlite_url, progress=Progress(stream=console, live=False))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert pruned, _states(study)
    assert len(pruned) + len(complete) == 14
    assert any(max(t.intermediate_values) < 8 for t in pruned)  # stopped early, not just relabelled
    assert all(max(t.intermediate_values) >= 3 for t in pruned)  # the warm-up steps were respected
    lines = console.getvalue().splitlines()
    for t in pruned:
        assert sorted(t.intermediate_values) == list(range(1, max(t.intermediate_values) + 1))
        curve = t.system_attrs[_attrs.CURVE]
        assert [c["step"] for c in curve] == sorted(t.intermediate_values)
        assert {"loss", "acc"} <= set(curve[0])
        # the console says where the pruner stopped it: its last step and the study metric there
        last = max(t.intermediate_values)
        said = f"trial {t.number} pruned at step {last} value={t.intermediate_values[last]:.6g} |"
        assert any(line.startswith(said) for line in lines), (said, lines)
    for t in complete:
        assert sorted(t.intermediate_values) == list(range(1, 9))


def test_a_pruned_trials_warnings_are_printed_as_a_complete_trials_are(sqlite_url: str) -> None:
    """A pruned trial's warnings (a checkpoint not written) never reached the console."""
    console = io.StringIO()
    study = tuner.run(_spec(n_trials=2), objectives.warns_then_prunes, storage=sqlite_url,
                      progress=Progress(stream=console, live=False))
    assert _states(study) == {"PRUNED": 2}
    lines = console.getvalue().splitlines()
    for number in (0, 1):
        assert f"warning: trial {number}: trial {number}: its checkpoint was not written" in lines, lines
    x = study.trials[1].params["x"]
    assert any(line.startswith("trial 0 pruned |") for line in lines), lines  # pruned before any report
    assert any(line.startswith(f"trial 1 pruned at step 3 value={x:.6g} |") for line in lines), lines


def test_the_specs_enqueued_points_run_first_once_per_study(sqlite_url: str) -> None:
    """`enqueue:` points (a baseline, a partial one the sampler completes) are the first trials; a
    resumed run does not try them again, and a point added to the spec later runs next."""
    points = [{"x": 4.25, "y": -1.0}, {"x": -3.5}]
    console = io.StringIO()
    study = tuner.run(_spec(search_space=SPACE_XY, n_trials=4, enqueue=points), objectives.quadratic,
                      storage=sqlite_url, progress=Progress(stream=console, live=False))
    assert "enqueued 2 points of the spec's enqueue: they run first" in console.getvalue()
    first = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert first[0].params == {"x": 4.25, "y": -1.0} and first[1].params["x"] == -3.5
    assert -3.0 <= first[1].params["y"] <= 3.0  # drawn by the sampler
    assert first[0].value == pytest.approx(objectives.quadratic(first[0].params, None))
    # a resume with the same list: nothing enqueued; with one more point: that one alone, first
    console = io.StringIO()
    study = tuner.run(_spec(search_space=SPACE_XY, n_trials=6, enqueue=[*points, {"x": 0.5, "y": 0.5}]),
                      objectives.quadratic, storage=sqlite_url, progress=Progress(stream=console, live=False))
    assert "enqueued 1 point of the spec's enqueue: it runs first" in console.getvalue()
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6 and trials[4].params == {"x": 0.5, "y": 0.5}
    assert sum(t.params["x"] == 4.25 for t in trials) == 1
    console = io.StringIO()
    tuner.run(_spec(search_space=SPACE_XY, n_trials=7, enqueue=points[::-1]), objectives.quadratic,
              storage=sqlite_url, progress=Progress(stream=console, live=False))
    assert "of the spec's enqueue" not in console.getvalue()  # reordered, the same points


def test_a_new_study_never_takes_the_files_an_old_one_of_its_name_left(tmp_path: Path) -> None:
    """A study whose SQLite file was removed (or deleted by --force) leaves its trial folders; the
    new study of that name numbers its trials from 0 again, and its trial 0 recorded the old trial
    0's files as its own (served by the dashboard, searched by export)."""
    artifacts = tmp_path / "runs"
    spec = _spec(n_trials=2, artifacts_dir=str(artifacts))
    old = tuner.run(spec, objectives.writes_checkpoint, storage=f"sqlite:///{tmp_path / 'old.db'}")
    old_dirs = sorted(t.system_attrs[_attrs.WORKER]["trial_dir"] for t in old.trials)
    assert old_dirs == [str(artifacts / "s" / "trial_00000"), str(artifacts / "s" / "trial_00001")]
    (artifacts / "s" / "trial_00001" / "notes.txt").write_text("the old study's")
    # an empty folder may be another live study's trial that has written nothing yet: not taken either
    (artifacts / "s" / "trial_00002").mkdir()
    new = tuner.run(_spec(n_trials=4, artifacts_dir=str(artifacts)), objectives.writes_checkpoint,
                    storage=f"sqlite:///{tmp_path / 'new.db'}")
    trials = sorted(new.trials, key=lambda t: t.number)
    assert [t.system_attrs[_attrs.WORKER]["trial_dir"] for t in trials] == [
        str(artifacts / "s" / "trial_00000.1"), str(artifacts / "s" / "trial_00001.1"),
        str(artifacts / "s" / "trial_00002.1"), str(artifacts / "s" / "trial_00003")]
    assert not any((artifacts / "s" / "trial_00002").iterdir())
    for t in trials:
        assert [a["name"] for a in t.system_attrs[_attrs.ARTIFACTS]] == ["model.txt"]
        assert (Path(t.system_attrs[_attrs.WORKER]["trial_dir"]) / "model.txt").read_text() == f"x={t.params['x']}\n"
    # the old study's files are where its storage says they are
    assert (artifacts / "s" / "trial_00001" / "notes.txt").read_text() == "the old study's"
    assert (artifacts / "s" / "trial_00000" / "model.txt").read_text() == f"x={old.trials[0].params['x']}\n"


def test_raising_and_nan_objectives_fail_with_error_stored(sqlite_url: str) -> None:
    study = tuner.run(_spec(n_trials=4, max_failures=50), objectives.flaky, storage=sqlite_url)
    states = _states(study)
    assert states["COMPLETE"] == 4 and states["FAIL"] >= 2
    errors = [t.system_attrs[_attrs.ERROR] for t in study.get_trials(states=(TrialState.FAIL,))]
    raised = [e for e in errors if e["type"] == "RuntimeError"]
    nans = [e for e in errors if e["type"] == "ValueError"]
    assert raised and "boom in trial" in raised[0]["message"]
    assert "Traceback" in raised[0]["traceback"] and "flaky" in raised[0]["traceback"]
    assert nans and "nan" in nans[0]["message"]


def test_max_failures_stops_the_run_cleanly(sqlite_url: str) -> None:
    with pytest.raises(tuner.TooManyFailuresError) as info:
        tuner.run(_spec(n_trials=20, max_failures=2), objectives.always_fails, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    states = _states(study)
    assert states.get("FAIL", 0) >= 3 and "RUNNING" not in states and "COMPLETE" not in states
    assert "max_failures=2" in str(info.value)
    # the run logged how it ended, which makes the study "failed" wherever it is listed
    runs = run_log(study._storage.get_study_system_attrs(study._study_id))
    assert [(r["end"], r["complete"], r["failed"]) for r in runs] == [("max_failures", 0, info.value.summary.failed)]
    assert [s.state for s in tuner.list_studies(sqlite_url)] == ["failed"]


def test_a_failure_its_worker_could_not_store_is_stored_by_the_driver_with_its_own_error(sqlite_url: str) -> None:
    """The worker's storage writes fail (an outage past its retries) as its trial fails: the
    driver stores that trial FAIL with the objective's error and traceback once Tune's loop has
    ended. Before, it stayed RUNNING until the end-of-run sweep called it a row created twice."""
    tuner.run(_spec(n_trials=2), objectives.fails_where_its_worker_cannot_store_it, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    assert [(r["complete"], r["failed"]) for r in run_log(study._storage.get_study_system_attrs(study._study_id))] \
        == [(2, 1)]  # failures do not count towards n_trials
    assert _states(study) == {"FAIL": 1, "COMPLETE": 2}
    trial = study.trials[0]
    error = trial.system_attrs[_attrs.ERROR]
    assert trial.state == TrialState.FAIL
    assert (error["type"], error["message"]) == ("ValueError", "the objective's own error, raised in a storage outage")
    assert "fails_where_its_worker_cannot_store_it" in error["traceback"]


def test_optunas_own_trial_pruned_prunes_the_trial(sqlite_url: str) -> None:
    """`raise optuna.TrialPruned()` (Optuna's idiom) was stored as a failure and counted towards max_failures."""
    tuner.run(_spec(n_trials=2, max_failures=0), objectives.prunes_the_optuna_way, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[0].intermediate_values == {0: study.trials[0].params["x"]}


def test_a_failed_trials_stored_traceback_keeps_its_frames_whatever_its_message(sqlite_url: str) -> None:
    """A 5 MB message filled the 20,000 characters kept of the traceback and pushed every frame
    out; an exception whose __str__ raises could not be recorded at all (the trial was stored as
    cut short, and run again by the next resume)."""
    with pytest.raises(tuner.TooManyFailuresError):
        tuner.run(_spec(n_trials=2, max_failures=1), objectives.raises_a_long_message_and_one_that_cannot_be_printed,
                  storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    long, unprintable = (t.system_attrs[_attrs.ERROR] for t in study.trials[:2])
    assert long["type"] == "ValueError" and len(long["message"]) == 2000
    assert "raises_a_long_message_and_one_that_cannot_be_printed" in long["traceback"]
    assert len(long["traceback"]) < 5000 and "(5,000,013 characters)" in long["traceback"]
    assert unprintable["type"] == "Unprintable" and "could not be made" in unprintable["message"]
    assert "raises_a_long_message_and_one_that_cannot_be_printed" in unprintable["traceback"]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def test_the_run_log_says_how_a_run_ended_that_did_not_get_to_its_end() -> None:
    """A run that an error or a second Ctrl-C ended logs that, with the error's first words."""
    from tuner.engine._driver import _run_entry

    error = _run_entry(None, None, RuntimeError("the storage\nwent away"), 2)
    assert error == {"end": "error", "complete": 0, "pruned": 0, "failed": 0, "stopped_unfinished": 0, "recovered": 2,
                     "error": "RuntimeError: the storage went away"}
    assert _run_entry(None, None, KeyboardInterrupt(), 0)["end"] == "interrupted"
    assert _run_entry(None, "timeout", None, 0)["end"] == "timeout"


def test_resume_recovers_takes_enqueued_trials_and_continues_to_n_trials(sqlite_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run of a study: the trial a dead run left RUNNING is failed (and said so), the trials
    enqueued meanwhile run first with their parameters, the run goes on to n_trials finished, and
    a run of a finished study does nothing. Counting, recovering and ranking go by query: the
    driver never reads the finished trials whole (at 20,000 trials each whole read took 7 s)."""
    tuner.run(_spec(n_trials=3), objectives.quadratic, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    study.ask()  # trial 3, left RUNNING, as by a killed run
    study.enqueue_trial({"x": 4.25})
    study.enqueue_trial({"x": -3.5})
    reads: list[tuple[Any, int]] = []
    original = RetryingRDBStorage._get_trials  # the driver's storage class

    def spy(self: Any, study_id: int, states: Any, included_trial_ids: set[int], trial_id_greater_than: int) -> Any:
        reads.append((states, trial_id_greater_than))
        return original(self, study_id, states, included_trial_ids, trial_id_greater_than)

    monkeypatch.setattr(RetryingRDBStorage, "_get_trials", spy)
    out = io.StringIO()
    study = tuner.run(_spec(n_trials=7), objectives.quadratic, storage=sqlite_url,  # workers are other processes
                      progress=Progress(stream=out, live=False))
    monkeypatch.undo()
    assert _states(study) == {"COMPLETE": 7, "FAIL": 1}
    assert "marked 1 trial(s) left RUNNING by a stopped run as FAIL: 3" in out.getvalue()  # the recovery is told
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert trials[3].state == TrialState.FAIL and trials[3].system_attrs[_attrs.ERROR]["type"] == "DriverLost"
    assert [t.params["x"] for t in trials[4:6]] == [4.25, -3.5]  # the two enqueued, taken first, not left WAITING
    assert trials[4].value == pytest.approx(objectives.quadratic({"x": 4.25}, None))
    whole = [(states, after) for states, after in reads if after == -1 and (
        states is None or any(s.is_finished() for s in states))]
    assert reads and not whole, reads
    again = tuner.run(_spec(n_trials=7), objectives.quadratic, storage=sqlite_url)  # nothing left to do
    assert len(again.get_trials()) == 8


def test_changed_search_space_is_refused_then_forced_and_force_says_what_it_deletes(sqlite_url: str) -> None:
    tuner.run(_spec(n_trials=3), objectives.quadratic, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    study.tell(study.ask(), state=TrialState.FAIL)
    changed = _spec(n_trials=2, search_space={"params": {"x": {"float": [-1.0, 1.0]}}})
    with pytest.raises(tuner.UserInputError, match="different search space.*changed: x.*--force"):
        tuner.run(changed, objectives.quadratic, storage=sqlite_url)
    assert len(optuna.load_study(study_name="s", storage=sqlite_url).get_trials()) == 4  # untouched
    console = io.StringIO()
    study = tuner.run(changed, objectives.quadratic, storage=sqlite_url, force=True,  # as `tuner run --quiet`
                      progress=Progress(stream=console, live=False, quiet=True))
    assert len(study.get_trials()) == 2
    assert all(-1.0 <= t.params["x"] <= 1.0 for t in study.get_trials())
    # The deletion is told even when everything else is quiet (it was hidden by --quiet before).
    assert console.getvalue() == "--force: deleted study 's' (4 trials: 3 complete, 1 failed) to start over\n"


def test_worker_killed_mid_trial_fails_that_trial_and_study_finishes(sqlite_url: str) -> None:
    study = tuner.run(_spec(n_trials=4, concurrency=1), objectives.kills_worker, storage=sqlite_url)
    states = _states(study)
    assert states == {"COMPLETE": 4, "FAIL": 1}
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    assert failed.number == 1
    assert failed.system_attrs[_attrs.ERROR]["type"] == "WorkerDied"


def test_trial_timeout_fails_a_hanging_trial(sqlite_url: str) -> None:
    study = tuner.run(_spec(n_trials=3, concurrency=1, trial_timeout=2), objectives.hangs, storage=sqlite_url)
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    assert failed.number == 0 and failed.system_attrs[_attrs.ERROR]["type"] == "TrialTimeout"


def test_a_trial_that_holds_the_interpreter_past_its_timeout_is_ended_by_the_driver(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's watchdog is a thread, which never runs while the trial holds the GIL in
    one C call: the study hung until a Ctrl-C, which then stored the trial as cut short (and
    the next run ran it again). The driver ends such a worker TIMEOUT_GRACE_S past the timeout."""
    from tuner.engine import _tune_glue

    monkeypatch.setattr(_tune_glue, "TIMEOUT_GRACE_S", 3.0)
    started = time.monotonic()
    study = tuner.run(_spec(n_trials=2, trial_timeout=2), objectives.holds_the_interpreter, storage=sqlite_url)
    assert time.monotonic() - started < 60
    assert _states(study) == {"COMPLETE": 2, "FAIL": 1}
    error = study.trials[0].system_attrs[_attrs.ERROR]
    assert study.trials[0].state == TrialState.FAIL and error["type"] == "TrialTimeout"
    assert "trial_timeout=2s and did not stop" in error["message"] and "3s later" in error["message"]


def test_trial_dir_device_and_attrs(sqlite_url: str, tmp_path: Path) -> None:
    study = tuner.run(_spec(n_trials=2, artifacts_dir=str(tmp_path / "art")), objectives.writes_checkpoint,
                      storage=sqlite_url)
    for t in study.get_trials():
        trial_dir = Path(t.system_attrs[_attrs.WORKER]["trial_dir"])
        assert trial_dir.parent == tmp_path / "art" / "s"
        assert (trial_dir / "model.txt").read_text() == f"x={t.params['x']}\n"
        note = t.system_attrs[_attrs.ATTR_PREFIX + "note"]
        assert note["device"] == "cpu"
        assert note["seed"] == 1 * 1_000_003 + t.number


def test_objective_by_reference_from_spec_file(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "my_obj.py").write_text("def f(params, ctx):\n    return params['x'] ** 2\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: byref\nobjective: my_obj.py:f\nsearch_space: {params: {x: {float: [-1, 1]}}}\n"
                    "n_trials: 3\npruner: none\n")
    study = tuner.run(spec, storage=sqlite_url)
    assert all(t.value == pytest.approx(t.params["x"] ** 2) for t in study.get_trials())
    spec2 = tmp_path / "s2.yaml"
    spec2.write_text("name: bymod\nobjective: tests.objectives:quadratic\nsearch_space: {params: {x: {float: [-1, 1]}}}\n"
                     "n_trials: 2\npruner: none\n")
    study2 = tuner.run(spec2, storage=sqlite_url)
    assert len(study2.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_multi_objective(sqlite_url: str) -> None:
    spec = _spec(n_trials=6, metrics=["loss", "acc"], directions=["minimize", "maximize"], sampler="nsga2")
    study = tuner.run(spec, objectives.curve, storage=sqlite_url)
    assert len(study.directions) == 2
    assert study.best_trials and all(len(t.values) == 2 for t in study.best_trials)


# The other samplers run through real studies in tests of their own below: random in the pruner
# tests, gp (test_gp_without_a_pruner...), qmc (test_scrambled_qmc...), nsga2 (test_nsga2_breeds...,
# test_multi_objective); tpe also in tests/engine/test_tpe.py.
@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "grid"])
def test_each_sampler_through_a_real_study(sqlite_url: str, sampler: str) -> None:
    space = SPACE_XY if sampler != "grid" else {"params": {"x": {"float": [-1.0, 1.0], "step": 0.5},
                                                           "y": {"choice": [0.0, 1.0]}}}
    study = tuner.run(_spec(search_space=space, n_trials=12, sampler=sampler, concurrency=2),
                      objectives.quadratic, storage=sqlite_url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == (10 if sampler == "grid" else 12)
    if sampler == "grid":
        assert {(t.params["x"], t.params["y"]) for t in complete} == {
            (x, y) for x in (-1.0, -0.5, 0.0, 0.5, 1.0) for y in (0.0, 1.0)}
    assert math.isfinite(study.best_value)


@pytest.mark.parametrize("pruner", ["percentile", "asha", "hyperband"])  # median: test_pruned_trials_exist...
def test_each_pruner_prunes(sqlite_url: str, pruner: str) -> None:
    args = {"percentile": {"n_startup_trials": 2, "percentile": 50.0},
            "asha": {"min_resource": 1, "reduction_factor": 2}, "hyperband": {"min_resource": 1, "max_resource": 8}}[pruner]
    spec = _spec(n_trials=16, sampler="random", metric="loss", pruner={"name": pruner, "args": args})
    study = tuner.run(spec, objectives.curve, storage=sqlite_url)
    assert study.get_trials(states=(TrialState.PRUNED,)), _states(study)


def test_same_seed_same_trials(tmp_path: Path) -> None:
    a = tuner.run(_spec(concurrency=1, n_trials=5, sampler="tpe"), objectives.quadratic,
                  storage=f"sqlite:///{tmp_path / 'a.db'}")
    b = tuner.run(_spec(concurrency=1, n_trials=5, sampler="tpe"), objectives.quadratic,
                  storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert [t.params for t in a.get_trials()] == [t.params for t in b.get_trials()]


def test_gp_without_a_pruner_named_runs_unpruned_and_models_after_ten_trials(sqlite_url: str) -> None:
    # Under ASHA (every other sampler's default) this objective's poor trials are cut, fewer than
    # ten complete, and Optuna's GPSampler, which fits completed trials only, never leaves its
    # random start-up draws; tuner gives gp no pruner unless one is named.
    from tuner.engine._plugins import trial_seed

    spec = _spec(search_space=SPACE_X, n_trials=11, concurrency=1, sampler="gp", metric="loss")
    del spec["pruner"]
    study = tuner.run(spec, objectives.curve, storage=sqlite_url)
    assert _states(study) == {"COMPLETE": 11}

    def start_up_draw(number: int) -> float:
        draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=trial_seed(1, number))).ask()
        return draw.suggest_float("x", *SPACE_X["params"]["x"]["float"])

    xs = [t.params["x"] for t in sorted(study.get_trials(), key=lambda t: t.number)]
    assert xs[:10] == [start_up_draw(n) for n in range(10)]  # the comparison itself holds
    assert all(x != start_up_draw(n) for n, x in enumerate(xs) if n >= 10)  # the GP's own proposals


def test_nsga2_breeds_across_tuners_per_trial_samplers(sqlite_url: str) -> None:
    # tuner builds a fresh sampler for every trial, in whatever worker runs it; NSGA-II keeps its
    # generations in the trials' system attributes, so it must still breed generation after
    # generation, and a study shorter than one generation (the default population of 50) never
    # does, as the run header says.
    key = "NSGAIISampler:generation"
    spec = _spec(search_space=SPACE_XY, n_trials=13, concurrency=1, pruner="none",
                 sampler={"name": "nsga2", "args": {"population_size": 4}})
    study = tuner.run(spec, objectives.quadratic, storage=sqlite_url)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.system_attrs[key] for t in trials] == [0] * 4 + [1] * 4 + [2] * 4 + [3]
    # Children of uniform crossover inherit each coordinate from a parent unless it mutates (each
    # with probability 1/2 here), so most share an exact value with an earlier trial, which a
    # random draw never does.
    inherited = [t.number for t in trials[4:] if t.params["x"] in {p.params["x"] for p in trials[:t.number]}
                 or t.params["y"] in {p.params["y"] for p in trials[:t.number]}]
    assert len(inherited) >= 5, inherited

    one_generation = _spec(search_space=SPACE_XY, n_trials=6, concurrency=1, pruner="none", sampler="nsga2", name="ns50")
    study = tuner.run(one_generation, objectives.quadratic, storage=sqlite_url)
    assert [t.system_attrs[key] for t in study.get_trials()] == [0] * 6

    # A generation is `population_size` *completed* trials: pruned ones are drawn in it but do not
    # fill it (the run header's note for a pruned study says so), so under ASHA generation 0 runs
    # on until its fourth completion, however many trials that takes.
    asha = {"name": "asha", "args": {"min_resource": 1, "reduction_factor": 2, "min_early_stopping_rate": 1}}
    pruned = _spec(search_space=SPACE_XY, n_trials=20, concurrency=1, metric="loss", direction="minimize",
                   pruner=asha, sampler={"name": "nsga2", "args": {"population_size": 4}}, name="nsp")
    trials = sorted(tuner.run(pruned, objectives.curve, storage=sqlite_url).get_trials(), key=lambda t: t.number)
    first = [t for t in trials if t.system_attrs[key] == 0]
    assert len(first) > 4 and [t.state for t in first].count(TrialState.COMPLETE) == 4, [t.state.name for t in first]
    assert first[-1].state == TrialState.COMPLETE and trials[len(first)].system_attrs[key] == 1


def test_scrambled_qmc_is_one_sequence_in_a_real_run(sqlite_url: str) -> None:
    # Every trial builds its own sampler in whatever worker runs it; scrambled QMC must still draw
    # the one sequence that a single Optuna QMCSampler seeded with the study's seed draws.
    spec = _spec(search_space=SPACE_XY, n_trials=7, concurrency=1, sampler={"name": "qmc", "args": {"scramble": True}})
    study = tuner.run(spec, objectives.quadratic, storage=sqlite_url)
    ours = [(t.params["x"], t.params["y"]) for t in sorted(study.get_trials(), key=lambda t: t.number)]

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    single = optuna.create_study(sampler=optuna.samplers.QMCSampler(scramble=True, seed=1))
    theirs = []
    for _ in range(7):
        trial = single.ask()
        xy = (trial.suggest_float("x", -5.0, 5.0), trial.suggest_float("y", -3.0, 3.0))
        single.tell(trial, objectives.quadratic({"x": xy[0], "y": xy[1]}, None))
        theirs.append(xy)
    assert ours[1:] == theirs[1:]  # trial 0 is the independent draw QMC learns the space from


def test_reports_under_another_name_than_the_study_metric_warn_the_trial(sqlite_url: str) -> None:
    # Before, the trials completed with no intermediate value: pruning was off and nothing said so.
    spec = _spec(n_trials=2, concurrency=1, metric="loss", pruner={"name": "median", "args": {"n_startup_trials": 1}})
    study = tuner.run(spec, objectives.reports_another_metric, storage=sqlite_url)
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE and t.intermediate_values == {} for t in trials)
    warning = trials[0].system_attrs[_attrs.ATTR_PREFIX + "artifact_warning"]
    assert warning.startswith("ctx.report(step 1) has no 'loss', the study's metric") and "(reported: ['acc'])" in warning


def test_a_bool_or_a_numeric_string_returned_fails_the_trial_as_any_non_number(sqlite_url: str) -> None:
    # Before, True completed with value 1 and "0.5" with 0.5.
    with pytest.raises(tuner.TooManyFailuresError):
        tuner.run(_spec(n_trials=2, concurrency=1, max_failures=1), objectives.returns_a_flag, storage=sqlite_url)
    trials = sorted(optuna.load_study(study_name="s", storage=sqlite_url).get_trials(), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    errors = [t.system_attrs[_attrs.ERROR] for t in trials]
    assert [e["type"] for e in errors] == ["TypeError", "TypeError"]
    assert errors[0]["message"] in ("the objective returned a non-number for 'value': True",
                                    "the objective returned a non-number for 'value': False")
    assert errors[1]["message"] == f"the objective returned a non-number for 'value': {str(trials[1].params['x'])!r}"


def test_max_failures_counts_only_trials_that_failed_and_labels_the_one_it_stopped(sqlite_url: str) -> None:
    """Trial 0 runs for minutes; the others fail. The stop at max_failures=1 kills trial 0: it is
    stored as stopped by max_failures (not "interrupted"), is not counted as a failure, and every
    trial that did fail gets its console line with its error."""
    console = io.StringIO()
    started = time.monotonic()
    with pytest.raises(tuner.TooManyFailuresError) as info:
        tuner.run(_spec(n_trials=4, max_failures=1, concurrency=2), objectives.first_sleeps_others_fail, storage=sqlite_url,
                  progress=Progress(stream=console, live=False))
    assert time.monotonic() - started < 60  # trial 0 was killed, not waited for (it sleeps 120 s)
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=sqlite_url).get_trials()}
    errors = {n: t.system_attrs[_attrs.ERROR] for n, t in trials.items()}
    assert {t.state for t in trials.values()} == {TrialState.FAIL}
    assert errors[0] == {"type": "StoppedByMaxFailures", "traceback": "",
                         "message": "the run stopped after 2 failures (max_failures=1) before this trial finished"}
    own = sorted(n for n, e in errors.items() if e["type"] == "RuntimeError")
    assert len(own) == len(trials) - 1 >= 2, errors
    assert str(info.value).startswith(f"stopped: {len(own)} trials failed in this run (max_failures=1); "
                                      f"1 running trial stopped unfinished; "), str(info.value)
    lines = console.getvalue().splitlines()
    for n in own:
        own_line = f"trial {n} failed: RuntimeError: trial {n} fails on its own |"
        assert sum(line.startswith(own_line) for line in lines) == 1, lines
    assert not any(line.startswith("trial 0 ") for line in lines), lines
    assert f"(this run: 0 complete, 0 pruned, {len(own)} failed, 1 stopped unfinished)" in lines[-1], lines[-1]


def test_an_objective_ray_cannot_send_is_refused_before_anything_starts(sqlite_url: str) -> None:
    """A closure over a lock cannot be pickled for Ray's workers: one line saying how to fix it,
    before Ray starts and before the study is created (it used to be created, empty, first)."""
    import threading

    lock = threading.Lock()

    def objective(params: dict[str, Any], ctx: Any) -> float:
        with lock:
            return params["x"] ** 2

    with pytest.raises(tuner.UserInputError, match=r"the objective function cannot be sent to Ray workers .*"
                                                   r"define it at module level"):
        tuner.run(_spec(n_trials=2), objective, storage=sqlite_url)
    assert optuna.get_all_study_names(sqlite_url) == []


def test_a_run_that_reached_its_target_as_its_time_ran_out_is_done_not_timed_out(sqlite_url: str) -> None:
    """The last trial finished after the deadline: the run did what it was asked, and its summary
    and its run log said "stopped: timeout reached" (checked before the target)."""
    import time

    from tuner.engine._driver import _RunState
    from tuner.spec import spec_from_mapping

    spec = spec_from_mapping(_spec(n_trials=3, timeout=1, objective="tests.objectives:quadratic"), source="<test>")
    study = optuna.create_study(study_name="s", storage=sqlite_url)
    past = time.monotonic() - 1.0
    done = _RunState(study, spec, 3, past)
    assert not done.want_more() and done.stop_reason is None
    short = _RunState(study, spec, 2, past)
    assert not short.want_more() and short.stop_reason == "timeout"


def _unfinished(study: optuna.Study, x: float | None, kind: str = "Interrupted", traceback: str = "",
                **attrs: Any) -> int:
    """A trial a run left unfinished, as the driver stores it: FAIL, with the stop as its error;
    ``x``: the parameter it had sampled (None: stopped before it sampled)."""
    trial = study.ask()
    if x is not None:
        study._storage.set_trial_param(trial._trial_id, "x", x, optuna.distributions.FloatDistribution(-5.0, 5.0))
    for key, value in {_attrs.ERROR: {"type": kind, "message": "ended by the run", "traceback": traceback},
                       **attrs}.items():
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
    study.tell(trial, state=TrialState.FAIL)
    return trial.number


def test_a_resume_runs_the_trials_a_run_left_unfinished_again_once_with_their_parameters(sqlite_url: str,
                                                                                       tmp_path: Path) -> None:
    """The trials a Ctrl-C, a `tuner stop`, max_failures or a killed run ended are enqueued again,
    with their parameters, when the study resumes (Ray Tune's restore resumes them, Optuna's
    RetryFailedTrialCallback re-enqueues them): once each, after the trials already waiting, as
    many as the study still needs. Not a trial that failed on its own, nor one stopped before
    anything chose its parameters, nor a configuration left unfinished three times."""
    tuner.run(_spec(n_trials=2), objectives.quadratic, storage=sqlite_url)
    study = optuna.load_study(study_name="s", storage=sqlite_url)
    interrupted = _unfinished(study, 1.25)
    requested = _unfinished(study, -2.5, "StoppedByRequest")
    lost = _unfinished(study, 3.75, "DriverLost")
    _unfinished(study, 0.5, "RuntimeError")  # failed on its own
    _unfinished(study, 0.6, traceback="Traceback (most recent call last): ...")  # the objective's own `Interrupted`
    _unfinished(study, None)  # queued when the run stopped: nothing chose its parameters
    popped = _unfinished(study, None, fixed_params={"x": 0.75})  # an enqueued point stopped before it was sampled
    first = _unfinished(study, 4.5)  # one configuration, left unfinished three times: given up
    second = _unfinished(study, 4.5, **{_attrs.RERUN_OF: first})
    left = tmp_path / "third"  # a file of a built-in task's name, here the user objective's own
    left.mkdir()
    (left / "resume.pt").write_bytes(b"state")
    third = _unfinished(study, 4.5, **{_attrs.RERUN_OF: second, _attrs.WORKER: {"trial_dir": str(left)}})
    out = io.StringIO()
    # 2 finished, 1 point of the spec waiting: room for 3 reruns of the 4 owed (the oldest first)
    tuner.run(_spec(n_trials=6, enqueue=[{"x": -4.0}]), objectives.quadratic, storage=sqlite_url,
              progress=Progress(stream=out, live=False))
    trials = sorted(optuna.load_study(study_name="s", storage=sqlite_url).trials, key=lambda t: t.number)
    reruns = {t.system_attrs[_attrs.RERUN_OF]: t for t in trials if _attrs.RERUN_OF in t.system_attrs and
              t.number > third}
    assert sorted(reruns) == [interrupted, requested, lost]
    assert {n: t.params["x"] for n, t in reruns.items()} == {interrupted: 1.25, requested: -2.5, lost: 3.75}
    assert all(t.state == TrialState.COMPLETE and t.value == pytest.approx((t.params["x"] - 2.0) ** 2)
               for t in reruns.values())
    assert [t.params["x"] for t in trials if t.number > third][0] == -4.0  # the spec's point went first
    assert "WAITING" not in _states(optuna.load_study(study_name="s", storage=sqlite_url))  # none stranded
    text = out.getvalue()
    # the resume says how the last run ended (its run log entry)
    assert re.search(r"^last run: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d +[0-9.]+s  done: 2 complete, 0 pruned, 0 failed "
                     r"\(pid \d+ on ", text, flags=re.M), text
    assert (f"running again, with their parameters, 3 trials ({interrupted}, {requested}, {lost}) an earlier run "
            f"left unfinished (rerun_unfinished: false turns this off)") in text, text
    assert f"not running again 1 trial ({third}) left unfinished 3 times with the same parameters" in text, text
    assert (left / "resume.pt").exists()  # not a built-in task's: never deleted (tests/engine/test_study.py)
    # the next resume: the one owed (its enqueued parameters) and one left since, none of the others again
    since = _unfinished(optuna.load_study(study_name="s", storage=sqlite_url), -1.0)
    out = io.StringIO()
    tuner.run(_spec(n_trials=8), objectives.quadratic, storage=sqlite_url, progress=Progress(stream=out, live=False))
    trials = optuna.load_study(study_name="s", storage=sqlite_url).trials
    runs_of = sorted(t.system_attrs[_attrs.RERUN_OF] for t in trials if _attrs.RERUN_OF in t.system_attrs)
    assert runs_of == sorted([first, second, interrupted, requested, lost, popped, since]), runs_of
    assert {t.params["x"] for t in trials if t.system_attrs.get(_attrs.RERUN_OF) in (popped, since)} == {0.75, -1.0}
    assert "not running again" not in out.getvalue()  # told once
    # switched off
    off = _unfinished(optuna.load_study(study_name="s", storage=sqlite_url), 2.5)
    out = io.StringIO()
    tuner.run(_spec(n_trials=9, rerun_unfinished=False), objectives.quadratic, storage=sqlite_url,
              progress=Progress(stream=out, live=False))
    assert "running again" not in out.getvalue() and not any(
        t.system_attrs.get(_attrs.RERUN_OF) == off for t in optuna.load_study(study_name="s", storage=sqlite_url).trials)
