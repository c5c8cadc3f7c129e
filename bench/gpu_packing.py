"""GPU packing: how many small CNN trials one GPU runs at once, and whether it stays busy.

The same study (``task: cnn`` on a synthetic 28x28 image set written here, a few epochs per
trial, fixed seed) runs with ``resources.gpus`` of 1, 0.5, 0.25 and 0.125 per trial, and a
concurrency of as many trials as fit on the machine's GPUs. ``nvidia-smi`` samples the GPU's
utilisation twice a second during each run. The table shows trials per hour, the mean and
median utilisation while trials ran, and the best validation accuracy.

Targets (issue 6): at the finest packing, at least 4x the trials per hour of one trial per
GPU, GPU utilisation at least 80 %, and the same best accuracy (within 1 point).

Needs a machine with an NVIDIA GPU and ``nvidia-smi``; on the lent GPU machine, after
``../shared/tools/gpu-bundle.sh`` here::

    bash .gpu/install.sh && export PYTHONPATH=/tmp/site:$PWD && python3 -m bench gpu_packing

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


def make_images(path: Path, n: int = 24000, seed: int = 0) -> Path:
    """A 10-class 28x28 image set: class templates (random strokes) shifted and noised.

    Synthetic on purpose: no download, yet enough pixels and samples that a trial's GPU work is
    not all kernel-launch overhead (the 8x8 digits are too small to keep any GPU busy).
    """
    rng = np.random.default_rng(seed)
    templates = np.zeros((10, 28, 28), np.float32)
    for c in range(10):
        for _ in range(6):
            r0, c0 = rng.integers(4, 24, 2)
            r1, c1 = rng.integers(4, 24, 2)
            for t in np.linspace(0, 1, 40):
                templates[c, int(r0 + t * (r1 - r0)), int(c0 + t * (c1 - c0))] = 1.0
    y = rng.integers(0, 10, n)
    shifts = rng.integers(-3, 4, (n, 2))
    X = np.stack([np.roll(templates[k], tuple(s), axis=(0, 1)) for k, s in zip(y, shifts)])
    X = np.clip(X + rng.normal(0, 0.35, X.shape).astype(np.float32), 0, 1)
    split = int(n * 5 / 6)
    np.savez_compressed(path, X=(X[:split] * 255).astype(np.uint8), y=y[:split],
                        X_test=(X[split:] * 255).astype(np.uint8), y_test=y[split:])
    return path


class _GpuSampler:
    """``nvidia-smi`` utilisation every ``period`` seconds, in a thread, until stopped."""

    def __init__(self, period: float = 0.5) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            values = [float(v) for v in out.stdout.split() if v.strip().replace(".", "").isdigit()]
            if values:
                self.samples.append(sum(values) / len(values))

    def __enter__(self) -> "_GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def run_packing(gpus: float, *, n_gpus: int, trials: int, epochs: int, data: Path, work: Path,
                cpus_total: int, cpu_check: bool) -> dict[str, Any]:
    per_gpu = int(round(1 / gpus)) if gpus > 0 else 1
    concurrency = max(1, per_gpu * max(n_gpus, 1))
    cpus = max(1, cpus_total // concurrency) if not cpu_check else 1
    tag = str(gpus).replace(".", "_")
    spec = work / f"pack_{tag}.yaml"
    spec.write_text(_SPEC.format(tag=tag, data=data, spaces=REPO_ROOT / "search_spaces", epochs=epochs, trials=trials,
                                 concurrency=concurrency, cpus=cpus, gpus=0 if cpu_check else gpus))
    url = f"sqlite:///{work / f'pack_{tag}.db'}"
    cmd = [sys.executable, "-m", "tuner.cli", "run", str(spec), "--storage", url, "--quiet",
           "--num-cpus", str(max(cpus_total, concurrency * cpus))]
    if not cpu_check:
        cmd += ["--num-gpus", str(n_gpus)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.monotonic()
    with _GpuSampler() as sampler:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.monotonic() - t0
    import optuna

    study = optuna.load_study(study_name=f"pack_{tag}", storage=url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    busy = [s for s in sampler.samples if s > 0] or [0.0]
    return {"gpus_per_trial": gpus, "concurrency": concurrency, "cpus_per_trial": cpus, "trials": len(done),
            "wall_s": wall, "trials_per_hour": 3600 * len(done) / wall if wall else math.nan,
            "gpu_util_mean": statistics.fmean(sampler.samples) if sampler.samples else None,
            "gpu_util_median_busy": statistics.median(busy), "samples": len(sampler.samples),
            "best_val_accuracy": max((t.value for t in done), default=None), "exit": proc.returncode,
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench gpu_packing", description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", default="1,0.5,0.25,0.125")
    p.add_argument("--trials", type=int, default=32, help="trials per packing level (default 32)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=24000, help="synthetic images (default 24,000)")
    p.add_argument("--cpu-check", action="store_true", help="no GPU: run the mechanics with gpus: 0")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = p.parse_args(argv)
    n_gpus = _gpu_count()
    if n_gpus == 0 and not args.cpu_check:
        print("no NVIDIA GPU here (nvidia-smi missing or lists none); run this on a GPU machine, "
              "or pass --cpu-check to test the script", file=sys.stderr)
        return 2
    fractions = [float(f) for f in args.fractions.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tuner-pack-") as tmp:
        work = Path(tmp)
        data = make_images(work / "images.npz", n=args.samples)
        for f in fractions:
            print(f"gpus per trial {f:g} ...", end=" ", flush=True)
            row = run_packing(f, n_gpus=n_gpus, trials=args.trials, epochs=args.epochs, data=data, work=work,
                              cpus_total=os.cpu_count() or 2, cpu_check=args.cpu_check)
            rows.append(row)
            print(f"{row['trials']} trials in {row['wall_s']:.0f}s, {row['trials_per_hour']:.0f}/h, "
                  f"util {row['gpu_util_mean']}, best {row['best_val_accuracy']}", flush=True)
    base = rows[0]
    lines = ["| GPU per trial | trials at once | trials | wall s | trials / hour | x one-per-GPU | GPU util mean % | "
             "best val accuracy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        util = "-" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']:.0f}"
        lines.append(f"| {r['gpus_per_trial']:g} | {r['concurrency']} | {r['trials']} | {r['wall_s']:.0f} | "
                     f"{r['trials_per_hour']:.0f} | {r['trials_per_hour'] / base['trials_per_hour']:.2f} | {util} | "
                     f"{r['best_val_accuracy']:.4f} |")
    last = rows[-1]
    checks = [
        f"- trials/hour at {last['gpus_per_trial']:g} GPU >= 4x one-per-GPU: "
        f"{last['trials_per_hour'] / base['trials_per_hour']:.2f}x "
        f"{'PASS' if last['trials_per_hour'] >= 4 * base['trials_per_hour'] else 'FAIL'}",
        f"- GPU utilisation >= 80 %: {last['gpu_util_mean']} "
        f"{'PASS' if (last['gpu_util_mean'] or 0) >= 80 else 'FAIL'}",
        f"- same best accuracy (within 1 point): {base['best_val_accuracy']:.4f} vs {last['best_val_accuracy']:.4f} "
        f"{'PASS' if abs(base['best_val_accuracy'] - last['best_val_accuracy']) <= 0.01 else 'FAIL'}",
    ]
    gpu_name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() if n_gpus else "none (--cpu-check)"
    text = (f"# GPU packing, {dt.datetime.now():%Y-%m-%d %H:%M}\n\nGPU: {gpu_name}; CPUs: {os.cpu_count()}; "
            f"{args.trials} trials x {args.epochs} epochs on {args.samples} synthetic 28x28 images\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(checks) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"gpu_packing-{stamp}.md").write_text(text)
    (args.out / f"gpu_packing-{stamp}.json").write_text(json.dumps(rows, indent=2, default=str))
    print("\n" + text)
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
