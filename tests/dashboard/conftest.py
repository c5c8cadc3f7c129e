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


@pytest.fixture(scope="module")
def dash_url(tmp_path_factory: pytest.TempPathFactory, ray_cluster: None) -> str:
    """SQLite storage holding study ``dash``: 10 finished trials (complete), failures with tracebacks, artifacts."""
    import tuner

    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'tuner.db'}"
    tuner.run(dash_spec(artifacts_dir=str(folder / "artifacts")), objectives.dashboard_mix, storage=url)
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
