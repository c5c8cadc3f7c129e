"""Trials a run's stop ended unfinished are counted apart from failures in `tuner ls`, `tuner show`
and the dashboard: a Ctrl-C that left ten trials "failed" read as a broken objective."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner import storage as st
from tuner.cli import main
from tuner.engine import _attrs

_TRACEBACK = 'Traceback (most recent call last):\n  File "obj.py", line 3\nValueError: bad'


def _error(kind: str, traceback: str = "") -> dict[str, Any]:
    return {_attrs.ERROR: {"type": kind, "message": "m", "traceback": traceback}}


@pytest.fixture()
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=st.open_storage(url))
    rows = [(TrialState.COMPLETE, 0.5, {}), (TrialState.COMPLETE, 0.25, {}),
            (TrialState.FAIL, None, _error("ValueError", _TRACEBACK)),
            # the objective's own exception class named as a stop's: a failure of its own (it has a traceback)
            (TrialState.FAIL, None, _error("Interrupted", _TRACEBACK)),
            (TrialState.FAIL, None, _error("Interrupted")), (TrialState.FAIL, None, _error("StoppedByRequest")),
            (TrialState.FAIL, None, _error("DriverLost"))]
    for i, (state, value, attrs) in enumerate(rows):
        study.add_trial(create_trial(params={"x": i / 10}, distributions={"x": FloatDistribution(0.0, 1.0)},
                                     state=state, value=value, system_attrs=attrs))
    optuna.create_study(study_name="clean", storage=st.open_storage(url)).add_trial(create_trial(
        params={}, distributions={}, state=TrialState.COMPLETE, value=1.0))
    return url


def test_ls_counts_the_trials_a_run_stopped_apart_from_the_failed_ones(url: str) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["ls", "--storage", url])
    assert text.exit_code == 0, text.output
    header, *lines = text.output.splitlines()
    assert header.split()[:7] == ["study", "state", "complete", "pruned", "failed", "stopped", "running"]
    rows = {line.split()[0]: line.split()[2:7] for line in lines}
    assert rows == {"s": ["2", "0", "2", "3", "0"], "clean": ["1", "0", "0", "0", "0"]}
    as_json = {s["name"]: s for s in json.loads(runner.invoke(main, ["ls", "--storage", url, "--json"]).output)}
    assert as_json["s"]["counts"] == {"COMPLETE": 2, "FAIL": 5}  # Optuna's states, as stored
    assert as_json["s"]["stopped_unfinished"] == 3 and as_json["clean"]["stopped_unfinished"] == 0


def test_show_says_how_many_trials_failed_and_how_many_were_stopped(url: str) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["show", "s", "--storage", url])
    assert out.exit_code == 0, out.output
    assert "complete 2, fail 2, stopped 3;" in out.output.splitlines()[0]
    d = json.loads(runner.invoke(main, ["show", "s", "--storage", url, "--json"]).output)
    assert d["counts"] == {"COMPLETE": 2, "FAIL": 5} and d["stopped_unfinished"] == 3
    lines = out.output.splitlines()
    assert [line.split(":")[0].strip() for line in lines if "#" in line and ("failed #" in line or "stopped #" in line)] \
        == ["failed #2", "failed #3", "stopped #4", "stopped #5", "stopped #6"]
    only_stopped = runner.invoke(main, ["show", "clean", "--storage", url]).output
    assert "complete 1;" in only_stopped and "fail" not in only_stopped.splitlines()[0]


def test_the_dashboard_counts_them_apart_on_the_studies_and_study_pages(url: str) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    with TestClient(create_app(url)) as client:
        studies = {s["name"]: s for s in client.get("/api/studies").json()["studies"]}
        assert studies["s"]["stopped_unfinished"] == 3
        assert studies["s"]["shown_counts"] == {"COMPLETE": 2, "FAIL": 2, "STOPPED": 3}
        study = client.get("/api/studies/s").json()
        assert study["shown_counts"] == {"COMPLETE": 2, "FAIL": 2, "STOPPED": 3}
        page = client.get("/").text
        row = re.search(r'<tr data-study="s">(.*?)</tr>', page, re.S).group(1)
        cells = re.findall(r'<td class="num">(\d+)</td>', row)
        assert cells == ["2", "0", "2", "3", "0"]  # complete, pruned, failed, stopped, running
        counts = re.search(r'<span id="counts">(.*?)</span>\n', client.get("/studies/s").text, re.S).group(1)
        assert re.findall(r'(\w+): <b>(\d+)</b>', counts) == [("COMPLETE", "2"), ("FAIL", "2"), ("STOPPED", "3")]


def test_best_of_a_study_whose_only_trials_a_stop_ended_says_to_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    study = optuna.create_study(study_name="b", storage=st.open_storage(url))
    for _ in range(2):
        study.add_trial(create_trial(params={}, distributions={}, state=TrialState.FAIL, system_attrs=_error("Interrupted")))
    out = CliRunner().invoke(main, ["best", "b", "--storage", url])
    assert out.exit_code == 2
    assert out.output.strip() == ("error: study 'b' has no complete trial (2 stopped); its run was stopped before one "
                                  "finished: run the same spec again to resume")


def test_the_dashboards_trials_table_filters_and_shows_stopped_trials_apart_from_failed_ones(url: str) -> None:
    # ?state=STOPPED was a 400 and ?state=FAIL listed the trials a stop ended among the failures.
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    with TestClient(create_app(url)) as client:
        def rows(state: str) -> list[tuple[int, str]]:
            res = client.get("/api/studies/s/trials", params={"state": state, "per_page": 50})
            assert res.status_code == 200, res.text
            return [(r["number"], r["state"]) for r in res.json()["trials"]]

        assert rows("FAIL") == [(2, "FAIL"), (3, "FAIL")]  # the objective's own errors (#3: its own `Interrupted`)
        assert rows("STOPPED") == [(4, "STOPPED"), (5, "STOPPED"), (6, "STOPPED")]
        assert [n for n, _ in rows("FAIL,STOPPED")] == [2, 3, 4, 5, 6]
        assert [n for n, _ in rows("COMPLETE,STOPPED")] == [0, 1, 4, 5, 6]
        trial = client.get("/api/studies/s/trials/4").json()
        assert trial["state"] == "STOPPED" and trial["optuna_state"] == "FAIL"
        assert 'value="STOPPED"' in client.get("/studies/s").text
