"""The dashboard's server time on a 100,000-trial study, next to optuna-dashboard on the same database.

``python -m bench dashboard_scale [--trials 100000] [--repeats 30]`` fills a SQLite study the way
the engine leaves one (:func:`bench.report_scale.fill`: placement on every trial, metrics,
learning curves on 10%, errors on failed trials), then times requests to the dashboard app
in-process (server time: routing, SQL, rendering; no network), median and p95 over repeated
requests, for:

- the studies page (``/``),
- the study page (``/studies/NAME``: the HTML with the summary; the table and figures load
  from the API afterwards) and the version marker it polls every 2 s,
- a trials-table page (``/api/studies/NAME/trials``: 50 rows sorted by value, random pages;
  and filtered by state and a parameter range),
- a trial page (``/studies/NAME/trials/N``, random N),
- the figures (``/api/studies/NAME/figures``): cold (computed) and warm (cached).

Each request is timed twice: right after another connection wrote to the database (what the
viewers of a running study get: nothing is reused) and with the database unchanged (answers
reused: the dashboard memoises per SQLite ``data_version``).

Targets: study page under 300 ms; table page and trial page under 100 ms.

optuna-dashboard (if installed: ``pip install optuna-dashboard``) is timed on the same file
through its WSGI app: its studies list, and its study API (``/api/studies/ID?after=0``), which
is what its single-page app loads for the study page, the trials table and a trial (it has no
server-side table or trial endpoint).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench._args import count

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _times(fn: Callable[[], Any], repeats: int, warmup: int = 2, before: Callable[[], Any] | None = None) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` (``before()`` runs untimed ahead of each)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


class _Writer:
    """Commits a tiny change from another connection: what a running study does between requests.

    The dashboard reuses answers while a SQLite database is unchanged; a write before each
    request measures the path a live study's viewers get (every answer read afresh).
    """

    def __init__(self, db: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(str(db))
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
        self.conn.execute("INSERT OR REPLACE INTO study_system_attributes (study_system_attribute_id, study_id, key, "
                          "value_json) VALUES (-1, 1, 'bench:tick', ?)", (str(self.n),))
        self.conn.commit()


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _get(client: Any, url: str) -> Callable[[], Any]:
    def call() -> Any:
        res = client.get(url)
        if res.status_code != 200:
            raise RuntimeError(f"GET {url} -> {res.status_code}: {res.text[:200]}")
        return res

    return call


def _varying(client: Any, urls: list[str]) -> Callable[[], Any]:
    it = iter(urls * 1000)
    return lambda: _get(client, next(it))()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dashboard_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=count(1), default=100_000)
    parser.add_argument("--repeats", type=count(1), default=30, help="timed requests per row (after 2 warm-ups)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the database here (default: a temp dir)")
    parser.add_argument("--no-peer", action="store_true", help="skip optuna-dashboard (minutes at 100,000 trials)")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore")
    from fastapi.testclient import TestClient

    from bench.report_scale import fill
    from tuner.dashboard import create_app

    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / f"dashboard_scale_{args.trials}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db}"
        fill_s = fill(url, "scale", args.trials)
        print(f"filled {args.trials:,} trials in {fill_s:.1f} s ({db.stat().st_size / 1e6:.0f} MB)", flush=True)

        rows: list[tuple[str, str, list[float] | None, str]] = []
        n = args.trials
        with TestClient(create_app(url)) as c:
            pages = [f"/api/studies/scale/trials?sort=value&order=desc&page={rng.randint(1, n // 50)}" for _ in range(50)]
            trials = [f"/studies/scale/trials/{rng.randrange(n)}" for _ in range(50)]
            t0 = time.perf_counter()
            _get(c, "/api/studies/scale/figures")()
            cold = (time.perf_counter() - t0) * 1000.0
            measured = [
                ("studies page", "/", _get(c, "/"), ""),
                ("study page", "/studies/scale", _get(c, "/studies/scale"), "300 ms"),
                ("study version poll", "/api/studies/scale/version", _get(c, "/api/studies/scale/version"), ""),
                ("table page (50 rows, sorted by value)", "/api/studies/scale/trials?sort=value&page=random",
                 _varying(c, pages), "100 ms"),
                ("table page, first page", "/api/studies/scale/trials", _get(c, "/api/studies/scale/trials"), "100 ms"),
                ("table page, filtered (state + param range)",
                 "/api/studies/scale/trials?state=COMPLETE&param=lr:0.001:0.01&sort=value",
                 _get(c, "/api/studies/scale/trials?state=COMPLETE&param=lr:0.001:0.01&sort=value&order=desc"), "100 ms"),
                ("trial page", "/studies/scale/trials/random", _varying(c, trials), "100 ms"),
                ("trial API", "/api/studies/scale/trials/random",
                 _varying(c, [u.replace("/studies/", "/api/studies/") for u in trials]), "100 ms"),
                ("figures (cached)", "/api/studies/scale/figures", _get(c, "/api/studies/scale/figures"), ""),
            ]
            writer = _Writer(db)
            for label, path, fn, target in measured:
                if label.startswith("figures"):
                    continue  # recomputed after every write (seconds at this size), measured below
                times = _times(fn, args.repeats, before=writer)
                rows.append((label + ", database just written", path, times, target))
                print(f"  tuner {rows[-1][0]}: median {statistics.median(times):.1f} ms, p95 {_p95(times):.1f} ms",
                      flush=True)
            for label, path, fn, target in measured:
                times = _times(fn, args.repeats)
                rows.append((label + ", database unchanged", path, times, target))
                print(f"  tuner {rows[-1][0]}: median {statistics.median(times):.1f} ms, p95 {_p95(times):.1f} ms",
                      flush=True)
        rows.append(("figures (first request, computed)", "/api/studies/scale/figures", [cold], ""))

        od_rows: list[tuple[str, str, list[float]]] = []
        try:
            if args.no_peer:
                raise ImportError
            import httpx
            import optuna_dashboard

            od_app = optuna_dashboard.wsgi(url)
            with httpx.Client(transport=httpx.WSGITransport(app=od_app), base_url="http://od", timeout=600) as od:
                study_id = od.get("/api/studies").json()["study_summaries"][0]["study_id"]
                t0 = time.perf_counter()
                _get(od, f"/api/studies/{study_id}?after=0")()
                od_rows.append(("study, first request (loads every trial)", f"/api/studies/{study_id}?after=0",
                                [(time.perf_counter() - t0) * 1000.0]))
                for label, path, repeats in (("studies list", "/api/studies", args.repeats),
                                             ("study, repeated (its study page, table and trial views)",
                                              f"/api/studies/{study_id}?after=0", max(3, args.repeats // 10))):
                    times = _times(_get(od, path), repeats, warmup=1)
                    od_rows.append((label, path, times))
                    print(f"  optuna-dashboard {label}: median {statistics.median(times):.1f} ms", flush=True)
            od_version = optuna_dashboard.__version__
        except ImportError:
            od_version = None

    print()
    print(f"machine: {os.cpu_count()} CPUs; study: {n:,} trials in SQLite; {args.repeats} timed requests per row")
    print()
    print("| tuner dashboard | request | median | p95 | target |")
    print("|---|---|---:|---:|---|")
    failed = False
    for label, path, times, target in rows:
        med, p95 = statistics.median(times), _p95(times)
        verdict = ""
        if target:
            ok = p95 < float(target.split()[0])
            failed |= not ok
            verdict = f"< {target} (p95): {'PASS' if ok else 'FAIL'}"
        print(f"| {label} | `{path}` | {med:.1f} ms | {p95:.1f} ms | {verdict} |")
    if od_version:
        print()
        print(f"| optuna-dashboard {od_version} (same file) | request | median | p95 |")
        print("|---|---|---:|---:|")
        for label, path, times in od_rows:
            print(f"| {label} | `{path}` | {statistics.median(times):.1f} ms | {_p95(times):.1f} ms |")
    else:
        print("\noptuna-dashboard not compared (--no-peer, or not installed: pip install optuna-dashboard)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
