"""A trial's stored moments turned into phases: which phases exist, and that they add up."""

from __future__ import annotations

import datetime as dt

import pytest

from tuner.report._timing import PHASES, trial_phases

CREATED = dt.datetime(2026, 12, 5, 12, 0, 0)
T0 = CREATED.timestamp()


def _moments(**offsets: float) -> dict[str, float]:
    return {name: T0 + seconds for name, seconds in offsets.items()}


def test_a_process_first_trial_shows_the_worker_start_and_every_phase_adds_up() -> None:
    timing = {**_moments(process_started=0.5, picked_up=6.5, asked=7.0, training_started=19.0,
                         training_ended=22.0, finished=22.4), "process_trial": 1}
    phases = trial_phases(timing, CREATED)
    assert list(phases) == list(PHASES)
    assert phases == pytest.approx({"queued": 0.5, "worker start": 6.0, "sampling": 0.5, "setup": 12.0,
                                    "training": 3.0, "wrap-up": 0.4}, abs=1e-5)
    assert sum(phases.values()) == pytest.approx(22.4)  # from the trial's creation to its end


def test_a_later_trial_has_no_worker_start_and_waits_only_in_the_queue() -> None:
    timing = {**_moments(process_started=-300.0, picked_up=0.2, asked=0.25, training_started=0.3,
                         training_ended=3.3, finished=3.5), "process_trial": 7}
    phases = trial_phases(timing, CREATED)
    assert "worker start" not in phases
    assert phases["queued"] == pytest.approx(0.2, abs=1e-5)
    assert phases["training"] == pytest.approx(3.0, abs=1e-5)


def test_an_objective_that_marks_nothing_is_timed_from_its_parameters_to_its_end() -> None:
    phases = trial_phases({**_moments(picked_up=0.1, asked=0.2, finished=1.7), "process_trial": 3}, CREATED)
    assert phases == pytest.approx({"queued": 0.1, "sampling": 0.1, "training": 1.5}, abs=1e-5)


def test_a_pruned_training_runs_to_the_trials_end_with_no_wrap_up() -> None:
    timing = {**_moments(picked_up=0.1, asked=0.2, training_started=1.2, finished=4.2), "process_trial": 2}
    phases = trial_phases(timing, CREATED)
    assert phases["setup"] == pytest.approx(1.0, abs=1e-5) and phases["training"] == pytest.approx(3.0, abs=1e-5)
    assert "wrap-up" not in phases


def test_a_phase_across_disagreeing_clocks_is_left_out_not_negative() -> None:
    # The driver (which created the trial) and the worker on another host disagree by seconds.
    timing = {**_moments(process_started=-2.0, picked_up=-1.0, asked=-0.9, finished=1.0), "process_trial": 1}
    phases = trial_phases(timing, CREATED)
    assert "queued" not in phases and all(v >= 0 for v in phases.values())
    assert phases["sampling"] == pytest.approx(0.1, abs=1e-5)


@pytest.mark.parametrize("timing", [None, {}, {"picked_up": "soon"}, "not a dict"])
def test_missing_or_malformed_timing_gives_no_phases(timing: object) -> None:
    assert trial_phases(timing, CREATED) == {}  # type: ignore[arg-type]
