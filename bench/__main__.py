"""``python -m bench <benchmark> [options]``; ``python -m bench --help`` lists the benchmarks."""

from __future__ import annotations

import sys
from typing import Callable

from bench import overhead

BENCHMARKS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "overhead": (overhead.main, "per-trial overhead: tuner vs plain Optuna vs hand-wired Ray Tune"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHMARKS:
        print("usage: python -m bench <benchmark> [options]\n\nbenchmarks:")
        for name, (_fn, text) in BENCHMARKS.items():
            print(f"  {name:<10} {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    fn, _text = BENCHMARKS[argv[0]]
    return fn(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
