"""``task: resnet``: a small residual network on images, trained from scratch or fine-tuned.

From scratch it tunes depth (``n_stages``, ``blocks`` per stage) and ``width`` like any model.
With ``task_args.pretrained`` it fine-tunes a network trained before:

``pretrained: path/to/best.pt``
    a tuner checkpoint (what every trial saves: ``state_dict`` plus the ``params`` it was built
    from) or a plain ``state_dict`` of a ResNet built here. The network is rebuilt as it was:
    from the checkpoint's params when they say, else from the shapes of its weights (the search
    space's ``n_stages``, ``blocks`` and ``width`` are ignored). Relative to the spec file, then
    the working directory.
``pretrained: {study: resnet_pretrain}``
    the checkpoint of the best complete trial of that study, looked up when a trial starts in
    the storage of the running study (or ``storage: URL`` given next to ``study:``). Run the
    pretraining study first: ``tuner run studies/resnet_pretrain.yaml``; ``tuner validate`` and
    the run's start refuse a study the storage lacks, or whose best trial left no checkpoint
    (:meth:`ResNetTask.check_storage`).

The head is replaced for the new classes. Fine-tuning params (they work from scratch too)::

    name              meaning                                                        default
    freeze_stages     freeze the stem and the first k stages (weights and BatchNorm   0
                      statistics); k >= n_stages: only the head trains (a linear probe)
    backbone_lr_frac  the backbone's learning rate as a fraction of the head's (lr);  1.0
                      0 freezes the whole backbone
    head_init         random | zeros | keep (the pretrained head, same class count)   random

A missing or unreadable checkpoint file is a :class:`SpecError` at ``task_args.pretrained``
when the spec is validated; a checkpoint that cannot be loaded or does not fit fails the
trial with a message that says why.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from tuner.data import Splits
from tuner.exceptions import SpaceError, SpecError
from tuner.tasks._base import TrialContext
from tuner.tasks._classifier import _spec_dir
from tuner.tasks._param_checks import is_int, is_number, param_error
from tuner.tasks.cnn import ImageClassifierTask

if TYPE_CHECKING:
    from tuner.tasks._vision_models import ResNet

__all__ = ["ResNetTask", "load_checkpoint"]

_PRETRAINED_FIX = "give a file written by torch.save (a tuner best.pt or a state dict) or {study: NAME}"
_STUDY_KEY = "task_args.pretrained.study"


def _run_first(name: str) -> str:
    """The fix for a pretraining study that is not in the storage."""
    return (f"run the pretraining study first (e.g. tuner run studies/{name}.yaml) with the same storage, "
            "or name its storage: next to study:")


class ResNetTask(ImageClassifierTask):
    """A ResNet classifier (see :mod:`tuner.tasks._vision_models`), optionally fine-tuned from ``pretrained``."""

    name = "resnet"

    def param_names(self) -> frozenset[str] | None:
        return self._image_params(("n_stages", "blocks", "width", "dropout", "freeze_stages", "backbone_lr_frac",
                                   "head_init"))
    args_defaults: ClassVar[Mapping[str, Any]] = {**ImageClassifierTask.args_defaults, "pretrained": None}

    def check_args(self, args: dict[str, Any]) -> None:
        super().check_args(args)
        pretrained = args["pretrained"]
        if pretrained is None:
            return
        if isinstance(pretrained, Mapping):
            unknown = sorted(set(map(str, pretrained)) - {"study", "storage"})
            if unknown:
                raise self.arg_error(f"pretrained.{unknown[0]}", "unknown key", "allowed keys: study, storage")
            study = pretrained.get("study")
            if not isinstance(study, str) or not study:
                raise self.arg_error("pretrained.study", f"expected a study name, got {study!r}",
                                     "e.g. pretrained: {study: resnet_pretrain}")
            storage = pretrained.get("storage")
            if storage is not None and (not isinstance(storage, str) or not storage):
                raise self.arg_error("pretrained.storage", f"expected a storage URL, got {storage!r}",
                                     "e.g. sqlite:///tuner.db; leave it out to use the running study's storage")
            args["pretrained"] = {"study": study, **({"storage": self._anchored_storage(storage)} if storage else {})}
            return
        if not isinstance(pretrained, (str, Path)) or not str(pretrained):
            raise self.arg_error("pretrained", f"expected a checkpoint path or {{study: NAME}}, got {pretrained!r}",
                                 _PRETRAINED_FIX)
        args["pretrained"] = str(self._checkpoint_file(pretrained))

    def _anchored_storage(self, url: str) -> str:
        """``url`` with a relative SQLite path made absolute, read as the checkpoint path is.

        The spec's own ``storage:`` is relative to the spec's folder, and the trials run in Ray
        workers whose working directory is not the user's: a relative path left as written would
        name another (empty) file there. The spec's folder is tried first, then the working
        directory; where neither holds the file, the spec's folder is named (the lookup then says
        the study is missing, with the full path).
        """
        from tuner.storage import anchor_sqlite_url, sqlite_path

        base = _spec_dir(self.source)
        candidates = [anchor_sqlite_url(url, b) for b in (*([base] if base else []), Path.cwd())]
        existing = [c for c in candidates if (p := sqlite_path(c)) is not None and p.is_file()]
        return (existing or candidates)[0]

    def _checkpoint_file(self, pretrained: str | Path) -> Path:
        """The absolute path of an existing file that looks like a torch.save file (cheap: no loading)."""
        path = Path(pretrained).expanduser()
        base = _spec_dir(self.source)
        candidates = [path] if path.is_absolute() else [*([base / path] if base else []), Path.cwd() / path]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            where = " or ".join(str(c) for c in candidates)
            raise self.arg_error("pretrained", f"checkpoint {str(pretrained)!r} not found (looked at {where})",
                                 "run the pretraining study first or fix the path")
        if not _looks_like_torch_file(found):
            raise self.arg_error("pretrained", f"{found} is not a torch checkpoint (empty, truncated or another "
                                 "format)", _PRETRAINED_FIX)
        return found.resolve()

    # ---- a trial --------------------------------------------------------------------------------

    def run(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
        from tuner.tasks._training import train_classifier

        tuning = _fine_tuning_params(params)
        checkpoint = self.checkpoint_path(ctx)  # before loading data: a missing study fails fast
        data = self.load_data()
        pretrained = self.read_pretrained(checkpoint, data) if checkpoint is not None else None
        if pretrained is not None:
            # Saved with the best weights, so that the checkpoint describes its own network.
            params = {**params, **pretrained.arch}

        def build() -> "ResNet":
            if pretrained is None:
                model = self.build_model(data, params)
                if tuning["head_init"] == "zeros":  # from scratch too ("random" and "keep": the new head as built)
                    model.reset_head(data.n_classes, "zeros")
            else:
                model = pretrained.build(data, dropout=params.get("dropout"), head_init=tuning["head_init"])
            frac = tuning["backbone_lr_frac"]
            model.freeze(model.n_stages if frac == 0 else min(tuning["freeze_stages"], model.n_stages))
            return model

        def groups(model: "ResNet") -> Any:
            return [(model.head_parameters(), 1.0), (model.backbone_parameters(), tuning["backbone_lr_frac"])]

        extra = {"task": self.name, "task_args": dict(self.args)}
        if pretrained is not None:
            extra["pretrained_from"] = str(pretrained.path)
            ctx.set_attr("pretrained", {"checkpoint": str(pretrained.path), **pretrained.arch})
        return train_classifier(build, data, params, ctx, augment=self.make_augment(data, params, ctx),
                                param_groups=groups if tuning["backbone_lr_frac"] not in (0, 1) else None,
                                checkpoint_extra=extra)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """The training, architecture and fine-tuning parameters' checks, without torch."""
        from tuner.tasks._model_params import resnet_settings

        super().check_params(params)
        resnet_settings(params)
        _fine_tuning_params(params)

    def build_model(self, data: Splits, params: Mapping[str, Any]) -> "ResNet":
        from tuner.tasks._vision_models import build_resnet

        return build_resnet(data.input_shape, data.n_classes, params)

    def checkpoint_path(self, ctx: TrialContext) -> Path | None:
        """The checkpoint to fine-tune from (a study reference is looked up in the storage), or None."""
        pretrained = self.args["pretrained"]
        if pretrained is None:
            return None
        if isinstance(pretrained, Mapping):
            name, url = pretrained["study"], pretrained.get("storage")
            if url:
                return self._best_checkpoint_of_study(name, self._open_storage(name, url), url)
            storage = getattr(ctx, "storage", None)
            if storage is None:
                raise SpecError(self.source, _STUDY_KEY, f"no storage to look study {name!r} up in",
                                "add storage: URL next to study: (e.g. sqlite:///tuner.db)")
            return self._best_checkpoint_of_study(name, storage, getattr(storage, "url", None))
        return Path(pretrained)

    def check_storage(self, storage_url: str) -> None:
        """Look ``pretrained: {study: NAME}`` up before any trial, in ``pretrained.storage`` or the
        run's storage: a study that is not there (not run yet, a typo, another storage) or whose
        best trial left no checkpoint used to pass ``tuner validate`` and fail every trial."""
        pretrained = self.args["pretrained"]
        if isinstance(pretrained, Mapping):
            url = pretrained.get("storage") or storage_url
            self._best_checkpoint_of_study(pretrained["study"], self._open_storage(pretrained["study"], url), url)

    def _open_storage(self, name: str, url: str) -> Any:
        """The storage at ``url``, read-only (nothing is created); its problems are errors at ``pretrained.study``."""
        from tuner.exceptions import StorageError
        from tuner.storage import open_storage, redact, sqlite_path

        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise SpecError(self.source, _STUDY_KEY, f"no study {name!r}: there is no storage at {path.absolute()}",
                            _run_first(name))
        try:
            return open_storage(url, readonly=True)
        except StorageError as exc:
            raise SpecError(self.source, _STUDY_KEY, f"cannot look study {name!r} up in {redact(url)}: {exc}",
                            None) from None

    def read_pretrained(self, path: Path, data: Splits) -> "_Pretrained":
        """The checkpoint's weights and architecture, checked against ``data`` (no model built yet).

        The architecture comes from the checkpoint's ``params`` when it has them, else from the
        shapes of its weights; the trial's own ``n_stages``/``blocks``/``width`` play no part.
        """
        from tuner.tasks._vision_models import RESNET_ARCH_KEYS, resnet_arch

        state, ckpt_params, task = load_checkpoint(path, source=self.source)
        if task not in (None, self.name):
            raise self._load_error(path, f"it was written by task {task!r}", "fine-tune from a resnet checkpoint")
        inferred = _arch_from_state(state)
        if inferred is None:
            raise self._load_error(path, "it is not a tuner ResNet's state dict (no stem.0.weight, stages.*, "
                                   "head.weight)", "fine-tune from a checkpoint of task resnet")
        try:
            arch = resnet_arch(ckpt_params) if all(k in ckpt_params for k in RESNET_ARCH_KEYS) else inferred
        except SpaceError as exc:
            raise self._load_error(path, f"its params are invalid ({exc.problem})", "give a state dict instead") \
                from None
        channels = int(state["stem.0.weight"].shape[1])
        if channels != data.input_shape[0]:
            raise self._load_error(path, f"it takes {channels}-channel images, the data have "
                                   f"{data.input_shape[0]} channels", "fine-tune on images like those it learned")
        return _Pretrained(path, state, arch, int(state["head.weight"].shape[0]), self)

    def _best_checkpoint_of_study(self, name: str, storage: Any, url: str | None) -> Path:
        """The ``best.pt`` of study ``name``'s best complete trial in ``storage`` (at ``url``, for messages)."""
        from optuna.trial import TrialState

        from tuner.engine._attrs import WORKER
        from tuner.storage import redact

        key = _STUDY_KEY
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            raise SpecError(self.source, key, f"no study {name!r} in the storage" + (f" {redact(url)}" if url else ""),
                            _run_first(name)) from None
        directions = storage.get_study_directions(study_id)
        if len(directions) != 1:
            raise SpecError(self.source, key, f"study {name!r} has {len(directions)} objectives",
                            "give the checkpoint's path instead of a multi-objective study")
        trials = [t for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.values]
        if not trials:
            raise SpecError(self.source, key, f"study {name!r} has no complete trial yet",
                            f"run it first (tuner run studies/{name}.yaml)")
        sign = -1.0 if directions[0].name == "MAXIMIZE" else 1.0
        best = min(trials, key=lambda t: (sign * t.values[0], t.number))
        trial_dir = (best.system_attrs.get(WORKER) or {}).get("trial_dir")
        path = Path(trial_dir) / "best.pt" if trial_dir else None
        if path is None or not path.is_file():
            raise SpecError(self.source, key, f"the best trial (#{best.number}) of study {name!r} has no checkpoint "
                            f"file ({path or 'no trial_dir recorded'})",
                            "its artifacts were moved or deleted; give the checkpoint's path instead")
        return path

    def _load_error(self, path: Path, problem: str, fix: str) -> SpecError:
        return SpecError(self.source, "task_args.pretrained", f"cannot fine-tune from {path}: {problem}", fix)


class _Pretrained:
    """A loaded checkpoint, ready to become the network of each trial."""

    def __init__(self, path: Path, state: dict[str, Any], arch: dict[str, Any], n_classes: int,
                 task: ResNetTask) -> None:
        self.path, self.state, self.arch, self.n_classes, self.task = path, state, arch, n_classes, task

    def build(self, data: Splits, *, dropout: Any, head_init: str) -> "ResNet":
        """The pretrained network with its weights loaded and a head for ``data``'s classes."""
        from tuner.tasks._vision_models import ResNet

        model = ResNet(data.input_shape, self.n_classes, blocks=self.arch["blocks"], width=self.arch["width"],
                       dropout=float(dropout or 0.0))
        try:
            model.load_state_dict(self.state)
        except RuntimeError as exc:
            lines = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])[:400]
            raise self.task._load_error(self.path, f"its weights do not fit a ResNet with {self.arch}: {lines}",
                                        "the checkpoint's params do not match its weights; save a state dict") \
                from None
        model.reset_head(data.n_classes, head_init)
        return model


def _arch_from_state(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """``{n_stages, blocks, width}`` read from the keys and shapes of a ResNet state dict, or None."""
    stem, head = state.get("stem.0.weight"), state.get("head.weight")
    if stem is None or head is None or stem.dim() != 4 or head.dim() != 2:
        return None
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = re.match(r"stages\.(\d+)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        return None
    if any(sorted(b) != list(range(len(b))) for b in blocks.values()):
        return None
    return {"n_stages": len(blocks), "blocks": [len(blocks[i]) for i in range(len(blocks))],
            "width": int(stem.shape[0])}


def load_checkpoint(path: str | Path, *, source: str = "<spec>") -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """``(state_dict, params, task)`` of a tuner checkpoint (``params``/``task`` empty/None for a state dict).

    Loaded with ``weights_only=True`` (tensors and plain data only, no code runs). Problems are
    :class:`SpecError` at ``task_args.pretrained`` saying what is wrong with the file.
    """
    import torch

    from tuner._torch_load import UnreadableCheckpoint, read_checkpoint

    path = Path(path)
    try:
        obj = read_checkpoint(path)
    except UnreadableCheckpoint as exc:
        raise SpecError(source, "task_args.pretrained", f"cannot load checkpoint {path}: {exc}", _PRETRAINED_FIX) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        params = obj.get("params") if isinstance(obj.get("params"), Mapping) else {}
        task = obj.get("task") if isinstance(obj.get("task"), str) else None
        state = dict(obj["state_dict"])
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        params, task, state = {}, None, dict(obj)
    else:
        raise SpecError(source, "task_args.pretrained", f"{path} holds a {type(obj).__name__}, not a state dict "
                        "or a tuner checkpoint", _PRETRAINED_FIX)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SpecError(source, "task_args.pretrained", f"{path}: the state dict holds values that are not tensors",
                        _PRETRAINED_FIX)
    return state, dict(params), task


def _fine_tuning_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``freeze_stages``, ``backbone_lr_frac`` and ``head_init`` with defaults, checked (without torch)."""
    from tuner.tasks._model_params import HEAD_INITS

    freeze = params.get("freeze_stages")
    freeze = 0 if freeze is None else freeze
    if not is_int(freeze) or freeze < 0:
        raise param_error("freeze_stages", freeze, "an integer >= 0")
    frac = params.get("backbone_lr_frac")
    frac = 1.0 if frac is None else frac
    if not is_number(frac) or not 0 <= frac <= 1:
        raise param_error("backbone_lr_frac", frac, "a number in [0, 1]")
    head_init = params.get("head_init") or "random"
    if head_init not in HEAD_INITS:
        raise param_error("head_init", head_init, f"one of {', '.join(HEAD_INITS)}")
    return {"freeze_stages": int(freeze), "backbone_lr_frac": float(frac), "head_init": head_init}


def _looks_like_torch_file(path: Path) -> bool:
    """A complete zip archive (torch.save's format) or a legacy pickle; reads a few bytes only."""
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    if head[:1] == b"\x80":  # legacy (non-zip) torch.save: a pickle
        return True
    return head == b"PK" and zipfile.is_zipfile(path)
