"""Export a trial's model (TorchScript, ONNX, state dict, torch.export program, or a scikit-learn pipeline) with a model card,
checked against what the trial measured, and load it back (:func:`load`) to predict."""

from __future__ import annotations

from tuner.export._export import ExportCheckError, ExportResult, export
from tuner.export._formats import EXPORTERS, TORCH_FORMATS, Exporter
from tuner.export._predictor import Predictor, load, read_inputs, read_texts

__all__ = ["export", "load", "Predictor", "ExportResult", "ExportCheckError", "Exporter", "EXPORTERS",
           "TORCH_FORMATS", "read_inputs", "read_texts"]

import sys as _sys
import types as _types
from typing import Any as _Any


class _CallableModule(_types.ModuleType):
    """``tuner.export(study, "out/")`` exports, and ``tuner.export.load`` etc. stay reachable (as tuner.report)."""

    def __call__(self, study_name: str, output: _Any, **kwargs: _Any) -> ExportResult:
        return export(study_name, output, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
_self = _sys.modules[__name__]  # what ``tuner.export`` resolves to (see tuner/__init__.py)
