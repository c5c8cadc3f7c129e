"""The worker's half of Optuna's ask (tuner/engine/_worker.py), on a real SQLite study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from tuner.engine import _plugins, _worker
from tuner.tasks import Task
from tuner.space import SearchSpace


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_trial`` called here, not in a Ray worker: its placement record would start a Ray
    instance just to ask for the node (what is recorded of it is tested with real runs)."""
    monkeypatch.setattr(_worker, "_placement", lambda job, trial_dir: {"trial_dir": str(trial_dir)})


def _job(space: SearchSpace, url: str) -> _worker.JobInfo:
    return _worker.JobInfo(storage_url=url, study_name="s", metrics=("v",), directions=("minimize",), pruner="none",
                           pruner_args={}, sampler="random", sampler_args={}, space=space, task=None, task_args={},
                           objective_ref=None, objective_blob=None, artifacts_dir="", source="", base_dir="",
                           driver_cwd="", driver_sys_path=[], cpus=1, gpus=0, seed=7, trial_timeout=None)


def test_ask_samples_the_drivers_trial_reading_it_once_and_calling_before_trial_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's per-trial cost is a few database round trips; the trial the driver created is
    # read once (by Optuna's Trial, which also calls the sampler's before_trial, as study.ask does).
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = SearchSpace.from_mapping({"params": {"x": {"float": [-1.0, 1.0]}, "n": {"int": [1, 9]}}}, source="t")
    study = optuna.create_study(storage=url, study_name="s")
    trial_id = study._storage.create_new_trial(study._study_id)
    reads: list[int] = []
    backend = study._storage._backend
    real_get_trial = backend.get_trial
    monkeypatch.setattr(backend, "get_trial", lambda tid: reads.append(tid) or real_get_trial(tid))
    hooks: list[int] = []
    real_make = _plugins.make_sampler

    def counting_sampler(*args: Any, **kwargs: Any) -> optuna.samplers.BaseSampler:
        sampler = real_make(*args, **kwargs)
        real_before = sampler.before_trial
        sampler.before_trial = lambda st, frozen: hooks.append(frozen.number) or real_before(st, frozen)
        return sampler

    monkeypatch.setattr(_plugins, "make_sampler", counting_sampler)
    trial, params = _worker._ask(_job(space, url), study, trial_id, 0)
    assert trial._trial_id == trial_id
    assert reads == [trial_id] and hooks == [0]
    # The parameters are the seeded sampler's own draws for trial 0, and stored with the trial.
    expected = optuna.create_study(sampler=real_make("random", {}, seed=_plugins.trial_seed(7, 0), space=space))
    assert params == space.suggest(expected.ask())
    assert study._storage.get_trial(trial_id).params == params


@pytest.mark.parametrize("returned", [True, False, np.bool_(True), "0.5", "hello", b"1", 1 + 0j, None, [0.5]])
def test_a_return_that_is_not_a_real_number_fails_as_a_string_does(tmp_path: Path, returned: object) -> None:
    """float() took True as 1.0 and "0.5" as 0.5, so a returned flag or unparsed text ranked the trial."""
    job = _job(SearchSpace.from_mapping({"params": {"x": {"float": [0, 1]}}}, source="t"), "sqlite://")
    with pytest.raises(TypeError, match=r"^the objective returned a non-number for 'v': "):
        _worker._values(job, returned, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^the objective returned a non-number for 'v': "):
        _worker._values(job, {"v": returned}, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("returned", [3, 0.5, np.float32(0.5), np.int64(3), np.array(0.5)])
def test_real_numbers_of_python_and_numpy_are_taken(tmp_path: Path, returned: object) -> None:
    job = _job(SearchSpace.from_mapping({"params": {"x": {"float": [0, 1]}}}, source="t"), "sqlite://")
    assert _worker._values(job, returned, None) == [float(returned)]  # type: ignore[arg-type]


def test_a_rerun_is_given_the_folder_of_the_trial_it_runs_again(tmp_path: Path, in_process: None) -> None:
    """``ctx.resumed_from``: where the interrupted trial left its files, so an objective that
    keeps its own checkpoints goes on from there; None for a trial that reruns nothing, or whose
    trial's folder is gone."""
    from optuna.trial import TrialState

    from tuner.engine import _attrs

    url = f"sqlite:///{tmp_path / 's.db'}"
    space = SearchSpace.from_mapping({"params": {"x": {"float": [0, 1]}}}, source="t")
    job = _job(space, url)
    job.objective_ref, job.artifacts_dir = "tests.objectives:counts_on", str(tmp_path / "runs")
    study = optuna.create_study(storage=url, study_name="s")
    storage = study._storage
    old = storage.create_new_trial(study._study_id)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "count.txt").write_text("3")
    storage.set_trial_system_attr(old, _attrs.WORKER, {"trial_dir": str(tmp_path / "old")})
    storage.set_trial_state_values(old, TrialState.FAIL)
    gone = storage.create_new_trial(study._study_id)
    storage.set_trial_system_attr(gone, _attrs.WORKER, {"trial_dir": str(tmp_path / "deleted")})
    storage.set_trial_state_values(gone, TrialState.FAIL)
    unstarted = storage.create_new_trial(study._study_id)  # trial 0's rerun, stopped before a worker took it
    storage.set_trial_system_attr(unstarted, _attrs.RERUN_OF, 0)
    storage.set_trial_state_values(unstarted, TrialState.FAIL)

    def run(rerun_of: int | None) -> list[float]:
        trial_id = storage.create_new_trial(study._study_id)
        if rerun_of is not None:
            storage.set_trial_system_attr(trial_id, _attrs.RERUN_OF, rerun_of)
        number = storage.get_trial_number_from_id(trial_id)
        result = _worker.run_trial(job, {"trial_id": trial_id, "number": number})
        assert result[_worker.STATE_KEY] == "COMPLETE", storage.get_trial_system_attrs(trial_id)
        return result[_worker.VALUES_KEY]

    assert run(0) == [2.0]  # steps 4 and 5: it went on from trial 0's count
    assert run(None) == [5.0]
    assert run(1) == [5.0]  # trial 1's folder is gone: from the start
    assert run(2) == [2.0]  # trial 2 never had a folder: the one before it, trial 0's
    from tuner.engine._study import rerun_chain_folders

    assert rerun_chain_folders(storage, study._study_id, storage.get_trial_system_attrs(unstarted)) == \
        [tmp_path / "old"]


class _ProbeTask(Task):
    """A built-in task as the worker sees one: it writes a resume point, then does what
    ``params["then"]`` says: return, raise, or find its trial stored as unfinished by a later run
    (a killed driver's orphaned worker) at its next report."""

    name = "probe"
    seen: dict[str, Any] = {}
    url = ""

    def run(self, params: dict[str, Any], ctx: Any) -> dict[str, float]:
        from optuna.trial import TrialState

        from tuner.engine import _attrs

        type(self).seen = {"resumable": ctx.resumable, "taken_over": (ctx.trial_dir / "resume.pt").is_file(),
                           "resumed_from": ctx.resumed_from}
        (ctx.trial_dir / "resume.pt").write_bytes(b"point")
        if params["then"] == "fail":
            raise ValueError("boom")
        if params["then"] == "taken by a later run":
            other = optuna.storages.RDBStorage(self.url)
            other.set_trial_system_attr(ctx._trial_id, _attrs.ERROR, {"type": "DriverLost", "message": "",
                                                                      "traceback": ""})
            other.set_trial_state_values(ctx._trial_id, TrialState.FAIL)
            ctx.report(1, 0.5)  # refused: the trial is finished
        return {"v": 1.0}

    def metric_names(self) -> list[str]:
        return ["v"]


@pytest.mark.parametrize("then, kept", [("fail", False), ("taken by a later run", True), ("return", False)])
def test_a_failed_built_in_trial_drops_its_resume_point_and_an_orphaned_one_keeps_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str, kept: bool,
        in_process: None) -> None:
    """A trial that failed on its own is not run again; one a later run stored as unfinished
    while its worker still ran (the driver was killed) is, and its rerun needs the point."""
    from tuner.tasks import _registry

    monkeypatch.setitem(_registry._TASKS, "probe", _ProbeTask)
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setattr(_ProbeTask, "url", url)
    space = SearchSpace.from_mapping({"params": {"then": then}}, source="t")
    job = _job(space, url)
    job.task, job.artifacts_dir, job.resume_points = "probe", str(tmp_path / "runs"), True
    study = optuna.create_study(storage=url, study_name="s")
    trial_id = study._storage.create_new_trial(study._study_id)
    result = _worker.run_trial(job, {"trial_id": trial_id, "number": 0})
    assert result[_worker.STATE_KEY] == ("COMPLETE" if then == "return" else "FAIL")
    # a trial that returned: the probe wrote its point after the loop would have discarded it
    assert (tmp_path / "runs" / "s" / "trial_00000" / "resume.pt").exists() == (kept or then == "return")
    if then == "fail":  # dropped before the trial's files were listed: no artifact that is gone
        from tuner.engine import _attrs

        listed = study._storage.get_trial_system_attrs(trial_id).get(_attrs.ARTIFACTS) or []
        assert not any(a["name"].startswith("resume.pt") for a in listed), listed
    assert _ProbeTask.seen == {"resumable": True, "taken_over": False, "resumed_from": None}


def test_a_built_in_rerun_takes_the_point_over_before_it_starts_and_none_is_written_where_reruns_are_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: None) -> None:
    from optuna.trial import TrialState

    from tuner.engine import _attrs
    from tuner.tasks import _registry

    monkeypatch.setitem(_registry._TASKS, "probe", _ProbeTask)
    url = f"sqlite:///{tmp_path / 's.db'}"
    job = _job(SearchSpace.from_mapping({"params": {"then": "return"}}, source="t"), url)
    job.task, job.artifacts_dir, job.resume_points = "probe", str(tmp_path / "runs"), True
    study = optuna.create_study(storage=url, study_name="s")
    storage = study._storage
    old = storage.create_new_trial(study._study_id)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "resume.pt").write_bytes(b"point")
    storage.set_trial_system_attr(old, _attrs.WORKER, {"trial_dir": str(tmp_path / "old")})
    storage.set_trial_state_values(old, TrialState.FAIL)
    rerun = storage.create_new_trial(study._study_id)
    storage.set_trial_system_attr(rerun, _attrs.RERUN_OF, 0)
    _worker.run_trial(job, {"trial_id": rerun, "number": 1})
    assert _ProbeTask.seen == {"resumable": True, "taken_over": True, "resumed_from": tmp_path / "old"}
    assert not (tmp_path / "old" / "resume.pt").exists()

    job.resume_points = False  # rerun_unfinished: false, or grid search: nothing is resumed
    _worker.run_trial(job, {"trial_id": storage.create_new_trial(study._study_id), "number": 2})
    assert _ProbeTask.seen["resumable"] is False


def test_a_user_objectives_own_file_named_resume_pt_is_never_touched(tmp_path: Path, in_process: None) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    job = _job(SearchSpace.from_mapping({"params": {"x": {"float": [0, 1]}}}, source="t"), url)
    job.objective_ref, job.artifacts_dir, job.resume_points = "tests.objectives:saves_then_fails", \
        str(tmp_path / "runs"), True
    study = optuna.create_study(storage=url, study_name="s")
    result = _worker.run_trial(job, {"trial_id": study._storage.create_new_trial(study._study_id), "number": 0})
    assert result[_worker.STATE_KEY] == "FAIL"
    assert (tmp_path / "runs" / "s" / "trial_00000" / "resume.pt").read_bytes() == b"mine"
