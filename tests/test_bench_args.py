"""The benchmarks refuse numbers that would measure nothing, hang or end in a traceback."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from bench import _args


def test_counts_shares_and_gpu_shares_parse_what_they_should() -> None:
    assert _args.count(1)("3") == 3 and _args.count(0)("0") == 0
    assert _args.positive("0.5") == 0.5 and _args.share("0") == 0.0 and _args.share("1") == 1.0
    assert _args.gpu_shares("1, 0.5,0.125") == [1.0, 0.5, 0.125]
    assert _args.counts("2, 8,16") == [2, 8, 16]


@pytest.mark.parametrize(("parse", "text", "says"), [
    (_args.count(1), "0", "0 is below 1; give 1 or more"),
    (_args.count(0), "-2", "-2 is below 0"),
    (_args.count(1), "2.5", "'2.5' is not a whole number"),
    (_args.positive, "0", "0 must be above 0"),
    (_args.positive, "nan", "nan is not a finite number"),
    (_args.positive, "inf", "inf is not a finite number"),  # --budget inf overflowed int() in a traceback
    (_args.share, "1.5", "1.5 must be from 0 to 1"),
    (_args.gpu_shares, "1,2", "2 is not a GPU share"),
    (_args.gpu_shares, "0.5,0", "0 is not a GPU share"),
    (_args.gpu_shares, "half", "'half' is not a number"),
    (_args.counts, "2,0", "0 is below 1; give 1 or more (comma-separated whole numbers"),
])
def test_a_bad_number_is_named_with_the_fix(parse, text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse(text)
    assert says in str(caught.value)


@pytest.mark.parametrize(("benchmark", "argv", "says"), [
    # each ran before (a report of nothing), hung (a trial asking 2 of 1 GPU) or raised a traceback
    ("efficiency", ["--problems", "branin", "--seeds", "0"], "argument --seeds: 0 is below 1"),
    ("efficiency", ["--problems", "branin", "--budget", "-1"], "argument --budget: -1 must be above 0"),
    ("efficiency", ["--problems", "branin", "--budget", "inf"], "argument --budget: inf is not a finite number"),
    ("efficiency_sweep", ["--problems", "digits_mlp", "--seeds", "0"], "argument --seeds: 0 is below 1"),
    ("gpu_packing", ["--cpu-check", "--fractions", "2"], "argument --fractions: 2 is not a GPU share"),
    ("gpu_packing", ["--cpu-check", "--fractions", "abc"], "argument --fractions: 'abc' is not a number"),
    ("gpu_packing", ["--cpu-check", "--trials", "0"], "argument --trials: 0 is below 1"),
    ("report_scale", ["--curve-fraction", "1.5"], "argument --curve-fraction: 1.5 must be from 0 to 1"),
    ("scale", ["--trials", "0"], "argument --trials: 0 is below 1"),
    ("scale", ["--concurrency", "2,abc"], "argument --concurrency: 'abc' is not a whole number"),
    # a repeated level reused the first run's SQLite file: its row measured a no-op resume
    ("scale", ["--trials", "4", "--concurrency", "1,1", "--storage", "sqlite"],
     "--concurrency 1,1: 1 given twice; give each once"),
    ("scale", ["--trials", "4", "--concurrency", "1", "--storage", "sqlite,sqlite"],
     "--storage sqlite,sqlite: sqlite given twice; give each once"),
    ("resume_scale", ["--trials", "100", "100", "--more", "1"], "--trials 100 100: a size is given twice"),
    # tuner's own message went to the child's log only, then a traceback (scale) or a FAILED row (resume_scale)
    ("scale", ["--sampler", "bogus", "--trials", "4", "--concurrency", "1", "--storage", "sqlite"],
     "--sampler bogus: unknown sampler 'bogus'; use one of tpe, random"),
    ("resume_scale", ["--sampler", "bogus", "--trials", "100"], "--sampler bogus: unknown sampler 'bogus'; use one of"),
    ("scale", ["--storage", "mysql"], "--storage mysql: give sqlite, postgres or sqlite,postgres"),
    # an unknown name was ignored, so the scenario meant to be skipped ran (here: nothing, a report of nothing)
    ("soak", ["--skip", "kill,pg,load,lod"], "--skip kill,pg,load,lod: unknown scenario lod; give any of kill, pg, load"),
    ("efficiency", ["--from", "/nonexistent/efficiency.json"], "--from: cannot read earlier results (FileNotFoundError"),
])
def test_a_benchmark_refuses_a_bad_number_before_it_runs(
        benchmark: str, argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"bench.{benchmark}").main
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--out", str(tmp_path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert says in err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written
