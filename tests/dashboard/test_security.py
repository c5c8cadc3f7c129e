"""The dashboard's security promises, over a storage full of hostile content (no Ray needed).

- stored XSS: every field a page shows (study names, parameter names and values, metric names,
  user and tuner attributes, placement, artifact and export names, error messages and
  tracebacks) renders as text: the page holds no element, attribute or URL the storage put there;
- downloads serve only files recorded for the trial, at the place they were recorded (no ``..``,
  encoded or absolute forms, no symbolic link out of the trial's or export's folder);
- read-only: every route of the app answers GET/HEAD only and leaves the storage file as it was;
- a token, when set, guards every route; the dashboard binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest

from tests.dashboard.conftest import (ERROR_MESSAGE, HOSTILE, HOSTILE_STUDIES, IMG, JS_URL, LONG, MARKUP, SCRIPT,
                                      UNICODE, LiveServer, fill_hostile_study)

ROOT = Path(__file__).resolve().parents[2]
# Names a browser cannot put in a URL path: "." and ".." segments are resolved away, even
# percent-encoded (WHATWG URL). Such studies are listed, but their pages are not reachable.
UNREACHABLE = {".."}
REACHABLE = [n for n in HOSTILE_STUDIES if n not in UNREACHABLE]
_OUR_SCRIPTS = {"/assets/plotly.min.js", "/static/dashboard.js"}


def q(name: str) -> str:
    """A study name (or file name) as one URL path segment, as the pages link it."""
    return quote(name, safe="")


@pytest.fixture(scope="module")
def hclient(hostile_url: str) -> Iterator[Any]:
    """An HTTP client of the dashboard served by uvicorn: Starlette's TestClient decodes a path twice
    (``%252e`` reaches the app as ``.``), which would hide how the study ``%2e%2e`` really works."""
    import httpx

    with LiveServer(hostile_url) as server, httpx.Client(base_url=server.base, timeout=30) as c:
        yield c


# ---- stored XSS ---------------------------------------------------------------------------------


class _Dom(HTMLParser):
    """Elements (tag, attributes) and the visible text of a page, as a browser would parse them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.json_blocks: dict[str, Any] = {}
        self._text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(html)
        self.close()
        self.text = "".join(self._text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is None:
            self._text.append(data)
        elif self._script.get("type") == "application/json":
            self.json_blocks[str(self._script.get("id"))] = json.loads(data)


def _inert(html: str) -> _Dom:
    """The parsed page, after checking that nothing in it came from the storage as markup."""
    for raw in ("<script>alert", "<img", "</script>alert"):   # JSON blocks carry "<" as \u003c
        assert raw not in html, raw
    dom = _Dom(html)
    for tag, attrs in dom.elements:
        assert tag not in ("img", "iframe", "object", "embed", "svg", "base", "form") or tag == "form" and \
            attrs.get("id") == "filters", (tag, attrs)
        if tag == "script":
            assert attrs.get("src") in _OUR_SCRIPTS or (attrs.get("type") == "application/json" and "src" not in attrs), attrs
        for key, value in attrs.items():
            assert not key.startswith("on"), (tag, attrs)
            if key in ("href", "src", "action", "formaction") and value:
                assert not re.match(r"\s*(javascript|data|vbscript):", value, re.I) or value == "data:,", (tag, attrs)
                assert value.startswith(("/", "data:,")), (tag, attrs)  # every link stays on the dashboard
    return dom


def test_studies_page_lists_every_hostile_name_as_text(hclient: Any) -> None:
    dom = _inert(hclient.get("/").text)
    rows = [a for t, a in dom.elements if t == "tr" and "data-study" in a]
    assert sorted(r["data-study"] for r in rows) == sorted(HOSTILE_STUDIES)   # attribute values escaped, intact
    links = [a["href"] for t, a in dom.elements if t == "a" and a.get("class") == "study-link"]
    assert sorted(links) == sorted(f"/studies/{q(n)}" for n in HOSTILE_STUDIES)
    for name in HOSTILE_STUDIES:
        assert name in dom.text
    assert SCRIPT in dom.text   # the spec's task column
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hclient.get("/").text


@pytest.mark.parametrize("name", REACHABLE, ids=range(len(REACHABLE)))
def test_study_page_shows_name_params_and_spec_as_text(hclient: Any, name: str) -> None:
    res = hclient.get(f"/studies/{q(name)}")
    assert res.status_code == 200
    dom = _inert(res.text)
    assert name in dom.text                                    # heading, crumb and title
    assert dom.json_blocks["boot"]["name"] == name            # what dashboard.js gets, as it is
    assert dom.json_blocks["boot"]["params"] == sorted([SCRIPT, "x", "a/b .."])
    assert f"{SCRIPT}={SCRIPT}" in dom.text                    # the best trial's parameter name and value
    for text in (SCRIPT, IMG, LONG):                           # spec: task, metric, notes
        assert text in dom.text
    options = [t for t, _ in dom.elements if t == "option"]
    assert len(options) == 4                                  # "(any)" and the three parameter names


@pytest.mark.parametrize("name", REACHABLE, ids=range(len(REACHABLE)))
def test_trial_pages_show_every_stored_field_as_text(hclient: Any, name: str) -> None:
    res = hclient.get(f"/studies/{q(name)}/trials/0")
    assert res.status_code == 200
    dom = _inert(res.text)
    expected = {
        "study name (crumb)": name, "metric name": IMG, "parameter name and value": SCRIPT,
        "placement host": IMG, "artifact name": f"{IMG}.pt", "export file": f"{IMG}.onnx",
        "export time": IMG, "final metric names": JS_URL, "user attribute key": UNICODE,
        "user attribute value": LONG, "tuner attribute key": SCRIPT,
    }
    for field, text in expected.items():
        assert text in dom.text, field
    assert dom.json_blocks["trial-data"]["params"][SCRIPT] == SCRIPT
    downloads = [a["href"] for t, a in dom.elements if t == "a" and a.get("class") in ("download", "export-download")]
    assert f"/api/studies/{q(name)}/trials/0/artifacts/{q(IMG + '.pt')}" in downloads
    assert f"/api/studies/{q(name)}/trials/0/exports/0/{q(IMG + '.onnx')}" in downloads

    failed = hclient.get(f"/studies/{q(name)}/trials/1")
    dom = _inert(failed.text)
    assert f"RuntimeError: {ERROR_MESSAGE}" in dom.text        # the error line
    assert "Traceback (most recent call last)" in dom.text and dom.text.count(ERROR_MESSAGE) >= 2  # and the traceback
    assert dom.json_blocks["trial-data"]["error"]["message"] == ERROR_MESSAGE
    assert dom.json_blocks["trial-data"]["params"][SCRIPT] == IMG


@pytest.mark.parametrize("name", REACHABLE, ids=range(len(REACHABLE)))
def test_compare_page_shows_hostile_values_as_text(hclient: Any, name: str) -> None:
    res = hclient.get(f"/studies/{q(name)}/compare", params={"trials": "0,1,2,3,4"})
    assert res.status_code == 200
    dom = _inert(res.text)
    for value in (SCRIPT, IMG, JS_URL, UNICODE, LONG):          # the categorical values of trials 0-4
        assert value in dom.text
    assert name in dom.text


def test_error_pages_echo_hostile_input_as_text(hclient: Any) -> None:
    for url in (f"/studies/{q(SCRIPT + 'x')}", f"/studies/{q(IMG)}/trials/77", f"/studies/{q(IMG)}/compare?trials={q(SCRIPT)}"):
        res = hclient.get(url)
        assert res.status_code in (400, 404)
        _inert(res.text)


def test_api_returns_hostile_values_unchanged(hclient: Any) -> None:
    """The API gives data as it is stored: escaping is the pages' job, not the data's."""
    for name in REACHABLE:
        t = hclient.get(f"/api/studies/{q(name)}/trials/1").json()
        assert t["error"]["message"] == ERROR_MESSAGE and t["params"][SCRIPT] == IMG
        assert hclient.get(f"/api/studies/{q(name)}").json()["name"] == name
    values = [r["params"][SCRIPT] for r in hclient.get(f"/api/studies/{q(SCRIPT)}/trials", params={"per_page": 50}).json()["trials"]]
    assert values == list(HOSTILE)


def test_dashboard_js_writes_storage_values_as_text_only() -> None:
    """Static check of the one script that builds DOM from API data: text nodes only, no HTML sinks."""
    js = re.sub(r"//[^\n]*", "", (ROOT / "tuner" / "dashboard" / "static" / "dashboard.js").read_text())  # code, not comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"on", ".src =", "createContextualFragment", "DOMParser"):
        assert sink not in js, sink
    assert "e.textContent = String(text)" in js                  # el(): the one way text gets in
    assert "JSON.parse(node.textContent)" in js                  # page data comes from JSON blocks, not markup
    # Every href the script sets is "#" or starts with the study page's path, whose name is encoded.
    assert 'var page = "/studies/" + encodeURIComponent(boot.name);' in js
    hrefs = re.findall(r"\.href = ([^;]*);", js)
    assert hrefs and all(h == '"#"' or h.startswith("page + ") for h in hrefs), hrefs


# ---- downloads --------------------------------------------------------------------------------------


def test_recorded_artifacts_and_exports_download(hclient: Any) -> None:
    base = f"/api/studies/{q(SCRIPT)}/trials/0"
    for artifact in ("best.pt", f"{IMG}.pt"):
        res = hclient.get(f"{base}/artifacts/{q(artifact)}")
        assert res.status_code == 200 and res.content == f"bytes of {artifact}".encode()
    res = hclient.get(f"{base}/artifacts/sub%20dir/{q('%2e%2e.pt')}")  # a recorded name in a sub-folder
    assert res.status_code == 200 and res.content == b"bytes of sub dir/%2e%2e.pt"
    res = hclient.get(f"{base}/exports/0/{q(IMG + '.onnx')}")
    assert res.status_code == 200 and res.content == b"onnx"


@pytest.mark.parametrize("attempt", [
    "..%2Fbest.pt", "sub%20dir%2F..%2Fbest.pt", "%2e%2e%2F%2e%2e%2Fhostile.db", "..%5C..%5Chostile.db",
    "%2Fetc%2Fpasswd", "/etc/passwd", "best.pt%00", "best.pt%2F", ".%2Fbest.pt", "BEST.PT", "%252e%252e%252fhostile.db",
    "file:%2F%2F%2Fetc%2Fpasswd",
])
def test_artifact_download_refuses_unrecorded_names(hclient: Any, attempt: str) -> None:
    res = hclient.get(f"/api/studies/{q(SCRIPT)}/trials/0/artifacts/{attempt}")
    assert res.status_code == 404, res.content[:100]
    assert b"root:" not in res.content and b"SQLite format" not in res.content


@pytest.mark.parametrize("attempt", [
    "..%2F..%2Fetc%2Fpasswd", q("../../etc/passwd"), "hostile.db", "..", "%2e%2e", "%2Fetc%2Fpasswd", q(".." + os.sep),
])
def test_export_download_refuses_unrecorded_names(hclient: Any, attempt: str) -> None:
    """``../../etc/passwd`` is even recorded (a tampered export record) and still refused."""
    for index in (0, 1, -1):
        res = hclient.get(f"/api/studies/{q(SCRIPT)}/trials/0/exports/{index}/{attempt}")
        assert res.status_code in (404, 422), (index, attempt)
        assert b"root:" not in res.content and b"SQLite format" not in res.content


def test_symbolic_links_out_of_the_trial_folder_are_not_served(tmp_path: Path) -> None:
    """The worker's own recording (``_record_artifacts``) of a trial folder holding links: a link to a
    file outside is not recorded and not served, a recorded file later swapped for a link is
    refused; a link to a sibling file inside the folder is served (as that file)."""
    import optuna
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs
    from tuner.engine._worker import _record_artifacts

    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 secret")
    trial_dir = tmp_path / "artifacts" / "links" / "trial_00000"
    trial_dir.mkdir(parents=True)
    (trial_dir / "epoch3.pt").write_bytes(b"epoch 3")
    (trial_dir / "best.pt").symlink_to(trial_dir / "epoch3.pt")       # inside: fine
    (trial_dir / "passwd.pt").symlink_to(secret)                       # outside: refused
    (trial_dir / "swapped.pt").write_bytes(b"honest")
    url = f"sqlite:///{tmp_path / 'links.db'}"
    study = optuna.create_study(study_name="links", storage=url)
    storage = study._storage
    trial = study.ask()      # recorded while running, as the worker does
    storage.set_trial_system_attr(trial._trial_id, _attrs.WORKER, {"host": "h", "pid": 1, "trial_dir": str(trial_dir)})
    _record_artifacts(storage, trial._trial_id, trial_dir)
    study.tell(trial, 1.0)
    (trial_dir / "swapped.pt").unlink()
    (trial_dir / "swapped.pt").symlink_to(secret)                      # after recording: refused
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.onnx").symlink_to(secret)
    storage.set_study_system_attr(study._study_id, _attrs.EXPORTS, [
        {"trial": 0, "folder": str(folder.resolve()), "exported_at": "now", "files": {"onnx": {"file": "model.onnx"}}}])
    with TestClient(create_app(url)) as c:
        recorded = {a["name"]: a for a in c.get("/api/studies/links/trials/0").json()["artifacts"]}
        # The worker does not even list a link that leads out of the folder.
        assert set(recorded) == {"best.pt", "epoch3.pt", "swapped.pt"}
        assert {n: a["exists"] for n, a in recorded.items()} == {"best.pt": True, "epoch3.pt": True, "swapped.pt": False}
        assert c.get("/api/studies/links/trials/0/artifacts/best.pt").content == b"epoch 3"
        for name in ("passwd.pt", "swapped.pt"):
            res = c.get(f"/api/studies/links/trials/0/artifacts/{name}")
            assert res.status_code == 404 and b"secret" not in res.content, name
        res = c.get("/api/studies/links/trials/0/exports/0/model.onnx")
        assert res.status_code == 404 and b"secret" not in res.content
        page = c.get("/studies/links/trials/0").text
        assert "/artifacts/passwd.pt" not in page and "/exports/0/model.onnx" not in page  # no link offered


# ---- input past what SQL can hold -------------------------------------------------------------------

_HUGE = str(10**20)


@pytest.mark.parametrize("url", [
    f"/api/studies/{q(SCRIPT)}/trials/{_HUGE}", f"/studies/{q(SCRIPT)}/trials/{_HUGE}",
    f"/api/studies/{q(SCRIPT)}/trials/{_HUGE}/artifacts/best.pt", f"/api/studies/{q(SCRIPT)}/trials/{_HUGE}/exports/0/x",
    f"/api/studies/{q(SCRIPT)}/trials?page={_HUGE}", f"/api/studies/{q(SCRIPT)}/trials?per_page=500&page={10**17}",
    f"/api/studies/{q(SCRIPT)}/compare?trials=0,{_HUGE}", f"/studies/{q(SCRIPT)}/compare?trials=0,{_HUGE}",
    f"/api/studies/{q(SCRIPT)}/compare?trials=0,-{_HUGE}", f"/api/studies/{q(SCRIPT)}/trials?objective={_HUGE}",
    f"/api/studies/{q(SCRIPT)}/trials?sort=value:{_HUGE}", f"/api/studies/{q(SCRIPT)}/trials/-1",
])
def test_numbers_past_sql_integers_are_client_errors(hclient: Any, url: str) -> None:
    """These answered 500 before (SQLite cannot bind an integer past 2**63 - 1)."""
    assert hclient.get(url).status_code in (400, 404, 422)


# ---- read-only, token, bind address ---------------------------------------------------------------


def _concrete(path: str) -> str:
    """A route's path with its parameters filled so that it reaches real data."""
    values = {"name": q(SCRIPT), "number": "0", "artifact": "best.pt", "index": "0", "filename": q(IMG + ".onnx")}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def _every_route_url(app: Any) -> list[str]:
    from starlette.routing import Mount

    urls = []
    for route in app.routes:
        if isinstance(route, Mount):
            urls.append(route.path + "/dashboard.js")
        else:
            urls.append(_concrete(route.path) + ("?trials=0,1" if route.path.endswith("/compare") else ""))
    return urls


def _storage_digest(url: str) -> str:
    db = Path(url[len("sqlite:///"):])
    h = hashlib.sha256()
    for f in sorted(db.parent.glob(db.name + "*")):   # the database and any -wal / -shm file
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_every_route_is_read_only_and_writes_leave_the_storage_as_it_was(hostile_url: str) -> None:
    from fastapi.testclient import TestClient
    from starlette.routing import Mount

    from tuner.dashboard import create_app

    app = create_app(hostile_url)     # creates its indexes first (its one, data-free write)
    for route in app.routes:
        if not isinstance(route, Mount):
            assert set(route.methods) <= {"GET", "HEAD"}, (route.path, route.methods)
    urls = _every_route_url(app)
    assert len(urls) == len(app.routes) >= 16
    before = _storage_digest(hostile_url)
    with TestClient(app) as c:
        for url in urls:
            assert c.get(url).status_code == 200, url
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                res = c.request(method, url, json={"state": "FAIL", "name": "x"})
                assert res.status_code == 405, (method, url, res.status_code)
    assert _storage_digest(hostile_url) == before


def test_token_guards_every_route_including_schema_docs_and_static_files(hostile_url: str) -> None:
    """Static files and Plotly hold no data, but they are guarded too: one rule, nothing to reason about."""
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    app = create_app(hostile_url, token="t0ken")
    urls = _every_route_url(app) + ["/docs", "/redoc", "/nope", "/static/style.css"]
    with TestClient(app) as c:
        for url in urls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t0ken"},
                            {"Cookie": "tuner_token=wrong"}):
                res = c.get(url, headers=headers)
                assert res.status_code == 401, (url, headers)
                assert SCRIPT.encode() not in res.content and b"alert" not in res.content
            assert c.get(url, headers={"Authorization": "Bearer t0ken"}).status_code in (200, 404), url


def test_default_bind_is_loopback_and_an_exposed_dashboard_without_token_warns(monkeypatch: pytest.MonkeyPatch,
                                                                                 hostile_url: str,
                                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from tuner import cli
    from tuner.dashboard import is_loopback, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    host_option = next(p for p in cli.dashboard.params if p.name == "host")
    assert host_option.default == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    serve(hostile_url)
    assert calls[-1]["host"] == "127.0.0.1" and capsys.readouterr().err == ""
    serve(hostile_url, host="0.0.0.0")
    assert "without a token" in capsys.readouterr().err
    serve(hostile_url, host="0.0.0.0", token="t")
    assert capsys.readouterr().err == ""


def test_a_fresh_hostile_study_can_be_added_next_to_others(tmp_path: Path) -> None:
    """The fixture's builder works on its own (it is reused by the browser test)."""
    url = f"sqlite:///{tmp_path / 'one.db'}"
    fill_hostile_study(url, SCRIPT, tmp_path / "one")
    import optuna

    assert len(optuna.load_study(study_name=SCRIPT, storage=url).trials) == len(HOSTILE)
    assert all(m in HOSTILE for m in MARKUP)
