"""The model parameters of the MLP, CNN, ResNet and text tasks, checked without torch.

The builders (``_models.build_mlp``, ``_vision_models.build_cnn`` and ``build_resnet``) take
their settings from here, and the tasks' ``check_params`` runs the same functions on every value
a search space can produce before any trial (``tuner validate``, the driver), where torch is not
imported. What each parameter does is in the builders' module docstrings (the text task's:
:mod:`tuner.tasks._encoder`, whose ``TextClassifier`` checks the same values again).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tuner.tasks._param_checks import is_int as _is_int
from tuner.tasks._param_checks import is_number as _is_number
from tuner.tasks._param_checks import param_error as _error

__all__ = ["ACTIVATION_NAMES", "INITS", "POOLS", "HEAD_INITS", "POOLINGS", "mlp_settings", "cnn_settings",
           "resnet_settings", "text_settings"]

ACTIVATION_NAMES = ("relu", "gelu", "tanh", "silu")
INITS = ("default", "he", "xavier")
POOLS = ("max", "avg", "none")
#: How a fine-tuned ResNet's new head starts: PyTorch's default init, zeros, or the pretrained head
#: (only when the number of classes is the same).
HEAD_INITS = ("random", "zeros", "keep")
#: How the text task makes one sentence vector of its encoder's token vectors.
POOLINGS = ("mean", "cls", "max")


def mlp_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """``widths`` (one per hidden layer), ``activation``, ``batch_norm``, ``dropout`` and ``init``, checked."""
    widths = _widths(params)
    activation = params.get("activation", "relu")
    if activation not in ACTIVATION_NAMES:
        raise _error("activation", activation, f"one of {', '.join(ACTIVATION_NAMES)}")
    batch_norm = params.get("batch_norm", False)
    if not isinstance(batch_norm, bool):
        raise _error("batch_norm", batch_norm, "true or false")
    dropout = params.get("dropout", 0.0) or 0.0
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise _error("dropout", dropout, "a number in [0, 1)")
    init = params.get("init", "default")
    if init not in INITS:
        raise _error("init", init, f"one of {', '.join(INITS)}")
    return {"widths": widths, "activation": activation, "batch_norm": batch_norm, "dropout": dropout, "init": init}


def cnn_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The CNN's blocks, convolutions, pooling and head, checked (``build_cnn``'s docstring)."""
    n_conv = _int(params, "n_conv", 2, low=1)
    kernel = _int(params, "kernel", 3, low=1)
    if kernel % 2 == 0:
        raise _error("kernel", kernel, "an odd integer (3, 5, 7)")
    pool = params.get("pool", "max") or "none"
    if pool not in POOLS:
        raise _error("pool", pool, f"one of {', '.join(POOLS)}")
    return {"channels": _per(params, "channels", 32, n_conv, "n_conv"),
            "convs_per_block": _int(params, "convs_per_block", 1, low=1), "kernel": kernel, "pool": pool,
            "batch_norm": _bool(params, "batch_norm", True), "activation": _activation(params),
            "global_pool": _bool(params, "global_pool", False), "head_width": _int(params, "head_width", 128, low=0),
            "dropout": _dropout(params)}


def resnet_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """``n_stages``, ``blocks`` (one per stage), ``width`` and ``dropout``, checked."""
    n_stages = _int(params, "n_stages", 3, low=1)
    return {"n_stages": n_stages, "blocks": _per(params, "blocks", 1, n_stages, "n_stages"),
            "width": _int(params, "width", 16, low=1), "dropout": _dropout(params)}


def text_settings(params: Mapping[str, Any], *, n_layers: int | None = None) -> dict[str, Any]:
    """``pooling``, ``dropout``, ``freeze_embeddings`` and ``freeze_layers`` (0 to the encoder's
    ``n_layers``, where known), checked; ``params`` holds the text task's defaults already."""
    pooling = params["pooling"]
    if pooling not in POOLINGS:
        raise _error("pooling", pooling, f"one of {', '.join(POOLINGS)}")
    dropout = params["dropout"]
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise _error("dropout", dropout, "a number in [0, 1)")
    freeze_embeddings = params["freeze_embeddings"]
    if not isinstance(freeze_embeddings, (bool, np.bool_)):
        raise _error("freeze_embeddings", freeze_embeddings, "true or false")
    freeze = params["freeze_layers"]
    if not _is_int(freeze) or freeze < 0 or (n_layers is not None and freeze > n_layers):
        raise _error("freeze_layers", freeze, "an integer >= 0" if n_layers is None else
                     f"an integer from 0 (fine-tune every layer) to {n_layers} (train the head only)")
    return {"pooling": pooling, "dropout": float(dropout), "freeze_embeddings": bool(freeze_embeddings),
            "freeze_layers": int(freeze)}


def _widths(params: Mapping[str, Any]) -> list[int]:
    """One width per hidden layer, from ``width`` (int or list) and ``n_layers``."""
    width = params.get("width", 128)
    n_layers = params.get("n_layers")
    if n_layers is not None and (not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 0):
        raise _error("n_layers", n_layers, "an integer >= 0")
    if isinstance(width, (list, tuple)):
        if n_layers is None:
            n_layers = len(width)
        if len(width) < n_layers:
            raise _error("width", list(width), f"a list of at least n_layers={n_layers} widths (or one int)")
        widths = list(width[:n_layers])
    else:
        widths = [width] * (2 if n_layers is None else n_layers)
    for w in widths:
        if not isinstance(w, int) or isinstance(w, bool) or w < 1:
            raise _error("width", width, "positive integers")
    return widths


def _int(params: Mapping[str, Any], name: str, default: int, *, low: int) -> int:
    value = params.get(name)
    value = default if value is None else value
    if not _is_int(value) or value < low:
        raise _error(name, value, f"an integer >= {low}")
    return int(value)


def _per(params: Mapping[str, Any], name: str, default: int, count: int, count_name: str) -> list[int]:
    """One positive int per layer from an int or a list (at least ``count`` long)."""
    value = params.get(name)
    value = default if value is None else value
    if isinstance(value, (list, tuple)):
        if len(value) < count:
            raise _error(name, list(value), f"a list of at least {count_name}={count} values (or one int)")
        values = list(value[:count])
    else:
        values = [value] * count
    if not all(_is_int(v) and v >= 1 for v in values):
        raise _error(name, value, "positive integers")
    return [int(v) for v in values]


def _bool(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    value = default if value is None else value
    if not isinstance(value, bool):
        raise _error(name, value, "true or false")
    return value


def _activation(params: Mapping[str, Any]) -> str:
    activation = params.get("activation") or "relu"
    if activation not in ACTIVATION_NAMES:
        raise _error("activation", activation, f"one of {', '.join(ACTIVATION_NAMES)}")
    return activation


def _dropout(params: Mapping[str, Any]) -> float:
    dropout = params.get("dropout") or 0.0
    if not _is_number(dropout) or not 0 <= dropout < 1:
        raise _error("dropout", dropout, "a number in [0, 1)")
    return float(dropout)
