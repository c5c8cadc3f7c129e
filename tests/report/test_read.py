"""Reading a study once: the fast reader returns what Optuna returns; the view never re-reads or copies."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tests.report._helpers import make_trial, sqlite_study
from tuner.engine import _attrs
from tuner.report import read_trials, study_view

D = {"x": FloatDistribution(-1.0, 1.0), "n": IntDistribution(1, 8, log=True), "c": CategoricalDistribution(["a", None, 3])}


def _trials():
    return [
        make_trial(0, {"x": 0.5, "n": 2, "c": "a"}, D, [1.0, math.inf], intermediate={1: 0.5, 2: math.nan, 3: -math.inf}),
        make_trial(1, {"x": -0.5, "c": None}, D, [-math.inf, 2.0], system_attrs={_attrs.ATTR_PREFIX + "cm": [[1, 2], [3, 4]]}),
        make_trial(2, {"c": 3}, D, None, TrialState.RUNNING),
        make_trial(3, {"x": 0.0}, D, None, TrialState.FAIL, system_attrs={_attrs.ERROR: {"type": "E", "message": "m"}}),
    ]


def _comparable(t):
    return {k: repr(v) for k, v in t.__dict__.items()}


def test_read_trials_equals_optunas_own_read(tmp_path: Path) -> None:
    url = sqlite_study(tmp_path / "t.db", _trials(), directions=["minimize", "maximize"])
    study = optuna.load_study(study_name="s", storage=url)
    study.set_user_attr("u", 1)
    ours = read_trials(study)
    theirs = study.get_trials(deepcopy=False)
    assert [_comparable(t) for t in ours] == [_comparable(t) for t in theirs]  # NaN != NaN, so compare reprs
    assert [t.number for t in ours] == [0, 1, 2, 3] and ours[0].values == [1.0, math.inf]
    assert math.isnan(ours[0].intermediate_values[2]) and ours[0].intermediate_values[3] == -math.inf
    skipped = read_trials(study, skip_attr_prefixes=(_attrs.ATTR_PREFIX,))
    assert _attrs.ATTR_PREFIX + "cm" not in skipped[1].system_attrs and _attrs.WORKER in skipped[1].system_attrs


def test_read_trials_of_an_in_memory_study() -> None:
    study = optuna.create_study()
    study.add_trials([make_trial(0, {"x": 0.5}, D, [1.0])])
    assert read_trials(study) == study.get_trials(deepcopy=False)


def test_study_view_shares_the_list_and_refuses_writes() -> None:
    trials = _trials()
    view = study_view(trials, ["minimize", "maximize"], name="v", metric_names=["a", "b"])
    got = view.get_trials()  # deepcopy=True by default: ignored on purpose, the trials are shared
    assert got[0] is trials[0] and len(view.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert view.metric_names == ["a", "b"] and view.directions[1].name == "MAXIMIZE"
    assert [t.number for t in view.best_trials] == [0, 1]
    with pytest.raises(RuntimeError, match="read-only"):
        view.set_user_attr("k", 1)
    with pytest.raises(RuntimeError, match="read-only"):
        view.ask()
