"""Base of the torch classification tasks: data from ``task_args``, model from ``params``.

A subclass names itself and builds its model; loading, training, reporting, testing and
checkpointing are shared (:mod:`tuner.tasks._training`). Importing this module does not
import torch: the training loop is imported when a trial runs.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from tuner.data import DEFAULT_SPLIT, Splits, check_dataset, check_split, load_dataset
from tuner.tasks._base import Task, TrialContext
from tuner.tasks._metrics import EPOCH_METRICS, FINAL_METRICS, OPTIONAL_METRICS

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchClassifierTask"]


class TorchClassifierTask(Task):
    """Classification of a data set (``digits`` or a local .npz/.csv) with a torch model.

    ``task_args``: ``dataset`` (name or path, relative to the spec file or the working
    directory), ``split`` ([train, val, test] fractions), ``split_seed``, ``max_samples``
    (stratified subsample, for quick runs) and ``label`` (CSV label column).
    """

    args_defaults: ClassVar[Mapping[str, Any]] = {
        "dataset": "digits",
        "split": list(DEFAULT_SPLIT),
        "split_seed": 0,
        "max_samples": None,
        "label": None,
    }

    def check_args(self, args: dict[str, Any]) -> None:
        args["dataset"] = check_dataset(args["dataset"], base_dir=_spec_dir(self.source), source=self.source,
                                        key="task_args.dataset")
        args["split"] = list(check_split(args["split"], source=self.source, key="task_args.split"))
        if not _is_int(args["split_seed"]):
            raise self.arg_error("split_seed", f"expected an integer, got {args['split_seed']!r}", "e.g. split_seed: 0")
        max_samples = args["max_samples"]
        if max_samples is not None and (not _is_int(max_samples) or max_samples < 10):
            raise self.arg_error("max_samples", f"expected an integer >= 10, got {max_samples!r}",
                                 "remove it to use every sample")
        label = args["label"]
        if label is not None and not (isinstance(label, str) and label or _is_int(label)):
            raise self.arg_error("label", f"expected a column name or index, got {label!r}", "e.g. label: target")

    def load_data(self) -> Splits:
        """The data set split and standardised as ``task_args`` say."""
        return load_dataset(self.args["dataset"], split=self.args["split"], split_seed=self.args["split_seed"],
                            max_samples=self.args["max_samples"], label=self.args["label"],
                            source=self.source, key="task_args.dataset")

    @abc.abstractmethod
    def build_model(self, data: Splits, params: Mapping[str, Any]) -> "nn.Module":
        """The untrained model for ``data`` (``n_features`` in, ``n_classes`` logits out)."""

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        from tuner.tasks._training import train_classifier

        data = self.load_data()
        return train_classifier(lambda: self.build_model(data, params), data, params, ctx,
                                checkpoint_extra={"task": self.name, "task_args": dict(self.args)})

    def metric_names(self) -> list[str]:
        return [*EPOCH_METRICS, *FINAL_METRICS, *OPTIONAL_METRICS]


def _spec_dir(source: str) -> Path | None:
    path = Path(source)
    return path.parent if path.is_file() else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
