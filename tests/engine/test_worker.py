"""The worker's half of Optuna's ask (tuner/engine/_worker.py), on a real SQLite study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from tuner.engine import _plugins, _worker
from tuner.space import SearchSpace


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
