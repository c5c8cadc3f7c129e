"""The scratch folders of killed runs are removed by the next run on the machine, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner.engine._scratch import make_scratch, sweep_stale


def _gone_pid() -> int:
    """The pid of a process that has just exited (not reused within the test's few milliseconds)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(root: Path, name: str, age_s: float) -> Path:
    folder = root / name
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "experiment_state.json").write_text("{}")
    old = time.time() - age_s
    for path in (folder / "run" / "experiment_state.json", folder / "run", folder):
        os.utime(path, (old, old))
    return folder


def test_only_old_folders_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = _gone_pid()
    killed = _folder(tmp_path, f"tuner-ray-{gone}-abc123", age_s=3600)
    recent = _folder(tmp_path, f"tuner-ray-{gone}-def456", age_s=5)  # its process may live in another namespace
    alive = _folder(tmp_path, f"tuner-ray-{os.getppid()}-ghi789", age_s=3600)
    mine = _folder(tmp_path, f"tuner-ray-{os.getpid()}-jkl012", age_s=3600)
    unnamed = _folder(tmp_path, "tuner-ray-x1y2z3", age_s=3600)  # before the pid was in the name: unknown owner
    other = _folder(tmp_path, f"other-{gone}-abc", age_s=3600)
    no_pid = _folder(tmp_path, "tuner-ray-99999999999999999999-x", age_s=3600)  # os.kill raised OverflowError
    assert sorted(sweep_stale(tmp_path)) == sorted([killed, no_pid])
    assert not killed.exists() and all(f.is_dir() for f in (recent, alive, mine, unnamed, other))
    # a folder whose run/ was written recently is in use, however old the folder itself
    busy = _folder(tmp_path, f"tuner-ray-{gone}-busy", age_s=3600)
    os.utime(busy / "run" / "experiment_state.json")
    assert sweep_stale(tmp_path) == [] and busy.is_dir()


def test_a_runs_scratch_folder_carries_its_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    folder = make_scratch()
    assert folder.parent == tmp_path and folder.name.startswith(f"tuner-ray-{os.getpid()}-") and folder.is_dir()
