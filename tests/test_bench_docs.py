"""Every benchmark command the docs give to reproduce a figure still parses as written.

The README, ``bench/README.md``, ``bench/HISTORY.md`` and ``bench/RESULTS.md`` hold some seventy
``python -m bench ...`` commands, each the way to reproduce a table. A renamed option or a
setting a later change no longer accepts would only show when a user pastes one, so each is
parsed here the way its benchmark parses it (options, then settings and contenders), without
running anything. Usage templates (``[--seeds N]``, ``...``, placeholders such as ``P``) are
left out: they are not meant to be pasted.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "bench/README.md", "bench/HISTORY.md", "bench/RESULTS.md")
_COMMAND = re.compile(r"python3? -m bench[ .](\w+)(.*)")


def _code_texts(markdown: str) -> list[str]:
    """Each fenced block's lines and each inline code span, with shell line continuations joined."""
    texts: list[str] = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
    for block in fenced.findall(markdown):
        texts += re.sub(r"\\\n\s*", " ", block).splitlines()
    prose = fenced.sub("", markdown)
    texts += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]  # a span may wrap lines
    return texts


def _is_template(argv: list[str]) -> bool:
    return any(a == "..." or a.startswith("[") or re.fullmatch(r"[A-Z]", a) for a in argv)


def _doc_commands() -> list[tuple[str, str, list[str]]]:
    commands = []
    for doc in DOCS:
        for text in _code_texts((ROOT / doc).read_text()):
            for match in _COMMAND.finditer(text):
                name, rest = match.group(1), match.group(2)
                rest = re.split(r"\s(?:#|&&|;|\|)\s?", rest)[0]  # a comment or the next command
                argv = shlex.split(rest)
                if not name.startswith("_") and not _is_template(argv):
                    commands.append((doc, name, argv))
    return commands


COMMANDS = _doc_commands()


class _Parsed(Exception):
    """Raised with the parsed options in place of running the benchmark."""


def test_the_docs_give_the_commands_this_test_expects() -> None:
    # A change to how the docs write commands would otherwise leave this module checking nothing.
    assert len(COMMANDS) >= 60
    by_benchmark = {name for _doc, name, _argv in COMMANDS}
    assert {"efficiency", "efficiency_sweep", "scale", "overhead", "gpu_packing", "resume_scale"} <= by_benchmark
    assert any(doc == "bench/HISTORY.md" for doc, _name, _argv in COMMANDS)


@pytest.mark.parametrize(("doc", "name", "argv"), COMMANDS,
                         ids=[f"{doc}:{name}:{i}" for i, (doc, name, _argv) in enumerate(COMMANDS)])
def test_a_documented_benchmark_command_parses(monkeypatch: pytest.MonkeyPatch, doc: str, name: str,
                                               argv: list[str]) -> None:
    assert name in BENCHMARKS, f"{doc}: `python -m bench {name}` names no benchmark"
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    main = importlib.import_module(BENCHMARKS[name][0]).main
    with pytest.raises(_Parsed) as parsed:  # argparse's own error is SystemExit 2, which fails here
        main(argv)
    options = parsed.value.args[0]
    from bench.efficiency_runners import contender_named, contenders, parse_setting

    for setting in [getattr(options, "baseline", None), *(getattr(options, "settings", None) or [])]:
        if setting is not None:
            parse_setting(setting)  # ValueError names what is wrong
    known = {c.name for c in contenders(getattr(options, "grid", "oat"))}
    for contender in getattr(options, "contenders", None) or []:
        if contender not in known:
            contender_named(contender)


def test_the_readme_names_the_benchmarks_that_only_print(monkeypatch: pytest.MonkeyPatch) -> None:
    # The README said every benchmark writes its table to bench/results/, which four did not:
    # those it names as printing only must be the ones without --out.
    text = " ".join((ROOT / "README.md").read_text().split())
    match = re.search(r"all but (.*?) \(which only print\)", text)
    assert match, "README's Benchmarks section no longer says which benchmarks only print"
    only_print = set(re.findall(r"`(\w+)`", match.group(1)))
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    writes = set()
    for name, (module, _text) in BENCHMARKS.items():
        with pytest.raises((_Parsed, SystemExit)) as parsed:
            importlib.import_module(module).main(["--out", "/nonexistent"])
        if parsed.type is _Parsed:
            writes.add(name)
    assert only_print == set(BENCHMARKS) - writes


def test_bench_readme_gives_efficiencys_default_problems() -> None:
    # It said "all five" while the code ran six (polarity_bow too).
    from bench.efficiency import REAL, SYNTHETIC

    row = next(line for line in (ROOT / "bench/README.md").read_text().splitlines()
               if line.startswith("| `--problems P ...` |"))
    assert row.split("|")[3].strip() == f"`{' '.join(SYNTHETIC + REAL)}`"
