"""``argparse`` types for the benchmarks' numbers.

A seed count of 0 or a negative budget used to run and write a report that measured nothing, a
packing fraction of 2 hung waiting for a GPU the trial could never get, and a fraction that is
not a number ended in a traceback; with these types each is a one-line usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["count", "counts", "gpu_shares", "positive", "share"]


def count(minimum: int = 1) -> Callable[[str], int]:
    """An integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}; give {minimum} or more")
        return value

    parse.__name__ = "count"  # argparse names the type in its messages
    return parse


def counts(text: str) -> list[int]:
    """Comma-separated integers of at least 1 (concurrency levels: ``2,8,16``)."""
    parse = count(1)
    values = []
    for part in text.split(","):
        try:
            values.append(parse(part.strip()))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (comma-separated whole numbers: 2,8,16)") from None
    return values


def positive(text: str) -> float:
    """A number above zero (a budget scale, a CPU count)."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def share(text: str) -> float:
    """A number from 0 to 1 (a share of trials)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be from 0 to 1")
    return value


def gpu_shares(text: str) -> list[float]:
    """Comma-separated GPU shares per trial, each above 0 and at most 1 (``1,0.5,0.25``)."""
    values = []
    for part in text.split(","):
        value = _number(part.strip())
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"{part.strip()} is not a GPU share: give numbers above 0 and at most 1, "
                                             f"comma-separated (1,0.5,0.25,0.125)")
        values.append(value)
    return values


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):  # NaN hangs no loop but compares false everywhere; inf overflows int()
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value
