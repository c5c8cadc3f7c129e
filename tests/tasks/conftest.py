"""A fake TrialContext (the engine's real one is tested elsewhere) and shared data for task tests."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import torch

from tuner.exceptions import TrialPruned

torch.set_num_threads(1)


class FakeContext:
    """Records reports and attributes; raises TrialPruned from ``report`` at ``prune_at``."""

    def __init__(self, trial_dir: pathlib.Path, *, seed: int = 0, metric: str = "val_accuracy",
                 direction: str = "maximize", prune_at: int | None = None) -> None:
        self.trial_dir = trial_dir
        self.device = "cpu"
        self.seed = seed
        self.metric = metric
        self.direction = direction
        self.num_threads = 1
        self.prune_at = prune_at
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.attrs: dict[str, Any] = {}

    def report(self, step: int, metrics: dict[str, float]) -> None:
        self.reports.append((step, dict(metrics)))
        if self.prune_at is not None and step >= self.prune_at:
            raise TrialPruned(f"pruned at step {step}")

    def set_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def series(self, name: str) -> list[float]:
        return [m[name] for _, m in self.reports]


class Killed(BaseException):
    """What a killed worker amounts to for the loop: it stops at once and cleans nothing up."""


class RunContext(FakeContext):
    """The engine's trial as the loop sees it: resumable, maybe a rerun, maybe killed at a report."""

    def __init__(self, trial_dir: pathlib.Path, *, resumed_from: pathlib.Path | None = None,
                 kill_at: int | None = None, **kwargs: Any) -> None:
        super().__init__(trial_dir, **kwargs)
        self.resumable = True
        self.resumed_from = resumed_from
        self.kill_at = kill_at
        self.warnings: list[str] = []

    def report(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.kill_at:
            raise Killed
        super().report(step, metrics)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def rerun_context(trial_dir: pathlib.Path, *stopped: pathlib.Path, **kwargs: Any) -> RunContext:
    """The rerun of the trials whose folders are ``stopped`` (nearest first), as the engine
    starts one: their nearest resume point moved into its folder before the task runs."""
    from tuner.tasks._resume import take_over

    take_over(list(stopped), trial_dir)
    return RunContext(trial_dir, resumed_from=stopped[0] if stopped else None, **kwargs)


@pytest.fixture
def make_ctx(tmp_path: pathlib.Path):
    counter = iter(range(10_000))

    def make(**kwargs: Any) -> FakeContext:
        return FakeContext(tmp_path / f"trial{next(counter)}", **kwargs)

    return make
