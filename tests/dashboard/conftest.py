"""A study run for real (Ray, SQLite) for the dashboard tests, the app over it, and a live server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests import objectives

XSS = "<script>alert('x')</script>"
STUDY = "dash"
SPACE = {"params": {"x": {"float": [-3.0, 3.0]},
                    "tag": {"choice": ["plain", XSS]},
                    "width": {"int": [8, 64], "log": True}}}


def dash_spec(name: str = STUDY, **kw: Any) -> dict[str, Any]:
    spec = {"name": name, "search_space": SPACE, "n_trials": 10, "concurrency": 2, "seed": 3,
            "metric": "loss", "direction": "minimize", "pruner": "none", "max_failures": 10}
    spec.update(kw)
    return spec


@pytest.fixture(scope="session")
def dash_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite storage holding study ``dash``: 10 finished trials (complete), failures with tracebacks, artifacts.

    Built once per test process (each xdist worker that needs it builds its own) and shared by the
    modules that read it: the dashboard only reads its storage (every route is a GET, see
    test_security's read-only test), and no test writes to this one (test_api's deleted-file
    test puts the file it removes back). The run starts its own Ray and stops it at its end, as
    ``tuner.run`` does outside a Ray instance: no Ray outlives the fixture, and the modules that
    read the study need none.
    """
    import tuner

    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'tuner.db'}"
    tuner.run(dash_spec(artifacts_dir=str(folder / "artifacts")), objectives.dashboard_mix, storage=url, num_cpus=2)
    return url


@pytest.fixture(scope="module")
def client(dash_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app

    with TestClient(create_app(dash_url)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The dashboard served by uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import uvicorn

        from tuner.dashboard import create_app

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(url, token=token), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the dashboard did not start within 20 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def screenshots_dir() -> Path:
    """Where browser tests save page screenshots (kept as test artifacts; git-ignored)."""
    root = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---- a storage full of hostile content (plain Optuna plus tuner's own records; no Ray) ----------

#: Strings an attacker could get into the storage: markup, a script URL, unicode (bidi override
#: included), path tricks and a very long value. Each must come back from the API as it is and
#: render on every page as text.
SCRIPT = "<script>alert(1)</script>"
IMG = "\"><img src=x onerror=alert(1)>"
JS_URL = "javascript:alert(1)"
UNICODE = "ünïcødé ☃ 𝔘𝔫𝔦 \u202eevil\u202c 日本 '\""
LONG = "L" * 5000 + SCRIPT
PATHS = ("a/b", "..", "%2e%2e", "../../etc/passwd", "with space")
MARKUP = (SCRIPT, IMG, JS_URL)
HOSTILE = (*MARKUP, UNICODE, LONG, *PATHS)
#: Study names: every hostile string that fits Optuna's 512-character name column.
HOSTILE_STUDIES = (*MARKUP, UNICODE, "N" * 300 + SCRIPT, *PATHS)
#: The parameter names of every hostile study.
HOSTILE_PARAMS = (SCRIPT, "x", "a/b ..")
ERROR_MESSAGE = f"diverged: {SCRIPT} {IMG} {JS_URL} {UNICODE}"


def _raise_hostile() -> None:
    raise RuntimeError(ERROR_MESSAGE)


def fill_hostile_study(storage: str, name: str, folder: Path) -> None:
    """One study whose every shown field holds hostile strings, recorded as tuner records them.

    Parameters, categorical values, user attributes, tuner's per-trial attributes, curve keys,
    metric names, placement, artifacts (real files), exports and spec; trial 1 failed with an
    exception whose message and traceback hold markup (the engine's own error record).
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from tuner.engine import _attrs
    from tuner.engine._worker import _error_info

    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    study.set_metric_names([IMG])
    dists = {SCRIPT: CategoricalDistribution(list(HOSTILE)), "x": FloatDistribution(-1.0, 1.0),
             "a/b ..": IntDistribution(0, 9)}
    trial_dir = folder / "artifacts" / "trial_00000"
    trial_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for artifact in ("best.pt", f"{IMG}.pt", "sub dir/%2e%2e.pt"):
        path = trial_dir / artifact
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"bytes of {artifact}".encode())
        artifacts.append({"name": artifact, "uri": path.resolve().as_uri(), "size": path.stat().st_size})
    try:
        _raise_hostile()
    except RuntimeError as exc:
        error = _error_info(exc)
    for number, choice in enumerate(HOSTILE):
        state = TrialState.FAIL if number == 1 else TrialState.COMPLETE
        system_attrs: dict[str, Any] = {_attrs.WORKER: {"host": IMG, "pid": 1, "trial_dir": str(trial_dir)}}
        if number == 0:
            system_attrs.update({
                _attrs.ARTIFACTS: artifacts,
                _attrs.CURVE: [{"step": 1, SCRIPT: 0.5, IMG: 0.4}, {"step": 2, SCRIPT: 0.3, IMG: 0.2}],
                _attrs.METRICS: {IMG: 0.2, JS_URL: 1.0},
                _attrs.ATTR_PREFIX + SCRIPT: {IMG: [JS_URL, UNICODE]},
            })
        if state == TrialState.FAIL:
            system_attrs[_attrs.ERROR] = error
        study.add_trial(create_trial(
            state=state, value=None if state == TrialState.FAIL else 0.1 * number,
            params={SCRIPT: choice, "x": 0.1 * number - 0.5, "a/b ..": number % 10}, distributions=dists,
            intermediate_values={1: 1.0, 2: 0.5} if state == TrialState.COMPLETE else {},
            user_attrs={SCRIPT: IMG, "url": JS_URL, "long": LONG, UNICODE: UNICODE},
            system_attrs=system_attrs))
    export_dir = folder / "exports"
    export_dir.mkdir(exist_ok=True)
    (export_dir / f"{IMG}.onnx").write_bytes(b"onnx")
    storage_obj = study._storage
    storage_obj.set_study_system_attr(study._study_id, _attrs.SPEC, {
        "name": name, "task": SCRIPT, "metric": IMG, "n_trials": 20, "max_failures": 5, "notes": LONG})
    storage_obj.set_study_system_attr(study._study_id, _attrs.EXPORTS, [{
        "trial": 0, "folder": str(export_dir), "exported_at": IMG,
        "files": {SCRIPT: {"file": f"{IMG}.onnx", "bytes": 4}, "state_dict": {"file": "../../etc/passwd", "bytes": 1}}}])


@pytest.fixture(scope="session")
def hostile_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite storage holding one study per hostile name (see :data:`HOSTILE_STUDIES`), each filled
    by :func:`fill_hostile_study`; built with Optuna alone (no Ray), in well under a second each.

    Built once per test process and shared by test_security, test_fuzz and test_browser: they
    only read it (the dashboard's one write, its indexes, is idempotent and data-free).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{folder / 'hostile.db'}"
    for i, name in enumerate(HOSTILE_STUDIES):
        fill_hostile_study(url, name, folder / f"study{i}")
    return url
