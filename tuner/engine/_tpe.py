"""tuner's ``tpe``: Optuna's TPESampler, plus ``alternate``, a two-model portfolio.

TPE models a space in one of two ways: independent (one density per parameter; a good value of
each parameter is mixed with good values of the others) or multivariate (one joint density;
candidates are drawn near whole good configurations, so interactions such as "Adam wants a small
learning rate, SGD a large one" are kept). Which leads depends on the problem, and no trait
visible before the first trial tells: on the digits MLP independent TPE is ahead, on the digits
CNN multivariate is (`bench/HISTORY.md`). ``alternate: K`` samples every K-th trial with the
other model, over the same trials, so a study gets most of what the better model finds
whichever it is, at the price of a share of trials from the worse one. A space with a
categorical choice gets ``alternate: 2`` with 4 EI candidates by default (``_plugins.py`` says
what measured it).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial, TrialState


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPESampler; with ``alternate=K``, trials K-1, 2K-1, ... use the other mode.

    The other mode is TPE with ``multivariate`` flipped (and ``group`` off, which Optuna allows
    only with multivariate) and otherwise the same arguments and seed, so both models' start-up
    trials are the same random draws and only the trials after start-up differ. Which model
    samples a trial is a function of its number alone: tuner builds a fresh sampler per trial in
    whatever worker runs it, and "same seed, same trials" must hold whichever that is.
    """

    def __init__(self, *, alternate: int | None = None, **kwargs: Any) -> None:
        if alternate is not None and (isinstance(alternate, bool) or not isinstance(alternate, int) or alternate < 2):
            raise ValueError(f"alternate must be an integer of at least 2 (or null), not {alternate!r}")
        # Optuna accepts 0 and fails at the first trial after start-up, in a worker; refuse it here,
        # where `validate` and `run` turn it into a one-line error before any trial runs.
        if kwargs.get("n_ei_candidates", 1) < 1:
            raise ValueError(f"n_ei_candidates must be an integer of at least 1, not {kwargs['n_ei_candidates']!r}")
        super().__init__(**kwargs)
        self._other_every = alternate or 0
        self._other: optuna.samplers.TPESampler | None = None
        if alternate:
            # multivariate=None is Optuna's "multivariate for one objective": its other mode is independent.
            own = kwargs.get("multivariate")
            other = {**kwargs, "multivariate": not (own is None or own), "group": False}
            self._other = optuna.samplers.TPESampler(**other)

    def _model_for(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if self._other is not None and trial.number % self._other_every == self._other_every - 1:
            return self._other
        return self

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        model = self._model_for(trial)
        if model is self:
            return super().infer_relative_search_space(study, trial)
        return model.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        model = self._model_for(trial)
        if model is self:
            return super().sample_relative(study, trial, search_space)
        return model.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        model = self._model_for(trial)
        if model is self:
            return super().sample_independent(study, trial, param_name, param_distribution)
        return model.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)
        if self._other is not None:
            self._other.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        if self._other is not None:
            self._other.reseed_rng()


def _signature() -> inspect.Signature:
    # Optuna's keyword arguments plus alternate, so that spec checking (allowed names, value
    # types) sees every argument by name rather than a **kwargs.
    base = inspect.signature(optuna.samplers.TPESampler)
    extra = inspect.Parameter("alternate", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="int | None")
    return base.replace(parameters=[*base.parameters.values(), extra])


TPESampler.__signature__ = _signature()  # type: ignore[attr-defined]
