"""``python -m bench <benchmark> [options]``; ``python -m bench --help`` lists the benchmarks."""

from __future__ import annotations

import sys
from typing import Callable

import importlib

# name -> (module, what it measures); modules are imported only when their benchmark runs.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "overhead": ("bench.overhead", "per-trial overhead: tuner vs plain Optuna vs hand-wired Ray Tune"),
    "tasks_vision": ("bench.tasks_vision", "digits CNN, ResNet pretrain/fine-tune vs scratch, real budgets"),
    "tasks_text": ("bench.tasks_text", "MiniLM fine-tuning on rt-polarity (target: test accuracy >= 0.80)"),
    "tasks_tabular": ("bench.tasks_tabular", "sklearn gradient boosting, regression, MLP accuracy-vs-size Pareto"),
    "report_scale": ("bench.report_scale", "tuner report on studies of 1,000 to 100,000 trials"),
    "dashboard_scale": ("bench.dashboard_scale", "dashboard server time at 100,000 trials, vs optuna-dashboard"),
    "scale": ("bench.scale", "tuner run of 2,000 trivial trials at concurrency 2/8/16, SQLite and PostgreSQL"),
    "resume_scale": ("bench.resume_scale", "tuner run resuming a study of N trials (1,000 to 50,000): time to the first new trial"),
    "soak": ("bench.soak", "long fault forms: kill -9 x10, PostgreSQL restarts, 2,000 trials at concurrency 16"),
    "gpu_packing": ("bench.gpu_packing", "small CNN trials at 1, 1/2, 1/4, 1/8 GPU each: trials/hour, GPU utilisation"),
    "loop_throughput": ("bench.loop_throughput", "built-in training loop vs a bare PyTorch loop (samples/s)"),
    "report_throughput": ("bench.report_throughput", "ctx.report of a trial reporting thousands of steps: cost per report"),
    "efficiency": ("bench.efficiency", "sample efficiency: best value vs epochs spent, vs random, Optuna, Ray Tune"),
    "efficiency_sweep": ("bench.efficiency_sweep", "replay tuner's sampler/pruner settings over many seeds (choosing defaults)"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        out = sys.stdout if asked else sys.stderr
        print("usage: python -m bench <benchmark> [options]\n\nbenchmarks:", file=out)
        for name, (_module, text) in BENCHMARKS.items():
            print(f"  {name:<14} {text}", file=out)
        if argv and not asked:  # the list alone did not say what was wrong with the command
            print(f"\npython -m bench: error: unknown benchmark {argv[0]!r}; give one of those above", file=out)
        return 0 if asked else 2
    module, _text = BENCHMARKS[argv[0]]
    fn: Callable[[list[str]], int] = importlib.import_module(module).main
    return fn(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
