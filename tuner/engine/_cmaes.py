"""tuner's ``cmaes``: Optuna's CmaEsSampler, with pruned trials that ended on NaN or inf ranked last.

With ``consider_pruned_trials``, Optuna hands CMA-ES each pruned trial with its last reported
value as if it were final. A diverged training (tuner's tasks report its NaN loss, and the
pruner stops it) then arrives as NaN, and CMA-ES ranks a generation by sorting on the value:
one NaN in a generation leaves Python's sort free to put every member anywhere, so the update
learns from a random ranking. tuner gives such a trial the worst value there is (+inf when
minimising), which keeps the ranking and says what the trial showed: nothing good.
``consider_pruned_trials`` is on by default for a space of numbers only (``_plugins.py`` says
what measured it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["CmaEsSampler"]


class CmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CmaEsSampler (the same arguments and samples), except for the ranking above."""

    def _get_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        # Optuna 5.0's own method returns the completed trials and, with consider_pruned_trials,
        # deep copies of the pruned ones carrying their last intermediate value.
        trials = super()._get_trials(study)
        worst = math.inf if study.direction == StudyDirection.MINIMIZE else -math.inf
        for t in trials:
            if t.state == TrialState.PRUNED and not math.isfinite(t.value):
                t.value = worst
        return trials
