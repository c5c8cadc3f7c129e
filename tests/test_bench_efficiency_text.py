"""The sentence-polarity problem of ``python -m bench efficiency`` (bench/efficiency_text.py).

Runs on the real rt-polarity files of ``../shared/datasets`` (the problem's only data).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.efficiency_problems import PROBLEMS, QUICK
from bench.efficiency_text import check_polarity_data, polarity_data_dir, polarity_objective
from tuner.exceptions import TrialPruned, TunerError

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not (polarity_data_dir() / "rt-polarity.pos").is_file(),
                                reason="../shared/datasets/rt-polarity is not on this machine")


class _Ctx:
    """The part of a trial context the objective uses: seed, threads, report."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.num_threads = 1
        self.reports: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, value: dict[str, float]) -> None:
        self.reports.append((step, dict(value)))


_GOOD = {"ngram": 2, "hidden": 16, "dropout": 0.2, "optimizer": "adam", "lr": 0.03, "momentum": 0.9,
         "weight_decay": 1e-4, "batch_size": 128, "epochs": 3}


def test_a_good_configuration_learns_polarity_and_returns_its_best_epoch() -> None:
    ctx = _Ctx(seed=0)
    result = polarity_objective(dict(_GOOD), ctx)
    assert [step for step, _ in ctx.reports] == [1, 2, 3]
    losses = [r["val_loss"] for _, r in ctx.reports]
    assert result["val_loss"] == min(losses)
    best = ctx.reports[losses.index(min(losses))][1]
    assert result["val_accuracy"] == best["val_accuracy"] > 0.70  # chance is 0.50 (balanced classes)


def test_the_same_seed_gives_the_same_curve_and_another_seed_a_different_one() -> None:
    params = dict(_GOOD, epochs=2, ngram=1)
    a, b, c = _Ctx(3), _Ctx(3), _Ctx(4)
    for ctx in (a, b, c):
        polarity_objective(dict(params), ctx)
    assert a.reports == b.reports
    assert a.reports != c.reports


def test_a_configuration_that_diverges_at_once_ends_pruned() -> None:
    ctx = _Ctx(seed=0)
    with pytest.raises(TrialPruned, match="diverged at epoch 1"):
        polarity_objective(dict(_GOOD, lr=1e30, optimizer="sgd", ngram=1, epochs=3), ctx)
    assert len(ctx.reports) == 1 and not math.isfinite(ctx.reports[0][1]["val_loss"])


def test_the_problem_is_registered_with_its_space_and_budget() -> None:
    problem, quick = PROBLEMS["polarity_bow"], QUICK["polarity_bow"]
    assert (problem.steps, problem.budget, problem.direction, problem.metric) == (8, 120, "minimize", "val_loss")
    assert quick.steps == 4 and quick.budget < problem.budget
    assert problem.space["params"]["epochs"] == problem.steps
    assert {"ngram", "hidden", "optimizer", "lr", "batch_size"} <= problem.space["params"].keys()


def test_a_replay_runs_the_problem_until_its_budget_is_spent() -> None:
    from bench.efficiency_sweep import replay

    run: dict[str, Any] = replay("tpe/asha", "polarity_bow", seed=0, budget_scale=0.2)
    assert run["error"] is None and run["budget_spent"]
    assert run["curve"]["steps"] == 3 * 8 and run["curve"]["trials"] >= 3
    assert 0.3 < run["curve"]["points"][-1][1] < 0.7  # a best validation loss below chance's ln 2


def test_without_the_data_the_problem_says_where_to_point_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNER_BENCH_POLARITY", str(tmp_path))
    with pytest.raises(TunerError, match="rt-polarity.pos not found; set TUNER_BENCH_POLARITY"):
        check_polarity_data()
    proc = subprocess.run([sys.executable, "-m", "bench", "efficiency", "--problems", "polarity_bow", "--quick",
                           "--contenders", "random"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TUNER_BENCH_POLARITY": str(tmp_path),
                               "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    assert "polarity_bow:" in proc.stderr and "TUNER_BENCH_POLARITY" in proc.stderr
    assert "Traceback" not in proc.stderr
