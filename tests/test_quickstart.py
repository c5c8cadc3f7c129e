"""The README's main job, with a reduced trial count: the quickstart study through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_quickstart_runs_and_learns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'qs.db'}"
    run = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "studies/quickstart.yaml", "--storage", url,
                          "--n-trials", "6", "--artifacts-dir", str(tmp_path / "runs")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert run.returncode == 0, run.stderr[-3000:]
    show = json.loads(subprocess.run([sys.executable, "-m", "tuner.cli", "show", "quickstart", "--storage", url,
                                      "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    finished = show["counts"].get("COMPLETE", 0) + show["counts"].get("PRUNED", 0)
    assert finished == 6 and "FAIL" not in show["counts"]
    best = show["best"]
    assert best["values"][0] >= 0.93  # a real MLP learned digits
    assert best["metrics"]["test_accuracy"] >= 0.9
    assert best["intermediate_steps"] >= 5
    assert isinstance(best["params_user"]["width"], list)
    assert len(best["params_user"]["width"]) == best["params_user"]["n_layers"]
    trial_dirs = list((tmp_path / "runs" / "quickstart").glob("trial_*/best.pt"))
    assert trial_dirs  # the best epoch's weights were saved
