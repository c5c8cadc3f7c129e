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

from tuner.tasks._model_params import ACTIVATION_NAMES, INITS, mlp_settings

__all__ = ["build_mlp", "ACTIVATIONS", "INITS"]

ACTIVATIONS: dict[str, type[nn.Module]] = dict(zip(ACTIVATION_NAMES, (nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU)))


def build_mlp(n_in: int, n_out: int, params: Mapping[str, Any]) -> nn.Module:
    """``[Linear -> (BatchNorm) -> activation -> (Dropout)] * n_layers -> Linear``, initialised per ``init``."""
    settings = mlp_settings(params)
    widths, activation, batch_norm = settings["widths"], settings["activation"], settings["batch_norm"]
    dropout, init = settings["dropout"], settings["init"]

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
