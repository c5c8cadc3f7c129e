"""Sample efficiency: best value found vs compute spent, tuner against random search, plain
Optuna and Ray Tune, each with its documented defaults, on the same problems and budgets.

Problems (``bench/efficiency_problems.py``): multi-fidelity Branin and Hartmann-6 (16 noisy
steps per trial), and real training with tuner's built-in tasks on the bundled digits data (MLP,
CNN: epochs; gradient boosting: CV folds). Each problem has a budget of steps across all
trials; each contender keeps starting trials until its runs have spent it (see
``bench/efficiency_runners.py`` for the contenders, ``bench/efficiency_report.py`` for the
definitions of compute, completed trial and anytime curve).

    .venv/bin/python -m bench efficiency --seeds 5 --problems branin hartmann6
    .venv/bin/python -m bench efficiency --seeds 5 --problems digits_mlp digits_cnn digits_gbm
    .venv/bin/python -m bench efficiency --quick                 # a smoke run (small budgets, 2 seeds)
    .venv/bin/python -m bench efficiency --from bench/results/efficiency-A.json [B.json ...]  # re-render

Writes ``bench/results/efficiency-YYYYmmdd-HHMMSS.{md,json,html}``: the tables with the target
checks, every run (its anytime curve, trial counts, wall time) and the Plotly anytime curves.
Exit code 1 when a run failed to spend its budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench._args import count, positive

BENCH_DIR = Path(__file__).resolve().parent
SYNTHETIC = ("branin", "hartmann6")
REAL = ("digits_mlp", "digits_cnn", "digits_gbm", "polarity_bow")
# On real problems every run trains models: the two peers, random, tuner's default and tuner's
# previous default (TPE + median pruning); add others with --contenders.
REAL_CONTENDERS = ("random", "optuna", "raytune", "tuner", "tuner:tpe/median")


def _problem_dict(p: Any, budget_scale: float) -> dict[str, Any]:
    return {"name": p.name, "kind": p.kind, "metric": p.metric, "direction": p.direction, "steps": p.steps,
            "budget": p.budget, "optimum": p.optimum, "step_unit": p.step_unit, "note": p.note,
            "budget_scale": budget_scale}


def _scaled(problems: dict[str, Any], scale: float) -> dict[str, Any]:
    """The problems with budgets scaled by ``--budget`` (whole trials of T steps)."""
    import dataclasses

    if scale == 1.0:
        return problems
    return {k: dataclasses.replace(p, budget=max(p.steps, round(p.budget / p.steps * scale) * p.steps))
            for k, p in problems.items()}


def _one_run(contender: Any, problem: Any, seed: int, quick: bool, concurrency: int) -> dict[str, Any]:
    """Run one contender once and reduce its step log to the anytime curve (the log is then removed)."""
    from bench.efficiency_problems import StepLog
    from bench.efficiency_report import curve_from_log
    from bench.efficiency_runners import remove, run_contender, scratch_dir

    workdir = scratch_dir()
    error = None
    try:
        try:
            info = run_contender(contender, problem, seed=seed, quick=quick, concurrency=concurrency, workdir=workdir)
        except Exception as exc:  # noqa: BLE001 - one broken run is reported, the others still run
            info = {"start": time.time(), "end": time.time(), "log": str(workdir / "steps.jsonl")}
            error = f"{type(exc).__name__}: {exc}"
        records = StepLog(info["log"]).records()
    finally:
        remove(workdir)
    curve = curve_from_log(records, problem.budget, problem.direction)
    reached = curve["budget_reached_t"]
    return {"problem": problem.name, "contender": contender.name, "label": contender.label, "seed": seed,
            "wall_s": info["end"] - info["start"],
            "budget_wall_s": (reached if reached is not None else info["end"]) - info["start"],
            "budget_spent": curve["steps"] >= problem.budget, "error": error, "curve": curve,
            "lib_trials": info.get("n_trials"), "lib_errors": info.get("errors"),
            "lib_error_causes": info.get("error_causes", [])}


def _facts(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "?"

    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "seeds": args.seeds,
            "concurrency": args.concurrency, "quick": args.quick, "budget_scale": args.budget,
            "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), load {os.getloadavg()[0]:.1f} at start",
            "python": platform.python_version(), "optuna": version("optuna"), "ray": version("ray"),
            "torch": version("torch"), "scikit-learn": version("scikit-learn"),
            "command": " ".join([".venv/bin/python -m bench efficiency", *argv])}


def _write(out: Path, stamp: str, facts: dict[str, Any], problems: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """Summarise and write the three files; returns the Markdown."""
    from bench.efficiency_report import markdown, plot_html, summarise

    summary = summarise(runs, problems)
    text = markdown(summary, facts, runs)
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"efficiency-{stamp}"
    base.with_suffix(".md").write_text(text + "\n")
    base.with_suffix(".json").write_text(json.dumps({"facts": facts, "problems": problems, "runs": runs,
                                                     "summary": summary}, default=str) + "\n")
    base.with_suffix(".html").write_text(plot_html(summary, f"Sample efficiency ({facts['date']})"))
    return text


def _from_files(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Runs, problems and facts of earlier results (several files: e.g. synthetic and real runs)."""
    facts: dict[str, Any] = {}
    problems: dict[str, Any] = {}
    commands: list[str] = []
    by_key: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:  # a later file wins: its problem settings, and its run of the same (problem, contender, seed)
        data = json.loads(path.read_text())
        facts = facts or dict(data["facts"])
        problems.update(data["problems"])
        for r in data["runs"]:
            if r["problem"] in data["problems"]:
                by_key[(r["problem"], r["contender"], r["seed"])] = r
        commands.append(f"{data['facts']['command']}  ({data['facts']['date']}, {data['facts']['machine']})")
    facts["commands"] = commands
    facts["seeds"] = "per problem"
    return facts, problems, list(by_key.values())


def _check_problems(parser: argparse.ArgumentParser, problems: list[Any]) -> None:
    """Exit with the problem's one-line reason (exit 2) before any run when one cannot run here."""
    from tuner.exceptions import TunerError

    for problem in problems:
        try:
            if problem.check is not None:
                problem.check()
        except TunerError as exc:
            parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench efficiency", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(SYNTHETIC + REAL), choices=SYNTHETIC + REAL)
    parser.add_argument("--seeds", type=count(1), default=None,
                        help="seeds 0..N-1 per contender and problem (default 5, 2 with --quick)")
    parser.add_argument("--seed-start", type=count(0), default=0,
                        help="first seed (split seeds over processes, then merge the files with --from)")
    parser.add_argument("--budget", type=positive, default=1.0,
                        help="scale every problem's budget (default budgets: branin 25, hartmann6 50, digits_mlp 15, "
                             "digits_cnn 12, digits_gbm 15, polarity_bow 15 full trials)")
    parser.add_argument("--contenders", nargs="+", default=None,
                        help="names to run (random optuna raytune tuner tuner:SAMPLER/PRUNER ..., or with arguments: "
                             "tuner:SAMPLER[:ARG=V,...]/PRUNER[:ARG=V,...]); default: all on "
                             f"synthetic problems, {' '.join(REAL_CONTENDERS)} on real ones")
    parser.add_argument("--grid", choices=("oat", "full"), default="oat",
                        help="tuner's samplers x pruners: one at a time (default) or all 25 pairs")
    parser.add_argument("--concurrency", type=count(1), default=1, help="trials at once, the same for every contender")
    parser.add_argument("--quick", action="store_true", help="small budgets and 2 seeds: checks the wiring, measures nothing")
    parser.add_argument("--from", dest="from_files", nargs="+", type=Path, default=None,
                        help="re-render the report from earlier JSON results (merged) instead of running")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    # None until given: `"--seeds" not in argv` missed the `--seeds=3` spelling, and --quick ran 2 seeds.
    if args.seeds is None:
        args.seeds = 2 if args.quick else 5
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")

    if args.from_files:
        try:
            facts, problems, runs = _from_files(args.from_files)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"--from: cannot read earlier results ({type(exc).__name__}: {exc}); give the .json files "
                         f"`python -m bench efficiency` wrote")
        facts["command"] = f".venv/bin/python -m bench efficiency --from {' '.join(map(str, args.from_files))}"
        print(_write(args.out, stamp, facts, problems, runs))
        return 0

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from bench.efficiency_problems import PROBLEMS, QUICK
    from bench.efficiency_runners import contender_named, contenders, init_ray

    chosen = _scaled(QUICK if args.quick else PROBLEMS, args.budget)
    _check_problems(parser, [chosen[name] for name in args.problems])
    facts = _facts(args, argv)
    problems = {name: _problem_dict(chosen[name], args.budget) for name in args.problems}
    all_contenders = contenders(args.grid)
    known = {c.name for c in all_contenders}
    try:
        all_contenders += [contender_named(n) for n in dict.fromkeys(args.contenders or ()) if n not in known]
    except ValueError as exc:
        parser.error(str(exc))
    init_ray(max(2, args.concurrency))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill PID` still shuts Ray down (finally below)
    try:
        return _run_all(args, chosen, problems, all_contenders, facts, stamp)
    finally:
        import ray

        ray.shutdown()


def _run_all(args: argparse.Namespace, chosen: dict[str, Any], problems: dict[str, Any], all_contenders: list[Any],
             facts: dict[str, Any], stamp: str) -> int:
    """Every (problem, seed, contender) run in turn; the files are rewritten after every seed."""
    runs: list[dict[str, Any]] = []
    for name in args.problems:
        problem = chosen[name]
        wanted = args.contenders or ([c.name for c in all_contenders] if problem.kind == "synthetic" else REAL_CONTENDERS)
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for contender in (c for c in all_contenders if c.name in wanted):
                run = _one_run(contender, problem, seed, args.quick, args.concurrency)
                runs.append(run)
                c = run["curve"]
                best = c["points"][-1][1] if c["points"] else None
                print(f"{name} seed {seed} {contender.name:<24} best {best!s:<22} trials {c['trials']:>4} "
                      f"(completed {c['completed']:>3})  {run['wall_s']:6.1f} s"
                      + (f"  ERROR {run['error']}" if run["error"] else "")
                      + ("" if run["budget_spent"] else "  BUDGET NOT SPENT"), file=sys.stderr, flush=True)
            _write(args.out, stamp, facts, problems, runs)  # after every seed: a stopped run keeps its results
    print(_write(args.out, stamp, facts, problems, runs))
    print(f"\nwrote {args.out}/efficiency-{stamp}.{{md,json,html}}", file=sys.stderr)
    return 0 if all(r["budget_spent"] and not r["error"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
