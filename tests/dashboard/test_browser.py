"""The dashboard in a real browser: Playwright driving Debian's chromium (headless) against a live server.

Each test opens pages of a study that a test ran, checks what a user sees, and fails on any
console error or uncaught page error. Screenshots of every page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests._study_read import read_trials
from tests.dashboard.conftest import IMG, SCRIPT, STUDY, XSS, LiveServer

ROOT = Path(__file__).resolve().parents[2]


def _chromium() -> str:
    path = os.environ.get("TUNER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does it), or set TUNER_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(dash_url: str) -> Iterator[LiveServer]:
    with LiveServer(dash_url) as s:
        yield s


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def close(self) -> None:
        # A routed request still in flight (see _figures_not_drawn) must not fail once its page is gone.
        self.page.unroute_all(behavior="ignoreErrors")
        self.context.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser, accept_downloads=True)
    yield p
    p.close()


def _figures_not_drawn(page: Page) -> None:
    """The study page gets its figures' sections from the server as they are, less the figures.

    Drawing the figures (the WebGL ones through chromium's software renderer) holds the page's
    only thread for about 5 s per load of the study page, while the table's answers wait behind
    it. The tests of the table use this; the figures are drawn, with the console watched, in
    ``test_every_page_loads_without_errors``, ``test_token_protected_dashboard_works_in_a_browser``,
    ``test_hostile_content_runs_no_script`` and ``test_study_page_updates_while_the_study_runs``.
    """
    def answer(route: Any) -> None:
        response = route.fetch()
        if not response.ok:  # passed on as it is: the page reports it, and the test fails on that
            route.fulfill(response=response)
            return
        body = response.json()
        body["sections"] = [{**s, "figure": None, "note": "not drawn in this test"} for s in body["sections"]]
        route.fulfill(response=response, json=body)

    page.page.route("**/api/studies/*/figures", answer)


def _numbers(p: Any) -> list[int]:
    return [int(x) for x in p.locator("#trials tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)")]


def _wait_rows(p: Any) -> None:
    p.wait_for_selector("#trials tbody tr")


def _wait_numbers(p: Any, expected: list[int]) -> None:
    """Wait until the table shows exactly these trial numbers, in this order."""
    p.wait_for_function("expected => Array.from(document.querySelectorAll('#trials tbody tr'))"
                        ".map(r => r.dataset.number).join() === expected", arg=",".join(map(str, expected)))


def test_every_page_loads_without_errors(page: Page, server: LiveServer, screenshots_dir: Path) -> None:
    p = page.page
    p.goto(server.base + "/")
    assert p.locator("a.study-link").all_inner_texts() == [STUDY]
    p.screenshot(path=str(screenshots_dir / "studies.png"), full_page=True)

    p.goto(f"{server.base}/studies/{STUDY}")
    _wait_rows(p)
    p.wait_for_selector("#plot-history .main-svg", timeout=60_000)
    p.wait_for_selector("#plot-timeline .main-svg", timeout=60_000)
    assert "13 trials match" in p.inner_text("#table-info")
    p.screenshot(path=str(screenshots_dir / "study.png"), full_page=True)

    p.goto(f"{server.base}/studies/{STUDY}/trials/0")
    p.wait_for_selector("#curve-fig .main-svg")
    p.wait_for_selector("#cm-fig .main-svg")
    phases = p.locator("#timing tbody td:first-child").all_inner_texts()
    assert "training" in phases and "setup" in phases, phases
    p.screenshot(path=str(screenshots_dir / "trial.png"), full_page=True)

    p.goto(f"{server.base}/studies/{STUDY}/compare?trials=0,1,2")
    p.wait_for_selector("#compare-fig .main-svg")
    assert p.locator("#compare-params tr.differ th", has_text="x").count() == 1
    p.screenshot(path=str(screenshots_dir / "compare.png"), full_page=True)
    assert page.errors == []
    assert page.dialogs == []  # no injected script ran


def test_sorting_by_a_column_reorders_rows(page: Page, server: LiveServer, client: Any) -> None:
    p = page.page
    _figures_not_drawn(page)
    p.goto(f"{server.base}/studies/{STUDY}")
    _wait_rows(p)
    assert _numbers(p) == list(range(13))
    expected = [r["number"] for r in client.get(f"/api/studies/{STUDY}/trials", params={"sort": "value"}).json()["trials"]]
    p.click("a[data-sort=value]")
    _wait_numbers(p, expected)
    assert expected != list(range(13))
    assert "sort=value" in p.url
    p.click("a[data-sort=value]")  # again: descending, trials without a value still last
    desc = [r["number"] for r in client.get(f"/api/studies/{STUDY}/trials",
                                            params={"sort": "value", "order": "desc"}).json()["trials"]]
    _wait_numbers(p, desc)
    assert page.errors == []


def test_filtering_by_state_and_parameter_changes_rows(page: Page, server: LiveServer, client: Any) -> None:
    p = page.page
    _figures_not_drawn(page)
    p.goto(f"{server.base}/studies/{STUDY}")
    _wait_rows(p)
    p.check("input[name=state][value=FAIL]")
    p.click("#apply")
    p.wait_for_function("document.querySelector('#table-info').textContent.startsWith('3 trials')")
    assert set(p.locator("#trials tbody tr td:nth-child(3)").all_inner_texts()) == {"FAIL"}

    p.click("#reset")
    p.wait_for_function("document.querySelector('#table-info').textContent.startsWith('13 trials')")
    p.select_option("select[name=param_name]", "x")
    p.fill("input[name=param_low]", "0")
    p.fill("input[name=param_high]", "2")
    p.click("#apply")
    expected = [r["number"] for r in client.get(f"/api/studies/{STUDY}/trials", params={"param": "x:0:2"}).json()["trials"]]
    assert 0 < len(expected) < 13
    _wait_numbers(p, expected)

    p.click("#reset")
    p.select_option("select[name=param_name]", "tag")
    p.fill("input[name=param_eq]", XSS)
    p.click("#apply")
    expected = [r["number"] for r in client.get(f"/api/studies/{STUDY}/trials", params={"param": f"tag={XSS}"}).json()["trials"]]
    _wait_numbers(p, expected)
    cells = p.locator("#trials tbody tr td:nth-child(6)").all_inner_texts()  # the tag column, shown as text
    assert cells and set(cells) == {XSS}
    assert page.errors == [] and page.dialogs == []


def test_failed_trial_shows_its_traceback(page: Page, server: LiveServer) -> None:
    p = page.page
    p.goto(f"{server.base}/studies/{STUDY}/trials/3")
    assert p.inner_text("#trial-state") == "FAIL"
    assert "diverged in trial 3: loss is <nan> & rising" in p.inner_text("#error-text")
    tb = p.inner_text("#traceback")
    assert "Traceback (most recent call last)" in tb and "RuntimeError" in tb
    assert page.errors == []


def test_download_returns_the_file(page: Page, server: LiveServer, tmp_path: Path) -> None:
    p = page.page
    p.goto(f"{server.base}/studies/{STUDY}/trials/0")
    with p.expect_download() as info:
        p.click("a.download")
    target = tmp_path / "best.pt"
    info.value.save_as(target)
    assert target.read_bytes() == b"weights of trial 0\n"
    assert info.value.suggested_filename == "best.pt"


def test_compare_from_the_table_selection(page: Page, server: LiveServer) -> None:
    p = page.page
    _figures_not_drawn(page)
    p.goto(f"{server.base}/studies/{STUDY}")
    _wait_rows(p)
    for n in (1, 4):
        p.check(f"#trials tbody tr[data-number='{n}'] input[type=checkbox]")
    p.click("#compare")
    p.wait_for_url("**/compare?trials=1,4")
    p.wait_for_selector("#compare-fig .main-svg")
    assert page.errors == []


def test_token_protected_dashboard_works_in_a_browser(browser: Any, dash_url: str) -> None:
    with LiveServer(dash_url, token="tok-123") as s:
        refused = Page(browser)  # a browser without the token (its console logs the 401 itself)
        try:
            resp = refused.page.goto(f"{s.base}/studies/{STUDY}")
            assert resp.status == 401 and "token" in refused.page.inner_text("body")
        finally:
            refused.close()
        pg = Page(browser)
        try:
            p = pg.page
            p.goto(f"{s.base}/studies/{STUDY}?token=tok-123")  # sets the cookie the page's API calls then carry
            _wait_rows(p)
            p.wait_for_selector("#plot-history .main-svg", timeout=60_000)
            p.goto(f"{s.base}/studies/{STUDY}/trials/0")
            p.wait_for_selector("#curve-fig .main-svg")
            assert pg.errors == []
        finally:
            pg.close()


def test_hostile_content_runs_no_script(browser: Any, hostile_url: str) -> None:
    """Study and parameter names, values, curve keys, metric names and error messages with markup
    (see ``fill_hostile_study``) go through the server's templates, dashboard.js and Plotly: no
    dialog opens and the console stays clean on every page."""
    from urllib.parse import quote

    name = quote(SCRIPT, safe="")
    with LiveServer(hostile_url) as s:
        pg = Page(browser)
        try:
            p = pg.page
            p.goto(f"{s.base}/")
            assert SCRIPT in p.inner_text("#studies")
            p.goto(f"{s.base}/studies/{name}")
            _wait_rows(p)
            assert SCRIPT in p.inner_text("#trials thead") and IMG in p.inner_text("#trials thead")  # built by JS
            assert SCRIPT in p.inner_text("#trials tbody")
            p.wait_for_selector("#plot-history .main-svg", timeout=60_000)  # axis titles name hostile parameters
            p.goto(f"{s.base}/studies/{name}/trials/0")
            p.wait_for_selector("#curve-fig .main-svg")        # legend entries named by hostile curve keys
            p.goto(f"{s.base}/studies/{name}/trials/1")
            assert "alert(1)" in p.inner_text("#traceback")
            p.goto(f"{s.base}/studies/{name}/compare?trials=0,2,3")
            p.wait_for_selector("#compare-fig .main-svg")
            assert p.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
            assert pg.dialogs == [] and pg.errors == []
        finally:
            pg.close()


def _counts(p: Any) -> list[str]:
    """The study's counts as the page shows them, one ``STATE: N`` per state."""
    return p.locator("#counts .count").all_inner_texts()


def _running_trials(url: str) -> list[int]:
    """Numbers of the study ``live``'s running trials ([] while the run has not created the study)."""
    try:
        return [t.number for t in read_trials(url, "live") if t.state.name == "RUNNING"]
    except Exception:  # noqa: BLE001 - KeyError, or the database file does not exist yet
        return []


def test_study_page_updates_while_the_study_runs(page: Page, tmp_path: Path, screenshots_dir: Path) -> None:
    """A real `tuner run` in another process; the open page shows new trials without a reload.

    The run's trials wait at a gate (``tests/dashboard/_live.py``) that the test opens only once
    the page shows trial 0 running: the page is certain to watch the study change, whatever the
    time the run or the page took to start, and the trials need no sleep to last long enough.
    """
    db = tmp_path / "live.db"
    url = f"sqlite:///{db}"
    gate = tmp_path / "gate"
    spec = tmp_path / "live.yaml"
    spec.write_text(
        "name: live\nobjective: tests.dashboard._live:gated_mix\nmetric: loss\ndirection: minimize\n"
        "n_trials: 4\nconcurrency: 1\nseed: 0\npruner: none\nmax_failures: 4\n"
        f"artifacts_dir: {json.dumps(str(tmp_path / 'artifacts'))}\n"
        f"search_space:\n  params:\n    x: {{float: [-3.0, 3.0]}}\n    gate: {json.dumps(str(gate))}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--num-cpus", "1",
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while _running_trials(url) != [0]:  # the run has started trial 0, which waits at the gate
            if time.time() > deadline or proc.poll() is not None:
                gate.touch()
                proc.kill()
                raise AssertionError(f"trial 0 never started: {proc.stdout.read().decode() if proc.stdout else ''}")
            time.sleep(0.2)
        with LiveServer(url) as s:
            p = page.page
            p.goto(f"{s.base}/studies/live")
            _wait_numbers(p, [0])
            first = _counts(p)
            assert first == ["RUNNING: 1"] and p.inner_text("#study-state") == "running", first
            # the run under way, read from the lease it holds (the run log records a run as it ends)
            assert p.locator("#runs td.run-running").all_text_contents() == ["running"]  # in the closed Runs box
            assert p.inner_text("#best") == "No complete trial yet."
            p.evaluate("window.notReloaded = true")  # gone if the page reloads
            gate.touch()
            p.wait_for_function("document.querySelector('#study-state').textContent === 'finished'", timeout=180_000)
            _wait_numbers(p, [0, 1, 2, 3, 4])  # 4 finished as asked, and trial 3 failed (dashboard_mix)
            assert sorted(_counts(p)) == ["COMPLETE: 4", "FAIL: 1"] and p.evaluate("window.notReloaded") is True
            best = min((t for t in read_trials(url, "live") if t.state.name == "COMPLETE"), key=lambda t: t.value)
            p.wait_for_function("n => document.querySelector('#best a').textContent === 'trial ' + n", arg=best.number)
            # the run's entry in the run log, written as it gave the study up, shown without a reload
            p.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 1", timeout=60_000)
            cells = [c.strip() for c in p.locator("#runs tbody td").all_text_contents()]
            assert cells[2:7] == ["done", "4", "0", "1", "0"], cells
            assert p.text_content("#n-runs") == "1"
            p.wait_for_selector("#plot-history .main-svg", timeout=60_000)
            p.screenshot(path=str(screenshots_dir / "study-live.png"), full_page=True)
            assert page.errors == []
        output = proc.communicate(timeout=60)[0]  # the run ends by itself once its 4 trials are finished
        assert proc.returncode == 0, output.decode()
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)


def test_the_trials_table_shows_a_none_parameter_as_none_and_an_inactive_one_blank(page: Page, tmp_path: Path) -> None:
    """The table drawn by the page's script: None is a value of `clip` (the dash is for a missing value)."""
    import optuna

    url = f"sqlite:///{tmp_path / 'none.db'}"
    study = optuna.create_study(study_name="none", storage=url)
    clip = optuna.distributions.CategoricalDistribution([None, 1.0])
    study.add_trial(optuna.trial.create_trial(params={"clip": None}, distributions={"clip": clip}, value=1.0))
    study.add_trial(optuna.trial.create_trial(params={"clip": 1.0}, distributions={"clip": clip}, value=2.0))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=3.0))
    with LiveServer(url) as s:
        p = page.page
        p.goto(f"{s.base}/studies/none")
        p.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 3")
        rows = p.locator("#trials tbody tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.number, r.lastElementChild.textContent])")
        assert sorted(rows) == [["0", "None"], ["1", "1"], ["2", ""]], rows


def test_the_best_box_follows_a_better_trial_without_a_reload(page: Page, tmp_path: Path) -> None:
    """Counts, table and figures followed the study live, but the Best box kept the first best
    trial (``Best: trial 1, loss = 0.159912``) until a reload."""
    import optuna

    url = f"sqlite:///{tmp_path / 'best.db'}"
    study = optuna.create_study(study_name="best", storage=url)
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": x}, value=0.5))
    _figures_not_drawn(page)
    with LiveServer(url) as s:
        p = page.page
        p.goto(f"{s.base}/studies/best")
        _wait_rows(p)
        assert p.inner_text("#best").split() == ["Best:", "trial", "0", "value", "=", "0.5", "x=0.5"]
        p.evaluate("window.notReloaded = true")  # gone if the page reloads
        study.add_trial(optuna.trial.create_trial(params={"x": 0.25}, distributions={"x": x}, value=0.125))
        p.wait_for_function("document.querySelector('#best').textContent.includes('trial 1')", timeout=30_000)
        assert p.inner_text("#best").split() == ["Best:", "trial", "1", "value", "=", "0.125", "x=0.25"]
        assert p.get_attribute("#best a", "href") == "/studies/best/trials/1"
        assert p.evaluate("window.notReloaded") is True and page.errors == []


@pytest.mark.parametrize("query,message", [
    ("page=-1", "page: Input should be greater than or equal to 1"),
    ("order=sideways", "order: String should match pattern '^(asc|desc)$'"),
])
def test_a_refused_table_query_reads_as_text(page: Page, hostile_url: str, query: str, message: str) -> None:
    """FastAPI's 422 puts a list in ``detail``: the page printed ``Could not load trials: [object Object]``."""
    from urllib.parse import quote

    _figures_not_drawn(page)
    with LiveServer(hostile_url) as s:
        p = page.page
        p.goto(f"{s.base}/studies/{quote(SCRIPT, safe='')}?{query}")
        p.wait_for_function("document.querySelector('#table-info').textContent.startsWith('Could not load')")
        assert p.inner_text("#table-info") == f"Could not load trials: {message}"
        # the browser logs the refused request itself; nothing else went wrong
        assert all("422" in e for e in page.errors), page.errors


def test_a_value_column_first_sorts_by_its_own_objectives_direction(page: Page, tmp_path: Path) -> None:
    """Directions (maximize f1, minimize f2): the first click on f2 sorted it descending, worst
    first, by the first objective's direction."""
    import optuna

    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(study_name="mo", storage=url, directions=["maximize", "minimize"])
    study.set_metric_names(["f1", "f2"])
    for values in ((0.5, 3.0), (0.9, 1.0), (0.1, 2.0)):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=list(values)))
    _figures_not_drawn(page)
    with LiveServer(url) as s:
        p = page.page
        p.goto(f"{s.base}/studies/mo")
        _wait_numbers(p, [0, 1, 2])
        p.click("a[data-sort='value:1']")
        _wait_numbers(p, [1, 2, 0])  # f2 smallest first: its best
        assert "sort=value%3A1" in p.url and "order=" not in p.url  # ascending, the default
        p.click("a[data-sort=value]")
        _wait_numbers(p, [1, 0, 2])  # f1 largest first: its best
        assert "order=desc" in p.url
        assert page.errors == []
