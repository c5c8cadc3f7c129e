"""``ctx.report`` against a real Optuna study in a SQLite file: what the pruner gets to see."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import optuna
import pytest

from tuner.engine import _attrs
from tuner.engine._context import TrialContext, real_number
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


def test_a_first_report_without_the_study_metric_warns_naming_what_is_needed_and_what_came(tmp_path: Path) -> None:
    """`acc` reported in a `metric: val_loss` study (a typo, a renamed metric) left pruning off
    with no word; the trial is warned once (not failed: logging other values first is legitimate)."""
    study, ctx = _context(tmp_path, optuna.pruners.MedianPruner())
    ctx.report(1, {"acc": 0.5, "loss": 0.1})
    ctx.report(2, {"acc": 0.6, "loss": 0.1})
    assert len(ctx.warnings) == 1 and re.search(r"has no 'val_loss', the study's metric.*reported: \['acc', 'loss'\]",
                                                 ctx.warnings[0]), ctx.warnings
    assert _trial(study, ctx.number).intermediate_values == {}


def test_a_metric_reported_as_none_is_not_measured_yet_and_not_missing(tmp_path: Path) -> None:
    _study, ctx = _context(tmp_path, optuna.pruners.MedianPruner())
    ctx.report(1, {"val_loss": None, "train_loss": 0.4})
    assert not ctx.warnings and ctx.curve == [{"step": 1, "train_loss": 0.4}]


def test_once_the_metric_came_a_step_without_it_is_a_step_without_evaluation(tmp_path: Path) -> None:
    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    ctx.report(1, {"val_loss": 0.5, "train_loss": 0.4})
    ctx.report(2, {"train_loss": 0.3})  # val_loss every other epoch, say
    ctx.report(3, {"val_loss": 0.2, "train_loss": 0.2})
    assert _trial(study, ctx.number).intermediate_values == {1: 0.5, 3: 0.2}
    assert [c["step"] for c in ctx.curve] == [1, 2, 3]


def test_without_a_pruner_reports_may_carry_other_names(tmp_path: Path) -> None:
    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    ctx._prune = False  # pruner: none
    ctx.report(1, {"acc": 0.5})
    assert ctx.curve == [{"step": 1, "acc": 0.5}] and not ctx.warnings


def test_a_built_in_task_without_the_metric_in_its_reports_warns_once_per_trial(tmp_path: Path) -> None:
    """A task's study may rank by a final-only metric (test_accuracy): no failure, but a stored warning."""
    study, ctx = _context(tmp_path, optuna.pruners.MedianPruner())
    ctx.report(1, {"val_accuracy": 0.5})
    ctx.report(2, {"val_accuracy": 0.6})
    assert len(ctx.warnings) == 1 and "has no 'val_loss'" in ctx.warnings[0] and "['val_accuracy']" in ctx.warnings[0]
    stored = _trial(study, ctx.number).system_attrs[_attrs.ATTR_PREFIX + "artifact_warning"]
    assert "this trial cannot be pruned" in stored


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_a_study_metric_that_is_not_a_number_is_refused(tmp_path: Path, bad: object) -> None:
    _study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    if bad is None:  # a dict's None means "not measured at this step"
        ctx.report(1, {"val_loss": bad})
        return
    with pytest.raises(TypeError, match="must be a number"):
        ctx.report(1, {"val_loss": bad})
    with pytest.raises(TypeError, match="value must be a number or a dict of numbers"):
        ctx.report(1, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", ["one", "1", 1.5, True, np.bool_(True), None, math.nan])
def test_a_step_that_is_not_a_whole_number_is_a_type_error_that_says_so(tmp_path: Path, step: object) -> None:
    _study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    with pytest.raises(TypeError, match=r"ctx.report: step must be a whole number .*got \w+ "):
        ctx.report(step, 0.5)  # type: ignore[arg-type]
    assert ctx.curve == []


def test_a_negative_step_is_refused_and_whole_numbers_of_any_type_are_taken(tmp_path: Path) -> None:
    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    with pytest.raises(ValueError, match=r"ctx.report: step must be >= 0, got -1"):
        ctx.report(-1, 0.5)
    ctx.report(0, 0.9)
    ctx.report(np.int64(1), 0.8)  # type: ignore[arg-type]
    ctx.report(2.0, 0.7)  # type: ignore[arg-type]
    assert _trial(study, ctx.number).intermediate_values == {0: 0.9, 1: 0.8, 2: 0.7}
    assert [type(c["step"]) for c in ctx.curve] == [int, int, int]


@pytest.mark.parametrize("value, expected", [
    (3, 3.0), (0.5, 0.5), (np.float32(0.25), 0.25), (np.int64(4), 4.0), (np.array(0.5), 0.5),
    (Fraction(1, 4), 0.25), (Decimal("0.5"), 0.5), (math.inf, math.inf),
    (True, None), (np.bool_(False), None), ("0.5", None), (b"1", None), (1 + 0j, None), (np.array([0.5]), None),
    (np.array(True), None), (np.array("0.5"), None), (None, None), ([1.0], None), (object(), None)])
def test_real_number_takes_real_numbers_only(value: object, expected: float | None) -> None:
    assert real_number(value) == expected


def test_real_number_takes_torch_scalars_and_not_torch_bools() -> None:
    torch = pytest.importorskip("torch")
    assert real_number(torch.tensor(0.5)) == 0.5 and real_number(torch.tensor(3)) == 3.0
    assert real_number(torch.tensor(True)) is None and real_number(torch.tensor(1 + 1j)) is None
    assert real_number(torch.tensor([0.5, 0.6])) is None


def test_a_step_reported_again_keeps_its_first_values_in_the_curve_as_optuna_keeps_them(tmp_path: Path) -> None:
    """Before, the curve kept every report of a step while Optuna kept the first for the pruner:
    `tuner trial` listed step 5 twice, with a value the pruner never saw."""
    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    with pytest.warns(UserWarning, match="val_loss at step 5 reported before") as caught:
        for step, value in [(5, 1.0), (3, 2.0), (5, 9.0), (5, 4.0)]:
            ctx.report(step, {"val_loss": value})
    assert len(caught) == 1  # once per trial
    ctx.store_curve()
    stored = _trial(study, ctx.number)
    assert stored.intermediate_values == {3: 2.0, 5: 1.0}
    assert stored.system_attrs[_attrs.CURVE] == ctx.curve == [{"step": 5, "val_loss": 1.0}, {"step": 3, "val_loss": 2.0}]


def test_a_step_reported_in_two_calls_gathers_both_and_the_pruner_gets_the_metric(tmp_path: Path) -> None:
    """The training loss, then the validation metrics, each epoch: the second call was dropped as
    a repeated step, and with it the metric the pruner decides on."""
    import warnings

    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is reported twice here: no warning
        for epoch in (1, 2):
            ctx.report(epoch, {"train_loss": 1.0 / epoch, "val_loss": None})
            ctx.report(epoch, {"val_loss": 0.5 / epoch, "val_acc": 0.9})
    ctx.store_curve()
    stored = _trial(study, ctx.number)
    assert stored.intermediate_values == {1: 0.5, 2: 0.25}
    assert stored.system_attrs[_attrs.CURVE] == [{"step": 1, "train_loss": 1.0, "val_loss": 0.5, "val_acc": 0.9},
                                                 {"step": 2, "train_loss": 0.5, "val_loss": 0.25, "val_acc": 0.9}]
    assert ctx.warnings == []  # not one of the trial's stored warnings (a checkpoint the disk had no room for)


def test_a_long_curve_is_not_rewritten_at_every_report_and_is_whole_once_the_trial_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The curve is one attribute: stored at each of n reports it cost n writes of up to n rows
    (13 s of a 3,000-report trial). Short curves are still stored at every report (a running
    trial's view), long ones when the time since the last write covers 20 times its cost."""
    study, ctx = _context(tmp_path, optuna.pruners.NopPruner())
    writes: list[int] = []
    storage = study._storage
    real = storage.set_trial_system_attr

    def counting(trial_id: int, key: str, value: object) -> None:
        if key == _attrs.CURVE:
            writes.append(len(value))  # type: ignore[arg-type]
        real(trial_id, key, value)

    monkeypatch.setattr(storage, "set_trial_system_attr", counting)
    for step in range(1, 51):
        ctx.report(step, {"val_loss": 1.0 / step})
    assert writes == list(range(1, 51))  # short: every report, as before
    for step in range(51, 2001):
        ctx.report(step, {"val_loss": 1.0 / step})
    assert 100 <= len(writes) < 200, len(writes)  # the first 100 reports, then about one a second at most
    assert _trial(study, ctx.number).intermediate_values[2000] == 1.0 / 2000  # the pruner's values: every report
    ctx.store_curve()
    assert writes[-1] == 2000 and _trial(study, ctx.number).system_attrs[_attrs.CURVE] == ctx.curve
    ctx.store_curve()  # nothing new: no write
    assert writes[-1] == 2000 and writes.count(2000) == 1
