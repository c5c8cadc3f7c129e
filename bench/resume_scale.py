"""Resuming a large study: ``tuner run`` on a study that already holds N trials, for a few more.

A study that has run for days is resumed after every stop (a crash, a new node, more budget),
and the user waits for whatever the driver reads before the first new trial starts. For each
size N this fills a fresh SQLite file with the synthetic study ``bench.report_scale`` writes (the
rows the engine leaves: placement, metrics, curves, errors, and a few trials left RUNNING by
"a stopped run"), then runs ``tuner run`` on it for ``--more`` trials of a trivial objective
over the same search space, in its own interpreter, and prints:

* wall time of the whole ``tuner run`` (interpreter, Ray start and shutdown included);
* seconds from the command's start until the first new trial was created (its stored start
  time): what the driver reads and checks first;
* the driver process's own CPU seconds (``getrusage`` in the driver);
* the check: the new trials all COMPLETE and the trials left RUNNING now FAIL.

Each worker still reads the whole study once, as TPE and the pruners need it (``--sampler
random`` shows the run without TPE's own cost on N trials).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from bench._args import count
from bench.scale import _CHILD, sampler_error

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OBJECTIVE_REF = f"{BENCH_DIR / '_objective.py'}:synthetic_score"
NAME = "resume"


@dataclass
class Result:
    study_trials: int
    more: int
    sampler: str
    fill_s: float
    wall_s: float
    to_first_trial_s: float
    driver_cpu_s: float
    new_complete: int
    left_running: int  # RUNNING trials in the filled study, which the resume must fail
    running_after: int
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.new_complete == self.more and self.running_after == 0


def _resume_spec(path: Path, finished: int, more: int, sampler: str) -> Path:
    """The filled study's search space, metric and direction, with a trivial objective."""
    from bench.report_scale import _spec

    filled = _spec(NAME, finished)
    spec = {"name": NAME, "objective": OBJECTIVE_REF, "search_space": filled["search_space"],
            "metrics": filled["metrics"], "directions": filled["directions"], "n_trials": finished + more,
            "concurrency": 2, "sampler": sampler, "pruner": "none", "seed": 0, "max_failures": 0}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _as_run_by_objective(url: str) -> None:
    """Store the filled study's spec as one run with this benchmark's objective: the filler writes
    a built-in task's, and a resume with another objective is refused (its values would not
    compare), which is not what this benchmark measures."""
    import optuna

    from tuner.engine import _attrs

    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    try:
        study_id = storage.get_study_id_from_name(NAME)
        stored = dict(storage.get_study_system_attrs(study_id).get(_attrs.SPEC) or {})
        stored.update(task=None, task_args={}, objective=OBJECTIVE_REF)
        storage.set_study_system_attr(study_id, _attrs.SPEC, stored)
    finally:
        storage.engine.dispose()


def _counts(url: str) -> dict[str, int]:
    import optuna
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    try:
        with storage.engine.connect() as conn:
            return {state.name: n for state, n in conn.execute(
                sa.select(m.TrialModel.state, sa.func.count()).group_by(m.TrialModel.state))}
    finally:
        storage.engine.dispose()


def _first_new_start(url: str, after_number: int) -> float | None:
    """Epoch seconds at which the first trial numbered above ``after_number`` was created (stored as naive UTC)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(m.TrialModel._datetime_start_utc))
                                 .where(m.TrialModel.number > after_number)).scalar()
    finally:
        engine.dispose()
    if first is None:
        return None
    if isinstance(first, str):  # SQLite through a plain engine
        first = dt.datetime.fromisoformat(first)
    return first.replace(tzinfo=dt.timezone.utc).timestamp() if first.tzinfo is None else first.timestamp()


def run_one(n: int, more: int, sampler: str, workdir: Path, log: Path) -> Result:
    from bench.report_scale import fill

    url = f"sqlite:///{workdir / f'resume-{n}.db'}"
    fill_s = fill(url, NAME, n)
    _as_run_by_objective(url)
    before = _counts(url)
    finished = before.get("COMPLETE", 0) + before.get("PRUNED", 0)
    spec = _resume_spec(workdir / f"resume-{n}.yaml", finished, more, sampler)
    stats = workdir / f"stats-{n}.json"
    cmd = [sys.executable, "-c", _CHILD, str(stats), "run", str(spec), "--storage", url, "--num-cpus", "2", "--quiet"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO_ROOT)}
    started = time.time()
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.monotonic() - t0
    info = json.loads(stats.read_text()) if stats.exists() else {"cpu_s": float("nan"), "code": proc.returncode}
    after = _counts(url)
    first = _first_new_start(url, n - 1)
    return Result(n, more, sampler, fill_s, wall, (first - started) if first is not None else float("nan"),
                  info["cpu_s"], after.get("COMPLETE", 0) - before.get("COMPLETE", 0), before.get("RUNNING", 0),
                  after.get("RUNNING", 0), int(info.get("code") or proc.returncode))


def table(results: list[Result]) -> str:
    lines = ["| trials in the study | sampler | new trials | wall s | to the first new trial s | driver CPU s | check |",
             "|---:|---|---:|---:|---:|---:|---|"]
    for r in results:
        check = ("ok" if r.ok else f"**FAILED** ({r.new_complete}/{r.more} complete, {r.running_after} RUNNING, "
                 f"exit {r.exit_code})")
        lines.append(f"| {r.study_trials:,} | {r.sampler} | {r.more} | {r.wall_s:.1f} | {r.to_first_trial_s:.1f} | "
                     f"{r.driver_cpu_s:.1f} | {check} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench resume_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=count(1), nargs="+", default=[1000, 10000, 20000],
                   help="study sizes to resume (default 1000 10000 20000)")
    p.add_argument("--more", type=count(1), default=4, help="trials the resumed run adds (default 4)")
    p.add_argument("--sampler", default="tpe", help="the resumed run's sampler (default tpe, tuner's default)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    problem = sampler_error(args.sampler)  # else the child failed into a FAILED row, its reason in the log only
    if problem:
        p.error(f"--sampler {args.sampler}: {problem}")
    if len(set(args.trials)) < len(args.trials):  # a repeated size refilled the first one's SQLite file
        p.error(f"--trials {' '.join(map(str, args.trials))}: a size is given twice; give each once")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    from bench.overhead import facts_text, machine_facts

    facts = machine_facts()
    print(facts_text(facts, "resume_scale"), flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tuner-resume-") as tmp:
        for n in args.trials:
            print(f"{n:,} trials, +{args.more} ...", end=" ", flush=True)
            r = run_one(n, args.more, args.sampler, Path(tmp), args.out / f"resume-{stamp}-{n}.log")
            results.append(r)
            print(f"{r.wall_s:.1f}s, first new trial after {r.to_first_trial_s:.1f}s, driver {r.driver_cpu_s:.1f}s CPU, "
                  f"{'ok' if r.ok else 'FAILED'}", flush=True)
    command = (f"python -m bench resume_scale --trials {' '.join(map(str, args.trials))} --more {args.more} "
               f"--sampler {args.sampler}")
    text = f"# tuner resume_scale, {stamp}\n\n{facts_text(facts, 'resume_scale')}\n\n`{command}`\n\n{table(results)}\n"
    (args.out / f"resume-{stamp}.md").write_text(text)
    (args.out / f"resume-{stamp}.json").write_text(json.dumps(
        {"facts": facts, "command": command, "results": [asdict(r) for r in results]}, indent=2, default=str))
    print("\n" + table(results))
    print(f"\nwritten: {args.out / f'resume-{stamp}.md'}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
