"""`python -m bench resume_scale` end to end on a small study: its filler's study must stay one
that `tuner run` resumes (it stopped doing so when resuming began to check the stored task, and
nothing noticed until the benchmark was next run)."""

from __future__ import annotations

from pathlib import Path

from bench.resume_scale import run_one


def test_the_resume_benchmark_resumes_its_filled_study(tmp_path: Path) -> None:
    result = run_one(200, 2, "tpe", tmp_path, tmp_path / "resume.log")
    assert result.ok, (tmp_path / "resume.log").read_text()[-2000:]
    assert result.left_running > 0 and result.new_complete == 2 and result.running_after == 0
