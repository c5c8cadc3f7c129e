"""A trial's trained model, rebuilt from the checkpoint the trial left (``best.pt`` or ``model.joblib``).

Torch tasks save their best epoch's weights with everything needed to rebuild the network
(the task, its ``params``, the data description with normalisation constants); the model is
rebuilt here from that alone, without the data set. The exported network takes raw features:
:class:`Deployable` adds the training part's standardisation in front (and, for regression,
turns the standardised prediction back into the target's units), so a user feeds what the
data file holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import unquote, urlparse

from tuner.exceptions import UserInputError

if TYPE_CHECKING:
    import optuna
    from torch import nn

__all__ = ["TrainedModel", "Deployable", "find_checkpoint", "load_trained", "trial_by_number", "TORCH_TASKS"]


def _mlp(data: Mapping[str, Any], params: Mapping[str, Any]) -> "nn.Module":
    from tuner.tasks._models import build_mlp

    return build_mlp(int(data["n_features"]), int(data["n_classes"]), params)


def _cnn(data: Mapping[str, Any], params: Mapping[str, Any]) -> "nn.Module":
    from tuner.tasks._vision_models import build_cnn

    return build_cnn(tuple(data["input_shape"]), int(data["n_classes"]), params)


def _resnet(data: Mapping[str, Any], params: Mapping[str, Any]) -> "nn.Module":
    from tuner.tasks._vision_models import build_resnet

    return build_resnet(tuple(data["input_shape"]), int(data["n_classes"]), params)


#: Built-in torch tasks whose network is rebuilt from (data description, params).
TORCH_TASKS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], "nn.Module"]] = {
    "mlp": _mlp, "cnn": _cnn, "resnet": _resnet,
}


@dataclass
class TrainedModel:
    """What a trial trained: the model and what describes it."""

    kind: str                        # "torch" | "text" (token ids in) | "sklearn"
    task: str
    task_args: dict[str, Any]
    params: dict[str, Any]
    data: dict[str, Any]             # dataset, n_features, n_classes, input_shape, class_names, mean, std, ...
    metrics: dict[str, Any]
    model: Any                       # torch: Deployable (eval mode); sklearn: the fitted estimator/pipeline
    checkpoint: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_type(self) -> str:
        return str(self.data.get("task_type") or self.extra.get("task_type") or "classification")


def _deployable_class() -> type:
    import torch
    from torch import nn

    class _Deployable(nn.Module):
        """``net((x - mean) / std)``, and for regression ``* y_std + y_mean``: raw features in, answers out."""

        def __init__(self, net: nn.Module, mean: Any, std: Any, y_mean: float = 0.0, y_std: float = 1.0,
                     regression: bool = False) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1))
            self.register_buffer("y_mean", torch.tensor(float(y_mean)))
            self.register_buffer("y_std", torch.tensor(float(y_std)))
            self.regression = regression

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net((x.reshape(x.shape[0], -1) - self.mean) / self.std)
            if self.regression:
                return out.reshape(-1, 1) * self.y_std + self.y_mean
            return out

    return _Deployable


def Deployable(net: "nn.Module", data: Mapping[str, Any]) -> "nn.Module":  # noqa: N802 - a class factory
    """``net`` wrapped so it takes raw features (standardisation and target scaling inside)."""
    regression = data.get("task_type") == "regression"
    cls = _deployable_class()
    return cls(net, data["mean"], data["std"], data.get("y_mean") or 0.0, data.get("y_std") or 1.0, regression)


def trial_by_number(study: "optuna.Study", number: int) -> "optuna.trial.FrozenTrial":
    """One trial, read alone (``study.get_trials`` would read every trial: minutes at 100,000)."""
    from tuner.storage import SQL_INT_MAX

    storage = study._storage
    try:
        if not 0 <= number <= SQL_INT_MAX:  # names no trial, and SQLite cannot even bind it (OverflowError)
            raise KeyError(number)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        raise UserInputError(f"study {study.study_name!r} has no trial {number}") from None
    return storage.get_trial(trial_id)


def find_checkpoint(study: "optuna.Study", number: int) -> Path:
    """The checkpoint file recorded for trial ``number`` (``best.pt`` or ``model.joblib``), or a one-line error."""
    from tuner.engine import _attrs

    t = trial_by_number(study, number)
    recorded = [a for a in (t.system_attrs.get(_attrs.ARTIFACTS) or []) if isinstance(a, dict)]
    names = {a.get("name"): a for a in recorded}
    entry = names.get("best.pt") or names.get("model.joblib")
    path: Path | None = None
    if entry is not None:
        parsed = urlparse(str(entry.get("uri", "")))
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else None
    else:  # trials recorded before artifacts were: their folder is in the placement record
        folder = (t.system_attrs.get(_attrs.WORKER) or {}).get("trial_dir")
        for name in ("best.pt", "model.joblib"):
            if folder and (Path(folder) / name).is_file():
                path = Path(folder) / name
                break
    if path is None:
        raise UserInputError(f"trial {number} of study {study.study_name!r} has no checkpoint (state {t.state.name}; "
                             f"only trials of built-in tasks save one, and only the best trials keep it); "
                             f"pick another with --trial")
    if not path.is_file():
        raise UserInputError(f"the checkpoint of trial {number} ({path}) is gone (removed, or not in the top trials "
                             f"kept); pick another trial with --trial")
    return path


def _text_net_class() -> type:
    from torch import nn

    class _TextNet(nn.Module):
        """A text classifier as a graph of fixed shape logic: ``[batch, 2, length]`` token ids and mask in,
        logits out (the training model trims padding per batch, which tracing would freeze)."""

        def __init__(self, classifier: nn.Module) -> None:
            super().__init__()
            self.classifier = classifier

        def forward(self, x: Any) -> Any:
            from tuner.tasks._encoder import pool

            ids, mask = x[:, 0], x[:, 1]
            hidden = self.classifier.encoder(input_ids=ids, attention_mask=mask, return_dict=False)[0].float()
            return self.classifier.head(pool(hidden, mask, self.classifier.pooling))

    return _TextNet


def _load_text(path: Path, ckpt: Mapping[str, Any]) -> TrainedModel:
    from tuner.tasks._encoder import load_text_classifier

    try:
        classifier, tokenizer, ckpt = load_text_classifier(ckpt)
    except (ValueError, KeyError, OSError) as exc:
        raise UserInputError(f"{path}: cannot rebuild the text classifier ({exc})") from None
    net = _text_net_class()(classifier).eval()
    data = dict(ckpt.get("data") or {})
    return TrainedModel("text", "text", dict(ckpt.get("task_args") or {}), dict(ckpt.get("params") or {}), data,
                        dict(ckpt.get("metrics") or {}), net, path,
                        {"epoch": ckpt.get("epoch"), "tokenizer": tokenizer, "max_length": int(ckpt.get("max_length") or 64),
                         "encoder": ckpt.get("model")})


def load_trained(path: Path) -> TrainedModel:
    """Rebuild the model saved at ``path`` (a trial's ``best.pt``/``model.joblib``, or an export's ``model.pt``)."""
    if path.suffix == ".joblib":
        return _load_sklearn(path)
    from tuner._torch_load import UnreadableCheckpoint, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
    except UnreadableCheckpoint as exc:
        raise UserInputError(f"cannot read checkpoint {path}: {exc}; is it a file written by tuner?") from None
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise UserInputError(f"{path} is not a tuner checkpoint (no state_dict); export a trial of a built-in task")
    task = ckpt.get("task")
    if task == "text":
        return _load_text(path, ckpt)
    if task not in TORCH_TASKS:
        raise UserInputError(f"{path}: exporting task {task!r} is not supported; supported: "
                             f"{', '.join(TORCH_TASKS)}, text and sklearn")
    data, params = dict(ckpt.get("data") or {}), dict(ckpt.get("params") or {})
    net = TORCH_TASKS[task](data, params)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise UserInputError(f"{path}: the weights do not fit the network rebuilt from its params "
                             f"({str(exc).splitlines()[0]})") from None
    model = Deployable(net, data).eval()
    return TrainedModel("torch", task, dict(ckpt.get("task_args") or {}), params, data,
                        dict(ckpt.get("metrics") or {}), model, path,
                        {"epoch": ckpt.get("epoch"), "pretrained_from": ckpt.get("pretrained_from")})


def _load_sklearn(path: Path) -> TrainedModel:
    import joblib

    sidecar_path = path.with_name("model.json")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError):
        raise UserInputError(f"{path}: its description {sidecar_path.name} is missing or unreadable; "
                             f"export a trial of the sklearn task") from None
    model = joblib.load(path)  # a file this trial wrote (its folder is recorded in the storage)
    data = dict(sidecar.get("data") or {})
    data["task_type"] = sidecar.get("task_type")
    return TrainedModel("sklearn", "sklearn", dict(sidecar.get("task_args") or {}), dict(sidecar.get("params") or {}),
                        data, dict(sidecar.get("metrics") or {}), model, path,
                        {"estimator": sidecar.get("estimator"), "versions": sidecar.get("versions"),
                         "task_type": sidecar.get("task_type")})
