"""tuner's variants of Optuna's successive-halving pruner (ASHA) and of its Hyperband, which runs
one successive-halving pruner per bracket: no cut at a trial's final step, and (ASHA) an optional
cap on the rungs.

No cut at the final step: Optuna's pruner also judges a rung that falls on the last step
(16 steps with reduction factor 4: rungs 1, 4 and 16), and marks a trial that lost there
PRUNED although it has run every step: that saves no compute and throws away a full result,
which the sampler then sees only as a pruned trial and the user sees without its value. The
final step is taken, as Optuna estimates ``min_resource``, from the trials that completed: the
longest of them. On the bench's multi-fidelity Branin and Hartmann-6 (16 steps) this moved TPE +
ASHA from 0.517 to 0.484 and from -3.082 to -3.122 over 30 seeds (within noise; `bench/HISTORY.md`).

``max_rungs``: on short, noisy trainings the first cut separates the hopeless configurations
from the rest almost without error, while later cuts mostly choose between good
configurations by their initialisation's luck. Probed on the bench's digits problems (300 random
configurations each, every epoch run): the 10 best finals were all in the top third at epoch 1
on both the MLP and the CNN, while within the top third the rank correlation of epoch 3 with
the final value was 0.65 (MLP) and 0.80 (CNN). ``max_rungs=1`` keeps that first cut only. It
is an option, not a default: over 20-30 seeds it was level with the default on the MLP and the
CNN and slightly behind on Branin and Hartmann-6 (`bench/HISTORY.md`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna
from optuna.pruners._successive_halving import (
    _completed_rung_key,
    _estimate_min_resource,
    _get_competing_values,
    _get_current_rung,
    _is_trial_promotable_to_next_rung,
)
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["HyperbandPruner", "SuccessiveHalvingPruner"]


class SuccessiveHalvingPruner(optuna.pruners.SuccessiveHalvingPruner):
    """Optuna's asynchronous successive halving (the same arguments, rungs and verdicts), except
    that a rung at or past the final step is not judged, plus ``max_rungs``.

    ``max_rungs=k``: a trial is judged at its first ``k`` rungs only; once it has passed them it
    runs to the end. ``None`` (the default): every rung before the final step.
    """

    def __init__(self, min_resource: str | int = "auto", reduction_factor: int = 4,
                 min_early_stopping_rate: int = 0, bootstrap_count: int = 0,
                 max_rungs: int | None = None) -> None:
        super().__init__(min_resource=min_resource, reduction_factor=reduction_factor,
                         min_early_stopping_rate=min_early_stopping_rate, bootstrap_count=bootstrap_count)
        if max_rungs is not None and (isinstance(max_rungs, bool) or not isinstance(max_rungs, int)
                                      or max_rungs < 1):
            raise ValueError(f"The value of `max_rungs` is {max_rungs!r}, but must be an integer >= 1 or None")
        self._max_rungs = max_rungs
        # A final step known from outside (Hyperband's max_resource), for a study or bracket in
        # which no trial has completed yet.
        self._known_final_step: int | None = None

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        # Optuna 5.0's loop (SuccessiveHalvingPruner.prune) with two more ways out: the cap, and a
        # rung at or past the final step. One report may cross several rungs (an objective that
        # reports every 10 steps), so both are checked per rung, not once per call.
        step = trial.last_step
        if step is None:
            return False
        rung = _get_current_rung(trial)
        value = trial.intermediate_values[step]
        trials: list[FrozenTrial] | None = None
        final_step: int | None = None
        while self._max_rungs is None or rung < self._max_rungs:
            if self._min_resource is None:
                trials = study.get_trials(deepcopy=False)
                self._min_resource = _estimate_min_resource(trials)
                if self._min_resource is None:
                    return False
            rung_step = self._min_resource * self._reduction_factor ** (self._min_early_stopping_rate + rung)
            if step < rung_step:
                return False
            if trials is None:
                trials = study.get_trials(deepcopy=False)
            if final_step is None:
                final_step = _final_step(trials, self._known_final_step)
            if final_step is not None and rung_step >= final_step:
                return False
            if math.isnan(value):
                return True
            rung_key = _completed_rung_key(rung)
            study._storage.set_trial_system_attr(trial._trial_id, rung_key, value)
            competing = _get_competing_values(trials, value, rung_key)
            if len(competing) <= self._bootstrap_count:
                return True
            if not _is_trial_promotable_to_next_rung(value, competing, self._reduction_factor, study.direction):
                return True
            rung += 1
        return False


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband (the same arguments, brackets and bracket of each trial), whose brackets
    are tuner's successive-halving pruners: a rung on a trial's final step is not judged there.

    With ``reduction_factor`` 3 and ``min_resource`` 1, bracket 0's rungs are steps 1, 3, 9, 27, ...:
    a study of 9 or 27 epochs would otherwise have the trials that ran every epoch marked PRUNED
    at the last one. The final step is the one ``max_resource`` implies (steps count from 1, as
    ``ctx.report`` documents: "auto" is the longest completed trial's last step + 1), or the
    longest completed trial's in the bracket where that is later.
    """

    def _try_initialization(self, study: optuna.study.Study) -> None:
        auto = self._max_resource == "auto"
        super()._try_initialization(study)
        if not self._pruners:
            return
        assert isinstance(self._max_resource, int)
        # "auto" is the longest completed trial's last step + 1; a number given is the steps a
        # trial runs (Optuna's docs: the epochs of a full training).
        known_final = self._max_resource - 1 if auto else self._max_resource
        for bracket_id, theirs in enumerate(self._pruners):
            ours = SuccessiveHalvingPruner(min_resource=self._min_resource, reduction_factor=self._reduction_factor,
                                           min_early_stopping_rate=bracket_id, bootstrap_count=self._bootstrap_count)
            ours._known_final_step = known_final
            assert theirs._min_early_stopping_rate == bracket_id  # Optuna's layout, which this mirrors
            self._pruners[bracket_id] = ours


def _final_step(trials: list[FrozenTrial], known: int | None = None) -> int | None:
    """The last step of the longest completed trial (what a trial that runs to the end reaches),
    and at least ``known``: a trial that completed early (early stopping) must not pull it down."""
    steps = [t.last_step for t in trials if t.state == TrialState.COMPLETE and t.last_step is not None]
    if known is not None:
        steps.append(known)
    return max(steps) if steps else None
