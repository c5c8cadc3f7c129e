"""tuner's successive-halving pruner (tuner/engine/_pruners.py): Optuna's ASHA plus ``max_rungs``."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest

from tuner.engine._pruners import HyperbandPruner, SuccessiveHalvingPruner
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
    # Every trial loses at step 3 except the first of each bracket, so with "auto" no bracket would
    # know its final step from a completed trial; max_resource=3 says it.
    curves = [[1.0 - 0.01 * i] * 3 for i in range(12)][::-1]
    ours = _hyperband_decisions(HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3), curves)
    optunas = _hyperband_decisions(optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3, reduction_factor=3),
                                   curves)
    assert 3 in optunas and 3 not in ours
