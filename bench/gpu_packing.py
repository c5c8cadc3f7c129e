"""GPU packing: how many small CNN trials one GPU runs at once, and whether it stays busy.

The same study (``task: cnn`` on a synthetic 28x28 image set written here, MNIST's size, a few
epochs per trial, random search with a fixed seed, so every level trains the same
configurations) runs with ``resources.gpus`` of 1, 0.5, 0.25 and 0.125 per trial, and a
concurrency of as many trials as fit on the machine's GPUs. ``nvidia-smi`` samples the GPU's
utilisation and memory twice a second. The table gives trials per hour three ways: over the
whole run (the driver's start included), over the trials' span (first start to last end), and
in steady state (after the first trial ended), because each worker process pays a one-off
start (Python, torch, a CUDA context) on its first trial, which a short study at 8 trials per
GPU pays 8 times in parallel. A second table splits a trial's time into phases (worker start,
sampling, setup, training, wrap-up: each trial's stored ``tuner:timing``), a worker's first trial
apart from its later ones, to show where that start goes, and a third, from fresh processes
started alone and packed (``bench/_cold_start.py``), splits the start into its steps (imports,
the CUDA context, the first optimizer, the first training steps). ``--mps`` runs under NVIDIA's
Multi-Process Service, without which packed trials' kernels do not overlap.

Targets (issue 6): at the finest packing, at least 4x the trials per hour of one trial per
GPU, GPU utilisation at least 80 %, and the same best accuracy (within 1 point).

Needs a machine with an NVIDIA GPU and ``nvidia-smi``; on the lent GPU machine, after
``PIP_CONSTRAINT=$PWD/constraints.txt ../shared/tools/gpu-bundle.sh`` here (plus pydantic,
which Ray Tune imports; bench/README.md gives the versions)::

    bash .gpu/install.sh && export PYTHONPATH=/tmp/site:$PWD && python3 -m bench gpu_packing --mps

``--cpu-check`` runs the same mechanics with ``gpus: 0`` (no utilisation) to test the script
on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._args import count, gpu_shares
from tuner.engine._prestart import preload_modules

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

_SPEC = """\
name: pack_{tag}
task: cnn
task_args: {{dataset: {data}}}
search_space:
  include: [{spaces}/optimizers.yaml]
  params:
    n_conv: {{int: [2, 3]}}
    channels: {{int: [32, 96], log: true, per: n_conv}}
    convs_per_block: 1
    kernel: 3
    pool: max
    batch_norm: true
    activation: relu
    head_width: 128
    augment: none
    batch_size: {{choice: [128, 256]}}
    epochs: {epochs}
metric: val_accuracy
direction: maximize
n_trials: {trials}
concurrency: {concurrency}
resources: {{cpus: {cpus}, gpus: {gpus}}}
sampler: random
pruner: none
seed: 0
keep_checkpoints: 1
"""


def make_images(path: Path, n: int = 60000, seed: int = 0) -> Path:
    """A 10-class 28x28 image set: class templates (random strokes) shifted and noised.

    Synthetic on purpose: no download, yet enough pixels and samples that a trial's GPU work is
    not all kernel-launch overhead (the 8x8 digits are too small to keep any GPU busy). The
    classes share most of their strokes and the noise is heavy, so that accuracy stays below 1
    and differs between configurations: "the same best accuracy" then means something.
    """
    rng = np.random.default_rng(seed)

    def strokes(img: np.ndarray, count: int) -> None:
        for _ in range(count):
            r0, c0 = rng.integers(4, 24, 2)
            r1, c1 = rng.integers(4, 24, 2)
            for t in np.linspace(0, 1, 40):
                img[int(r0 + t * (r1 - r0)), int(c0 + t * (c1 - c0))] = 1.0

    common = np.zeros((28, 28), np.float32)
    strokes(common, 4)
    templates = np.repeat(common[None], 10, axis=0)
    for c in range(10):
        strokes(templates[c], 2)
    y = rng.integers(0, 10, n)
    shifts = rng.integers(-4, 5, (n, 2))
    X = np.stack([np.roll(templates[k], tuple(s), axis=(0, 1)) for k, s in zip(y, shifts, strict=True)])
    X = np.clip(X + rng.normal(0, 0.6, X.shape).astype(np.float32), 0, 1)
    split = int(n * 5 / 6)
    np.savez_compressed(path, X=(X[:split] * 255).astype(np.uint8), y=y[:split],
                        X_test=(X[split:] * 255).astype(np.uint8), y_test=y[split:])
    return path


class _GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``period`` seconds, in a thread, until stopped.

    Each sample keeps its wall-clock time so that the report can average over the span in which
    trials ran: the driver's own start (Ray, the storage) leaves the GPU idle and is the same
    fixed cost at every packing level.
    """

    def __init__(self, period: float = 0.5) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (time, utilisation %, memory used MiB)
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._enabled = shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True)
            rows = [line.split(",") for line in out.stdout.strip().splitlines() if "," in line]
            try:
                util = sum(float(r[0]) for r in rows) / len(rows)
                mem = sum(float(r[1]) for r in rows)
            except (ValueError, ZeroDivisionError):
                continue
            self.samples.append((time.time(), util, mem))

    def __enter__(self) -> "_GpuSampler":
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join(timeout=5)


class _Mps:
    """NVIDIA's Multi-Process Service for the duration of a run (``--mps``).

    Without it, trials packed on one GPU are separate CUDA contexts that the GPU time-slices:
    small kernels from different trials never overlap. MPS funnels them into one context so
    they do; it needs the control daemon, which this starts and stops.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> "_Mps":
        if self.enabled:
            subprocess.run(["nvidia-cuda-mps-control", "-d"], check=True)
            time.sleep(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, check=False)


def _gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _concurrency(gpus: float, n_gpus: int) -> int:
    """Trials at once at ``gpus`` per trial: as many as fit on the machine's GPUs (one GPU's worth on a CPU check)."""
    # Rounded down: round() gave 2 trials at 0.6 GPU (1.2 GPUs asked of one) and 3 at 0.35, so
    # Ray held the extra one back and the row's "trials at once" was not what ran. The tolerance
    # keeps shares written in decimals whole (1/0.125 = 8, 1/0.1 = 10) against float error.
    per_gpu = math.floor(1 / gpus + 1e-9) if gpus > 0 else 1
    return max(1, per_gpu * max(n_gpus, 1))


def run_packing(gpus: float, *, n_gpus: int, trials: int, epochs: int, data: Path, work: Path,
                cpus_total: int, cpu_check: bool) -> dict[str, Any]:
    concurrency = _concurrency(gpus, n_gpus)
    cpus = max(1, cpus_total // concurrency) if not cpu_check else 1
    ray_cpus = max(cpus_total, concurrency * cpus)
    tag = str(gpus).replace(".", "_")
    spec = work / f"pack_{tag}.yaml"
    spec.write_text(_SPEC.format(tag=tag, data=data, spaces=REPO_ROOT / "search_spaces", epochs=epochs, trials=trials,
                                 concurrency=concurrency, cpus=cpus, gpus=0 if cpu_check else gpus))
    url = f"sqlite:///{work / f'pack_{tag}.db'}"
    cmd = [sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--quiet",
           "--num-cpus", str(ray_cpus)]
    if not cpu_check:
        cmd += ["--num-gpus", str(n_gpus)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.monotonic()
    with _GpuSampler() as sampler:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.monotonic() - t0
    if proc.returncode:
        print(f"\n`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
              file=sys.stderr)
    import optuna

    study = optuna.load_study(study_name=f"pack_{tag}", storage=url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    # The span from the first trial's start to the last one's end: the rate without the driver's
    # fixed start-up, which would otherwise favour the slowest packing.
    starts = [t.datetime_start.timestamp() for t in done if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in done if t.datetime_complete]
    span = (max(ends) - min(starts)) if starts and ends else math.nan
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done
                 if t.datetime_start and t.datetime_complete]
    train = [t.system_attrs.get("tuner:metrics", {}).get("train_time_s") for t in done]
    train = [v for v in train if isinstance(v, (int, float))]
    epoch_times = [[row.get("epoch_time_s") for row in t.system_attrs.get("tuner:curve", [])] for t in done]
    first_epoch = [e[0] for e in epoch_times if e and isinstance(e[0], (int, float))]
    later_epochs = [v for e in epoch_times for v in e[1:] if isinstance(v, (int, float))]
    # Steady state: completions after the first one, over the time they took. The first wave of
    # trials also starts the worker processes (Python, torch, a CUDA context each); later ones reuse them.
    ends_sorted = sorted(ends)
    steady = (3600 * (len(ends_sorted) - 1) / (ends_sorted[-1] - ends_sorted[0])
              if len(ends_sorted) > 2 and ends_sorted[-1] > ends_sorted[0] else math.nan)
    from tuner.engine import _attrs
    from tuner.report._timing import trial_phases

    timeline = [{"number": t.number, "start": t.datetime_start.timestamp(), "end": t.datetime_complete.timestamp(),
                 "worker_started": (t.system_attrs.get(_attrs.WORKER) or {}).get("started"),
                 "train_s": (t.system_attrs.get(_attrs.METRICS) or {}).get("train_time_s"),
                 "first_in_process": (t.system_attrs.get(_attrs.TIMING) or {}).get("process_trial") == 1,
                 # What the worker process had imported before this, its first trial, arrived (tuner.engine._preload)
                 "preloaded": (t.system_attrs.get(_attrs.TIMING) or {}).get("preloaded"),
                 "phases": trial_phases(t.system_attrs.get(_attrs.TIMING), t.datetime_start)}
                for t in done if t.datetime_start and t.datetime_complete]
    utils = [u for _, u, _ in sampler.samples]
    return {"gpus_per_trial": gpus, "concurrency": concurrency, "cpus_per_trial": cpus, "trials": len(done),
            # Whether Ray's workers were to import anything before the trials arrived (torch & co.
            # for a GPU level; tuner.engine._prestart, where TUNER_PRELOAD=0 in this process's
            # environment turns it off), and, read back from the trials, how many processes' first
            # trials found torch imported.
            "preload": bool(preload_modules(0 if cpu_check else gpus, concurrency, ray_cpus)),
            "first_trials": sum(1 for e in timeline if e["first_in_process"]),
            "first_trials_preloaded": sum(1 for e in timeline if e["first_in_process"] and "torch" in (e["preloaded"] or [])),
            "wall_s": wall, "trials_per_hour": 3600 * len(done) / wall if wall else math.nan,
            "span_s": span, "trials_per_hour_span": 3600 * len(done) / span if span else math.nan,
            "trials_per_hour_steady": steady,
            "gpu_util_mean": statistics.fmean(utils) if utils else None,
            "gpu_util_in_trials": mean_util_between(sampler.samples, min(starts), max(ends)) if starts and ends else None,
            # The steady rate's window (first completion to last): every worker is up, so this is
            # the utilisation a longer study would see, without the one-off worker starts.
            "gpu_util_steady": (mean_util_between(sampler.samples, ends_sorted[0], ends_sorted[-1])
                                if len(ends_sorted) > 2 else None),
            "gpu_mem_peak_mib": max((m for _, _, m in sampler.samples), default=None),
            "samples": len(sampler.samples),
            # Where a trial's time goes: training (the GPU's share) against the rest (start, data,
            # test, checkpoint, storage); the first epoch carries the warm-up.
            "trial_s_median": _median(durations), "train_s_median": _median(train),
            "first_epoch_s_median": _median(first_epoch), "later_epoch_s_median": _median(later_epochs),
            "best_val_accuracy": max((t.value for t in done), default=None), "exit": proc.returncode,
            "phases_first": _phase_medians([e["phases"] for e in timeline if e["first_in_process"]]),
            "phases_later": _phase_medians([e["phases"] for e in timeline if not e["first_in_process"]]),
            "timeline": timeline,
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def mean_util_between(samples: list[tuple[float, float, float]], start: float, end: float) -> float | None:
    """The mean utilisation of the ``(time, utilisation, memory)`` samples taken from ``start`` to ``end``."""
    inside = [util for at, util, _ in samples if start <= at <= end]
    return statistics.fmean(inside) if inside else None


def _phase_medians(trials: list[dict[str, float]]) -> dict[str, float]:
    """The median seconds of each phase over ``trials`` (those that recorded it)."""
    names = dict.fromkeys(name for phases in trials for name in phases)
    return {name: statistics.median([p[name] for p in trials if name in p]) for name in names}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench gpu_packing", description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=gpu_shares, default=[1.0, 0.5, 0.25, 0.125],
                   help="GPU per trial, comma-separated (default 1,0.5,0.25,0.125)")
    p.add_argument("--trials", type=count(1), default=32, help="trials per packing level (default 32)")
    p.add_argument("--epochs", type=count(1), default=3)
    p.add_argument("--samples", type=count(100), default=60000, help="synthetic images (default 60,000, MNIST's size)")
    p.add_argument("--cpu-check", action="store_true", help="no GPU: run the mechanics with gpus: 0")
    p.add_argument("--mps", action="store_true", help="run under NVIDIA's Multi-Process Service (started here)")
    p.add_argument("--no-cold-start", action="store_true",
                   help="skip the cold-start probe (fresh processes timing each start-up step, alone and packed)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    n_gpus = _gpu_count()
    if n_gpus == 0 and not args.cpu_check:
        print("no NVIDIA GPU here (nvidia-smi missing or lists none); run this on a GPU machine, "
              "or pass --cpu-check to test the script", file=sys.stderr)
        return 2
    if args.mps and not shutil.which("nvidia-cuda-mps-control"):
        print("--mps: nvidia-cuda-mps-control is not on the PATH; run without --mps or install NVIDIA's MPS",
              file=sys.stderr)
        return 2
    fractions = args.fractions
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = args.out / f"gpu_packing-{stamp}.json"
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuner-pack-") as tmp, _Mps(args.mps):
        work = Path(tmp)
        data = make_images(work / "images.npz", n=args.samples)
        cold = None
        if not args.no_cold_start:
            cold = _cold_start_probe(fractions, n_gpus=n_gpus, cuda=not args.cpu_check)
            (args.out / f"gpu_packing-{stamp}-cold_start.json").write_text(json.dumps(cold, indent=2))
        for f in fractions:
            print(f"gpus per trial {f:g} ...", end=" ", flush=True)
            row = run_packing(f, n_gpus=n_gpus, trials=args.trials, epochs=args.epochs, data=data, work=work,
                              cpus_total=os.cpu_count() or 2, cpu_check=args.cpu_check)
            rows.append(row)
            # Written after every level, so a run cut short still leaves what it measured.
            raw.write_text(json.dumps(rows, indent=2, default=str))
            print(f"{row['trials']} trials in {row['wall_s']:.0f}s (trials' span {row['span_s']:.0f}s), "
                  f"{row['trials_per_hour']:.0f}/h, util {_pct(row['gpu_util_in_trials'])} %, "
                  f"best {row['best_val_accuracy']}", flush=True)
            if row["exit"]:
                print(row["stderr_tail"], file=sys.stderr)
    text = _report(rows, args, n_gpus, cold)
    (args.out / f"gpu_packing-{stamp}.md").write_text(text)
    print("\n" + text)
    return 0 if all(r["exit"] == 0 for r in rows) else 1


def _cold_start_probe(fractions: list[float], *, n_gpus: int, cuda: bool) -> dict[str, Any]:
    """Fresh processes timing each start-up step: one alone, then as many at once as the finest level runs."""
    from bench import _cold_start

    packed = _concurrency(min(fractions), n_gpus)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    visible = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    gpus = visible or [str(i) for i in range(max(n_gpus, 1))]  # spread over the GPUs, as the finest level is
    print(f"cold start: 1 process, then {packed} at once ...", end=" ", flush=True)
    alone = _cold_start.probe(1, cuda=cuda, gpus=gpus, env=env)
    together = _cold_start.probe(packed, cuda=cuda, gpus=gpus, env=env)
    print("done", flush=True)
    return {"packed": packed, "alone": alone, "together": together}


def _report(rows: list[dict[str, Any]], args: argparse.Namespace, n_gpus: int,
            cold: dict[str, Any] | None = None) -> str:
    base, last = rows[0], rows[-1]
    lines = ["| GPU per trial | trials at once | trials | wall s | trials / hour | x one-per-GPU | "
             "trials' span s | trials / hour in span | x | steady trials / hour | x | GPU util % in span (whole run) | "
             "GPU util % steady | GPU memory peak MiB | best val accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = "-" if r["gpu_mem_peak_mib"] is None else f"{r['gpu_mem_peak_mib']:.0f}"
        lines.append(f"| {r['gpus_per_trial']:g} | {r['concurrency']} | {r['trials']} | {r['wall_s']:.0f} | "
                     f"{r['trials_per_hour']:.0f} | {r['trials_per_hour'] / base['trials_per_hour']:.2f} | "
                     f"{r['span_s']:.0f} | {r['trials_per_hour_span']:.0f} | "
                     f"{r['trials_per_hour_span'] / base['trials_per_hour_span']:.2f} | "
                     f"{r['trials_per_hour_steady']:.0f} | {r['trials_per_hour_steady'] / base['trials_per_hour_steady']:.2f} | "
                     f"{_pct(r['gpu_util_in_trials'])} ({_pct(r['gpu_util_mean'])}) | {_pct(r.get('gpu_util_steady'))} | {mem} | "
                     f"{r['best_val_accuracy']:.4f} |")
    speedup = last["trials_per_hour"] / base["trials_per_hour"]
    util = last["gpu_util_in_trials"] or 0.0
    acc_gap = abs(base["best_val_accuracy"] - last["best_val_accuracy"])
    steady = last["trials_per_hour_steady"] / base["trials_per_hour_steady"]
    checks = [
        f"- trials/hour at {last['gpus_per_trial']:g} GPU >= 4x one-per-GPU (whole run, start-up included): "
        f"{speedup:.2f}x {'PASS' if speedup >= 4 else 'FAIL'}",
        f"- the same in steady state (after the first trial ended; every worker started): "
        f"{steady:.2f}x {'PASS' if steady >= 4 else 'FAIL'}",
        f"- GPU utilisation >= 80 % while trials ran: {_pct(last['gpu_util_in_trials'])} % "
        f"{'PASS' if util >= 80 else 'FAIL'}",
        f"- the same in steady state: {_pct(last.get('gpu_util_steady'))} % "
        f"{'PASS' if (last.get('gpu_util_steady') or 0.0) >= 80 else 'FAIL'}",
        f"- same best accuracy (within 1 point): {base['best_val_accuracy']:.4f} vs "
        f"{last['best_val_accuracy']:.4f} {'PASS' if acc_gap <= 0.01 else 'FAIL'}",
    ]
    from bench import _cold_start
    from tuner.report._timing import PHASES

    phase_lines = ["| GPU per trial | trials | " + " | ".join(PHASES) + " |", "|---|---|" + "---:|" * len(PHASES)]
    for r in rows:
        for label, key in (("a process's first", "phases_first"), ("later", "phases_later")):
            medians = r.get(key) or {}
            if medians and key == "phases_first" and r.get("first_trials"):
                label += f" ({r.get('first_trials_preloaded', 0)}/{r['first_trials']} with torch preloaded)"
            if medians:
                phase_lines.append(f"| {r['gpus_per_trial']:g} | {label} | "
                                   + " | ".join(f"{medians[p]:.2f}" if p in medians else "-" for p in PHASES) + " |")
    gpu_name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() if n_gpus else "none (--cpu-check)"
    return (f"# GPU packing, {dt.datetime.now():%Y-%m-%d %H:%M}\n\nGPU: {gpu_name}; CPUs: {os.cpu_count()}; "
            f"{args.trials} trials x {args.epochs} epochs on {args.samples} synthetic 28x28 images"
            f"{'; under MPS' if args.mps else ''}\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(checks) + "\n\n"
            "Where a trial's time goes, median seconds per phase (`tuner.report._timing.PHASES` says what each "
            "covers): a worker process's first trial, which starts the process, against its later ones\n\n"
            + "\n".join(phase_lines) + "\n"
            + ("" if cold is None else
               "\nA fresh process's start-up, step by step (`bench/_cold_start.py`: the steps a worker takes before "
               "its first trial trains, alone and as many at once as the finest level packs)\n\n"
               + _cold_start.table(cold["alone"], cold["together"], cold["packed"]) + "\n"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
