"""Joining an existing Ray cluster (`--ray-address`): bad addresses (a run that joins one, and the
cluster outliving it, is tests/engine/test_node_loss.py); reproducibility in a fresh process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SPEC = """\
name: {name}
objective: tests.objectives:quadratic
search_space:
  params:
    x: {{float: [-5, 5]}}
    y: {{float: [-3, 3]}}
n_trials: 6
concurrency: {concurrency}
pruner: none
seed: 11
"""

ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(spec: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--quiet", *extra],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def _params(url: str, name: str) -> list[tuple[int, dict]]:
    """(number, params) of every trial, read from the storage (``tuner show`` has its own tests)."""
    from tests._study_read import read_trials

    return sorted((t.number, t.params) for t in read_trials(url, name))


def test_same_seed_same_trials_in_fresh_processes(tmp_path: Path) -> None:
    spec = tmp_path / "r.yaml"
    spec.write_text(SPEC.format(name="repro", concurrency=1))
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url in (a, b):
        out = _run(spec, url, "--num-cpus", "1")
        assert out.returncode == 0, out.stderr[-2000:]
    first = _params(a, "repro")
    assert len(first) == 6 and first == _params(b, "repro")


def _cluster_processes(port: int) -> dict[int, str]:
    """pid -> command line of every process of the cluster on ``port`` (this process excluded)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if re.search(rf"(gcs-address=[^ ]+:{port}|gcs_server_port={port}|--port={port}|127\.0\.0\.1:{port})\b", cmd):
                found[int(entry.name)] = cmd
    return found


def _cluster_commands(port: int) -> list[str]:
    return list(_cluster_processes(port).values())


def _stop_cluster(port: int) -> None:
    """Stop only the cluster this test started (`ray stop` would stop every Ray on the machine)."""
    import signal
    import time

    def pids() -> list[int]:
        return list(_cluster_processes(port))

    bootstrap = Path("/tmp/ray/ray_current_cluster")  # `ray start` leaves this; later ray.init() would follow it
    try:
        if bootstrap.read_text().strip().endswith(f":{port}"):
            bootstrap.unlink()
    except OSError:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


def test_unreachable_ray_address_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "u.yaml"
    spec.write_text(SPEC.format(name="unreach", concurrency=1))
    out = _run(spec, f"sqlite:///{tmp_path / 'u.db'}", "--ray-address", f"127.0.0.1:{_free_port()}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: cannot join the Ray cluster") and out.stderr.count("\n") == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "garbage", "http://1.2.3.4", "ray://127.0.0.1:1", "host:notaport"])
def test_a_malformed_ray_address_is_a_one_line_error_before_the_storage_is_touched(tmp_path: Path, address: str) -> None:
    # Before, Ray's own check inside ray.init raised `ValueError: Invalid address format` (a 47-53
    # line traceback, exit 1) after the study's database file had been created.
    spec = tmp_path / "m.yaml"
    spec.write_text(SPEC.format(name="malformed", concurrency=1))
    out = _run(spec, f"sqlite:///{tmp_path / 'm.db'}", "--ray-address", address)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith(f"error: --ray-address {address!r}: ") and out.stderr.count("\n") == 1, out.stderr
    assert "expected HOST:PORT of the cluster's head (e.g. 10.0.0.1:6379, as `ray status` there prints it), auto or local" \
        in out.stderr
    assert not (tmp_path / "m.db").exists()
