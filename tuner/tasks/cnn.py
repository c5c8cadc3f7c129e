"""``task: cnn``: a convolutional network on images (digits, MNIST-family IDX folders, .npz images).

Also home of :class:`ImageClassifierTask`, the base of the image tasks (``cnn``, ``resnet``):
image data from ``task_args`` (class subsets, an official test split, per-channel
normalisation) and seeded augmentation of the training batches from ``params``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from tuner.data import DEFAULT_SPLIT, Splits
from tuner.data.images import NORMALIZATIONS, check_classes, check_image_dataset, load_images
from tuner.exceptions import SpecError
from tuner.tasks._base import TrialContext
from tuner.tasks._classifier import TorchClassifierTask, _spec_dir, cached_splits

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ImageClassifierTask", "CNNTask", "AUGMENT_SEED_OFFSET"]

#: The augmentation generator's seed is the trial's seed plus this (independent of batch order).
AUGMENT_SEED_OFFSET = 7919


class ImageClassifierTask(TorchClassifierTask):
    """Classification of images with a torch model built by :meth:`build_model`.

    ``task_args``:

    ``dataset``     ``digits`` (8x8, bundled), a folder of MNIST-family IDX files (its ``t10k``
                    files are the test part) or an ``.npz`` with ``X`` (N, H, W) / (N, C, H, W)
                    and ``y`` (optionally ``X_test``/``y_test``); paths relative to the spec
    ``split``       [train, val, test] fractions (with an official test part: the proportions;
                    validation is carved from the training files)
    ``split_seed``  seed of the subsample and the split
    ``max_samples`` stratified subsample of this many samples in all (quick runs)
    ``classes``     keep only these classes (names or indices), relabelled in the order given
    ``normalize``   channel (default) | pixel | none
    ``flip``        horizontal flips are a valid augmentation for this data (false: digits)

    Params: the training loop's (:mod:`tuner.tasks._training`), the model's, and augmentation's
    ``augment``/``aug_shift``/``aug_rotate``/``aug_scale`` (:mod:`tuner.tasks._augment`).
    """

    args_defaults: ClassVar[Mapping[str, Any]] = {
        "dataset": "digits",
        "split": list(DEFAULT_SPLIT),
        "split_seed": 0,
        "max_samples": None,
        "classes": None,
        "normalize": "channel",
        "flip": False,
    }

    @staticmethod
    def _image_params(model: tuple[str, ...]) -> frozenset[str]:
        """The training loop's parameters, augmentation's and the model's ``model``."""
        from tuner.tasks._train_config import TRAINING_PARAMS

        return frozenset(TRAINING_PARAMS + ("augment", "aug_shift", "aug_scale", "aug_rotate") + model)

    def __init__(self, task_args: Mapping[str, Any] | None = None, *, source: str = "<spec>") -> None:
        if isinstance(task_args, Mapping) and "task_type" in task_args:
            # TorchClassifierTask (mlp) takes task_type; the image tasks are classification only.
            raise SpecError(source, "task_args.task_type", f"task {self.name} is classification only",
                            "remove task_type (regression: task mlp on a table, with task_type: regression)")
        super().__init__(task_args, source=source)

    def check_args(self, args: dict[str, Any]) -> None:
        args["dataset"] = check_image_dataset(args["dataset"], base_dir=_spec_dir(self.source), source=self.source,
                                              key="task_args.dataset")
        self.check_split_args(args)
        args["classes"] = check_classes(args["classes"], source=self.source, key="task_args.classes")
        if args["classes"] is not None and args["dataset"] == "digits":
            bad = [c for c in args["classes"] if str(c) not in {str(i) for i in range(10)}]
            if bad:
                raise self.arg_error("classes", f"class {bad[0]!r} is not in digits", "its classes are 0 to 9")
        if args["normalize"] not in NORMALIZATIONS:
            raise self.arg_error("normalize", f"unknown normalisation {args['normalize']!r}",
                                 f"use one of {', '.join(NORMALIZATIONS)}")
        if not isinstance(args["flip"], bool):
            raise self.arg_error("flip", f"expected true or false, got {args['flip']!r}",
                                 "true only when a mirrored image keeps its class")

    def load_data(self) -> Splits:
        """The images split and normalised as ``task_args`` say; ``input_shape`` is (C, H, W) (once per process)."""
        return cached_splits(self.name, self.args, self.read_data)

    def read_data(self) -> Splits:
        """:meth:`load_data` without the process cache."""
        a = self.args
        return self.checked_parts(load_images(
            a["dataset"], split=a["split"], split_seed=a["split_seed"], max_samples=a["max_samples"],
            classes=a["classes"], normalize=a["normalize"], source=self.source, key="task_args.dataset"))

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        from tuner.tasks._training import train_classifier

        data = self.load_data()
        return train_classifier(lambda: self.build_model(data, params), data, params, ctx,
                                augment=self.make_augment(data, params, ctx),
                                checkpoint_extra={"task": self.name, "task_args": dict(self.args)})

    def make_augment(self, data: Splits, params: Mapping[str, Any], ctx: TrialContext) -> Any:
        """The seeded augmenter of this trial's training batches, or None (see :mod:`tuner.tasks._augment`)."""
        from tuner.tasks._augment import augment_from_params

        return augment_from_params(params, data.input_shape, flip=self.args["flip"],
                                   seed=int(ctx.seed) + AUGMENT_SEED_OFFSET)


class CNNTask(ImageClassifierTask):
    """A CNN classifier; model params ``n_conv``, ``channels``, ``convs_per_block``, ``kernel``, ``pool``,
    ``batch_norm``, ``activation``, ``global_pool``, ``head_width``, ``dropout``
    (see :func:`tuner.tasks._vision_models.build_cnn`)."""

    name = "cnn"

    def param_names(self) -> frozenset[str] | None:
        return self._image_params(("n_conv", "channels", "convs_per_block", "kernel", "pool", "batch_norm",
                                   "activation", "global_pool", "head_width", "dropout"))

    def check_params(self, params: Mapping[str, Any]) -> None:
        """The training and model parameters' checks, without torch."""
        from tuner.tasks._model_params import cnn_settings

        super().check_params(params)
        cnn_settings(params)

    def build_model(self, data: Splits, params: Mapping[str, Any]) -> "nn.Module":
        from tuner.tasks._vision_models import build_cnn

        return build_cnn(data.input_shape, data.n_classes, params)
