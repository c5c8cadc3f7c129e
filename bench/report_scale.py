"""How long ``tuner report`` takes on a large study: fill a SQLite study, time the report.

``python bench/report_scale.py [--trials 100000 ...]`` (or ``python -m bench.report_scale``) fills a fresh
SQLite file with a synthetic study the way the engine leaves one (spec and space study attributes,
``tuner:worker`` placement on every trial, ``tuner:metrics`` on complete trials, a learning curve
(``tuner:curve`` and Optuna intermediate values) on a fraction of them, ``tuner:error`` on failed ones),
then times ``tuner report`` in a fresh process (what a user waits for: imports, reading the
trials, figures, writing the file) and the same report in-process (imports done, with the time of
each step), and prints a table: trials, fill time, both report times, HTML size. Target: ``tuner
report`` under 20 s at 100,000 trials.

The filler writes rows with bulk inserts into Optuna's own tables (``optuna.storages._rdb.models``):
going through ``study.add_trials`` costs one transaction per trial (minutes for 100,000). The rows
are what Optuna itself writes, and the study is read back through Optuna's storage API.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench._args import count, share

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARAMS = ("lr", "dropout", "n_layers", "width", "optimizer", "batch_size")
STATES = (("COMPLETE", 0.85), ("PRUNED", 0.10), ("FAIL", 0.05))  # plus RUNNING: about half of the last 32


def _distributions() -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "dropout": FloatDistribution(0.0, 0.5),
        "n_layers": IntDistribution(1, 4),
        "width": IntDistribution(16, 512, log=True),
        "optimizer": CategoricalDistribution(["adam", "sgd", "adamw"]),
        "batch_size": CategoricalDistribution([32, 64, 128, 256]),
    }


def _spec(name: str, n: int) -> dict[str, Any]:
    return {"version": 1, "name": name, "task": "mlp", "task_args": {"dataset": "digits"},
            "metrics": ["val_accuracy"], "directions": ["maximize"], "n_trials": n, "concurrency": 32,
            "resources": {"cpus": 2, "gpus": 1}, "sampler": "tpe", "pruner": "median", "seed": 0,
            "search_space": {"params": {"lr": {"float": [1e-5, 1e-1], "log": True}, "dropout": {"float": [0.0, 0.5]},
                                        "n_layers": {"int": [1, 4]}, "width": {"int": [16, 512], "log": True},
                                        "optimizer": {"choice": ["adam", "sgd", "adamw"]},
                                        "batch_size": {"choice": [32, 64, 128, 256]}}}}


def fill(url: str, name: str, n_trials: int, *, curve_fraction: float = 0.1, steps: int = 10, hosts: int = 4,
         gpus_per_host: int = 8, seed: int = 0, batch: int = 10_000) -> float:
    """Create study ``name`` with ``n_trials`` synthetic trials at ``url``; returns the seconds it took."""
    import optuna
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m
    from optuna.trial import TrialState

    import tuner
    from tuner.engine import _attrs
    from tuner.storage import open_storage

    t0 = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is "experimental" in Optuna
        study.set_metric_names(["val_accuracy"])
    sid = study._study_id
    storage.set_study_system_attr(sid, _attrs.SPEC, _spec(name, n_trials))
    # The canonical space, as the engine stores it: a run can then resume the study (bench.resume_scale).
    storage.set_study_system_attr(sid, _attrs.SPACE, tuner.validate(_spec(name, n_trials)).search_space.to_dict())

    rng = random.Random(seed)
    dists = _distributions()
    dist_json = {k: optuna.distributions.distribution_to_json(d) for k, d in dists.items()}
    workers = [(f"node{h}", 10_000 + h * 100 + g, g) for h in range(hosts) for g in range(gpus_per_host)]
    clock = {w: 1_700_000_000.0 for w in workers}
    state_names = [s for s, _ in STATES]
    state_weights = [w for _, w in STATES]
    FINITE = m.TrialValueModel.TrialValueType.FINITE
    IFINITE = m.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE

    with storage.engine.begin() as conn:
        next_id = (conn.execute(sa.select(sa.func.max(m.TrialModel.trial_id))).scalar() or 0) + 1
    number = 0
    while number < n_trials:
        trials, params, values, sattrs, inter = [], [], [], [], []
        for _ in range(min(batch, n_trials - number)):
            tid = next_id
            next_id += 1
            p = {"lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))), "dropout": rng.uniform(0.0, 0.5),
                 "n_layers": rng.randint(1, 4), "width": int(round(math.exp(rng.uniform(math.log(16), math.log(512))))),
                 "optimizer": rng.choice(["adam", "sgd", "adamw"]), "batch_size": rng.choice([32, 64, 128, 256])}
            # The best region: lr near its upper bound, adam, width large; dropout barely matters.
            score = (0.97 - 0.02 * (math.log10(1e-1) - math.log10(p["lr"])) - 0.01 * (p["optimizer"] != "adam")
                     - 0.02 * (p["optimizer"] == "sgd") + 0.004 * math.log2(p["width"] / 16) - 0.003 * abs(p["n_layers"] - 2)
                     + 0.001 * p["dropout"] + rng.gauss(0.0, 0.005))
            state = rng.choices(state_names, state_weights)[0]
            if number >= n_trials - 32:
                state = "RUNNING" if rng.random() < 0.5 else state
            w = workers[number % len(workers)] if number < len(workers) else min(clock, key=clock.__getitem__)
            start = clock[w] + rng.uniform(0.2, 2.0)
            duration = rng.uniform(60.0, 240.0) * (0.3 if state == "PRUNED" else 1.0)
            end = None if state == "RUNNING" else start + duration
            clock[w] = end if end is not None else start + duration
            trials.append({"trial_id": tid, "number": number, "study_id": sid, "state": TrialState[state],
                           "datetime_start": dt.datetime.fromtimestamp(start, dt.timezone.utc).replace(tzinfo=None),
                           "datetime_complete": (dt.datetime.fromtimestamp(end, dt.timezone.utc).replace(tzinfo=None)
                                                 if end is not None else None)})
            for k, d in dists.items():
                params.append({"trial_id": tid, "param_name": k, "param_value": d.to_internal_repr(p[k]),
                               "distribution_json": dist_json[k]})
            host, pid, gpu = w
            sattrs.append({"trial_id": tid, "key": _attrs.WORKER, "value_json": json.dumps({
                "host": host, "ip": f"10.0.0.{host[4:]}", "node_id": f"{hash(host) & 0xFFFFFFFF:08x}", "pid": pid,
                "gpu_ids": [str(gpu)], "gpus": 1, "cpus": 2, "cuda_visible_devices": str(gpu),
                "trial_dir": f"/runs/{name}/trial_{number:05d}", "started": start})})
            if state == "COMPLETE":
                values.append({"trial_id": tid, "objective": 0, "value": score, "value_type": FINITE})
                sattrs.append({"trial_id": tid, "key": _attrs.METRICS,
                               "value_json": json.dumps({"val_accuracy": score, "val_loss": 1.0 - score})})
            elif state == "FAIL":
                sattrs.append({"trial_id": tid, "key": _attrs.ERROR, "value_json": json.dumps({
                    "type": "RuntimeError", "message": "CUDA out of memory", "traceback": "Traceback ...\nRuntimeError: CUDA out of memory\n"})})
            if state in ("COMPLETE", "PRUNED") and rng.random() < curve_fraction:
                last = steps if state == "COMPLETE" else max(1, steps // 3)
                curve = []
                for step in range(1, last + 1):
                    v = score - 0.3 / step + rng.gauss(0.0, 0.002)
                    curve.append({"step": step, "val_accuracy": v, "val_loss": 1.0 - v})
                    inter.append({"trial_id": tid, "step": step, "intermediate_value": v, "intermediate_value_type": IFINITE})
                sattrs.append({"trial_id": tid, "key": _attrs.CURVE, "value_json": json.dumps(curve)})
            number += 1
        with storage.engine.begin() as conn:
            conn.execute(sa.insert(m.TrialModel.__table__), trials)
            conn.execute(sa.insert(m.TrialParamModel.__table__), params)
            if values:
                conn.execute(sa.insert(m.TrialValueModel.__table__), values)
            conn.execute(sa.insert(m.TrialSystemAttributeModel.__table__), sattrs)
            if inter:
                conn.execute(sa.insert(m.TrialIntermediateValueModel.__table__), inter)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=count(1), nargs="+", default=[100_000], help="study sizes to measure (default: 100000)")
    parser.add_argument("--curve-fraction", type=share, default=0.1, help="share of trials with a learning curve")
    parser.add_argument("--steps", type=count(1), default=10, help="epochs per learning curve")
    parser.add_argument("--dir", type=Path, default=None, help="keep the databases and reports here (default: a temp dir)")
    parser.add_argument("--repeats", type=count(1), default=1, help="report runs per size (the table shows the fastest)")
    args = parser.parse_args(argv)

    import os
    import subprocess
    import warnings

    warnings.filterwarnings("ignore", message=".*experimental.*")
    from tuner.report import write_report

    tuner_cli = Path(sys.executable).with_name("tuner")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in args.trials:
            db = folder / f"report_scale_{n}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            url = f"sqlite:///{db}"
            fill_s = fill(url, "scale", n, curve_fraction=args.curve_fraction, steps=args.steps)
            out = folder / f"report_scale_{n}.html"
            cli_times, warm_times, steps = [], [], {}
            for _ in range(args.repeats):
                # What a user waits for: `tuner report` in a fresh process (imports included).
                t0 = time.perf_counter()
                subprocess.run([str(tuner_cli), "report", "scale", "-o", str(out), "--storage", url], check=True,
                               stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                cli_times.append(time.perf_counter() - t0)
                # In this process, imports done: the report's own work, per step.
                timings: dict[str, float] = {}
                t0 = time.perf_counter()
                write_report("scale", out, storage=url, timings=timings)
                warm_times.append(time.perf_counter() - t0)
                steps = timings if not steps or sum(timings.values()) < sum(steps.values()) else steps
            size = out.stat().st_size
            rows.append((n, fill_s, min(cli_times), min(warm_times), size, steps))
            print(f"  {n} trials: fill {fill_s:.1f} s, tuner report {min(cli_times):.1f} s (in-process {min(warm_times):.1f} s), "
                  f"{size / 1e6:.1f} MB", flush=True)
    print()
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| trials | fill time | `tuner report` (fresh process) | in-process (imports done) | HTML size |")
    print("|---:|---:|---:|---:|---:|")
    for n, fill_s, cli_s, warm_s, size, _ in rows:
        print(f"| {n:,} | {fill_s:.1f} s | {cli_s:.1f} s | {warm_s:.1f} s | {size / 1e6:.1f} MB |")
    n, *_, steps = rows[-1]
    print(f"\nin-process steps at {n:,} trials: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])))
    big = [r for r in rows if r[0] >= 100_000]
    slow = [r for r in big if r[2] > 20.0]
    if big:
        print(f"\ntarget (`tuner report` under 20 s at 100,000 trials): {'FAIL' if slow else 'PASS'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
