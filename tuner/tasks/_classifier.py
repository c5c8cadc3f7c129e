"""Base of the torch classification tasks: data from ``task_args``, model from ``params``.

A subclass names itself and builds its model; loading, training, reporting, testing and
checkpointing are shared (:mod:`tuner.tasks._training`). Importing this module does not
import torch: the training loop is imported when a trial runs.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from tuner.data import DEFAULT_SPLIT, Splits, check_dataset, load_dataset
from tuner.tasks._base import Task, TrialContext, _is_int  # noqa: F401 - re-exported for subclasses
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
        self.check_split_args(args)
        self.check_label_arg(args)

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
