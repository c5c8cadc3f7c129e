"""``python -m bench``: the benchmark list, and every benchmark's usage line naming the command to type."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import pytest

from bench.__main__ import BENCHMARKS, main


def test_an_unknown_benchmark_is_named_in_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == 2  # the list alone was printed: nothing said that `bogus` was the mistake
    err = capsys.readouterr().err
    assert "scale" in err
    assert err.splitlines()[-1] == "python -m bench: error: unknown benchmark 'bogus'; give one of those above"


def test_help_lists_the_benchmarks_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BENCHMARKS) and "error" not in out


class _Parser(Exception):
    """Raised with the benchmark's parser in place of parsing its options."""


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmarks_usage_names_the_command_to_type(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # tasks_vision's said `python bench/tasks_vision.py`, report_scale's `report_scale`.
    def stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parser(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(_Parser) as parser:
        importlib.import_module(BENCHMARKS[name][0]).main([])
    assert parser.value.args[0].prog == f"python -m bench {name}"
