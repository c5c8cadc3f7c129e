"""Only the best K trials keep their checkpoints: unit tests on a real Optuna study, and a real run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import tuner
from tests._study_read import refuse_optuna_trial_reads
from tests.conftest import ROOT
from tuner.engine import _attrs
from tuner.engine._retention import CheckpointRetention


def _study(tmp_path: Path, direction: str = "minimize") -> optuna.Study:
    return optuna.create_study(study_name="r", storage=f"sqlite:///{tmp_path / 'r.db'}", direction=direction)


def _add(study: optuna.Study, tmp_path: Path, value: float | None, state: TrialState = TrialState.COMPLETE) -> int:
    number = len(study.trials)
    folder = tmp_path / f"trial_{number:05d}"
    folder.mkdir()
    for name in ("best.pt", "notes.txt"):
        (folder / name).write_text(name)
    study.add_trial(create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, state=state,
                                 value=value, system_attrs={_attrs.WORKER: {"trial_dir": str(folder)}}))
    return number


def _with_checkpoint(tmp_path: Path) -> set[int]:
    return {int(p.parent.name.split("_")[1]) for p in tmp_path.glob("trial_*/best.pt")}


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_best_k_keep_their_checkpoints_as_trials_finish(tmp_path: Path, direction: str) -> None:
    study = _study(tmp_path, direction)
    keeper = CheckpointRetention(study, keep=3)
    rng = random.Random(0)
    values: dict[int, float] = {}
    for i in range(20):
        state = TrialState.PRUNED if i % 5 == 4 else TrialState.COMPLETE
        value = rng.random() if state == TrialState.COMPLETE else None
        number = _add(study, tmp_path, value, state)
        trial_id = study.trials[-1]._trial_id
        keeper.trial_finished(trial_id, number, state.name, [value] if value is not None else None)
        if value is not None:
            values[number] = value
        best = sorted(values, key=lambda n: values[n], reverse=direction == "maximize")[:3]
        assert _with_checkpoint(tmp_path) == set(best), i
        assert keeper.kept() == best
    assert all((p / "notes.txt").exists() for p in tmp_path.glob("trial_*"))  # only checkpoints go


def test_a_resumed_run_ranks_the_trials_already_there(tmp_path: Path) -> None:
    study = _study(tmp_path)
    for v in (0.5, 0.1, 0.9, 0.3, None):
        _add(study, tmp_path, v, TrialState.COMPLETE if v is not None else TrialState.FAIL)
    with pytest.MonkeyPatch.context() as mp:  # one query of numbers, states, values and folders
        refuse_optuna_trial_reads(mp)
        keeper = CheckpointRetention(study, keep=2)
    assert keeper.kept() == [1, 3] and _with_checkpoint(tmp_path) == {1, 3}


def test_keep_all_multi_objective_and_user_objectives_keep_everything(tmp_path: Path) -> None:
    study = _study(tmp_path)
    for v in (0.5, 0.1, 0.9):
        _add(study, tmp_path, v)
    assert not CheckpointRetention(study, keep=None).enabled
    assert not CheckpointRetention(study, keep=1, enabled=False).enabled
    assert _with_checkpoint(tmp_path) == {0, 1, 2}
    mo = optuna.create_study(study_name="mo", storage=f"sqlite:///{tmp_path / 'r.db'}", directions=["minimize"] * 2)
    assert not CheckpointRetention(mo, keep=1).enabled


def test_spec_keep_checkpoints() -> None:
    base: dict[str, Any] = {"name": "q", "task": "mlp", "search_space": "mlp.yaml"}
    assert tuner.validate({**base}).keep_checkpoints == 5
    assert tuner.validate({**base, "keep_checkpoints": "all"}).keep_checkpoints is None
    assert tuner.validate({**base, "keep_checkpoints": 2}).keep_checkpoints == 2
    with pytest.raises(tuner.SpecError, match="keep_checkpoints"):
        tuner.validate({**base, "keep_checkpoints": 0})


@pytest.mark.usefixtures("ray_cluster")
def test_a_real_run_keeps_two_checkpoints(tmp_path: Path, sqlite_url: str) -> None:
    study = tuner.run(ROOT / "studies" / "quickstart.yaml", storage=sqlite_url, overrides={
        "n_trials": 5, "concurrency": 2, "pruner": "none", "keep_checkpoints": 2, "artifacts_dir": str(tmp_path / "runs"),
        "task_args.max_samples": 300,
        "search_space": {"include": ["../search_spaces/mlp.yaml"], "params": {"epochs": 2, "n_layers": 1}}})
    complete = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    with_ckpt = {t.number for t in study.trials
                 if (Path(t.system_attrs[_attrs.WORKER]["trial_dir"]) / "best.pt").exists()}
    assert len(with_ckpt) == 2
    best_value = complete[0].value
    assert any(t.value == best_value for t in complete if t.number in with_ckpt)  # the best one is kept
    kept_values = sorted((t.value for t in complete if t.number in with_ckpt), reverse=True)
    assert kept_values == [t.value for t in complete[:2]]
