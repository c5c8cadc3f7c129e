"""The GPU packing benchmark's pieces that run without a GPU: the utilisation windows and the cold-start probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import _cold_start
from bench.gpu_packing import _concurrency, mean_util_between


def test_utilisation_is_averaged_over_the_window_only() -> None:
    samples = [(0.0, 0.0, 1.0), (1.0, 40.0, 1.0), (2.0, 80.0, 1.0), (3.0, 100.0, 1.0), (4.0, 0.0, 1.0)]
    assert mean_util_between(samples, 1.0, 3.0) == pytest.approx(220 / 3)
    assert mean_util_between(samples, 2.5, 3.5) == 100.0
    assert mean_util_between(samples, 5.0, 6.0) is None


@pytest.mark.parametrize(("gpus", "n_gpus", "at_once"), [
    (1.0, 1, 1), (0.5, 1, 2), (0.25, 1, 4), (0.125, 1, 8), (0.1, 1, 10), (1 / 3, 1, 3),
    (0.6, 1, 1), (0.35, 1, 2),  # round() gave 2 and 3: more GPU than there is (1.2, 1.05)
    (0.6, 2, 2), (0.35, 4, 8), (0.125, 2, 16), (0.5, 0, 2),  # per GPU, times the GPUs (a CPU check: one)
])
def test_trials_at_once_are_as_many_as_fit_whole_on_a_gpu(gpus: float, n_gpus: int, at_once: int) -> None:
    assert _concurrency(gpus, n_gpus) == at_once


def test_cold_start_probe_times_each_step_of_a_fresh_process() -> None:
    runs = _cold_start.probe(1, cuda=False)
    assert len(runs) == 1
    run = runs[0]
    cpu_steps = [s for s in _cold_start.STEPS if s != "CUDA context"]
    assert set(run) == set(cpu_steps)
    assert all(run[s] >= 0 for s in cpu_steps)
    # torch's import is real work in a fresh interpreter: a probe that reused the parent's
    # modules (or skipped the import) would report next to nothing.
    assert run["import torch"] > 0.2


def test_cold_start_table_gives_alone_median_and_slowest() -> None:
    alone = [{"interpreter": 0.1, "import torch": 1.0}]
    packed = [{"interpreter": 0.2, "import torch": 2.0}, {"interpreter": 0.4, "import torch": 3.0},
              {"interpreter": 0.3, "import torch": 5.0}]
    rows = _cold_start.table(alone, packed, 3).splitlines()
    assert rows[0].startswith("| step | alone s | 3 at once: median s | 3 at once: slowest s |")
    assert "| import torch | 1.00 | 3.00 | 5.00 |" in rows
    assert "| interpreter | 0.10 | 0.30 | 0.40 |" in rows
    # the total is each process's own sum (2.2, 3.4, 5.3 s), not a sum of the steps' medians
    assert "| total | 1.10 | 3.40 | 5.30 |" in rows
    assert not any(r.startswith("| CUDA context") for r in rows)  # a step no run took is left out


def _children() -> list[int]:
    """This process's child processes, running or exited but not yet reaped (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                children.append(int(entry.name))
    return children


def test_a_failing_probe_says_why() -> None:
    # No GPU here: a CUDA probe fails in torch's CUDA call; the error names the exit and its cause.
    with pytest.raises(RuntimeError, match=r"(?s)cold-start probe exited \d+: .*(CUDA|NVIDIA|driver)"):
        _cold_start.probe(1, cuda=True)


def test_a_failing_probe_leaves_no_process_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe on GPU "0" fails at once while the one on GPU "1" would run for a minute.
    script = ("import os, sys, time\n"
              "sys.exit(3) if os.environ['CUDA_VISIBLE_DEVICES'] == '0' else time.sleep(60)\n")
    monkeypatch.setattr(_cold_start, "_PROBE", script)
    before = set(_children())
    with pytest.raises(RuntimeError, match="cold-start probe exited 3"):
        _cold_start.probe(2, cuda=True, gpus=["0", "1"])
    assert set(_children()) - before == set()
