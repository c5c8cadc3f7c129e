"""A tiny real study through tuner.run (Ray, SQLite), then its report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tuner
from tests import objectives

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_report_of_a_real_study(sqlite_url: str, tmp_path: Path) -> None:
    spec = {"name": "real", "search_space": {"params": {"x": {"float": [-5.0, 5.0]}, "k": {"choice": ["a", "b"]}}},
            "metric": "loss", "direction": "minimize", "n_trials": 6, "concurrency": 2, "seed": 0,
            "pruner": "none"}
    tuner.run(spec, objectives.curve, storage=sqlite_url)
    out = tuner.report("real", tmp_path / "real.html", storage=sqlite_url)
    html = Path(out).read_text(encoding="utf-8")
    figs = {n: json.loads(t) for n, t in re.findall(r'data-fig="fig-([a-z]+)">(.*?)</script>', html, flags=re.S)}
    assert {"history", "importance", "parallel", "slice", "contour", "curves", "timeline", "edf"} <= set(figs)
    curves = figs["curves"]["data"]
    assert curves[0]["name"].startswith("complete (6)")
    rows = set(figs["timeline"]["data"][0]["y"])
    assert rows and all(":" in r for r in rows)  # host:pid per Ray worker process
    assert "complete 6" in html and "The spec the study ran with" in html
    assert tuner.report.build_report is not None
