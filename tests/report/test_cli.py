"""`tuner report`: exit codes, -o, one-line errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.report._helpers import random_trials, sqlite_study
from tests.report.test_report import SPACE, _objective
from tuner.cli import main


def _url(tmp_path: Path) -> str:
    return sqlite_study(tmp_path / "c.db", random_trials(25, SPACE, _objective), name="quick")


def test_report_writes_the_file_given_with_o(tmp_path: Path) -> None:
    url = _url(tmp_path)
    out = tmp_path / "sub" / "quick.html"
    result = CliRunner().invoke(main, ["report", "quick", "-o", str(out), "--storage", url, "--top", "3"])
    assert result.exit_code == 0, result.output
    assert out.exists() and f"wrote {out}" in result.output
    assert out.read_text(encoding="utf-8").count('<tr class="trial">') == 3


def test_report_defaults_to_report_html_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = _url(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", "quick", "--storage", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").exists()


def test_missing_study_and_missing_storage_exit_2_with_one_line(tmp_path: Path) -> None:
    url = _url(tmp_path)
    result = CliRunner().invoke(main, ["report", "nope", "--storage", url, "-o", str(tmp_path / "n.html")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: no study named 'nope' in this storage; existing studies: quick"]
    assert not (tmp_path / "n.html").exists()
    result = CliRunner().invoke(main, ["report", "quick", "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_unwritable_output_exits_2(tmp_path: Path) -> None:
    url = _url(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["report", "quick", "--storage", url, "-o", str(blocker / "r.html")])
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot write the report to") and len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, ["report", "quick", "--storage", url, "--top", "-1"])
    assert result.exit_code == 2
