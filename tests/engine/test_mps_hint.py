"""The hint to start NVIDIA MPS when trials share a GPU (the GPU itself is faked: none here)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tuner.engine._driver import _mps_note


def _spec(gpus: float, concurrency: int) -> SimpleNamespace:
    return SimpleNamespace(resources=SimpleNamespace(gpus=gpus, cpus=1), concurrency=concurrency)


@pytest.fixture
def fake_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` on the PATH and an MPS pipe folder with no daemon in it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    pipe = tmp_path / "mps"
    pipe.mkdir()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipe))
    return pipe


def test_shared_gpus_without_mps_get_the_hint(fake_gpu: Path) -> None:
    note = _mps_note(_spec(0.25, 4))
    assert note is not None and "nvidia-cuda-mps-control -d" in note and "0.25" in note


def test_no_hint_when_mps_runs(fake_gpu: Path) -> None:
    (fake_gpu / "control").touch()  # the daemon's control socket
    assert _mps_note(_spec(0.25, 4)) is None


@pytest.mark.parametrize(("gpus", "concurrency"), [(0, 4), (1, 4), (2, 4), (0.5, 1)])
def test_no_hint_unless_trials_share_a_gpu(fake_gpu: Path, gpus: float, concurrency: int) -> None:
    assert _mps_note(_spec(gpus, concurrency)) is None


def test_no_hint_without_nvidia_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _mps_note(_spec(0.25, 4)) is None
