"""tuner's ``qmc``: Optuna's QMCSampler, with trial k given the sequence's point k - 1 whatever the
concurrency.

Optuna numbers the points in the order trials ask for them (a counter in the study's
attributes) and learns the space from the trials completed so far. A sequential run gives
trial 0 an independent draw and trial k the sequence's point k - 1; with trials in parallel,
which trial asks first and which have completed changes from run to run, so one seed gave
other trials other points, and points off the sequence ("same seed, same trials" broke at
concurrency 2). Here trial 0 is the independent draw and trial k >= 1 takes point k - 1 of
the space every trial draws, as the sequential run does, on every worker at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

__all__ = ["QMCSampler"]


class QMCSampler(optuna.samplers.QMCSampler):
    """Optuna's QMCSampler (the same arguments and sequence), its points indexed by trial number."""

    #: Optuna's name and distribution of each parameter every trial draws (set by ``make_sampler``
    #: from tuner's space); None falls back to Optuna's inference from completed trials.
    space_distributions: "dict[str, BaseDistribution] | None" = None

    def infer_relative_search_space(self, study: optuna.Study, trial: "FrozenTrial") -> dict[str, Any]:
        if self.space_distributions is None:
            return super().infer_relative_search_space(study, trial)
        if trial.number == 0:
            return {}  # as in a sequential run: the first trial is the independent sampler's
        return {name: dist for name, dist in self.space_distributions.items() if not dist.single()}

    def sample_relative(self, study: optuna.Study, trial: "FrozenTrial",
                        search_space: dict[str, "BaseDistribution"]) -> dict[str, Any]:
        self._trial_number = trial.number
        return super().sample_relative(study, trial, search_space)

    def _find_sample_id(self, study: optuna.Study, search_space: dict[str, "BaseDistribution"]) -> int:
        if self.space_distributions is None:
            return super()._find_sample_id(study, search_space)
        return max(0, self._trial_number - 1)
