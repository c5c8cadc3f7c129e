"""A read-only Optuna study over a list of trials already in memory.

Optuna's plot functions take a study and call ``study.get_trials()`` (several of them with
``deepcopy=True``), which on an RDB storage is one full read of the database per figure. The
report reads the trials once and hands every figure a :func:`study_view` of that list (or of a
thinned part of it): a real :class:`optuna.Study` backed by :class:`TrialListStorage`, a storage
whose reads return the shared list without copying it and whose writes are refused.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna

__all__ = ["TrialListStorage", "study_view"]

_STUDY_ID = 0
_METRIC_NAMES_KEY = "study:metric_names"  # where Study.set_metric_names keeps them


class TrialListStorage(BaseStorage):
    """One study whose trials are a given list; reads share the list (never copied), writes raise."""

    def __init__(self, name: str, directions: Sequence[StudyDirection], trials: Sequence[FrozenTrial],
                 metric_names: Sequence[str] | None = None, system_attrs: dict[str, Any] | None = None) -> None:
        self._name = name
        self._directions = list(directions)
        self._trials = list(trials)
        self._by_id = {t._trial_id: t for t in self._trials}
        self._system_attrs = dict(system_attrs or {})
        if metric_names:
            self._system_attrs[_METRIC_NAMES_KEY] = list(metric_names)

    def _check(self, study_id: int) -> None:
        if study_id != _STUDY_ID:
            raise KeyError(f"no study with id {study_id}")

    def _read_only(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this study is a read-only view of trials already loaded for a report")

    create_new_study = delete_study = set_study_user_attr = set_study_system_attr = _read_only  # type: ignore[assignment]
    create_new_trial = set_trial_param = set_trial_state_values = _read_only  # type: ignore[assignment]
    set_trial_intermediate_value = set_trial_user_attr = set_trial_system_attr = _read_only  # type: ignore[assignment]

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name != self._name:
            raise KeyError(f"no study named {study_name!r}")
        return _STUDY_ID

    def get_study_name_from_id(self, study_id: int) -> str:
        self._check(study_id)
        return self._name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        self._check(study_id)
        return list(self._directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        self._check(study_id)
        return {}

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        self._check(study_id)
        return dict(self._system_attrs)

    def get_all_studies(self) -> list[FrozenStudy]:
        return [FrozenStudy(study_name=self._name, direction=None, directions=self._directions, user_attrs={},
                            system_attrs=dict(self._system_attrs), study_id=_STUDY_ID)]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        try:
            return self._by_id[trial_id]
        except KeyError:
            raise KeyError(f"no trial with id {trial_id}") from None

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        # ``deepcopy`` is ignored on purpose: the list is shared, read-only, and a copy of 100,000
        # trials per figure is what this class exists to avoid.
        self._check(study_id)
        if states is None:
            return list(self._trials)
        return [t for t in self._trials if t.state in states]


def study_view(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection | str], *,
               name: str = "study", metric_names: Sequence[str] | None = None) -> "optuna.Study":
    """An :class:`optuna.Study` whose trials are ``trials`` (shared, not copied); for Optuna's plots."""
    import optuna

    dirs = [d if isinstance(d, StudyDirection) else StudyDirection[str(d).upper()] for d in directions]
    storage = TrialListStorage(name, dirs, trials, metric_names)
    return optuna.Study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
