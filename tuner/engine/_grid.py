"""Grid search over a tuner search space.

Optuna's ``GridSampler`` needs a flat, unconditional space; tuner's spaces have conditionals
and per-layer repeats, so the grid comes from ``SearchSpace.grid()`` (only active parameters
per point) and this sampler hands each new trial the next unused point.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

GRID_INDEX_ATTR = "tuner:grid_index"


class SpaceGridSampler(BaseSampler):
    """Visits every point of a finite search space once, in a seeded order."""

    def __init__(self, space: Any, seed: int | None = None) -> None:
        self._points: list[dict[str, Any]] = space.grid()
        self._order = list(range(len(self._points)))
        if seed is not None:
            random.Random(seed).shuffle(self._order)
        self._used: set[int] | None = None
        self._fallback = RandomSampler(seed=seed)

    @property
    def n_points(self) -> int:
        return len(self._points)

    def next_index(self, study: "Study") -> int:
        """The next grid point to try: unused by any finished or running trial, in seeded order.

        tuner's driver calls this (one thread) and stores the index with the trial before a
        worker samples it, so parallel workers never pick the same point.
        """
        if self._used is None:
            self._used = set()
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
                idx = t.system_attrs.get(GRID_INDEX_ATTR)
                if idx is not None:
                    self._used.add(int(idx))
        idx = next((i for i in self._order if i not in self._used), None)
        if idx is None:  # grid exhausted: repeat points rather than fail
            idx = self._order[len(self._used) % len(self._order)]
        self._used.add(idx)
        return idx

    def release(self, index: int) -> None:
        """Give a point back (its trial failed) so that it is tried again."""
        if self._used is not None:
            self._used.discard(index)

    def before_trial(self, study: "Study", trial: FrozenTrial) -> None:
        if GRID_INDEX_ATTR not in trial.system_attrs:  # not assigned by tuner's driver: pick one here
            study._storage.set_trial_system_attr(trial._trial_id, GRID_INDEX_ATTR, self.next_index(study))

    def infer_relative_search_space(self, study: "Study", trial: FrozenTrial) -> dict[str, "BaseDistribution"]:
        return {}

    def sample_relative(self, study: "Study", trial: FrozenTrial, search_space: dict[str, "BaseDistribution"]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: "Study", trial: FrozenTrial, param_name: str, param_distribution: "BaseDistribution") -> Any:
        idx = trial.system_attrs.get(GRID_INDEX_ATTR)
        if idx is None:
            idx = study._storage.get_trial_system_attrs(trial._trial_id).get(GRID_INDEX_ATTR)
        point = self._points[int(idx)] if idx is not None else {}
        if param_name in point:
            return point[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)
