"""Every JSON endpoint and page of the dashboard, over a study that a test ran (real Ray, SQLite)."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tests.dashboard.conftest import STUDY, XSS


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)


def _all_rows(client: Any, **params: Any) -> list[dict[str, Any]]:
    res = client.get(f"/api/studies/{STUDY}/trials", params={"per_page": 500, **params})
    assert res.status_code == 200, res.text
    return res.json()["trials"]


# ---- studies and study ---------------------------------------------------------------------------


def test_studies_lists_the_study_with_counts_state_best_and_progress(client: Any, dash_url: str) -> None:
    trials = _trials(dash_url)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    res = client.get("/api/studies").json()["studies"]
    assert [s["name"] for s in res] == [STUDY]
    s = res[0]
    assert s["counts"] == {"COMPLETE": 10, "FAIL": 3}
    assert s["state"] == "finished" and s["progress"] == 1.0 and s["target"] == 10
    assert s["best"] == pytest.approx(min(t.value for t in complete))
    assert s["last_activity"] is not None


def test_study_gives_best_trial_spec_and_version(client: Any, dash_url: str) -> None:
    best = optuna.load_study(study_name=STUDY, storage=dash_url).best_trial
    s = client.get(f"/api/studies/{STUDY}").json()
    assert s["best_trials"][0]["number"] == best.number
    assert s["best"] == pytest.approx(best.value)
    assert s["spec"]["n_trials"] == 10 and s["metric_names"] == ["loss"]
    assert client.get(f"/api/studies/{STUDY}/version").json()["version"] == s["version"]
    assert client.get(f"/api/studies/{STUDY}/params").json()["params"] == ["tag", "width", "x"]


def test_study_lists_its_runs_and_how_each_ended(client: Any) -> None:
    s = client.get(f"/api/studies/{STUDY}").json()
    assert s["n_runs"] == 1 and len(s["runs"]) == 1
    run = s["runs"][0]
    assert (run["end"], run["end_text"], run["complete"], run["pruned"], run["failed"]) == ("done", "done", 10, 0, 3)
    assert run["started"].endswith("+00:00") and run["duration_s"] > 0 and run["pid"] > 0
    page = client.get(f"/studies/{STUDY}").text
    assert '<span id="n-runs">1</span>' in page and '<td class="run-done">done</td>' in page


# ---- the trials table: sorting, filtering, pagination ----------------------------------------------


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_by_value_orders_complete_trials_and_puts_missing_values_last(client: Any, dash_url: str, order: str) -> None:
    rows = _all_rows(client, sort="value", order=order)
    values = [r["values"][0] for r in rows if r["values"]]
    assert values == sorted(values, reverse=order == "desc")
    assert [r["state"] for r in rows[-3:]] == ["FAIL"] * 3  # no value: last whatever the order
    expected = sorted((t for t in _trials(dash_url) if t.values), key=lambda t: t.value, reverse=order == "desc")
    assert [r["number"] for r in rows[:10]] == [t.number for t in expected]


@pytest.mark.parametrize("sort", ["number", "duration", "started", "completed", "state", "param:x", "param:width"])
def test_every_sort_key_orders_the_rows(client: Any, dash_url: str, sort: str) -> None:
    asc = [r["number"] for r in _all_rows(client, sort=sort, order="asc")]
    desc = [r["number"] for r in _all_rows(client, sort=sort, order="desc")]
    assert sorted(asc) == sorted(desc) == list(range(13))
    if sort == "param:x":
        xs = {t.number: t.params["x"] for t in _trials(dash_url)}
        assert [xs[n] for n in asc] == sorted(xs.values())
    if sort == "duration":
        durations = [r["duration_s"] for r in _all_rows(client, sort=sort, order="asc")]
        # SQLite's date functions resolve milliseconds: durations closer than that may swap.
        assert all(b >= a - 0.002 for a, b in zip(durations, durations[1:])), durations


def test_filter_by_state(client: Any) -> None:
    res = client.get(f"/api/studies/{STUDY}/trials", params={"state": "FAIL"}).json()
    assert res["total"] == 3 and {r["state"] for r in res["trials"]} == {"FAIL"}
    both = client.get(f"/api/studies/{STUDY}/trials", params={"state": "FAIL,COMPLETE"}).json()
    assert both["total"] == 13


def test_filter_by_value_range(client: Any, dash_url: str) -> None:
    values = sorted(t.value for t in _trials(dash_url) if t.values)
    lo, hi = values[2], values[6]
    rows = _all_rows(client, value_min=lo, value_max=hi)
    assert sorted(r["values"][0] for r in rows) == pytest.approx(values[2:7])


def test_filter_by_parameter_range_and_choice(client: Any, dash_url: str) -> None:
    trials = _trials(dash_url)
    expected = sorted(t.number for t in trials if 0.0 <= t.params["x"] <= 2.0)
    assert sorted(r["number"] for r in _all_rows(client, param="x:0:2")) == expected
    expected = sorted(t.number for t in trials if t.params["x"] >= 1.0)
    assert sorted(r["number"] for r in _all_rows(client, param="x:1:")) == expected
    expected = sorted(t.number for t in trials if t.params["tag"] == XSS)
    assert expected, "the seeded study should draw the hostile choice at least once"
    assert sorted(r["number"] for r in _all_rows(client, param=f"tag={XSS}")) == expected
    both = sorted(t.number for t in trials if t.params["tag"] == XSS and t.params["width"] <= 32)
    assert sorted(r["number"] for r in _all_rows(client, param=[f"tag={XSS}", "width::32"])) == both


def test_pagination_covers_every_trial_once(client: Any) -> None:
    seen: list[int] = []
    first = client.get(f"/api/studies/{STUDY}/trials", params={"per_page": 4, "sort": "value"}).json()
    assert first["pages"] == 4 and first["total"] == 13
    for page in range(1, 5):
        res = client.get(f"/api/studies/{STUDY}/trials", params={"per_page": 4, "page": page, "sort": "value"}).json()
        seen += [r["number"] for r in res["trials"]]
    assert sorted(seen) == list(range(13))


@pytest.mark.parametrize("params, status, words", [
    ({"sort": "bogus"}, 400, "expected one of"),
    ({"sort": "value:7"}, 400, "out of range"),
    ({"state": "DONE"}, 400, "DONE"),
    ({"param": "x:a:b"}, 400, "NAME:LOW:HIGH"),
    ({"param": "x::"}, 400, "at least one bound"),
    ({"order": "up"}, 422, ""),
    ({"page": 0}, 422, ""),
    ({"per_page": 501}, 422, ""),
    ({"value_min": "nan"}, 400, "finite"),
    ({"sort": "param:nosuch"}, 400, "the study has no parameter 'nosuch'; it has tag, width, x"),
    # a filter on a name the study lacks matched nothing, silently
    ({"param": "nosuch:0:1"}, 400, "param filter: the study has no parameter 'nosuch'; it has tag, width, x"),
])
def test_bad_table_queries_are_client_errors(client: Any, params: dict[str, Any], status: int, words: str) -> None:
    res = client.get(f"/api/studies/{STUDY}/trials", params=params)
    assert res.status_code == status
    assert words in str(res.json()["detail"])


def test_unknown_study_and_trial_are_404(client: Any) -> None:
    assert client.get("/api/studies/nope").status_code == 404
    assert client.get("/api/studies/nope/trials").status_code == 404
    assert client.get(f"/api/studies/{STUDY}/trials/999").status_code == 404
    page = client.get("/studies/nope")
    assert page.status_code == 404 and "no study named" in page.text


def test_a_mistyped_page_address_gets_a_page_and_the_api_keeps_json(client: Any) -> None:
    page = client.get("/nosuchpage")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert '<p id="error-message">no such page: /nosuchpage</p>' in page.text
    page = client.get(f"/studies/{STUDY}/trials/abc")
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "number: " in page.text and "(got &#39;abc&#39;)" in page.text
    api = client.get(f"/api/studies/{STUDY}/trials/abc")
    assert api.status_code == 422 and api.json()["detail"][0]["loc"] == ["path", "number"]
    assert client.get("/api/nosuch").json() == {"detail": "Not Found"}


# ---- one trial, compare, artifacts ---------------------------------------------------------------------


def test_trial_has_curve_metrics_placement_artifacts_and_attrs(client: Any) -> None:
    t = client.get(f"/api/studies/{STUDY}/trials/0").json()
    assert t["state"] == "COMPLETE"
    assert [row["step"] for row in t["curve"]] == [1, 2, 3, 4]
    assert set(t["intermediate_values"]) == {"1", "2", "3", "4"}
    assert t["metrics"]["loss"] == pytest.approx(t["values"][0])
    assert t["worker"]["pid"] > 0 and t["worker"]["host"]
    assert [a["name"] for a in t["artifacts"]] == ["best.pt"]
    assert t["attrs"]["confusion_matrix"] == [[5, 1], [2, 7]]
    assert t["duration_s"] > 0


def test_trial_timing_lists_its_phases_in_order(client: Any) -> None:
    from tuner.report._timing import PHASES

    t = client.get(f"/api/studies/{STUDY}/trials/0").json()
    names = [p["phase"] for p in t["timing"]]
    # dashboard_mix marks its training: every phase from sampling on is there, in PHASES' order
    assert {"sampling", "setup", "training", "wrap-up"} <= set(names)
    assert names == [name for name in PHASES if name in names]
    assert all(p["seconds"] >= 0 and p["what"] == PHASES[p["phase"]] for p in t["timing"])
    # the phases tile the trial from its creation: together no longer than it lasted
    assert sum(p["seconds"] for p in t["timing"]) <= t["duration_s"] + 0.01

    failed = client.get(f"/api/studies/{STUDY}/trials/3").json()  # raised before marking anything
    assert "sampling" in [p["phase"] for p in failed["timing"]] and "setup" not in [p["phase"] for p in failed["timing"]]


def test_failed_trial_carries_its_traceback(client: Any) -> None:
    t = client.get(f"/api/studies/{STUDY}/trials/3").json()
    assert t["state"] == "FAIL"
    assert t["error"]["type"] == "RuntimeError" and "diverged in trial 3" in t["error"]["message"]
    assert "Traceback" in t["error"]["traceback"] and "dashboard_mix" in t["error"]["traceback"]


def test_compare_lists_differing_parameters(client: Any) -> None:
    res = client.get(f"/api/studies/{STUDY}/compare", params={"trials": "0,1,2"}).json()
    assert [t["number"] for t in res["trials"]] == [0, 1, 2]
    assert "x" in res["differ"] and set(res["params"]) == {"tag", "width", "x"}
    for bad in ("0", "0,0", "0,1,2,4,5,6", "a,b"):
        assert client.get(f"/api/studies/{STUDY}/compare", params={"trials": bad}).status_code == 400


def test_artifact_download_returns_the_recorded_file(client: Any) -> None:
    res = client.get(f"/api/studies/{STUDY}/trials/0/artifacts/best.pt")
    assert res.status_code == 200
    assert res.content == b"weights of trial 0\n"
    assert "attachment" in res.headers["content-disposition"]


@pytest.mark.parametrize("attempt", [
    "../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "best.pt/../../tuner.db",
    "..%252F..%252Fetc%252Fpasswd", "model.txt",
])
def test_download_refuses_anything_not_recorded(client: Any, attempt: str) -> None:
    res = client.get(f"/api/studies/{STUDY}/trials/0/artifacts/{attempt}")
    assert res.status_code == 404
    assert b"root:" not in res.content


def test_failed_trial_without_artifacts_has_nothing_to_download(client: Any) -> None:
    assert client.get(f"/api/studies/{STUDY}/trials/3").json()["artifacts"] == []
    assert client.get(f"/api/studies/{STUDY}/trials/3/artifacts/best.pt").status_code == 404


def test_a_recorded_file_that_was_deleted_is_404_not_500(client: Any, dash_url: str) -> None:
    path = Path(client.get(f"/api/studies/{STUDY}/trials/1").json()["artifacts"][0]["uri"][len("file://"):])
    saved = path.read_bytes()
    path.unlink()
    try:
        res = client.get(f"/api/studies/{STUDY}/trials/1/artifacts/best.pt")
        assert res.status_code == 404 and "gone" in res.json()["detail"]
    finally:
        path.write_bytes(saved)


# ---- figures -------------------------------------------------------------------------------------------


def test_figures_are_the_reports_and_are_cached_per_version(client: Any) -> None:
    first = client.get(f"/api/studies/{STUDY}/figures").json()
    ids = [s["id"] for s in first["sections"]]
    assert ids[:2] == ["history", "importance"] and "curves" in ids and "timeline" in ids
    history = next(s for s in first["sections"] if s["id"] == "history")
    assert history["figure"]["data"], "the history figure has traces"
    assert first["stale"] is False
    again = client.get(f"/api/studies/{STUDY}/figures").json()
    assert again["version"] == first["version"] and again["compute_s"] == first["compute_s"]  # served from the cache


# ---- pages: escaping -------------------------------------------------------------------------------------


def test_pages_render_hostile_parameter_values_as_text(client: Any, dash_url: str) -> None:
    number = next(t.number for t in _trials(dash_url) if t.params["tag"] == XSS)
    other = 1 if number == 0 else 0
    for url in (f"/studies/{STUDY}/trials/{number}", f"/studies/{STUDY}/compare?trials={other},{number}"):
        html = client.get(url).text
        assert "<script>alert(" not in html, url
        assert "&lt;script&gt;alert(" in html, url           # the table cell
    trial_api = client.get(f"/api/studies/{STUDY}/trials/{number}").json()
    assert trial_api["params"]["tag"] == XSS                    # the API gives the value as it is


def test_error_messages_are_escaped_on_the_trial_page(client: Any) -> None:
    html = client.get(f"/studies/{STUDY}/trials/3").text
    assert "loss is &lt;nan&gt; &amp; rising" in html and "<nan>" not in html.split('id="trial-data"')[0]
    assert 'id="traceback"' in html


def test_every_page_loads(client: Any) -> None:
    for url in ("/", f"/studies/{STUDY}", f"/studies/{STUDY}/trials/0", f"/studies/{STUDY}/compare?trials=0,1",
                "/static/dashboard.js", "/static/style.css", "/assets/plotly.min.js"):
        assert client.get(url).status_code == 200, url


# ---- read-only, headers, schema ---------------------------------------------------------------------------


def test_no_endpoint_writes(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    methods = {m for ops in schema["paths"].values() for m in ops}
    assert methods == {"get"}
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(f"/api/studies/{STUDY}").status_code == 405


def test_openapi_lists_every_api_endpoint(client: Any) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    for suffix in ("", "/trials", "/trials/{number}", "/trials/{number}/artifacts/{artifact}", "/figures", "/compare",
                   "/version", "/params"):
        assert f"/api/studies/{{name}}{suffix}" in paths, suffix
    assert "/api/studies" in paths


def test_security_headers(client: Any) -> None:
    res = client.get(f"/studies/{STUDY}")
    csp = res.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "'unsafe-inline'" not in script_src and "'self'" in script_src
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["x-frame-options"] == "DENY"


# ---- token ------------------------------------------------------------------------------------------------


def test_token_is_required_on_every_request_when_set(dash_url: str) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    with TestClient(create_app(dash_url, token="s3cret-token")) as c:
        for url in ("/", "/api/studies", f"/studies/{STUDY}", "/openapi.json", "/static/dashboard.js",
                    f"/api/studies/{STUDY}/trials/0/artifacts/best.pt"):
            assert c.get(url).status_code == 401, url
            assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
            assert c.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200, url
        first = c.get("/?token=s3cret-token")
        assert first.status_code == 200 and "tuner_token=s3cret-token" in first.headers["set-cookie"]
        assert "HttpOnly" in first.headers["set-cookie"]
        c.cookies.set("tuner_token", "s3cret-token")
        assert c.get("/api/studies").status_code == 200       # the browser's later requests carry the cookie
        c.cookies.clear()
        assert c.get("/api/studies").status_code == 401
        assert c.get("/api/studies", params={"token": "nope"}).status_code == 401


@pytest.mark.parametrize("direction,best", [("minimize", 2), ("maximize", 1)])
def test_the_best_trial_is_optunas_with_infinite_values(tmp_path: Path, direction: str, best: int) -> None:
    """Optuna stores an infinite value as NULL with its sign in a type column: ranked by that type, not as NULL."""
    from tuner.dashboard._queries import DashboardData
    from tuner.storage import open_storage

    url = f"sqlite:///{tmp_path / 'inf.db'}"
    dist = {"a": optuna.distributions.FloatDistribution(0, 2)}
    study = optuna.create_study(study_name="inf", storage=url, direction=direction)
    for value in (0.5, math.inf, -math.inf, 2.0):
        study.add_trial(optuna.trial.create_trial(params={"a": 1.0}, distributions=dist, value=value))
    assert study.best_trial.number == best
    assert [t["number"] for t in DashboardData(open_storage(url, readonly=True)).study("inf")["best_trials"]] == [best]
    pareto = optuna.create_study(study_name="mo", storage=url, directions=["minimize", "minimize"])
    for values in ((1.0, math.inf), (2.0, 1.0), (-math.inf, 3.0), (3.0, 3.0)):
        pareto.add_trial(optuna.trial.create_trial(params={"a": 1.0}, distributions=dist, values=list(values)))
    front = DashboardData(open_storage(url, readonly=True)).study("mo")["best_trials"]
    assert sorted(t["number"] for t in front) == sorted(t.number for t in pareto.best_trials) == [1, 2]


def test_json_is_valid_even_with_infinite_values(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'inf.db'}"
    study = optuna.create_study(study_name="inf", storage=url)
    study.add_trial(optuna.trial.create_trial(params={"a": 1.0}, distributions={"a": optuna.distributions.FloatDistribution(0, 2)},
                                              value=math.inf))
    with TestClient(create_app(url)) as c:
        rows = c.get("/api/studies/inf/trials").json()["trials"]
        assert rows[0]["values"] == [None]
        assert c.get("/api/studies/inf").status_code == 200


def test_a_parameter_whose_value_is_none_reads_none_and_an_inactive_one_differs_from_it(tmp_path: Path) -> None:
    """`grad_clip: {choice: [null, 1.0]}`: None is a value. The pages showed it as the dash they use
    for a missing value, and the comparison called None and inactive the same."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'none.db'}"
    study = optuna.create_study(study_name="none", storage=url)
    clip = optuna.distributions.CategoricalDistribution([None, 1.0])
    study.add_trial(optuna.trial.create_trial(params={"clip": None}, distributions={"clip": clip}, value=1.0))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=2.0))  # clip inactive
    with TestClient(create_app(url)) as c:
        assert re.search(r"<th>clip</th><td>None</td>", c.get("/studies/none/trials/0").text)
        assert "clip=None" in c.get("/studies/none").text  # the best trial's line
        page = c.get("/studies/none/compare?trials=0,1").text
        row = re.search(r'<tr class="(\w+)"><th>clip</th><td>(.*?)</td><td>(.*?)</td></tr>', page)
        assert row and row.groups() == ("differ", "None", '<span class="small">inactive</span>'), page[-2000:]
        assert c.get("/api/studies/none/compare", params={"trials": "0,1"}).json()["differ"] == ["clip"]


def test_a_rerun_trial_links_the_trial_whose_parameters_it_runs_again(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'rerun.db'}"
    study = optuna.create_study(study_name="rr", storage=url)
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": x}, state=TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": x}, value=1.0,
                                              system_attrs={"tuner:rerun_of": 0, "tuner:attr:resumed_at_epoch": 3}))
    with TestClient(create_app(url)) as c:
        assert c.get("/api/studies/rr/trials/1").json()["rerun_of"] == 0
        assert c.get("/api/studies/rr/trials/0").json()["rerun_of"] is None
        page = c.get("/studies/rr/trials/1").text
        assert '<td id="rerun-of">the parameters of <a href="/studies/rr/trials/0">trial 0</a>' in page
        assert "which its run left unfinished; went on from the end of its epoch 3</td>" in page
        assert 'id="rerun-of"' not in c.get("/studies/rr/trials/0").text


def test_a_run_stopped_by_tuner_stop_reads_without_the_terminals_quotes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine._study import record_run

    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    study = optuna.create_study(study_name="sr", storage=url)
    record_run(study, {"started": 1.0, "ended": 5.0, "host": "h", "pid": 3, "end": "stop_requested", "complete": 1,
                       "pruned": 0, "failed": 0, "stopped_unfinished": 2})
    with TestClient(create_app(url)) as c:
        page = c.get("/studies/sr").text
        assert '<td class="run-stop_requested">stopped by tuner stop</td>' in page, page[-3000:]
        assert c.get("/api/studies/sr").json()["runs"][0]["stopped_unfinished"] == 2


def test_the_trial_page_and_best_trials_show_the_params_as_the_objective_saw_them(tmp_path: Path) -> None:
    """The pages showed Optuna's names (`width.0`, `lr|optimizer=adam/adamw`) without the fixed
    values: nothing a user could paste into a spec's `enqueue`, and not what `tuner best` shows."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs
    from tuner.space import SearchSpace

    space = SearchSpace.from_mapping({"params": {"n": {"int": [2, 2]}, "width": {"int": [4, 64], "per": "n"},
                                                 "act": {"choice": ["relu", "gelu"]}, "epochs": 3}}, source="t")
    url = f"sqlite:///{tmp_path / 'up.db'}"
    study = optuna.create_study(study_name="up", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    study._storage.set_study_system_attr(study._study_id, _attrs.SPACE, space.to_dict())
    study.optimize(lambda t: float(sum(space.suggest(t)["width"])), n_trials=3)
    best = study.best_trial
    seen = space.params_from_optuna(best.params)
    assert "width.0" in best.params and seen["epochs"] == 3 and len(seen["width"]) == 2
    with TestClient(create_app(url)) as c:
        row = c.get(f"/api/studies/up/trials/{best.number}").json()
        assert row["user_params"] == seen and "width.0" in row["params"]  # the table keeps Optuna's columns
        page = c.get(f"/studies/up/trials/{best.number}").text
        table = re.search(r'<table class="kv" id="params">(.*?)</table>', page, re.S).group(1)  # type: ignore[union-attr]
        assert f"<th>width</th><td>[{seen['width'][0]}, {seen['width'][1]}]</td>" in table
        assert "<th>epochs</th><td>3</td>" in table and "width.0" not in table
        assert f"width=[{seen['width'][0]}, {seen['width'][1]}]" in c.get("/studies/up").text  # the best trials
        assert "width" in c.get("/api/studies/up/compare", params={"trials": "0,1"}).json()["params"]


def test_a_range_over_a_choice_compares_the_choices_values(tmp_path: Path) -> None:
    """Choices are stored as their index: `batch_size:32:64` over [32, 64, 128] matched nothing,
    `batch_size:0:1` matched 32 and 64, and a range over text choices matched by index too."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(study_name="r", storage=url)
    sizes = optuna.distributions.CategoricalDistribution([32, 64, 128])
    act = optuna.distributions.CategoricalDistribution(["relu", "gelu"])
    for i, (bs, a) in enumerate([(32, "relu"), (64, "gelu"), (128, "relu"), (64, "relu")]):
        study.add_trial(optuna.trial.create_trial(params={"bs": bs, "act": a}, distributions={"bs": sizes, "act": act},
                                                  value=float(i)))
    with TestClient(create_app(url)) as c:
        def numbers(param: str) -> list[int]:
            answer = c.get("/api/studies/r/trials", params={"param": param})
            assert answer.status_code == 200, answer.text
            return sorted(r["number"] for r in answer.json()["trials"])

        assert numbers("bs:32:64") == [0, 1, 3] and numbers("bs:100:") == [2] and numbers("bs:0:1") == []
        assert numbers("bs=64") == [1, 3]  # by value, as before
        answer = c.get("/api/studies/r/trials", params={"param": "act:0:1"})
        assert answer.status_code == 400 and "act=relu" in answer.json()["detail"]


def test_studies_address_goes_to_the_list_of_studies(tmp_path: Path) -> None:
    """``/studies`` was redirected to ``/studies/``, which the study route read as a study named "" (404)."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'list.db'}"
    optuna.create_study(study_name="s1", storage=url)
    with TestClient(create_app(url)) as c:
        for address in ("/studies", "/studies/"):
            res = c.get(address, follow_redirects=False)
            assert res.status_code == 307 and res.headers["location"] == "/", (address, res.headers)
            page = c.get(address)
            assert page.status_code == 200 and 'href="/studies/s1"' in page.text, address
        assert c.get("/studies/s1").status_code == 200 and c.get("/studies/nope").status_code == 404


def test_export_files_show_their_size_recorded_or_read_from_disk(tmp_path: Path) -> None:
    """`tuner export` records no size for the model card (it cannot hold its own): the page showed an empty cell."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs

    url = f"sqlite:///{tmp_path / 'exp.db'}"
    study = optuna.create_study(study_name="ex", storage=url)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model_card.md").write_text("# card\n")  # 7 bytes
    study._storage.set_study_system_attr(study._study_id, _attrs.EXPORTS, [{
        "trial": 0, "folder": str(folder), "exported_at": "2026-01-01T00:00:00+00:00",
        "files": {"onnx": {"file": "model.onnx", "bytes": 4}, "model_card.md": {"file": "model_card.md"},
                  "model_card.json": {"file": "model_card.json"}}}])  # the last one deleted since
    with TestClient(create_app(url)) as c:
        files = c.get("/api/studies/ex/trials/0").json()["exports"][0]["files"]
        assert [(f["file"], f["bytes"], f["exists"]) for f in files] == [
            ("model.onnx", 4, True), ("model_card.md", 7, True), ("model_card.json", None, False)]
        sizes = re.findall(r'<td class="num">(.*?)</td></tr>', c.get("/studies/ex/trials/0").text.split('class="grid exports"')[1])
        assert sizes == ["4", "7", "—"], sizes


def test_placement_shows_when_the_trial_started_as_a_date_and_time(tmp_path: Path) -> None:
    """The worker records ``started`` as ``time.time()``: the page showed ``started 1.79667e+09``."""
    import datetime

    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs

    url = f"sqlite:///{tmp_path / 'placed.db'}"
    study = optuna.create_study(study_name="pl", storage=url)
    started = 1796672376.28
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0, system_attrs={
        _attrs.WORKER: {"host": "node-1", "pid": 11528, "started": started, "cpus": 1.0}}))
    with TestClient(create_app(url)) as c:
        placement = c.get("/studies/pl/trials/0").text.split('id="placement">')[1].split("</table>")[0]
        when = datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds")
        assert f"<tr><th>started</th><td>{when}</td></tr>" in placement, placement
        assert "<tr><th>pid</th><td>11528</td></tr>" in placement and "<tr><th>cpus</th><td>1</td></tr>" in placement
        assert c.get("/api/studies/pl/trials/0").json()["worker"]["started"] == started  # the API keeps the number


def test_the_run_under_way_is_listed_with_the_logged_runs(tmp_path: Path) -> None:
    """The run log records a run as it ends: while a run went on, the Runs list left it out."""
    import os

    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs
    from tuner.engine._study import _own_record, record_run

    url = f"sqlite:///{tmp_path / 'live.db'}"
    study = optuna.create_study(study_name="lv", storage=url)
    record_run(study, {"started": 1.0, "ended": 5.0, "host": "h", "pid": 3, "end": "done", "complete": 1,
                       "pruned": 0, "failed": 0, "stopped_unfinished": 0})
    with TestClient(create_app(url)) as c:
        idle = c.get("/api/studies/lv").json()
        assert idle["n_runs"] == 1 and [r["end"] for r in idle["runs"]] == ["done"]
        lease = _own_record()  # this process holds the study, as a run's driver does
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, lease)
        s = c.get("/api/studies/lv").json()
        assert s["state"] == "running" and s["n_runs"] == 2
        run = s["runs"][0]  # newest first
        assert (run["end"], run["end_text"], run["pid"], run["complete"]) == ("running", "running", os.getpid(), None)
        assert run["started"].endswith("+00:00") and run["duration_s"] >= 0 and run["ended"] is None
        assert s["runs"][1]["end"] == "done"
        page = c.get("/studies/lv").text
        assert '<span id="n-runs">2</span>' in page and '<td class="run-running">running</td>' in page
        assert c.get("/api/studies/lv/version").json()["version"] != idle["version"]  # the open page refreshes
        dead = {**lease, "pid": 2**22 + 7, "proc_start": "never"}  # a run that died holding the study: not under way
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, dead)
        assert [r["end"] for r in c.get("/api/studies/lv").json()["runs"]] == ["done"]


def test_a_parameter_filter_by_the_objectives_name_matches_every_variant_of_it(tmp_path: Path) -> None:
    # The filter took Optuna's names only: `lr:0.001:0.01` matched nothing where the space's lr has
    # variants (`lr|optimizer=adam/adamw`, `lr|optimizer=sgd`), the name README and `tuner best` use.
    from fastapi.testclient import TestClient
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from tuner.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'v.db'}"
    study = optuna.create_study(study_name="v", storage=url)
    opt = CategoricalDistribution(["adam", "sgd"])
    for number, (optimizer, lr) in enumerate([("adam", 0.005), ("sgd", 0.05), ("sgd", 0.002), ("adam", 0.5)]):
        name = f"lr|optimizer={optimizer}"
        study.add_trial(optuna.trial.create_trial(
            params={"optimizer": optimizer, name: lr}, value=float(number),
            distributions={"optimizer": opt, name: FloatDistribution(1e-4, 1.0, log=True)}))
    with TestClient(create_app(url)) as client:
        def numbers(param: str) -> list[int]:
            res = client.get("/api/studies/v/trials", params={"param": param, "per_page": 50})
            assert res.status_code == 200, res.text
            return sorted(r["number"] for r in res.json()["trials"])

        assert numbers("lr:0.001:0.01") == [0, 2]
        assert numbers("lr|optimizer=sgd:0.001:0.01") == [2]  # Optuna's own name still works
        assert numbers("optimizer=adam") == [0, 3]
        bad = client.get("/api/studies/v/trials", params={"param": "lrr:0:1"})
        assert bad.status_code == 400 and "no parameter 'lrr'; it has lr, optimizer" in bad.text


class _Proxy:
    """A TCP forwarder to the PostgreSQL server on 127.0.0.1:5432: ``stop`` makes the database
    unreachable as a server gone away does (every connection cut, new ones refused), ``start``
    brings it back on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._links: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port, self._listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self._listener is not None
        self._listener.close()
        for link in self._links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()
        self._links.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # stopped
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            self._links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


def test_an_unreachable_database_is_a_503_in_one_line_and_service_resumes_when_it_is_back(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """While PostgreSQL could not be reached every route answered a bare "Internal Server Error"
    and logged a full traceback per request; readers are to answer at once with what is wrong."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    study = optuna.create_study(study_name="pg", storage=postgres_url)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    proxy = _Proxy()
    proxy.start()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    routes = ("/api/studies/pg/trials", "/api/studies/pg/trials/0", "/studies/pg", "/studies/pg/trials/0")
    try:
        client = TestClient(create_app(url), raise_server_exceptions=False)
        assert [client.get(r).status_code for r in routes] == [200] * 4
        proxy.stop()
        caplog.clear()
        for route in routes:
            res = client.get(route)
            assert res.status_code == 503, (route, res.text[:300])
            line = res.json()["detail"] if route.startswith("/api/") else res.text
            assert f"storage {url}: " in line and "Connection refused" in line, line[:2000]
            assert "check that the database is running and reachable" in line
        logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(logged) == len(routes) and all(r.exc_info is None for r in logged)
        assert all("\n" not in r.getMessage() and "503" in r.getMessage() for r in logged)
        proxy.start()  # the database is back
        assert [client.get(r).status_code for r in routes] == [200] * 4
        assert {"500", "503"} <= set(client.get("/openapi.json").json()["paths"]["/api/studies"]["get"]["responses"])
    finally:
        proxy.stop()


def test_a_query_the_database_refuses_is_a_500_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tables that are not quite Optuna's (a column dropped by hand): one line, not a bare 500 and a traceback."""
    import sqlite3

    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    db = tmp_path / "t.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    client = TestClient(create_app(f"sqlite:///{db}"), raise_server_exceptions=False)
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP INDEX ix_tuner_trials_study_state; ALTER TABLE trials DROP COLUMN datetime_complete;")
    caplog.clear()
    res = client.get("/api/studies/s/trials")
    assert res.status_code == 500
    assert res.json()["detail"] == (f"storage sqlite:///{db}: no such column: trials.datetime_complete; "
                                    "check that the URL points at a tuner (Optuna) database")
    assert [r.exc_info for r in caplog.records if r.levelno >= logging.WARNING] == [None]
