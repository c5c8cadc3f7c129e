"""What a fresh worker process pays before its first trial trains, step by step, alone and N at once.

``bench gpu_packing`` runs this before its packing levels. The per-trial timing (``tuner:timing``)
says how long a worker's first trial spends starting, opening the study and setting up; this
says which step inside those phases costs it (Python and Ray Tune's imports, Optuna and
SQLAlchemy, torch, the CUDA context, the first optimizer, which imports ``torch._dynamo``, and the
first training step, cuDNN's warm-up on a GPU), and whether N processes doing
it at once (a GPU packed with N trials) slow each other down, which a single worker's timing
cannot tell. Each probe is a fresh interpreter, as a Ray worker is; its steps run in the
worker's order.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

#: The steps, in the order a worker takes them (the first is measured from the parent's launch).
STEPS = ("interpreter", "import ray.tune", "import optuna, sqlalchemy", "import torch", "CUDA context",
         "model and optimizer", "first training step", "second training step")

_PROBE = r"""
import json, sys, time
cuda = sys.argv[1] == "1"
out = {"started": time.time()}
def step(name, t0):
    out[name] = time.perf_counter() - t0
    return time.perf_counter()
t = time.perf_counter()
import ray.tune
t = step("import ray.tune", t)
import optuna, sqlalchemy
t = step("import optuna, sqlalchemy", t)
import torch
t = step("import torch", t)
device = "cpu"
if cuda:
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    device = "cuda"
    t = step("CUDA context", t)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                          torch.nn.MaxPool2d(2), torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64),
                          torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64 * 49, 10)).to(device)
opt = torch.optim.Adam(net.parameters())  # the first optimizer imports torch._dynamo (about 1 s on a CPU)
if cuda:
    torch.cuda.synchronize()
t = step("model and optimizer", t)
x, y = torch.rand(128, 1, 28, 28, device=device), torch.randint(0, 10, (128,), device=device)
for name in ("first training step", "second training step"):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
    t = step(name, t)
print(json.dumps(out))
"""


def probe(n: int, *, cuda: bool, gpus: Sequence[str] = ("0",),
          env: dict[str, str] | None = None) -> list[dict[str, float]]:
    """Start ``n`` fresh interpreters at once; each one's seconds per step (see :data:`STEPS`).

    With ``cuda``, process ``i`` sees only GPU ``gpus[i % len(gpus)]`` (``CUDA_VISIBLE_DEVICES``),
    as Ray places packed trials: ``n`` processes on ``len(gpus)`` GPUs are ``n / len(gpus)`` per GPU.
    """
    base = env or {**os.environ}
    launched = time.time()
    procs = []
    try:
        for i in range(n):
            child = {**base, "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if cuda else base
            procs.append(subprocess.Popen([sys.executable, "-c", _PROBE, "1" if cuda else "0"], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=child))
        results = []
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=600)
            if proc.returncode:
                raise RuntimeError(f"cold-start probe exited {proc.returncode}: {stderr.strip()[-500:]}")
            out = json.loads(stdout.strip().splitlines()[-1])
            out["interpreter"] = out.pop("started") - launched
            results.append(out)
        return results
    finally:
        for proc in procs:  # after a failure or a timeout: none is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def table(alone: list[dict[str, float]], packed: list[dict[str, float]], n: int) -> str:
    """Markdown: each step's seconds for one process alone, and the median and slowest of ``n`` at once."""
    lines = [f"| step | alone s | {n} at once: median s | {n} at once: slowest s |", "|---|---:|---:|---:|"]
    for name in [*STEPS, "total"]:
        one, many = _seconds(alone, name), _seconds(packed, name)
        if not one and not many:
            continue
        lines.append(f"| {name} | {_s(statistics.median(one) if one else None)} | "
                     f"{_s(statistics.median(many) if many else None)} | {_s(max(many) if many else None)} |")
    return "\n".join(lines)


def _seconds(runs: list[dict[str, float]], step: str) -> list[float]:
    """Each run's seconds in ``step`` (runs that took it); ``"total"``: each run's sum over the steps."""
    if step == "total":
        return [sum(r.get(s, 0.0) for s in STEPS) for r in runs]
    return [r[step] for r in runs if step in r]


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"
