"""The trivial objective every overhead run optimises, in the shape each library calls it.

The minimum is 0 at x=2, y=-1; evaluating it costs nothing, so a run's time is all overhead.
"""

from __future__ import annotations

from typing import Any

LOW, HIGH = -10.0, 10.0


def value(x: float, y: float) -> float:
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


def quadratic(params: dict[str, Any], ctx: Any = None) -> float:
    """tuner's objective signature: ``fn(params, ctx) -> float``."""
    return value(params["x"], params["y"])


def optuna_objective(trial: Any) -> float:
    """Plain Optuna: the objective suggests its own parameters."""
    return value(trial.suggest_float("x", LOW, HIGH), trial.suggest_float("y", LOW, HIGH))


def ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one report with the loss."""
    from ray import tune

    tune.report({"loss": value(config["x"], config["y"])})


def synthetic_score(params: dict[str, Any], ctx: Any = None) -> float:
    """The score ``bench.report_scale``'s synthetic study gives (without its noise), for runs that resume it."""
    import math

    return (0.97 - 0.02 * (math.log10(1e-1) - math.log10(params["lr"])) - 0.01 * (params["optimizer"] != "adam")
            - 0.02 * (params["optimizer"] == "sgd") + 0.004 * math.log2(params["width"] / 16)
            - 0.003 * abs(params["n_layers"] - 2) + 0.001 * params["dropout"])
