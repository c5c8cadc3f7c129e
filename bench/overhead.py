"""Overhead benchmark: the same trivial objective, N trials at concurrency C, three ways.

1. tuner: the CLI as a subprocess (``tuner run SPEC --storage URL --quiet``: what a user waits
   for, interpreter start and imports included) and ``tuner.run()`` timed inside a subprocess
   (Ray start and shutdown included, interpreter start and imports not);
2. plain Optuna: ``create_study`` + ``optimize(n_jobs=C)`` on the same kind of storage;
3. Ray Tune wired by hand as its docs show (``OptunaSearch`` on an RDB storage, defaults
   otherwise, ``ray.init(num_cpus=C)`` inside the timed region).

Each run gets a fresh SQLite file in its own temporary directory and a fresh interpreter;
afterwards the storage is checked (N COMPLETE trials) and its best value read. Only this
parent process imports Optuna (for the checks); the runs themselves live in ``bench._child``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._args import count

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OBJECTIVE_REF = f"{BENCH_DIR / '_objective.py'}:quadratic"

TUNER_MAX_RATIO = 1.5  # tuner / plain Optuna must stay at or below this
RAYTUNE_MIN_RATIO = 10.0  # hand-wired Ray Tune / tuner must be at least this


@dataclass
class Run:
    """One measured run of one method."""

    method: str  # optuna | tuner-cli | tuner-api | raytune
    repeat: int
    trials: int
    process_s: float  # the whole subprocess, interpreter start included
    call_s: float | None  # the timed call inside it (None for the CLI, which is only timed from outside)
    fixed_s: float | None  # the part of call_s that does not grow with trials (Ray Tune: ray.init), if known
    complete: int
    best_value: float | None

    @property
    def ok(self) -> bool:
        return self.complete == self.trials


@dataclass
class Row:
    """One line of the table: a method under one measure (median over repeats)."""

    method: str
    measure: str
    trials: int
    seconds: float
    ratio: float | None
    best_value: float | None
    ok: bool
    fixed_s: float = 0.0  # startup excluded from the per-trial rate when extrapolating
    extrapolated: bool = False

    @property
    def per_trial_ms(self) -> float:
        return 1000.0 * self.seconds / self.trials


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=count(1), default=200, help="trials per run (default 200)")
    p.add_argument("--concurrency", type=count(1), default=2, help="trials at once; also Ray's num_cpus (default 2)")
    p.add_argument("--repeats", type=count(1), default=1, help="runs per method; the table shows medians (default 1)")
    p.add_argument("--raytune-trials", type=count(1), default=None,
                   help="trials for the (slow) hand-wired Ray Tune run (default: --trials); "
                        "fewer trials are extrapolated linearly to --trials, and labelled so")
    p.add_argument("--skip-raytune", action="store_true", help="leave the hand-wired Ray Tune run out")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="where the table and JSON go")
    args = p.parse_args(argv)
    if args.trials < 1 or args.concurrency < 1 or args.repeats < 1 or (args.raytune_trials or 1) < 1:
        p.error("--trials, --concurrency, --repeats and --raytune-trials must be >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    raytune_trials = args.raytune_trials or args.trials
    out: Path = args.out
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = out / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    print(facts_text(facts), flush=True)

    plan = [("optuna", args.trials), ("tuner-cli", args.trials), ("tuner-api", args.trials)]
    if not args.skip_raytune:
        plan.append(("raytune", raytune_trials))
    runs: list[Run] = []
    for repeat in range(args.repeats):
        for method, trials in plan:
            print(f"[{repeat + 1}/{args.repeats}] {method}: {trials} trials ...", end=" ", flush=True)
            run = measure(method, trials, args.concurrency, repeat, logs)
            runs.append(run)
            call = f", call {run.call_s:.2f}s" if run.call_s is not None else ""
            status = "ok" if run.ok else f"ONLY {run.complete}/{run.trials} COMPLETE"
            best = "none" if run.best_value is None else f"{run.best_value:.4g}"
            print(f"process {run.process_s:.2f}s{call}, best {best}, {status}", flush=True)

    rows = summarize(runs, args.trials)
    checks = target_checks(rows)
    report = "\n".join([facts_text(facts), "", table(rows), "", *checks, ""])
    print("\n" + "\n".join(["", table(rows), "", *checks]))

    (out / f"overhead-{stamp}.md").write_text(report)
    (out / f"overhead-{stamp}.json").write_text(json.dumps({
        "machine": facts,
        "settings": {"trials": args.trials, "concurrency": args.concurrency, "repeats": args.repeats,
                     "raytune_trials": None if args.skip_raytune else raytune_trials},
        "runs": [asdict(r) | {"ok": r.ok} for r in runs],
        "rows": [asdict(r) | {"per_trial_ms": r.per_trial_ms} for r in rows],
        "checks": checks,
    }, indent=2))
    print(f"\nwrote {out / f'overhead-{stamp}.md'} and .json; each run's output is in {logs}")
    return 0 if all(r.ok for r in runs) else 1


# -- running


def measure(method: str, trials: int, concurrency: int, repeat: int, logs: Path) -> Run:
    """One run in a fresh temporary directory with its own SQLite file."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{method}-") as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'study.db'}"
        study = f"bench_{method.replace('-', '_')}"
        result = work / "result.json"
        spec = write_spec(work / "spec.yaml", study, trials, concurrency)
        if method == "tuner-cli":
            cmd = [tuner_executable(), "run", str(spec), "--storage", url, "--num-cpus", str(concurrency), "--quiet"]
        else:
            payload = {"storage": url, "study": study, "trials": trials, "concurrency": concurrency,
                       "spec": str(spec), "workdir": str(work / "ray_results"), "result": str(result)}
            cmd = [sys.executable, "-m", "bench._child", method, json.dumps(payload)]
        log = logs / f"{method}-r{repeat + 1}.log"
        start = time.perf_counter()
        with log.open("w") as fh:
            proc = subprocess.run(cmd, cwd=work, env=child_env(), stdout=fh, stderr=subprocess.STDOUT)
        process_s = time.perf_counter() - start
        if proc.returncode != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
            raise SystemExit(f"\n{method} failed (exit {proc.returncode}); end of {log}:\n{tail}")
        timed = json.loads(result.read_text()) if result.exists() else {}
        complete, best = check_storage(url, study)
        return Run(method, repeat + 1, trials, process_s, timed.get("call_s"), timed.get("fixed_s"), complete, best)


def write_spec(path: Path, name: str, trials: int, concurrency: int) -> Path:
    """The tuner spec; JSON is valid YAML, so it is written as JSON."""
    spec = {
        "name": name,
        "objective": OBJECTIVE_REF,
        "metric": "value",
        "direction": "minimize",
        "search_space": {"params": {"x": {"float": [-10.0, 10.0]}, "y": {"float": [-10.0, 10.0]}}},
        "sampler": "tpe",
        "pruner": "none",
        "seed": 0,
        "n_trials": trials,
        "concurrency": concurrency,
    }
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def tuner_executable() -> str:
    local = Path(sys.executable).parent / "tuner"
    found = str(local) if local.exists() else shutil.which("tuner")
    if not found:
        raise SystemExit("the `tuner` command is not installed in this environment (pip install -e .)")
    return found


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray workers inherit this, so they can import bench._objective too.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def check_storage(url: str, study_name: str) -> tuple[int, float | None]:
    """COMPLETE trials and the best value, read back from the storage."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return len(complete), (min(t.value for t in complete) if complete else None)


# -- reporting

LABELS = {
    "optuna": ("plain Optuna", "create_study + optimize"),
    "tuner-api": ("tuner", "tuner.run() call"),
    "raytune": ("Ray Tune + OptunaSearch", "ray.init + Tuner.fit + shutdown"),
}


def summarize(runs: list[Run], trials: int) -> list[Row]:
    """In-process rows first (ratios against Optuna's call), then whole-process rows."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.method, []).append(r)

    def row(method: str, name: str, measure: str, in_process: bool) -> Row | None:
        rs = by.get(method)
        if not rs:
            return None
        secs = statistics.median((r.call_s or 0.0) if in_process else r.process_s for r in rs)
        best = min((r.best_value for r in rs if r.best_value is not None), default=None)
        # the fixed part: Ray start, plus interpreter start and imports for a whole process
        outside = [0.0 if in_process or r.call_s is None else r.process_s - r.call_s for r in rs]
        fixed = statistics.median((r.fixed_s or 0.0) + o for r, o in zip(rs, outside))
        return Row(name, measure, rs[0].trials, secs, None, best, all(r.ok for r in rs), fixed_s=fixed)

    call_rows = [row(m, *LABELS[m], True) for m in ("optuna", "tuner-api", "raytune")]
    proc_rows = [row("optuna", "plain Optuna", "whole process", False),
                 row("tuner-cli", "tuner", "`tuner run` CLI, whole process", False),
                 row("raytune", "Ray Tune + OptunaSearch", "whole process", False)]
    out: list[Row] = []
    for group in (call_rows, proc_rows):
        rows = [r for r in group if r is not None]
        extra = [extrapolate(r, trials) for r in rows if r.trials != trials]
        rows += extra
        base = rows[0].seconds if rows and rows[0].method == "plain Optuna" else None
        for r in rows:
            if base and r.trials == trials:
                r.ratio = r.seconds / base
        out += rows
    return out


def extrapolate(row: Row, trials: int) -> Row:
    """Startup (Ray's, where measured) once, plus the measured time per trial after it times ``trials``."""
    per_trial = (row.seconds - row.fixed_s) / row.trials
    how = f"start {row.fixed_s:.1f}s + per-trial rate" if row.fixed_s else "per-trial rate"
    return Row(row.method, f"{row.measure}, EXTRAPOLATED from {row.trials} trials ({how})", trials,
               row.fixed_s + per_trial * trials, None, None, row.ok, fixed_s=row.fixed_s,
               extrapolated=True)


def table(rows: list[Row]) -> str:
    lines = ["| method | measured | trials | wall time (s) | time per trial (ms) | ratio vs plain Optuna "
             "| best value |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        best = "" if r.best_value is None else f"{r.best_value:.4g}"
        if not r.ok:
            best += " (INCOMPLETE)"
        lines.append(f"| {r.method} | {r.measure} | {r.trials} | {r.seconds:.2f} | {r.per_trial_ms:.1f} "
                     f"| {ratio} | {best} |")
    return "\n".join(lines)


def target_checks(rows: list[Row]) -> list[str]:
    """tuner / optuna <= 1.5 and raytune / tuner >= 10, on the in-process times."""

    n = rows[0].trials if rows else 0

    def find(method: str, whole: bool) -> Row | None:
        """The row at the full trial count (an extrapolated one when that is all there is)."""
        found = [r for r in rows if r.method == method and r.trials == n and ("whole process" in r.measure) == whole]
        return found[0] if found else None

    out = []
    optuna_call, tuner_call = find("plain Optuna", False), find("tuner", False)
    ray_call = find("Ray Tune + OptunaSearch", False)
    optuna_proc, tuner_proc = find("plain Optuna", True), find("tuner", True)
    if optuna_call and tuner_call:
        ratio = tuner_call.seconds / optuna_call.seconds
        verdict = "PASS" if ratio <= TUNER_MAX_RATIO else "FAIL"
        line = (f"- tuner / optuna <= {TUNER_MAX_RATIO:g}: **{verdict}** ({ratio:.2f} = "
                f"{tuner_call.seconds:.2f}s / {optuna_call.seconds:.2f}s, in-process")
        if optuna_proc and tuner_proc:
            line += (f"; whole process, CLI vs python script: {tuner_proc.seconds / optuna_proc.seconds:.2f} = "
                     f"{tuner_proc.seconds:.2f}s / {optuna_proc.seconds:.2f}s")
        out.append(line + ")")
    if tuner_call and ray_call:
        ratio = ray_call.seconds / tuner_call.seconds
        verdict = "PASS" if ratio >= RAYTUNE_MIN_RATIO else "FAIL"
        note = ", Ray Tune time EXTRAPOLATED" if ray_call.extrapolated else ""
        out.append(f"- raytune / tuner >= {RAYTUNE_MIN_RATIO:g}: **{verdict}** ({ratio:.2f} = "
                   f"{ray_call.seconds:.2f}s / {tuner_call.seconds:.2f}s, in-process{note})")
    elif tuner_call:
        out.append(f"- raytune / tuner >= {RAYTUNE_MIN_RATIO:g}: not measured (--skip-raytune)")
    return out


def machine_facts() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "optuna": version("optuna"),
        "ray": version("ray"),
        "tuner": version("tuner"),
    }


def facts_text(f: dict[str, Any], benchmark: str = "overhead") -> str:
    return (f"{benchmark} benchmark, {f['date']} on {f['platform']}\n"
            f"CPU: {f['cpu_model'] or 'unknown'}, {f['cpu_count']} CPUs ({f['cpus_usable']} usable); "
            f"python {f['python']}, sqlite {f['sqlite']}, optuna {f['optuna']}, ray {f['ray']}, tuner {f['tuner']}")
