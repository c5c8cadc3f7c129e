"""``task: mlp``: a multi-layer perceptron on flat features (digits, diabetes, .npz, .csv).

Classification by default; ``task_args.task_type: regression`` predicts a number (one output,
MSE on the standardised target, ``val_rmse``/``val_mae``/``val_r2``): see
:class:`tuner.tasks.TorchClassifierTask`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from tuner.data import Splits
from tuner.tasks._classifier import TorchClassifierTask

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MLPTask"]


class MLPTask(TorchClassifierTask):
    """An MLP classifier or regressor; model params ``n_layers``, ``width``, ``activation``, ``batch_norm``,
    ``dropout``, ``init`` (see :func:`tuner.tasks._models.build_mlp`)."""

    name = "mlp"

    def param_names(self) -> frozenset[str] | None:
        from tuner.tasks._train_config import TRAINING_PARAMS

        return frozenset(TRAINING_PARAMS + ("n_layers", "width", "activation", "batch_norm", "dropout", "init"))

    def check_params(self, params: Mapping[str, Any]) -> None:
        """The training and model parameters' checks, without torch."""
        from tuner.tasks._model_params import mlp_settings

        super().check_params(params)
        mlp_settings(params)

    def build_model(self, data: Splits, params: Mapping[str, Any]) -> "nn.Module":
        from tuner.tasks._models import build_mlp

        return build_mlp(data.n_features, data.n_classes, params)  # n_classes is 1 for regression
