"""Soak: the long forms of the fault tests, with the figures "What tuner guarantees" quotes.

* ``tuner run`` killed with SIGKILL ``--kills`` times (default 10) at random moments in one
  study, re-run after each, then run to the end;
* PostgreSQL restarted ``--restarts`` times (default 3) during one run;
* 2,000 trivial trials at concurrency 16 on SQLite and on PostgreSQL (``bench scale``'s runner).

Every scenario reads the storage after each fault: a finished trial that disappears or changes
counts as lost. The table ends with the totals (faults injected, trials lost); the command exits
1 when anything was lost or a run did not finish.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._args import count

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("kill", "pg", "load")


def _pg_database() -> tuple[str, str]:
    from bench.scale import _pg

    name = f"tuner_soak_{uuid.uuid4().hex[:8]}"
    _pg(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=count(0), default=10)
    p.add_argument("--kill-trials", type=count(1), default=30, help="n_trials of the killed study (default 30)")
    p.add_argument("--restarts", type=count(0), default=3)
    p.add_argument("--load-trials", type=count(1), default=2000)
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument("--skip", default="", help="comma-separated scenarios to leave out: kill, pg, load")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    # A misspelt name used to be ignored, so the scenario meant to be skipped ran (a typo in
    # `pg` restarted the shared PostgreSQL server): refuse it before anything runs.
    unknown = sorted(skip - set(SCENARIOS))
    if unknown:
        p.error(f"--skip {args.skip}: unknown scenario {', '.join(unknown)}; give any of {', '.join(SCENARIOS)}")
    from bench.scale import _pg, run_one
    from tests.engine import _faults

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tuner-soak-") as tmp:
        work = Path(tmp)
        if "kill" not in skip:
            print(f"kill -9 x{args.kills} ...", flush=True)
            r = _faults.sigkill_cycles(work, kills=args.kills, n_trials=args.kill_trials, seed=args.seed)
            finished = r.final.get("COMPLETE", 0) + r.final.get("PRUNED", 0)
            rows.append({"scenario": f"driver SIGKILL at random moments, re-run after each ({args.kill_trials} trials)",
                         "faults": r.kills, "lost": len(r.lost), "wall_s": r.wall_s,
                         "ok": r.final_rc == 0 and finished == args.kill_trials and "RUNNING" not in r.final and not r.lost,
                         "detail": f"kill delays {r.kill_delays_s} s; RUNNING at each kill {r.running_at_kill}; "
                                   f"final {r.final}"})
        if "pg" not in skip:
            print(f"PostgreSQL restart x{args.restarts} ...", flush=True)
            name, url = _pg_database()
            try:
                n = 2 * args.restarts + 6
                r2 = _faults.postgres_restarts(work, url, restarts=args.restarts, n_trials=n, every=2)
            finally:
                from tuner import storage as _storage

                for key in [k for k in _storage._CACHE if name in k[0]]:
                    _storage._CACHE.pop(key).engine.dispose()
                _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            rows.append({"scenario": f"PostgreSQL restarted during one run ({n} trials)", "faults": r2.restarts,
                         "lost": len(r2.lost), "wall_s": r2.wall_s,
                         "ok": r2.rc == 0 and r2.final.get("COMPLETE", 0) == n and not r2.lost and r2.server_restarted,
                         "detail": f"restart took {r2.restart_s} s; final {r2.final}; exit {r2.rc}"})
        if "load" not in skip:
            for kind in ("sqlite", "postgres"):
                print(f"load: {args.load_trials} trials at concurrency 16 on {kind} ...", flush=True)
                r3 = run_one(kind, 16, args.load_trials, "tpe", work, work / f"load-{kind}.log")
                rows.append({"scenario": f"{args.load_trials} trivial trials at concurrency 16, {kind}", "faults": 0,
                             "lost": args.load_trials - r3.complete, "wall_s": r3.wall_s,
                             "ok": r3.recorded_once and r3.exit_code == 0,
                             "detail": f"{r3.trials_per_s:.1f} trials/s, driver {r3.cpu_ms_per_trial:.1f} ms CPU/trial"})
    lines = ["| scenario | faults injected | finished trials lost | wall s | result | detail |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['scenario']} | {row['faults']} | {row['lost']} | {row['wall_s']:.0f} | "
                     f"{'PASS' if row['ok'] else 'FAIL'} | {row['detail']} |")
    total = (f"\nfaults injected: {sum(r['faults'] for r in rows)}, finished trials lost: {sum(r['lost'] for r in rows)}, "
             f"scenarios passed: {sum(r['ok'] for r in rows)}/{len(rows)}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"soak-{stamp}.md").write_text(f"# tuner soak, {stamp}\n\n" + "\n".join(lines) + "\n" + total + "\n")
    (args.out / f"soak-{stamp}.json").write_text(json.dumps(rows, indent=2, default=str))
    print("\n" + "\n".join(lines) + "\n" + total)
    print(f"written: {args.out / f'soak-{stamp}.md'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
