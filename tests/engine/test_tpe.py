"""tuner's TPE sampler: Optuna's, plus ``alternate`` (tuner/engine/_tpe.py)."""

from __future__ import annotations

from typing import Any, Callable

import optuna
import pytest

import tuner
from tests import objectives
from tuner.engine._plugins import allowed_args, make_sampler, trial_seed
from tuner.engine._tpe import TPESampler
from tuner.space import SearchSpace

SPACE = SearchSpace.from_mapping({"params": {
    "x": {"float": [-5.0, 5.0]}, "y": {"float": [-5.0, 5.0]}, "opt": {"choice": ["a", "b", "c"]}}}, source="t")


def _value(p: dict[str, Any]) -> float:
    return objectives.choice_bowl(p, None)


def _run(args: dict[str, Any], n: int, seed: int = 7,
         sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None) -> list[dict[str, Any]]:
    """A study run the way tuner's workers run one: a fresh sampler per trial, seeded by its
    number (tuner's ``tpe`` with ``args``, or ``sampler(number)``)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    out = []
    for number in range(n):
        study.sampler = (sampler(number) if sampler else
                         make_sampler("tpe", args, seed=trial_seed(seed, number), space=SPACE))
        trial = study.ask()
        params = SPACE.suggest(trial)
        study.tell(trial, _value(params))
        out.append(params)
    return out


def test_without_alternate_it_is_optunas_sampler() -> None:
    ours = _run({"multivariate": False, "group": False}, 16)
    theirs = _run({}, 16, sampler=lambda number: optuna.samplers.TPESampler(multivariate=False,
                                                                            seed=trial_seed(7, number)))
    assert ours == theirs


def test_every_kth_trial_is_sampled_by_the_other_model() -> None:
    """Trial n is what independent TPE would give after trials 0..n-1, except every third,
    which is what multivariate TPE would give; so the run differs from plain independent TPE."""
    runs = _run({"multivariate": False, "group": False, "alternate": 3}, 18)
    for number in range(10, 18):
        other = number % 3 == 2
        expected = _replay_one(runs[:number], number, multivariate=other)
        assert runs[number] == expected, number
        if other:
            assert runs[number] != _replay_one(runs[:number], number, multivariate=False)


def _replay_one(history: list[dict[str, Any]], number: int, *, multivariate: bool, seed: int = 7,
                space: SearchSpace = SPACE, n_ei_candidates: int = 24) -> dict[str, Any]:
    study = optuna.create_study()
    for params in history:
        study.enqueue_trial(params)
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, _value(trial.params))
    study.sampler = optuna.samplers.TPESampler(multivariate=multivariate, seed=trial_seed(seed, number),
                                               n_ei_candidates=n_ei_candidates)
    trial = study.ask()
    return space.suggest(trial)


def test_start_up_trials_are_the_same_in_both_modes() -> None:
    assert _run({"multivariate": False, "group": False, "alternate": 2}, 10) == \
        _run({"multivariate": False, "group": False}, 10)


def test_alternate_is_a_named_argument_checked_like_optunas() -> None:
    assert "alternate" in allowed_args("sampler", "tpe")
    for bad in (1, 0, True, 2.5):
        with pytest.raises(ValueError, match="alternate must be an integer of at least 2"):
            TPESampler(alternate=bad)  # type: ignore[arg-type]
    sampler: Any = make_sampler("tpe", {"alternate": 3}, seed=0, space=SPACE)
    assert isinstance(sampler, TPESampler) and sampler._other is not None
    assert sampler._other._multivariate is True and sampler._multivariate is False


@pytest.mark.usefixtures("ray_cluster")
def test_a_run_through_ray_workers_alternates_the_same_way(sqlite_url: str) -> None:
    """The worker that samples a trial builds the sampler from the spec: trial 11 of a run with
    alternate 3 (the categorical preset has 2) is multivariate TPE's pick after trials 0-10,
    trial 12 independent TPE's."""
    spec = {"name": "alternate", "search_space": SPACE.to_dict(), "n_trials": 13, "concurrency": 1, "seed": 3,
            "sampler": {"name": "tpe", "args": {"alternate": 3}}, "pruner": "none"}
    study = tuner.run(spec, objectives.choice_bowl, storage=sqlite_url)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    history = [t.params for t in trials]
    assert len(history) == 13
    # The run's space is the spec's, whose parameters come in its stored (sorted) order: independent
    # TPE draws them one by one from one random stream, so the replay must suggest in that order.
    # The space has a categorical choice, so the preset's 4 EI candidates apply to both models.
    space = SearchSpace.from_mapping(SPACE.to_dict(), source="t")
    assert history[11] == _replay_one(history[:11], 11, multivariate=True, seed=3, space=space, n_ei_candidates=4)
    assert history[11] != _replay_one(history[:11], 11, multivariate=False, seed=3, space=space, n_ei_candidates=4)
    assert history[12] == _replay_one(history[:12], 12, multivariate=False, seed=3, space=space, n_ei_candidates=4)
