"""Built-in training loop vs a bare hand-written PyTorch loop: samples per second.

Both train the same model (built by tuner's own builders, same seed) on the same digits
split with Adam, the same batch size and epochs, and both evaluate on the validation part
after every epoch, as any real loop does. The built-in loop additionally computes its
metrics, keeps the best weights and writes the checkpoint: that is the overhead measured.
It runs twice: as a bare context runs it, and as an engine trial does, which also writes the
resume points a rerun of an interrupted trial goes on from (``tuner.tasks._resume``, at most
2% of the training time). Target: the built-in loop within 10% of the bare one, both ways.
On a 2-CPU VM whole runs vary by 10-30% from one to the next, so the resume points' own cost
is also given as measured: how many a run wrote and their write time as a share of the run.

    python -m bench loop_throughput [--epochs 30] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench._args import count
from tuner.data import load_digits
from tuner.tasks._models import build_mlp
from tuner.tasks._vision_models import build_cnn


class _Ctx:
    """The least a TrialContext must offer, without storage (the engine is not measured here)."""

    def __init__(self, trial_dir: Path, *, resumable: bool = False) -> None:
        self.trial_dir, self.device, self.seed, self.num_threads = trial_dir, "cpu", 0, 1
        self.metric, self.direction = "val_accuracy", "maximize"
        self.resumable = resumable  # an engine trial's: resume points between epochs

    def report(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def set_attr(self, key: str, value: Any) -> None:
        pass


def _bare_loop(model: nn.Module, data: Any, epochs: int, batch_size: int, lr: float) -> None:
    """What an engineer writes by hand: shuffle, forward, loss, backward, step; eval each epoch."""
    x, y = torch.as_tensor(data.train.X), torch.as_tensor(data.train.y)
    xv, yv = torch.as_tensor(data.val.X), torch.as_tensor(data.val.y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            (model(xv).argmax(1) == yv).float().mean().item()


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(models: dict[str, tuple[Any, Callable[[], nn.Module]]], params: dict[str, Any], args: Any, lr: float,
             writes: list[float], saves: list[float]) -> list[tuple[Any, ...]]:
    """Samples/s of the bare loop, the built-in one, and the built-in one with resume points, per model."""
    from tuner.tasks._training import train_classifier

    rows = []
    for name, (data, build) in models.items():
        n = len(data.train.y) * args.epochs
        bare, builtin, resumable = [], [], []
        writes.clear()
        saves.clear()
        for r in range(args.repeats):
            torch.manual_seed(r)
            variants = [(bare, None), (builtin, False), (resumable, True)]
            for rates, points in variants[r % 3:] + variants[:r % 3]:  # each goes first as often: no order bias
                if points is None:
                    rates.append(n / _time(lambda: _bare_loop(build(), data, args.epochs, args.batch_size, lr)))
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    ctx = _Ctx(Path(tmp), resumable=points)
                    rates.append(n / _time(lambda: train_classifier(build, data, params, ctx)))
        b, t, e = statistics.median(bare), statistics.median(builtin), statistics.median(resumable)
        run_s = sum(n / rate for rate in resumable)
        rows.append((name, b, t, t / b, e, e / b, len(writes) / args.repeats,
                     1000 * sum(saves) / max(1, len(writes)), sum(saves) / run_s))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench loop_throughput", description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=count(1), default=30)
    ap.add_argument("--repeats", type=count(1), default=3)
    ap.add_argument("--batch-size", type=count(1), default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    lr = 1e-3
    flat = load_digits(split=[0.7, 0.15, 0.15], split_seed=0)
    models: dict[str, tuple[Any, Callable[[], nn.Module]]] = {
        "mlp [256, 128]": (flat, lambda: build_mlp(flat.n_features, flat.n_classes,
                                                   {"n_layers": 2, "width": [256, 128], "activation": "relu"})),
        "cnn 2x[32, 64]": (flat, lambda: build_cnn(flat.input_shape, flat.n_classes,
                                                   {"n_conv": 2, "channels": [32, 64], "kernel": 3, "pool": "max",
                                                    "head_width": 64})),
    }
    params = {"optimizer": "adam", "lr": lr, "batch_size": args.batch_size, "epochs": args.epochs,
              "early_stopping_patience": 0, "schedule": "constant"}
    from tuner.tasks import _resume

    # Timed around tuner's own calls: each save (the state gathered and written, or skipped as not
    # yet paid for), and each write, to count the points.
    writes: list[float] = []
    saves: list[float] = []
    write, save = _resume.save_torch_file, _resume.ResumePoint.save

    def counted_write(path: Path, state: dict[str, Any]) -> None:
        writes.append(0.0)
        write(path, state)

    def timed_save(self: Any, state: Any) -> None:
        start = time.perf_counter()
        save(self, state)
        if self._folder is not None:  # the variant with resume points (the other's calls return at once)
            saves.append(time.perf_counter() - start)

    _resume.save_torch_file = counted_write  # type: ignore[assignment]
    _resume.ResumePoint.save = timed_save  # type: ignore[method-assign]
    try:
        rows = _measure(models, params, args, lr, writes, saves)
    finally:
        _resume.save_torch_file, _resume.ResumePoint.save = write, save  # type: ignore[method-assign]
    print(f"loop throughput, digits train split ({len(flat.train.y)} samples), batch {args.batch_size}, "
          f"{args.epochs} epochs, 1 thread, median of {args.repeats}\n")
    print("| model | bare loop (samples/s) | tuner loop (samples/s) | tuner / bare | with resume points "
          "(samples/s) | with resume points / bare | points per run | ms per point | share of the run |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, b, t, ratio, e, e_ratio, points, ms, share in rows:
        print(f"| {name} | {b:,.0f} | {t:,.0f} | {ratio:.2f} | {e:,.0f} | {e_ratio:.2f} | {points:.1f} | {ms:.1f} | "
              f"{share:.1%} |")
    worst = min(min(r[3], r[5]) for r in rows)
    print(f"\ntarget tuner/bare >= 0.90: {'PASS' if worst >= 0.9 else 'FAIL'} (worst {worst:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
