"""Scale and load: ``tuner run`` of N trivial trials at several concurrencies, SQLite and PostgreSQL.

What a user waits for and what the machine pays, per configuration:

* wall time of the whole ``tuner run`` (interpreter start, Ray start and shutdown included) and
  trials per second;
* the driver process's own CPU time per trial (user + system of that process only: the part of
  tuner that does not spread over workers), read with ``getrusage`` in the driver itself;
* storage size per 1,000 trials (SQLite: the file with its WAL; PostgreSQL: the database's
  size less that of an empty tuner database);
* the load check of issue 7: every trial recorded exactly once (numbers 0..N-1, all COMPLETE,
  none RUNNING or FAIL), else the row says LOST and the command exits 1.

Each configuration gets a fresh SQLite file or a fresh PostgreSQL database (dropped afterwards).
Concurrency C is declared to Ray as C CPUs (``--num-cpus C``), whatever the machine has: the
point is tuner's own cost at that many trials in flight, with a trivial objective.
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
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._args import count, counts

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OBJECTIVE_REF = f"{BENCH_DIR / '_objective.py'}:quadratic"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

_SPEC = """\
name: scale
objective: {objective}
search_space:
  params:
    x: {{float: [-10.0, 10.0]}}
    y: {{float: [-10.0, 10.0]}}
n_trials: {trials}
concurrency: {concurrency}
sampler: {sampler}
pruner: none
seed: 0
max_failures: 0
"""

# The driver, run in its own interpreter: the CLI's main, then this process's CPU time.
_CHILD = """\
import json, resource, sys, time
t0 = time.monotonic()
from tuner.cli import main
code = 0
try:
    main(sys.argv[2:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code or 0
ru = resource.getrusage(resource.RUSAGE_SELF)
with open(sys.argv[1], "w") as fh:
    json.dump({"cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, "call_s": time.monotonic() - t0,
               "code": code}, fh)
"""


@dataclass
class Result:
    storage: str
    concurrency: int
    trials: int
    wall_s: float
    driver_cpu_s: float
    driver_rss_mb: float
    storage_bytes: int
    complete: int
    recorded_once: bool
    exit_code: int

    @property
    def trials_per_s(self) -> float:
        return self.trials / self.wall_s

    @property
    def cpu_ms_per_trial(self) -> float:
        return 1000.0 * self.driver_cpu_s / self.trials

    @property
    def mb_per_1000(self) -> float:
        return self.storage_bytes / self.trials * 1000 / 1e6


def _pg(sql: str) -> Any:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        return conn.execute(sql).fetchall() if sql.lstrip().upper().startswith("SELECT") else conn.execute(sql)


def _pg_size(db: str) -> int:
    return int(_pg(f"SELECT pg_database_size('{db}')")[0][0])


def _check(url: str, trials: int) -> tuple[int, bool]:
    """COMPLETE count, and whether trials 0..N-1 are each recorded exactly once and all COMPLETE."""
    import optuna

    study = optuna.load_study(study_name="scale", storage=url)
    rows = study.get_trials(deepcopy=False)
    numbers = sorted(t.number for t in rows)
    complete = sum(t.state.name == "COMPLETE" for t in rows)
    return complete, numbers == list(range(trials)) and complete == trials


def sampler_error(sampler: str) -> str | None:
    """Why tuner refuses ``sampler`` (its own one-line message), or None when it takes it.

    A bad ``--sampler`` used to reach the child ``tuner run``, whose message went to the log
    file only, and the benchmark then ended in a traceback (or a FAILED row) reading a study
    that was never created: it is checked here, the way ``tuner validate`` checks a spec.
    """
    import yaml

    import tuner
    from tuner.exceptions import SpecError, UserInputError

    try:  # the very text the child reads: a name that breaks the YAML is refused too
        tuner.validate(yaml.safe_load(_SPEC.format(objective=OBJECTIVE_REF, trials=1, concurrency=1, sampler=sampler)))
    except SpecError as exc:
        return f"{exc.problem}; {exc.fix}" if exc.fix else exc.problem
    except yaml.YAMLError:
        return "not a sampler name (it breaks the study's YAML); give one such as tpe or random"
    except UserInputError as exc:
        return " ".join(str(exc).split())
    return None


def _repeated(values: list[Any]) -> list[Any]:
    """The values given more than once (each run is named by its level, so a repeat reuses its files)."""
    return sorted({v for v in values if values.count(v) > 1}, key=str)


def run_one(kind: str, concurrency: int, trials: int, sampler: str, workdir: Path, log: Path) -> Result:
    spec = workdir / f"scale-{kind}-{concurrency}.yaml"
    spec.write_text(_SPEC.format(objective=OBJECTIVE_REF, trials=trials, concurrency=concurrency, sampler=sampler))
    db = f"tuner_scale_{uuid.uuid4().hex[:8]}"
    baseline = 0
    if kind == "sqlite":
        path = workdir / f"scale-{concurrency}.db"
        url = f"sqlite:///{path}"
    else:
        _pg(f'CREATE DATABASE "{db}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
        from tuner.storage import open_storage

        open_storage(url)  # tables and indexes, so that the baseline is an empty tuner database
        baseline = _pg_size(db)
    stats = workdir / f"stats-{kind}-{concurrency}.json"
    cmd = [sys.executable, "-c", _CHILD, str(stats), "run", str(spec), "--storage", url,
           "--num-cpus", str(concurrency), "--quiet"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.monotonic() - t0
    info = json.loads(stats.read_text()) if stats.exists() else {"cpu_s": float("nan"), "rss_mb": float("nan"), "code": proc.returncode}
    try:
        complete, once = _check(url, trials)
        if kind == "sqlite":
            size = sum(p.stat().st_size for p in workdir.glob(f"scale-{concurrency}.db*"))
        else:
            size = _pg_size(db) - baseline
    finally:
        if kind == "postgres":
            from tuner import storage as _storage

            for key in [k for k in _storage._CACHE if db in k[0]]:
                _storage._CACHE.pop(key).engine.dispose()
            _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return Result(kind, concurrency, trials, wall, info["cpu_s"], info["rss_mb"], size, complete, once,
                  int(info.get("code") or proc.returncode))


def table(results: list[Result]) -> str:
    lines = ["| storage | concurrency | trials | wall s | trials/s | driver CPU ms/trial | driver RSS MB | "
             "storage MB / 1,000 trials | every trial recorded once |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ok = "yes" if r.recorded_once and r.exit_code == 0 else f"**LOST** ({r.complete} complete, exit {r.exit_code})"
        lines.append(f"| {r.storage} | {r.concurrency} | {r.trials} | {r.wall_s:.1f} | {r.trials_per_s:.1f} | "
                     f"{r.cpu_ms_per_trial:.1f} | {r.driver_rss_mb:.0f} | {r.mb_per_1000:.2f} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=count(1), default=2000)
    p.add_argument("--concurrency", type=counts, default=[2, 8, 16], help="comma-separated (default 2,8,16)")
    p.add_argument("--storage", default="sqlite,postgres", help="sqlite, postgres or both (default both)")
    p.add_argument("--sampler", default="tpe", help="the study's sampler (default tpe, tuner's default)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    levels = args.concurrency
    kinds = [k.strip() for k in args.storage.split(",")]
    if any(k not in ("sqlite", "postgres") for k in kinds):
        p.error(f"--storage {args.storage}: give sqlite, postgres or sqlite,postgres")
    # A repeated level reused the first run's SQLite file and log, so its row measured a no-op
    # resume of a finished study as if it were a fresh run.
    for flag, given, values in (("--concurrency", ",".join(map(str, levels)), levels), ("--storage", args.storage, kinds)):
        if _repeated(values):
            p.error(f"{flag} {given}: {', '.join(map(str, _repeated(values)))} given twice; give each once")
    problem = sampler_error(args.sampler)
    if problem:
        p.error(f"--sampler {args.sampler}: {problem}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    from bench.overhead import facts_text, machine_facts

    facts = machine_facts()
    print(facts_text(facts, "scale"), flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tuner-scale-") as tmp:
        for kind in kinds:
            for c in levels:
                print(f"{kind}, concurrency {c}: {args.trials} trials ...", end=" ", flush=True)
                r = run_one(kind, c, args.trials, args.sampler, Path(tmp), args.out / f"scale-{stamp}-{kind}-{c}.log")
                results.append(r)
                print(f"{r.wall_s:.1f}s, {r.trials_per_s:.1f} trials/s, driver {r.cpu_ms_per_trial:.1f} ms CPU/trial, "
                      f"{r.mb_per_1000:.2f} MB/1000, {'recorded once' if r.recorded_once else 'LOST'}", flush=True)
    text = (f"# tuner scale, {stamp}\n\n{facts_text(facts, 'scale')}\n\n`python -m bench scale --trials {args.trials} "
            f"--concurrency {','.join(map(str, args.concurrency))} --storage {args.storage}` (sampler {args.sampler}, trivial objective)\n\n"
            f"{table(results)}\n")
    (args.out / f"scale-{stamp}.md").write_text(text)
    (args.out / f"scale-{stamp}.json").write_text(json.dumps(
        {"facts": facts, "results": [{**asdict(r), "trials_per_s": r.trials_per_s, "cpu_ms_per_trial": r.cpu_ms_per_trial,
                                      "mb_per_1000": r.mb_per_1000} for r in results]}, indent=2, default=str))
    print("\n" + table(results))
    print(f"\nwritten: {args.out / f'scale-{stamp}.md'}")
    return 0 if all(r.recorded_once and r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
