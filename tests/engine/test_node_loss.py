"""A Ray node lost mid-study: a two-node cluster on this machine (`ray start --head` plus a second
`ray start --address`), joined with `--ray-address`, the second node's raylet killed while it
runs trials; the study must finish on the head node, the lost trials FAIL with their cause,
nothing left RUNNING, and the cluster (a joined one, not tuner's) still runs after the run."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from optuna.trial import TrialState

from tests._study_read import read_trials
from tests.engine import _faults
from tests.engine.test_cluster import _cluster_commands, _free_port, _stop_cluster
from tuner.engine import _attrs

_RAY = str(Path(sys.executable).parent / "ray")
# Token authentication with a token of the test's own, for the head, the second node and the run:
# without one, whether `ray start --head` enables authentication depends on ~/.ray/auth_token.
_ENV = {**_faults.ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _raylets(port: int) -> set[int]:
    """The raylets of the cluster whose GCS listens on ``port`` (other tests may run other clusters)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "raylet":
                    continue
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if re.search(rf"gcs[-_]address=[^ ]*:{port}\b", cmd):
                found.add(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _node_running_on(url: str, raylet: int) -> str | None:
    """The Ray node id of a RUNNING trial whose worker process is a child of ``raylet``, if any."""
    try:
        running = read_trials(url, "nodeloss", states=(TrialState.RUNNING,))
    except KeyError:
        return None
    pids = set(_children(raylet))
    for t in running:
        worker = t.system_attrs.get(_attrs.WORKER) or {}
        if worker.get("pid") in pids:
            return worker["node_id"]
    return None


def test_study_finishes_when_a_ray_node_is_lost(tmp_path: Path) -> None:
    port = _free_port()
    head = subprocess.run([_RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                           "--disable-usage-stats"], env=_ENV, capture_output=True, text=True, timeout=180)
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        before = _raylets(port)
        assert len(before) == 1, before  # the head's
        second = subprocess.run([_RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2",
                                 "--disable-usage-stats"], env=_ENV, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr[-2000:]
        lost_raylets = _raylets(port) - before
        assert len(lost_raylets) == 1, lost_raylets
        raylet = lost_raylets.pop()

        spec = tmp_path / "nodes.yaml"
        spec.write_text(_faults.SLOW_SPEC.format(name="nodeloss", n_trials=10, concurrency=3, seed=7))
        url = f"sqlite:///{tmp_path / 'n.db'}"
        proc = subprocess.Popen(_faults.tuner_cmd("run", str(spec), "--storage", url, "--ray-address",
                                                  f"127.0.0.1:{port}", "--quiet"),
                                cwd=_faults.ROOT, env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        # Kill the second node once one of its worker processes runs a trial (after a first trial
        # finished, so that the kill lands mid-study).
        lost: list[str] = []

        def ready() -> bool:
            node = _node_running_on(url, raylet)
            if node is None or _faults.states(_faults.finished_snapshot(url, "nodeloss")).get("COMPLETE", 0) < 1:
                return False
            lost.append(node)
            return True

        assert _faults.wait_for(ready, 180, proc), proc.communicate(timeout=60)
        killed_at = time.time()
        for pid in [*_children(raylet), raylet]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
        assert "10/10 finished" in out

        trials = read_trials(url, "nodeloss")
        assert not [t for t in trials if t.state == TrialState.RUNNING]
        assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 10
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert failed and all(t.system_attrs[_attrs.ERROR]["type"] == "WorkerDied" for t in failed)
        # A trial whose worker died before it recorded its placement (the node went while the
        # trial was being handed over) has none; every one that has ran on the lost node.
        placed = {t.system_attrs[_attrs.WORKER]["node_id"] for t in failed if _attrs.WORKER in t.system_attrs}
        assert placed <= {lost[0]}, (placed, lost)
        # After the loss, every trial ran on the remaining node.
        late = [t for t in trials if t.datetime_start.timestamp() > killed_at + 1]
        assert late and all(t.system_attrs[_attrs.WORKER]["node_id"] != lost[0] for t in late)
        # The cluster outlives the run: tuner did not shut down a cluster it merely joined, nor
        # its autoscaler monitor (tuner kills the monitor only of a Ray it started itself).
        status = subprocess.run([_RAY, "status", f"--address=127.0.0.1:{port}"], env=_ENV, capture_output=True,
                                text=True, timeout=120)
        assert status.returncode == 0, status.stderr[-2000:]
        assert any("monitor.py" in cmd for cmd in _cluster_commands(port)), _cluster_commands(port)
    finally:
        _stop_cluster(port)
