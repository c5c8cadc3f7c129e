"""Stopping a Ray that tuner started: its autoscaler monitor is killed, not waited on, and nothing is left."""

from __future__ import annotations

import signal
import subprocess
from typing import Iterator

import pytest

from tuner.engine._ray_stop import _kill_autoscaler_monitor, shutdown_local_ray


@pytest.fixture()
def local_ray() -> Iterator[dict[str, list[subprocess.Popen[bytes]]]]:
    """A fresh local Ray; yields the processes it started, by Ray's process type."""
    import ray
    from ray._private import worker as ray_worker

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = {kind: [info.process for info in infos] for kind, infos in ray_worker._global_node.all_processes.items()}
    yield started
    ray.shutdown()


def test_the_monitor_is_killed_and_every_process_of_the_local_ray_exits(local_ray) -> None:
    import ray
    from ray._private import ray_constants

    monitors = local_ray[ray_constants.PROCESS_TYPE_MONITOR]
    assert len(monitors) == 1 and monitors[0].poll() is None  # the monitor exists on this Ray version
    # Ray itself still works up to the shutdown.
    assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    terminated = []
    real_terminate = monitors[0].terminate
    monitors[0].terminate = lambda: (terminated.append(True), real_terminate())[1]  # a spy on Ray's SIGTERM

    shutdown_local_ray()

    assert not ray.is_initialized()
    # SIGKILL first, and so no SIGTERM from ray.shutdown() (whose handler in the monitor waited
    # on the stopped GCS until Ray's own SIGKILL a second later).
    assert monitors[0].returncode == -signal.SIGKILL
    assert terminated == []
    for kind, processes in local_ray.items():
        for process in processes:
            assert process.wait(timeout=30) is not None, kind  # nothing outlives the shutdown


def test_a_second_kill_finds_nothing_to_kill(local_ray) -> None:
    assert _kill_autoscaler_monitor() is True
    assert _kill_autoscaler_monitor() is False  # already gone: no signal to a reaped (maybe reused) pid


def test_without_a_ray_of_its_own_nothing_is_killed() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    assert _kill_autoscaler_monitor() is False
    shutdown_local_ray()  # like ray.shutdown(): a no-op without Ray
    assert not ray.is_initialized()
