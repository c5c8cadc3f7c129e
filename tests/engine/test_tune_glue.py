"""tuner's pieces of Ray Tune's loop (tuner/engine/_tune_glue.py)."""

from __future__ import annotations

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
