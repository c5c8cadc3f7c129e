"""Models built from a trial's parameters.

Model parameters (names shared with the search-space files)::

    n_layers      hidden layers                                           2
    width         units per hidden layer: a list (one per layer) or an int  128
    activation    relu | gelu | tanh | silu                                relu
    batch_norm    BatchNorm1d after each hidden Linear                     false
    dropout       dropout probability after each hidden activation         0
    init          default (PyTorch's) | he (kaiming_normal) | xavier (xavier_uniform); biases 0
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from tuner.exceptions import SpaceError

__all__ = ["build_mlp", "ACTIVATIONS", "INITS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
INITS = ("default", "he", "xavier")


def build_mlp(n_in: int, n_out: int, params: Mapping[str, Any]) -> nn.Module:
    """``[Linear -> (BatchNorm) -> activation -> (Dropout)] * n_layers -> Linear``, initialised per ``init``."""
    widths = _widths(params)
    activation = params.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise _error("activation", activation, f"one of {', '.join(ACTIVATIONS)}")
    batch_norm = params.get("batch_norm", False)
    if not isinstance(batch_norm, bool):
        raise _error("batch_norm", batch_norm, "true or false")
    dropout = params.get("dropout", 0.0) or 0.0
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise _error("dropout", dropout, "a number in [0, 1)")
    init = params.get("init", "default")
    if init not in INITS:
        raise _error("init", init, f"one of {', '.join(INITS)}")

    layers: list[nn.Module] = []
    width_in = n_in
    for width in widths:
        layers.append(nn.Linear(width_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, n_out))
    model = nn.Sequential(*layers)
    if init != "default":
        _initialise(model, init, activation)
    return model


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


def _initialise(model: nn.Module, init: str, activation: str) -> None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        last = i == len(linears) - 1
        if init == "he":
            nonlinearity = "linear" if last else "tanh" if activation == "tanh" else "relu"
            nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
        else:
            nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)


def _error(name: str, value: Any, expected: str) -> SpaceError:
    return SpaceError("params", name, f"invalid value {value!r}", f"expected {expected}")
