"""Base of the torch tasks on data sets of samples: data from ``task_args``, model from ``params``.

A subclass names itself and builds its model; loading, training, reporting, testing and
checkpointing are shared (:mod:`tuner.tasks._training`). Importing this module does not
import torch: the training loop is imported when a trial runs.

The tabular task (``mlp``) does classification or, with ``task_args.task_type: regression``,
regression; the image tasks (:class:`tuner.tasks.cnn.ImageClassifierTask`) are
classification only.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import numpy as np

from tuner.data import (BUILTIN_TASK_TYPES, DEFAULT_SPLIT, TASK_TYPES, Splits, check_dataset, load_dataset,
                        load_regression_dataset)
from tuner.tasks._base import Task, TrialContext
from tuner.tasks._metrics import (EPOCH_METRICS, FINAL_METRICS, OPTIONAL_METRICS, REGRESSION_EPOCH_METRICS,
                                  REGRESSION_FINAL_METRICS)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TorchClassifierTask"]


class TorchClassifierTask(Task):
    """Classification or regression of a data set (``digits``, ``diabetes`` or a local .npz/.csv) with a torch model.

    ``task_args``: ``dataset`` (name or path, relative to the spec file or the working
    directory), ``task_type`` (``classification``, the default, or ``regression``: predict a
    number), ``split`` ([train, val, test] fractions), ``split_seed``, ``max_samples``
    (subsample, for quick runs; stratified for classification) and ``label`` (CSV label or
    target column).

    Classification reads ``digits``, an .npz/.csv table or an IDX folder; the study's metric
    defaults to ``val_accuracy`` (maximised). Regression reads ``diabetes`` or an .npz/.csv
    table with a numeric target, split at random and standardised, target included (see
    :func:`tuner.data.make_regression_splits`); the model has one output; the metrics are
    ``val_rmse``/``val_mae``/``val_r2`` (RMSE and MAE in the target's units) and the study's
    metric defaults to ``val_rmse`` (minimised).
    """

    #: ``classification`` or ``regression``, from ``task_args.task_type`` (subclasses without that
    #: argument, the image tasks, stay classification).
    task_type: str = "classification"
    args_defaults: ClassVar[Mapping[str, Any]] = {
        "dataset": "digits",
        "task_type": "classification",
        "split": list(DEFAULT_SPLIT),
        "split_seed": 0,
        "max_samples": None,
        "label": None,
    }

    def check_args(self, args: dict[str, Any]) -> None:
        task_type = args["task_type"]
        if task_type not in TASK_TYPES:
            raise self.arg_error("task_type", f"unknown task type {task_type!r}", f"use one of {', '.join(TASK_TYPES)}")
        self.task_type = task_type
        if task_type == "regression":
            # Read by the spec when it names no metric (the class defaults are classification's).
            self.default_metric = "val_rmse"  # type: ignore[misc]
            self.default_direction = "minimize"  # type: ignore[misc]
        args["dataset"] = check_dataset(args["dataset"], base_dir=_spec_dir(self.source), source=self.source,
                                        key="task_args.dataset", task_type=task_type)
        self.check_split_args(args)
        self.check_label_arg(args)

    def load_data(self) -> Splits:
        """The data set split and standardised as ``task_args`` say (once per process)."""
        return cached_splits(f"{self.name}:{self.task_type}", self.args, self.read_data)

    def read_data(self) -> Splits:
        """:meth:`load_data` without the process cache."""
        a = self.args
        load = load_regression_dataset if self.task_type == "regression" else load_dataset
        return self.checked_parts(load(a["dataset"], split=a["split"], split_seed=a["split_seed"],
                                       max_samples=a["max_samples"], label=a["label"], source=self.source,
                                       key="task_args.dataset"))

    def checked_parts(self, data: Splits) -> Splits:
        """``data``, refused when its split left a part empty (it would be scored on no samples)."""
        self.check_part_sizes(data.name, {"train": len(data.train), "val": len(data.val), "test": len(data.test)})
        return data

    def check_data(self) -> None:
        """Read a data set on disk once, so that what its loader refuses (one class, a word among
        the features, a missing label column, a split that leaves a part empty) is said before any
        trial. Built-in data sets are known good, and are not read (their sizes are checked
        without reading them). Not cached: the process that validates trains nothing.
        """
        if self.args["dataset"] not in BUILTIN_TASK_TYPES:
            self.read_data()

    def check_params(self, params: Mapping[str, Any]) -> None:
        """The training parameters' checks (optimizer, schedule, learning rate, ...), without torch."""
        from tuner.tasks._train_config import TrainConfig

        TrainConfig.from_params(params)

    @abc.abstractmethod
    def build_model(self, data: Splits, params: Mapping[str, Any]) -> "nn.Module":
        """The untrained model for ``data`` (``n_features`` in, ``n_classes`` logits out; 1 output for regression)."""

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        from tuner.tasks._training import train_model

        data = self.load_data()
        return train_model(lambda: self.build_model(data, params), data, params, ctx,
                           checkpoint_extra={"task": self.name, "task_args": dict(self.args)})

    def metric_names(self) -> list[str]:
        if self.task_type == "regression":
            return [*REGRESSION_EPOCH_METRICS, *REGRESSION_FINAL_METRICS, *OPTIONAL_METRICS]
        return [*EPOCH_METRICS, *FINAL_METRICS, *OPTIONAL_METRICS]


def cached_splits(kind: str, args: Mapping[str, Any], load: Callable[[], Splits]) -> Splits:
    """``load()``, once per worker process for the same task, arguments and data on disk.

    Every trial of a study reads the same data with the same split; on a GPU, loading and
    normalising took as long as a small model trains (see :mod:`tuner._process_cache`). The
    arrays are made read-only: trials of a process share them, so none may change them.
    """
    from tuner._process_cache import cached, path_stamp

    key = ("splits", kind, json.dumps(dict(args), sort_keys=True, default=str), path_stamp(str(args["dataset"])))
    return cached(key, lambda: _read_only(load()), size=2)


def _read_only(data: Splits) -> Splits:
    for array in (data.train.X, data.train.y, data.val.X, data.val.y, data.test.X, data.test.y, data.mean, data.std):
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return data


def _spec_dir(source: str) -> Path | None:
    path = Path(source)
    return path.parent if path.is_file() else None
