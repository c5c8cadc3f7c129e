"""The training parameters every torch task shares, and their checks, without torch.

``tuner validate`` and the driver check each value a search space can produce against the
task (``Task.check_params``) before any trial runs, and neither imports torch (1.3 s and some
300 MB in the driver); the training loop (``tuner.tasks._training``) builds its
:class:`TrainConfig` from a trial's parameters with the same checks. What each parameter does
is in ``_training``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np

from tuner.tasks._param_checks import is_int as _is_int
from tuner.tasks._param_checks import is_number as _is_number
from tuner.tasks._param_checks import param_error as _param_error

__all__ = ["OPTIMIZERS", "SCHEDULES", "PRECISIONS", "TrainConfig", "TRAINING_PARAMS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """The training parameters of one trial, validated (``tuner.tasks._training``'s docstring says what each does)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    l1: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup_frac: float = 0.0
    step_gamma: float = 0.1
    step_epochs: int | None = None
    batch_size: int = 64
    epochs: int = 20
    early_stopping_patience: int | None = 5
    precision: str = "fp32"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "TrainConfig":
        """Pick the training parameters out of a trial's ``params`` (others are ignored) and check them."""
        names = {f.name for f in fields(cls)}
        # None means "off"/"automatic" where the default is None, and "use the default" elsewhere.
        none_allowed = {"grad_clip", "step_epochs", "early_stopping_patience"}
        config = cls(**{k: v for k, v in params.items() if k in names and (v is not None or k in none_allowed)})
        config._check()
        return config

    def _check(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise _param_error(name, getattr(self, name), f"one of {', '.join(choices)}")
        rules: list[tuple[str, Callable[[Any], bool], str]] = [
            ("lr", lambda v: v >= 0, "a number >= 0"),
            ("momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("weight_decay", lambda v: v >= 0, "a number >= 0"),
            ("l1", lambda v: v >= 0, "a number >= 0"),
            ("label_smoothing", lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("grad_clip", lambda v: v >= 0, "a number >= 0 (0 or null: off)"),
            ("warmup_frac", lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("step_gamma", lambda v: 0 < v <= 1, "a number in (0, 1]"),
        ]
        for name, ok, expected in rules:
            value = getattr(self, name)
            if value is None and name == "grad_clip":
                continue
            if not _is_number(value) or not ok(value):
                raise _param_error(name, value, expected)
        for name in ("batch_size", "epochs", "step_epochs", "early_stopping_patience"):
            value = getattr(self, name)
            allow_zero = name == "early_stopping_patience"
            if value is None and name in ("step_epochs", "early_stopping_patience"):
                continue
            if not _is_int(value) or value < (0 if allow_zero else 1):
                raise _param_error(name, value, f"an integer >= {0 if allow_zero else 1}")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise _param_error("nesterov", self.nesterov, "true or false")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise _param_error("nesterov", self.nesterov, "false when momentum is 0 (Nesterov needs momentum)")


# The search-space parameters the shared training loop reads (every torch task's).
TRAINING_PARAMS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
