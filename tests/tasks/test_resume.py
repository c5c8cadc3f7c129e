"""A rerun of an interrupted trial goes on from its last epoch and ends as if never interrupted.

The training loop is run directly with a recording context: once through, once stopped at an
epoch's report (as a kill would stop it, keeping what it saved), and then as the rerun, with the
stopped trial's resume point moved into its folder as the engine moves it.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import torch

from tests.tasks.conftest import Killed, RunContext, rerun_context
from tuner.data import load_digits
from tuner.exceptions import TrialPruned
from tuner.tasks import _resume
from tuner.tasks._resume import RESUME_FILE, ResumePoint
from tuner.tasks._training import train_classifier
from tuner.tasks.cnn import CNNTask
from tuner.tasks.mlp import MLPTask

SMALL = load_digits(max_samples=600)
TIMING = {"epoch_time_s", "train_time_s"}


@pytest.fixture(autouse=True)
def every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume point after every epoch (these epochs take milliseconds: by default most would
    not pay for one); the throttle itself is tested on its own below."""
    monkeypatch.setattr(_resume, "TIME_SHARE", 1e9)


MLP = {"width": 64, "n_layers": 2, "dropout": 0.2, "optimizer": "adamw", "lr": 0.01, "weight_decay": 1e-3,
       "schedule": "cosine", "warmup_frac": 0.2, "precision": "fp16", "grad_clip": 1.0, "batch_size": 32,
       "epochs": 5, "early_stopping_patience": 0}
CNN = {"n_conv": 1, "channels": [4], "head_width": 16, "dropout": 0.1, "batch_norm": True, "optimizer": "sgd",
       "lr": 0.05, "schedule": "onecycle", "augment": "strong", "batch_size": 64, "epochs": 4,
       "early_stopping_patience": 0}


def _mlp(ctx: Any, params: dict[str, Any]) -> dict[str, float]:
    return MLPTask({"dataset": "digits", "max_samples": 600}).run(dict(params), ctx)


def _cnn(ctx: Any, params: dict[str, Any]) -> dict[str, float]:
    return CNNTask({"dataset": "digits", "max_samples": 400}).run(dict(params), ctx)


def _untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _weights(folder: pathlib.Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "best.pt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("train, params, stop_at", [(_mlp, MLP, 4), (_cnn, CNN, 3)], ids=["mlp", "cnn"])
def test_a_rerun_goes_on_from_the_last_epoch_and_ends_as_if_never_interrupted(
        tmp_path: pathlib.Path, train: Any, params: dict[str, Any], stop_at: int) -> None:
    """Dropout, batch order, augmentation, the schedule, the optimizer's moments and fp16's
    loss scale all continue: the rerun's metrics and weights equal the uninterrupted trial's."""
    whole = RunContext(tmp_path / "whole", seed=3)
    expected = train(whole, params)
    assert not (tmp_path / "whole" / RESUME_FILE).exists()  # a trial that ended on its own keeps none

    stopped = RunContext(tmp_path / "stopped", seed=3, kill_at=stop_at)
    with pytest.raises(Killed):
        train(stopped, params)
    saved = torch.load(tmp_path / "stopped" / RESUME_FILE, map_location="cpu", weights_only=False)
    assert saved["epoch"] == stop_at - 1

    # the rerun has another trial number, so another seed: what it draws from here is the saved state's
    rerun = rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=99)
    assert not (tmp_path / "stopped" / RESUME_FILE).exists()  # moved, not copied
    got = train(rerun, params)
    assert _untimed(got) == _untimed(expected)
    assert got["epochs_run"] == params["epochs"]
    mine, theirs = _weights(tmp_path / "rerun"), _weights(tmp_path / "whole")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # the epochs it took over are reported again as they were (not trained again: same epoch times)
    assert [step for step, _ in rerun.reports] == list(range(1, params["epochs"] + 1))
    assert rerun.reports[: stop_at - 1] == stopped.reports
    assert [_untimed(m) for _, m in rerun.reports] == [_untimed(m) for _, m in whole.reports]
    assert rerun.attrs["resumed_at_epoch"] == stop_at - 1 and rerun.warnings == []
    assert not (tmp_path / "stopped" / RESUME_FILE).exists() and not (tmp_path / "rerun" / RESUME_FILE).exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a lent GPU machine)")
def test_on_a_gpu_the_rerun_restores_the_cuda_random_stream_too(tmp_path: pathlib.Path) -> None:
    """Dropout on a GPU draws from the CUDA generator, saved and restored beside the CPU's."""
    def on_gpu(name: str, **kwargs: Any) -> RunContext:
        ctx = RunContext(tmp_path / name, **kwargs)
        ctx.device = "cuda"
        return ctx

    expected = _mlp(on_gpu("whole", seed=3), MLP)
    with pytest.raises(Killed):
        _mlp(on_gpu("stopped", seed=3, kill_at=4), MLP)
    saved = torch.load(tmp_path / "stopped" / RESUME_FILE, map_location="cpu", weights_only=True)
    assert "cuda" in saved["rng"]
    _resume.take_over([tmp_path / "stopped"], tmp_path / "rerun")
    got = _mlp(on_gpu("rerun", seed=99), MLP)
    assert _untimed(got) == pytest.approx(_untimed(expected), rel=1e-5)


def test_early_stopping_and_a_best_epoch_before_the_point_carry_over(tmp_path: pathlib.Path) -> None:
    """The best weights may be epochs older than the point (saved beside the current ones), and
    early stopping counts its patience from that epoch, across the interruption."""
    params = {"width": 64, "n_layers": 2, "dropout": 0.2, "optimizer": "adam", "lr": 0.1, "batch_size": 32,
              "epochs": 10, "early_stopping_patience": 3}
    watch = {"metric": "val_loss", "direction": "minimize"}
    expected = _mlp(RunContext(tmp_path / "whole", seed=3, **watch), params)
    assert (expected["best_epoch"], expected["epochs_run"]) == (4, 7)  # stopped 3 epochs after its best
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "stopped", seed=3, kill_at=7, **watch), params)
    saved = torch.load(tmp_path / "stopped" / RESUME_FILE, weights_only=True)
    assert (saved["epoch"], saved["best_epoch"]) == (6, 4) and saved["best_state"] is not None
    got = _mlp(rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=99, **watch), params)
    assert _untimed(got) == _untimed(expected)
    mine, theirs = _weights(tmp_path / "rerun"), _weights(tmp_path / "whole")
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_the_fp16_loss_scaler_goes_on_from_its_saved_state(tmp_path: pathlib.Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Its scale and growth tracker matter only after thousands of steps, which no test trains:
    what it was given back is checked instead."""
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "stopped", seed=3, kill_at=4), MLP)
    saved = torch.load(tmp_path / "stopped" / RESUME_FILE, weights_only=True)["scaler"]
    assert saved["_growth_tracker"] > 0  # a fresh scaler's is 0
    restored: list[dict[str, Any]] = []
    load = torch.amp.GradScaler.load_state_dict

    def spy(self: torch.amp.GradScaler, state: dict[str, Any]) -> None:
        load(self, state)
        restored.append(self.state_dict())

    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", spy)
    _mlp(rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=3), MLP)
    assert restored == [saved]


def test_a_rerun_stopped_again_before_its_first_point_leaves_the_one_it_took_for_the_next(
        tmp_path: pathlib.Path) -> None:
    whole = RunContext(tmp_path / "whole", seed=3)
    expected = _mlp(whole, MLP)
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "first", seed=3, kill_at=3), MLP)
    with pytest.raises(Killed):  # stopped in its first epoch of its own, 3
        _mlp(rerun_context(tmp_path / "second", tmp_path / "first", seed=4, kill_at=3), MLP)
    assert not (tmp_path / "first" / RESUME_FILE).exists() and (tmp_path / "second" / RESUME_FILE).is_file()
    third = rerun_context(tmp_path / "third", tmp_path / "second", tmp_path / "first", seed=5)
    assert _untimed(_mlp(third, MLP)) == _untimed(expected)
    assert third.attrs["resumed_at_epoch"] == 2


def test_a_resume_point_of_other_parameters_or_damaged_is_told_and_training_starts_from_epoch_one(
        tmp_path: pathlib.Path) -> None:
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "stopped", seed=3, kill_at=3), MLP)
    other = {**MLP, "lr": 0.02}
    fresh = _mlp(RunContext(tmp_path / "fresh", seed=8), other)
    rerun = rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=8)
    assert _untimed(_mlp(rerun, other)) == _untimed(fresh)
    assert rerun.warnings == ["the resume point of the trial this one runs again was saved for other parameters, "
                              "data or model; trained from epoch 1"]
    assert "resumed_at_epoch" not in rerun.attrs and not (tmp_path / "rerun" / RESUME_FILE).exists()

    # the same parameters on other data (a file edited in place): the parameters alone would pass
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "stopped2", seed=3, kill_at=3), MLP)
    rerun = rerun_context(tmp_path / "rerun2", tmp_path / "stopped2", seed=8)
    MLPTask({"dataset": "digits", "max_samples": 500}).run(dict(MLP), rerun)
    assert len(rerun.warnings) == 1 and "saved for other parameters, data or model" in rerun.warnings[0]

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RESUME_FILE).write_bytes(b"not a checkpoint")
    rerun = rerun_context(tmp_path / "rerun3", tmp_path / "broken", seed=8)
    assert _untimed(_mlp(rerun, other)) == _untimed(fresh)
    assert len(rerun.warnings) == 1 and rerun.warnings[0].startswith(
        "the resume point of the trial this one runs again could not be read (")


def test_the_pruner_may_stop_a_rerun_on_the_epochs_it_reports_again(tmp_path: pathlib.Path) -> None:
    with pytest.raises(Killed):
        _mlp(RunContext(tmp_path / "stopped", seed=3, kill_at=4), MLP)
    rerun = rerun_context(tmp_path / "rerun", tmp_path / "stopped", seed=3, prune_at=2)
    with pytest.raises(TrialPruned):
        _mlp(rerun, MLP)
    assert [step for step, _ in rerun.reports] == [1, 2]
    assert not (tmp_path / "stopped" / RESUME_FILE).exists() and not (tmp_path / "rerun" / RESUME_FILE).exists()


def test_a_resume_point_that_cannot_be_written_is_told_once_and_costs_nothing_else(tmp_path: pathlib.Path) -> None:
    expected = _mlp(RunContext(tmp_path / "whole", seed=3), MLP)
    ctx = RunContext(tmp_path / "full", seed=3)
    (tmp_path / "full" / (RESUME_FILE + ".tmp")).mkdir(parents=True)  # open() for writing fails (as root too)
    assert _untimed(_mlp(ctx, MLP)) == _untimed(expected)
    assert len(ctx.warnings) == 1 and ctx.warnings[0].startswith(f"{RESUME_FILE} not saved: ")
    assert (tmp_path / "full" / "best.pt").is_file()

    # the disk fills after the first point: that older point goes too (the warning says a rerun
    # starts from epoch 1), and the trial's end still clears the folder
    later = RunContext(tmp_path / "later", seed=3)
    report = later.report

    def fill_after_first_point(step: int, metrics: dict[str, float]) -> None:
        if step == 2:
            assert (tmp_path / "later" / RESUME_FILE).is_file()
            (tmp_path / "later" / (RESUME_FILE + ".tmp")).mkdir()
        report(step, metrics)

    later.report = fill_after_first_point  # type: ignore[method-assign]
    assert _untimed(_mlp(later, MLP)) == _untimed(expected)
    assert len(later.warnings) == 1 and not (tmp_path / "later" / RESUME_FILE).exists()


def test_a_context_that_is_not_an_engine_trial_writes_no_resume_point(make_ctx) -> None:
    """A re-training for export, a test's bare context: nothing would ever resume from it."""
    ctx = make_ctx()
    folder = ctx.trial_dir
    seen: list[bool] = []
    original = ctx.report

    def report(step: int, metrics: dict[str, float]) -> None:
        seen.append((folder / RESUME_FILE).exists())
        original(step, metrics)

    ctx.report = report
    _mlp(ctx, MLP)
    assert seen == [False] * MLP["epochs"]


def test_the_loop_saves_after_every_epoch_but_the_last(tmp_path: pathlib.Path) -> None:
    ctx = RunContext(tmp_path / "t", seed=3)
    epochs_saved: list[int | None] = []
    original = ctx.report

    def report(step: int, metrics: dict[str, float]) -> None:
        path = tmp_path / "t" / RESUME_FILE
        epochs_saved.append(torch.load(path, weights_only=False)["epoch"] if path.exists() else None)
        original(step, metrics)

    ctx.report = report
    train_classifier(lambda: torch.nn.Linear(SMALL.n_features, SMALL.n_classes), SMALL,
                     {"epochs": 4, "lr": 0.01, "early_stopping_patience": 0}, ctx)
    assert epochs_saved == [None, 1, 2, 3]  # read as each epoch reports: the one before it
    assert not (tmp_path / "t" / RESUME_FILE).exists()


def test_a_point_is_saved_only_once_the_training_since_the_last_paid_for_it(tmp_path: pathlib.Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """At most TIME_SHARE of the training goes to resume points: with 0.11 s epochs and points that
    take 0.01 s, at 5% a point needs 0.2 s of training since the last, so every second epoch has one
    (the share is set here: the test is about the rule, not the default)."""
    monkeypatch.setattr(_resume, "TIME_SHARE", 0.05)
    clock = [100.0]
    monkeypatch.setattr(_resume.time, "perf_counter", lambda: clock[0])
    written: list[int] = []

    def write(path: pathlib.Path, state: dict[str, Any]) -> None:
        written.append(state["epoch"])
        clock[0] += 0.01

    monkeypatch.setattr(_resume, "save_torch_file", write)
    point = ResumePoint(RunContext(tmp_path / "t"), lambda: {"lr": 0.1})
    for epoch in range(1, 8):
        clock[0] += 0.11  # the epoch's training
        point.save(lambda: {"epoch": epoch})
    assert written == [1, 3, 5, 7]  # the first point always: its cost is not known before
