"""The share-of-random's-compute interval of ``python -m bench efficiency`` (bench/efficiency_report.py)."""

from __future__ import annotations

import math

from bench.efficiency_report import reach_interval, summarise


def _run(contender: str, seed: int, points: list[tuple[int, float]]) -> dict:
    return {"problem": "p", "contender": contender, "label": contender, "seed": seed, "wall_s": 1.0,
            "budget_wall_s": 1.0, "curve": {"points": points, "trials": 3, "completed": len(points)}}


def test_a_contender_that_always_reaches_random_s_best_in_a_quarter_of_its_steps_has_a_point_interval() -> None:
    random = [_run("random", s, [(40, 1.0)]) for s in range(8)]
    fast = [_run("tuner", s, [(5, 2.0), (10, 0.5)]) for s in range(8)]
    assert reach_interval(random, fast, 100, "minimize") == (0.25, 0.25)


def test_the_interval_widens_with_seed_to_seed_spread_and_includes_the_point_estimate() -> None:
    random = [_run("random", s, [(20 + 10 * (s % 4), 1.0 + 0.1 * (s % 3))]) for s in range(12)]
    tuner = [_run("tuner", s, [(4 + 6 * (s % 5), 0.8 + 0.3 * (s % 2))]) for s in range(12)]
    summary = summarise(random + tuner, {"p": {"budget": 60, "direction": "minimize"}})
    row = summary["p"]["rows"]["tuner"]
    low, high = row["reach_fraction_ci"]
    assert low < row["reach_fraction"] < high
    assert summary["p"]["rows"]["random"]["reach_fraction_ci"] is None
    # The check's text carries the interval, so a share near 1/3 is read with its uncertainty.
    assert "bootstrap interval" in summary["p"]["checks"][0]["detail"]


def test_a_contender_that_never_reaches_the_target_gets_an_infinite_upper_end() -> None:
    random = [_run("random", s, [(10, 1.0 - 0.01 * s)]) for s in range(6)]
    slow = [_run("tuner", s, [(50, 0.5)]) for s in range(6)]  # maximize: never as good as random
    low, high = reach_interval(random, slow, 60, "maximize")
    assert math.isinf(high)
    assert reach_interval(random[:2], slow[:2], 60, "minimize") is None  # too few seeds to resample


def test_the_trial_counts_are_means_with_one_decimal() -> None:
    # `:.0f` rounds half to even: a mean of 6.5 completed trials showed as 6, one of 11.5 as 12.
    from bench.efficiency_report import markdown

    def run(contender: str, seed: int, trials: int, completed: int) -> dict:
        r = _run(contender, seed, [(10 * (i + 1), 1.0 - 0.1 * i) for i in range(completed)])
        r["curve"]["trials"] = trials
        return r

    runs = [run(c, s, 11 + s, 6 + s) for c in ("random", "tuner") for s in range(2)]
    problems = {"p": {"budget": 100, "direction": "minimize", "metric": "loss", "steps": 10, "step_unit": "epoch",
                      "optimum": None, "note": "a test problem"}}
    facts = {"date": "today", "command": "python -m bench efficiency", "seeds": 2, "concurrency": 1,
             "machine": "here", "optuna": "5", "ray": "2"}
    text = markdown(summarise(runs, problems), facts, runs)
    row = next(line for line in text.splitlines() if line.startswith("| tuner |"))
    assert "| 11.5 (6.5) |" in row
