"""tuner's successive-halving pruner (tuner/engine/_pruners.py): Optuna's ASHA plus ``max_rungs``."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest

from tuner.engine._pruners import HyperbandPruner, SuccessiveHalvingPruner, _final_step
from tuner.exceptions import SpecError
from tuner.spec import load_spec


def _decisions(pruner: optuna.pruners.BasePruner, curves: list[list[float]],
               study: optuna.Study | None = None) -> list[int | None]:
    """For each curve, the step at which the pruner stopped it (None: ran to the end)."""
    study = study or optuna.create_study(pruner=pruner)
    out: list[int | None] = []
    for curve in curves:
        trial = study.ask()
        stopped = None
        for step, value in enumerate(curve, 1):
            trial.report(value, step)
            if trial.should_prune():
                stopped = step
                break
        if stopped:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
        out.append(stopped)
    return out


def _random_curves(seed: int, n: int = 40, steps: int = 9) -> list[list[float]]:
    rng = random.Random(seed)
    curves = []
    for _ in range(n):
        level, slope = rng.uniform(0, 1), rng.uniform(0.5, 0.95)
        curves.append([level * slope ** s + rng.gauss(0, 0.05) for s in range(steps)])
    return curves


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_before_the_final_step_it_decides_exactly_as_optunas(seed: int) -> None:
    curves = _random_curves(seed, steps=10)  # rungs 1, 2, 4, 8 / 1, 3, 9 / 3, 9: none on step 10
    for kwargs in ({"min_resource": 1, "reduction_factor": 2}, {"min_resource": "auto", "reduction_factor": 3},
                   {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 1}):
        ours = _decisions(SuccessiveHalvingPruner(**kwargs), curves)
        assert ours == _decisions(optuna.pruners.SuccessiveHalvingPruner(**kwargs), curves)
        assert any(ours) and not all(ours)  # the sequence exercises both verdicts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_trial_that_reached_the_final_step_is_not_pruned_there(seed: int) -> None:
    curves = _random_curves(seed, steps=9)  # reduction factor 3 from step 1: rungs 1, 3 and 9, the last step
    ours = _decisions(SuccessiveHalvingPruner(min_resource=1, reduction_factor=3), curves)
    optunas = _decisions(optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3), curves)
    assert 9 in optunas and 9 not in ours  # Optuna prunes trials that ran every step; tuner completes them
    assert [s if s != 9 else None for s in optunas] == ours  # every other verdict is the same


def test_a_trial_past_its_last_rung_runs_to_the_end() -> None:
    curves = _random_curves(3)
    capped = _decisions(SuccessiveHalvingPruner(min_resource=1, reduction_factor=2, max_rungs=1), curves)
    uncapped = _decisions(SuccessiveHalvingPruner(min_resource=1, reduction_factor=2), curves)
    assert set(capped) <= {None, 1}  # judged at rung 0 (step 1) only
    assert any(s is not None and s > 1 for s in uncapped)  # Optuna's cuts later too
    assert capped.count(None) > uncapped.count(None)
    two = _decisions(SuccessiveHalvingPruner(min_resource=1, reduction_factor=2, max_rungs=2), curves)
    assert set(two) <= {None, 1, 2} and 2 in two


def test_a_report_that_crosses_several_rungs_stops_at_the_cap() -> None:
    # A runs 10 steps (rungs at steps 1, 2, 4, 8 with min_resource 1, reduction factor 2: value
    # 0.5 at the first, 0.1 after); B loses at step 1; C reports step 8 only, so one report
    # crosses rungs 0 to 3: it passes rung 0 (0.3 against 0.5 and 0.9) and fails rung 1 (against 0.1).
    curves = [[0.5] + [0.1] * 9, [0.9] * 10]
    for max_rungs, expected in ((1, False), (None, True)):
        study = optuna.create_study(pruner=SuccessiveHalvingPruner(min_resource=1, reduction_factor=2,
                                                                   max_rungs=max_rungs))
        assert _decisions(study.pruner, curves, study=study) == [None, 1]
        c = study.ask()
        c.report(0.3, 8)
        assert c.should_prune() is expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_bad_cap_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_rungs"):
        SuccessiveHalvingPruner(max_rungs=bad)


def test_a_bad_cap_in_a_spec_is_a_one_line_error(tmp_path: Any) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nobjective: tests.objectives:quadratic\nsearch_space:\n  params:\n"
                    "    x: {float: [0, 1]}\npruner: {name: asha, args: {max_rungs: 0}}\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert "pruner.args" in str(info.value) and "max_rungs" in str(info.value) and "\n" not in str(info.value)


def _hyperband_decisions(pruner: optuna.pruners.BasePruner, curves: list[list[float]]) -> list[int | None]:
    # Hyperband picks a trial's bracket from the study name, so both pruners need the same one.
    return _decisions(pruner, curves, optuna.create_study(pruner=pruner, study_name="hb"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hyperband_brackets_do_not_cut_at_the_final_step(seed: int) -> None:
    # 9 steps, reduction factor 3, min_resource 1: "auto" max_resource 10, brackets with rungs at
    # steps 1, 3, 9 and 3, 9; step 9 is every trial's last.
    curves = _random_curves(seed, n=60, steps=9)
    ours = _hyperband_decisions(HyperbandPruner(min_resource=1, reduction_factor=3), curves)
    optunas = _hyperband_decisions(optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3), curves)
    assert 9 in optunas and 9 not in ours
    assert [s if s != 9 else None for s in optunas] == ours
    assert any(s in (1, 3) for s in ours)  # the earlier rungs still cut


def test_hyperband_with_a_given_max_resource_knows_the_final_step_before_a_trial_completes() -> None:
    # bootstrap_count=1: a rung judges a trial only once another has reached it, so the first trials
    # of a bracket are pruned at step 1 and none completes before step 3 is judged; max_resource=3
    # (steps 1-3) says that step 3 is the last.
    curves = [[1.0 - 0.01 * i] * 3 for i in range(12)][::-1]
    args = {"min_resource": 1, "max_resource": 3, "reduction_factor": 3, "bootstrap_count": 1}
    ours = _hyperband_decisions(HyperbandPruner(**args), curves)
    optunas = _hyperband_decisions(optuna.pruners.HyperbandPruner(**args), curves)
    assert 3 in optunas and 3 not in ours
    assert [s if s != 3 else None for s in optunas] == ours


def test_hyperband_still_judges_a_rung_before_the_final_step() -> None:
    # max_resource=4 on 4-step curves: bracket 0's rungs are steps 1 and 3, and 3 is not the last.
    curves = _random_curves(0, n=60, steps=4)
    args = {"min_resource": 1, "max_resource": 4, "reduction_factor": 3}
    ours = _hyperband_decisions(HyperbandPruner(**args), curves)
    assert ours == _hyperband_decisions(optuna.pruners.HyperbandPruner(**args), curves)
    assert 3 in ours


def test_a_trial_that_completed_early_does_not_move_hyperbands_final_step() -> None:
    # An early-stopped trial completes at step 2; the final step Hyperband's max_resource implies
    # (9) stands, while a completed trial that ran longer than that raises it.
    study = optuna.create_study()
    early = study.ask()
    for step in (1, 2):
        early.report(0.1, step)
    study.tell(early, 0.1)
    trials = study.get_trials(deepcopy=False)
    assert _final_step(trials) == 2  # asha without a known final step: the longest completed trial
    assert _final_step(trials, 9) == 9
    assert _final_step([], 9) == 9 and _final_step([], None) is None
    longer = study.ask()
    for step in range(1, 12):
        longer.report(0.1, step)
    study.tell(longer, 0.1)
    assert _final_step(study.get_trials(deepcopy=False), 9) == 11
