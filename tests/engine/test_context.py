"""``ctx.report`` against a real Optuna study in a SQLite file: what the pruner gets to see."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from tuner.engine._context import TrialContext
from tuner.exceptions import TrialPruned


def _context(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study, TrialContext]:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'ctx.db'}", pruner=pruner)
    trial = study.ask()
    ctx = TrialContext(study=study, trial=trial, number=trial.number, params={}, metrics=("val_loss",),
                       directions=("minimize",), trial_dir=tmp_path / "t0", device="cpu", seed=0, num_threads=1,
                       prune=True)
    return study, ctx


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.trials if t.number == number)


def _finish_one(study: optuna.Study, value: float) -> None:
    """A finished trial that went through the pruner's rung at step 1: something to compare with."""
    done = study.ask()
    done.report(value, 1)
    assert not done.should_prune()
    study.tell(done, value)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_value_reaches_the_pruner_and_is_stored(tmp_path: Path, bad: float) -> None:
    """A diverged objective reporting NaN (or an overflowed inf) is stopped by the pruner at its
    next decision, as in plain Optuna, instead of running its remaining steps unseen."""
    study, ctx = _context(tmp_path, optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    _finish_one(study, 0.5)
    with pytest.raises(TrialPruned):
        ctx.report(1, {"val_loss": bad, "train_loss": bad})
    value = _trial(study, ctx.number).intermediate_values[1]
    assert math.isnan(value) if math.isnan(bad) else value == bad
    assert ctx.curve == [{"step": 1, "val_loss": None, "train_loss": None}]  # the JSON curve holds null


def test_finite_values_still_pass_when_they_are_good_enough(tmp_path: Path) -> None:
    study, ctx = _context(tmp_path, optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    _finish_one(study, 0.5)
    ctx.report(1, {"val_loss": 0.1})  # better than the finished trial at step 1: goes on
    assert _trial(study, ctx.number).intermediate_values == {1: 0.1}


def test_mark_keeps_the_first_moment_of_each_name_in_memory_only(tmp_path: Path) -> None:
    import time

    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    before = time.time()
    ctx.mark("training_started")
    first = ctx.marks["training_started"]
    time.sleep(0.01)
    ctx.mark("training_started")  # a second mark (a retried loop, say) does not move the first
    ctx.mark("data_loaded")
    assert before <= first == ctx.marks["training_started"] < ctx.marks["data_loaded"] <= time.time()
    assert not any(k.startswith("tuner:") for k in _trial(study, ctx.number).system_attrs)  # the worker stores them
