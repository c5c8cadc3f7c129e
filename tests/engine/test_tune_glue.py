"""tuner's pieces of Ray Tune's loop (tuner/engine/_tune_glue.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tuner.engine._tune_glue import Stopper
from tuner.engine._worker import STATE_KEY, VALUES_KEY


def test_the_stopper_ends_a_trial_at_the_result_that_carries_its_state() -> None:
    # The worker returns once per trial, with the trial's state: Tune must stop the trial there,
    # not send its actor another `train` call to find out that the function returned.
    state = SimpleNamespace(stop_reason=None)
    stopper = Stopper(state)  # type: ignore[arg-type]
    assert stopper("t1", {STATE_KEY: "COMPLETE", VALUES_KEY: [0.5], "training_iteration": 1}) is True
    assert stopper("t1", {STATE_KEY: "PRUNED", VALUES_KEY: None}) is True
    assert stopper("t1", {"training_iteration": 1}) is False  # not the worker's result: Tune decides
    assert stopper.stop_all() is False
    state.stop_reason = "max_failures"
    assert stopper.stop_all() is True
    state.stop_reason = "n_trials"
    assert stopper.stop_all() is False


def test_a_dead_workers_trial_loses_its_resume_point_where_the_driver_sees_its_folder(tmp_path: Path) -> None:
    """A trial whose worker died (the OOM killer, a crash) is not run again: the resume point it
    left would only take disk space. Called by the Recorder for a built-in task's trial only."""
    import optuna

    from tuner.engine import _attrs
    from tuner.engine._tune_glue import _drop_resume_point

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "resume.pt").write_bytes(b"point")
    (tmp_path / "t" / "best.pt").write_bytes(b"model")
    study._storage.set_trial_system_attr(trial._trial_id, _attrs.WORKER, {"trial_dir": str(tmp_path / "t")})
    _drop_resume_point(study, trial._trial_id)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["best.pt"]
    _drop_resume_point(study, 12345)  # a trial it cannot read: nothing raised
