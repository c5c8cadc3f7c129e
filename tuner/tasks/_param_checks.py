"""The shared vocabulary of the built-in tasks' parameter checks (torch-free, like its users).

Training, model and augmentation parameters are checked in separate modules (the driver runs
them at ``tuner validate`` without torch; the trial runs them again); all of them refuse a
value with the same one-line error and judge numbers the same way.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from tuner.exceptions import SpaceError


def param_error(name: str, value: Any, expected: str) -> SpaceError:
    """The error for a refused value of search-space parameter ``name``."""
    return SpaceError("params", name, f"invalid value {value!r}", f"expected {expected}")


def is_int(value: Any) -> bool:
    """An integer (NumPy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (NumPy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
