"""Choose tuner's default sampler and pruner settings: replay tuner's decisions in-process for
many settings and seeds, cheaply, then confirm the winner with ``python -m bench efficiency``.

A replay makes the calls tuner's driver and workers make, in one process and one trial at a
time (concurrency 1, as the efficiency benchmark runs): a fresh sampler per trial built by
``tuner.engine._plugins.make_sampler`` with the seed ``trial_seed(seed, number)``, the pruner
built by ``make_pruner``, the space's own ``suggest``, the problem's objective behind the same
step log as every contender of the benchmark. Only Ray and the SQLite file are left out, which
change the time a trial takes, not which trials run. Each setting's compute and curves are
summarised with the benchmark's own code (``bench/efficiency_report.py``), against random
search (``random/none``) replayed the same way, or against ``--baseline`` (e.g.
``random:stream=study/none``: one random sampler per run, the ``efficiency`` benchmark's
``random`` contender exactly).

    .venv/bin/python -m bench efficiency_sweep --problems digits_mlp --seeds 20 \\
        --settings random/none tpe/asha "tpe:n_startup_trials=5/asha:reduction_factor=3"

A setting is ``SAMPLER[:ARG=VALUE,...]/PRUNER[:ARG=VALUE,...]``; arguments are added to
tuner's defaults for that sampler/pruner, as a spec's ``sampler_args``/``pruner_args`` would be.
Sampler options of the sweep alone: ``stream=study`` (one sampler for the run, as plain Optuna
keeps one), ``interleave=K`` (every K-th trial after the tenth drawn at random) and ``gamma=F``
(TPE models the best F of finished trials as good; Optuna's own is 0.10).
Writes ``bench/results/efficiency_sweep-YYYYmmdd-HHMMSS.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench._args import count, positive

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_SETTINGS = ("random/none", "tpe/asha", "tpe/median")


def replay(setting: str, problem_name: str, seed: int, budget_scale: float = 1.0) -> dict[str, Any]:
    """One run of ``setting`` on the problem until its budget is spent; returns its anytime curve."""
    import shutil
    import tempfile
    import time

    import optuna

    from bench.efficiency import _scaled
    from bench.efficiency_problems import PROBLEMS, BenchObjective, StepLog
    from bench.efficiency_report import curve_from_log
    from bench.efficiency_runners import _OptunaContext, parse_setting
    from tuner.engine._plugins import make_pruner, make_sampler, trial_seed
    from tuner.exceptions import TrialPruned
    from tuner.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    problem = _scaled(PROBLEMS, budget_scale)[problem_name]
    sampler_name, sampler_args, pruner_name, pruner_args = parse_setting(setting)
    space = SearchSpace.from_mapping(problem.space, source=f"bench:{problem.name}")
    workdir = Path(tempfile.mkdtemp(prefix="tuner-sweep-"))
    start = time.time()
    try:
        log = StepLog(workdir / "steps.jsonl")
        objective = BenchObjective(problem.name, False, log.path, seed)
        prune_on = pruner_args.pop("prune_on", "last")
        # stream=study (a sweep option): one sampler seeded once, kept across trials, as plain
        # Optuna runs; the default, trial, is tuner's fresh sampler per trial seeded by its number.
        one_stream = sampler_args.pop("stream", "trial") == "study"
        # interleave=K (a sweep option): after 10 trials every K-th trial is drawn at random.
        interleave = int(sampler_args.pop("interleave", 0))
        # gamma=F (a sweep option): TPE models the best F of finished trials as good (Optuna's
        # default is 0.10, at most 25 trials); set on the sampler itself, as Optuna 5 deprecates
        # its gamma argument.
        good_share = float(sampler_args.pop("gamma", 0.0))

        def build(sampler_seed: int) -> Any:
            sampler = make_sampler(sampler_name, sampler_args, seed=sampler_seed, space=space, study_seed=seed)
            if good_share:
                _set_good_share(sampler, good_share)
            return sampler

        study = optuna.create_study(
            direction=problem.direction, pruner=make_pruner(pruner_name, pruner_args, space=space),
            sampler=build(seed) if one_stream else None)
        number = 0
        while log.steps() < problem.budget:
            if not one_stream:
                study.sampler = build(trial_seed(seed, number))
                if interleave and number >= 10 and number % interleave == interleave - 1:
                    study.sampler = optuna.samplers.RandomSampler(seed=trial_seed(seed, number))
            trial = study.ask()
            params = space.suggest(trial)
            try:
                result = objective(params, _OptunaContext(trial, problem, seed, workdir / f"trial_{number:05d}",
                                                                prune_on))
                value = float(result[problem.metric]) if isinstance(result, Mapping) else float(result)
                study.tell(trial, value if math.isfinite(value) else None,
                           state=None if math.isfinite(value) else optuna.trial.TrialState.FAIL)
            except (optuna.TrialPruned, TrialPruned):  # the pruner's stop, or the task's (as tuner.run records it)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            except Exception:  # noqa: BLE001 - a failed trial is a FAIL, as under tuner
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            number += 1
        curve = curve_from_log(log.records(), problem.budget, problem.direction)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"problem": problem_name, "contender": setting, "label": setting, "seed": seed, "curve": curve,
            "wall_s": time.time() - start, "budget_wall_s": time.time() - start, "budget_spent": True,
            "error": None, "lib_trials": number, "lib_errors": None}


class _GoodShare:
    """TPE's gamma: the best ``share`` of ``n`` finished trials (at least 1, at most 25) are "good"."""

    def __init__(self, share: float) -> None:
        self.share = share

    def __call__(self, n: int) -> int:
        return min(max(1, math.ceil(self.share * n)), 25)


def _set_good_share(sampler: Any, share: float) -> None:
    for model in (sampler, getattr(sampler, "_other", None)):
        if model is not None:
            model._gamma = _GoodShare(share)


def _replay_star(args: tuple[str, str, int, float]) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    return replay(*args)


def table(summary: dict[str, Any], reference: str | None = None) -> str:
    """One Markdown table per problem: best at 25/50/100 %, compute to reach random's best and,
    with a ``reference`` setting, each setting's seed-by-seed lead over it (95 % interval)."""
    from bench.efficiency_report import share_cell

    lines: list[str] = []
    for pname, s in summary.items():
        ref = s["rows"].get(reference) if reference else None
        lines += [f"## {pname} (target: random's mean final best {s['target']:.4g})", "",
                  "| setting | seeds | best @25% | best @50% | best @100% (sd) | × random's compute (95% CI) | "
                  "seeds reaching own random best | trials (completed) |"
                  + (f" lead over {reference} per seed (95% CI) |" if ref else ""),
                  "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if ref else "")]
        rows = sorted(s["rows"].items(), key=lambda kv: (kv[1]["reach_fraction"] is None,
                                                          kv[1]["reach_fraction"] or 0.0))
        for name, row in rows:
            at = row["at"]

            def mean(f: str) -> str:
                m = at[f]["mean"]
                return "-" if m is None else f"{m:.4g}"

            frac = "not reached" if row["reach_fraction"] is None else share_cell(row)
            k, n = row["reached_seeds"]
            lines.append(f"| {name} | {row['seeds']} | {mean('0.25')} | {mean('0.5')} | {mean('1.0')} "
                         f"({(at['1.0']['sd'] or 0):.2g}) | {frac} | {k}/{n} | {row['trials']['mean']:.0f} "
                         f"({row['completed']['mean']:.1f}) |" + (_lead_cell(row, ref, s) if ref else ""))
        lines.append("")
    return "\n".join(lines)


def _lead_cell(row: dict[str, Any], ref: dict[str, Any], s: dict[str, Any]) -> str:
    from bench.efficiency_report import paired_lead

    if row is ref:
        return " (reference) |"
    p = paired_lead(row["final_by_seed"], ref["final_by_seed"], s["problem"]["direction"])
    if p is None:
        return " - |"
    return f" {p['wins']}/{p['n']} better, {p['lead']:+.3g} ({p['low']:+.3g} to {p['high']:+.3g}): {p['verdict']} |"


def main(argv: list[str] | None = None) -> int:
    from bench.efficiency import _check_problems, _problem_dict, _scaled
    from bench.efficiency_problems import PROBLEMS as UNSCALED
    from bench.efficiency_report import summarise
    from bench.efficiency_runners import parse_setting

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench efficiency_sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=["digits_mlp"], choices=sorted(UNSCALED))
    parser.add_argument("--seeds", type=count(1), default=10)
    parser.add_argument("--seed-start", type=count(0), default=0)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--budget", type=positive, default=1.0, help="scale every problem's budget, as in efficiency")
    parser.add_argument("--processes", type=count(1), default=os.cpu_count() or 1)
    parser.add_argument("--baseline", default="random/none",
                        help="the setting whose compute is \"random's compute\" (default random/none, replayed "
                             "per trial as tuner runs it; random:stream=study/none is efficiency's random contender)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)

    for setting in [args.baseline, *args.settings]:
        try:
            parse_setting(setting)
        except ValueError as exc:
            parser.error(str(exc))
    PROBLEMS = _scaled(UNSCALED, args.budget)
    _check_problems(parser, [PROBLEMS[p] for p in args.problems])
    settings = list(dict.fromkeys([args.baseline, *args.settings]))
    jobs = [(s, p, seed, args.budget) for p in args.problems for seed in range(args.seed_start, args.seed_start + args.seeds)
            for s in settings]
    with mp.get_context("spawn").Pool(args.processes) as pool:
        runs = []
        for i, run in enumerate(pool.imap_unordered(_replay_star, jobs), 1):
            runs.append(run)
            print(f"[{i}/{len(jobs)}] {run['problem']} seed {run['seed']} {run['contender']}: "
                  f"{run['curve']['trials']} trials, {run['wall_s']:.1f} s", file=sys.stderr, flush=True)
    problems = {p: _problem_dict(PROBLEMS[p], args.budget) for p in args.problems}
    # summarise() compares with the contender named "random".
    for r in runs:
        if r["contender"] == args.baseline:
            r["contender"] = "random"
    summary = summarise(runs, problems)
    # The reference of the lead column is the first setting; the baseline's runs are named "random" by now.
    text = table(summary, reference="random" if args.settings[0] == args.baseline else args.settings[0])
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"efficiency_sweep-{stamp}"
    base.with_suffix(".md").write_text(f"# Settings sweep ({stamp})\n\n`.venv/bin/python -m bench efficiency_sweep "
                                       f"{' '.join(argv)}`\n\n{text}\n")
    base.with_suffix(".json").write_text(json.dumps({"argv": argv, "runs": runs}, default=str) + "\n")
    print(text)
    print(f"wrote {base}.{{md,json}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
