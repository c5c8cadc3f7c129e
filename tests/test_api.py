"""The read side of the public API on real SQLite and PostgreSQL studies (no Ray: the trials are written directly)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tests._study_read import refuse_optuna_trial_reads
from tuner import storage as st
from tuner._api import study_details
from tuner.engine import _attrs

_VALUES = [0.5, None, 2.0, math.inf, 0.5, None, -math.inf, 1.25, None, 3.0, 0.5, None]
_STATES = [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.COMPLETE,
           TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
           TrialState.COMPLETE, TrialState.FAIL]


def _study(url: str, direction: str) -> None:
    study = optuna.create_study(study_name="d", storage=st.open_storage(url), direction=direction)
    for i, (state, value) in enumerate(zip(_STATES, _VALUES)):
        attrs = {_attrs.ERROR: {"type": "ValueError", "message": f"bad {i}", "traceback": ""}} if state == TrialState.FAIL else {}
        study.add_trial(create_trial(params={"x": i / 20}, distributions={"x": FloatDistribution(0.0, 1.0)},
                                     state=state, value=value, system_attrs=attrs))
    study.ask()  # one RUNNING


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_study_details_ranks_by_query_as_sorting_every_trial_would(
        backend: str, direction: str, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    _study(url, direction)
    trials = optuna.load_study(study_name="d", storage=url).get_trials(deepcopy=False)
    sign = -1.0 if direction == "maximize" else 1.0
    # What show printed when it sorted every trial: a stable sort, so ties keep number order.
    expected_top = [t.number for t in sorted((t for t in trials if t.state == TrialState.COMPLETE),
                                             key=lambda t: sign * t.value)][:5]
    assert expected_top == ([6, 0, 4, 10, 7] if direction == "minimize" else [3, 9, 2, 7, 0])
    refuse_optuna_trial_reads(monkeypatch)
    d = study_details("d", url, top=5)
    assert [row["number"] for row in d["top"]] == expected_top
    assert [row["values"][0] for row in d["top"]] == [_VALUES[n] for n in expected_top]
    assert d["counts"] == {"RUNNING": 1, "COMPLETE": 8, "PRUNED": 1, "FAIL": 3} and d["n_trials"] == 13
    assert list(d["counts"]) == ["RUNNING", "COMPLETE", "PRUNED", "FAIL"]  # Optuna's order on every database
    assert [row["number"] for row in d["recent_failures"]] == [1, 8, 11]
    assert d["recent_failures"][-1]["error"] == "ValueError: bad 11"
    assert d["best"]["number"] == expected_top[0]
    assert study_details("d", url, top=50)["top"][-1]["number"] == (3 if direction == "minimize" else 6)


def test_study_details_of_a_study_without_complete_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    study = optuna.create_study(study_name="e", storage=st.open_storage(url))
    study.add_trial(create_trial(params={}, distributions={}, state=TrialState.FAIL))
    d = study_details("e", url)
    assert d["top"] == [] and d["best"] is None and d["counts"] == {"FAIL": 1}
    assert [row["number"] for row in d["recent_failures"]] == [0]


def test_study_details_parses_the_stored_space_once_and_gives_each_shown_trial_its_objective_params(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.space import SearchSpace

    url = f"sqlite:///{tmp_path / 'p.db'}"
    _study(url, "minimize")
    study = optuna.load_study(study_name="d", storage=url)
    space = {"params": {"x": {"float": [0.0, 1.0]}, "epochs": 3}}  # a fixed value the objective sees too
    study._storage.set_study_system_attr(study._study_id, _attrs.SPACE, space)
    parsed: list[str] = []
    original = SearchSpace.from_mapping.__func__  # type: ignore[attr-defined]

    def counting(cls: type, *args: object, **kwargs: object) -> SearchSpace:
        parsed.append(str(kwargs.get("source")))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(SearchSpace, "from_mapping", classmethod(counting))
    d = study_details("d", url, top=8)
    assert len(d["top"]) == 8 and parsed == ["<stored>"] * 2  # once for the top rows, once for the best trial
    for row in d["top"]:
        assert row["objective_params"] == {"x": row["params"]["x"], "epochs": 3}
    assert d["best"]["params_user"] == {"x": d["best"]["params"]["x"], "epochs": 3}


@pytest.mark.parametrize("directions", [["minimize"], ["maximize", "minimize"]])
def test_best_of_a_study_with_no_complete_trial_says_what_its_trials_are(tmp_path: Path,
                                                                         directions: list[str]) -> None:
    # "has no complete trial yet; run it first" for a study whose every trial had run and been pruned.
    from tuner._api import best_trial
    from tuner.engine._progress import format_best
    from tuner.exceptions import StudyNotFoundError

    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="p", storage=st.open_storage(url), directions=directions)
    with pytest.raises(StudyNotFoundError, match=r"^study 'p' has no trial yet; run it first \(tuner run SPEC\)$"):
        best_trial("p", url)
    for state in (TrialState.PRUNED, TrialState.PRUNED, TrialState.FAIL):
        study.add_trial(create_trial(params={}, distributions={}, state=state))
    with pytest.raises(StudyNotFoundError, match=r"^study 'p' has no complete trial \(2 pruned, 1 fail\); see why with "
                                                 r"tuner show p, or run more trials$"):
        best_trial("p", url)
    # the run's last line: no front to point `tuner best` at
    assert format_best([], "p") == "no pareto front: no trial completed"
    assert format_best([[0.9, 3.0]], "p") == "pareto front of 1 trial (tuner best p lists them)"
