"""Shared fixtures: a real local Ray cluster per test module, real SQLite files, real PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tuner.engine._ray_stop import shutdown_local_ray

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TUNER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test that uses the PostgreSQL server carries the ``postgres`` mark (see _postgres_turn).

    Also a test parametrized over databases that asks for ``postgres_url`` only in its PostgreSQL
    case (``request.getfixturevalue``), which the fixture names cannot show: unmarked, such a test
    once created its database while a fault test had the server stopped (AdminShutdown).
    """
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "postgres_url" in getattr(item, "fixturenames", ()) or any(
            isinstance(v, str) and v in ("postgresql", "postgres") for v in params.values()):
        item.add_marker(pytest.mark.postgres)


# Worker-seconds of the heaviest modules (junit times of 2026-12-07's runs on a 2-CPU VM), for
# the order in which xdist hands modules out (see pytest_collection_modifyitems).
_MODULE_SECONDS = {
    "tests/engine/test_driver.py": 230, "tests/engine/test_faults.py": 180, "tests/export/test_export.py": 120,
    "tests/dashboard/test_browser.py": 90, "tests/engine/test_resume_identity.py": 60, "tests/test_storage.py": 60,
    "tests/engine/test_prestart.py": 60, "tests/engine/test_signals.py": 70, "tests/engine/test_node_loss.py": 55,
    "tests/test_bad_storage.py": 55, "tests/engine/test_cluster.py": 50, "tests/test_studies_vision.py": 50,
    "tests/test_studies_tabular.py": 50, "tests/tasks/test_text.py": 40, "tests/test_cli.py": 38,
    "tests/export/test_predict_inputs.py": 37, "tests/engine/test_run_console.py": 36,
    "tests/engine/test_preload_trace.py": 35, "tests/engine/test_load.py": 30, "tests/engine/test_placement.py": 30,
    "tests/test_quickstart.py": 25, "tests/dashboard/test_api.py": 25, "tests/test_bad_input.py": 25,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heaviest modules first, so that the two xdist workers end together.

    xdist (``--dist loadscope``) hands whole modules out in collection order (pyproject.toml
    turns off its own reordering, by number of tests, which put modules of one long test, such
    as the Ctrl-C or node-loss scenario, last: one worker ran them alone for the last minutes).
    A stable sort: modules not listed keep their order, after the listed ones, and tests their
    order within a module.
    """
    def cost(item: pytest.Item) -> int:
        return -_MODULE_SECONDS.get(item.nodeid.partition("::")[0], 0)

    items.sort(key=cost)


@pytest.fixture(autouse=True)
def _postgres_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests on the PostgreSQL server take turns, across xdist workers (and concurrent runs).

    The fault tests stop and restart that server; a PostgreSQL test on the other worker would
    meet it down. An exclusive lock on a file shared by the workers makes them wait for each
    other; everything else runs side by side (SQLite files and Ray instances are each test's own,
    ``address="local"``). Autouse, so it is taken before ``postgres_url`` creates a database.
    """
    if request.node.get_closest_marker("postgres") is None:
        yield
        return
    with open(Path(tempfile.gettempdir()) / "tuner-tests-postgres.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def start_test_ray(num_cpus: int, num_gpus: int | None = None) -> None:
    """A fresh local Ray for tests (no dashboard, no worker output on the console).

    Without the idle workers Ray starts ahead of time (one per CPU): the trials of a
    ``tuner.run()`` under a Ray it did not start get processes of their own anyway (their
    runtime environment differs; ``tuner.engine._prestart``), so those idled, at 0.7 CPU-seconds
    each to start, in every module of a suite that is CPU-bound on 2 CPUs. tuner's own Ray
    starts (``tuner run``) keep them: their trials use them.
    """
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _system_config={"prestart_worker_first_driver": False})


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A real local Ray instance for one test module (2 CPUs, no dashboard), shut down after it."""
    start_test_ray(num_cpus=2)
    yield
    shutdown_local_ray()  # as tuner's runs stop their own Ray: without Ray's second for its monitor


@pytest.fixture(scope="module")
def ray_gpu_cluster() -> Iterator[None]:
    """Ray with 2 declared (fake) GPUs: placement and CUDA_VISIBLE_DEVICES are real, the devices are not."""
    start_test_ray(num_cpus=4, num_gpus=2)
    yield
    shutdown_local_ray()


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tuner.db'}"


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the real server, dropped afterwards."""
    import psycopg

    if not _pg_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it: pg_ctlcluster ... main start)")
    name = f"tuner_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from tuner import storage as _storage

        for key in [k for k in _storage._CACHE if name in k[0]]:
            _storage._CACHE.pop(key).engine.dispose()
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def trial_counts(url: str, study_name: str) -> dict[str, int]:
    """Trials of ``study_name`` by state name, read fresh from the storage ({} if the study is absent)."""
    from tests._study_read import read_trials

    try:
        trials = read_trials(url, study_name)
    except KeyError:
        return {}
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


@contextlib.contextmanager
def small_disk_at(folder: Path, kib: int) -> Iterator[Path]:
    """``folder`` (made) on a tmpfs of ``kib`` KiB, a disk that fills up; the test is skipped where
    mounting is impossible (it needs root, which CI has here). Unmounted lazily afterwards: a
    connection or file a failed write left to the collector must not keep it mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)
