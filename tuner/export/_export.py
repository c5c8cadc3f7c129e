"""``tuner export``: write the chosen trial's model in the chosen formats, check each, write a model card.

Nothing is reported as exported before it is checked: every written file is loaded back and
run on held-out test data (parity with the PyTorch model: max absolute difference of the
outputs, below ``tolerance``) and scored (test accuracy within 0.5 percentage points of what
the trial recorded; for regression the test RMSE within 0.5 %). A failed check removes the
export folder's new files and raises.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tuner.exceptions import TrialPruned, UserInputError
from tuner.export._formats import EXPORTERS, TORCH_FORMATS, check_formats
from tuner.export._trained import TrainedModel, find_checkpoint, load_trained, trial_by_number

if TYPE_CHECKING:
    import optuna

__all__ = ["export", "ExportResult", "CARD_JSON", "CARD_MD", "ExportCheckError"]

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
_PARITY_BATCH = 256
_ACCURACY_TOLERANCE = 0.005   # 0.5 percentage points
_RMSE_TOLERANCE = 0.005       # 0.5 % of the recorded test RMSE


class ExportCheckError(UserInputError):
    """An export that does not reproduce the trial (exit code 2, the folder is cleaned)."""


@dataclass
class ExportResult:
    folder: Path
    study: str
    trial: int
    files: dict[str, Path]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)   # format -> {max_abs_diff, test_score, ...}
    card: dict[str, Any] = field(default_factory=dict)


def export(study_name: str, output: str | Path, *, trial: int | None = None, formats: Sequence[str] | None = None,
           storage: str | None = None, tolerance: float = 1e-4, quantize: str | None = None,
           retrain: bool = False) -> ExportResult:
    """Export trial ``trial`` (default: the best) of ``study_name`` into folder ``output``.

    ``quantize="int8"`` adds ``torchscript_int8`` (dynamic int8 quantization of the linear
    layers), reported with its size and test-score change next to the fp32 TorchScript.
    ``retrain=True`` first trains the trial's configuration again on train + validation for
    the trial's best epoch count and exports that model (checked against its own test score;
    the card gives both test scores).
    """
    from tuner._api import load_study

    study = load_study(study_name, storage)
    number = _choose_trial(study, trial)
    trained = load_trained(find_checkpoint(study, number))
    retrained: dict[str, Any] | None = None
    workdir = None
    if retrain:
        import tempfile

        workdir = tempfile.TemporaryDirectory(prefix="tuner-retrain-")
        trained, retrained = _retrain(trained, number, Path(workdir.name))
    chosen = check_formats(list(formats) if formats else
                           (["sklearn"] if trained.kind == "sklearn" else list(TORCH_FORMATS)), trained.kind)
    if quantize is not None:
        if quantize != "int8":
            raise UserInputError(f"--quantize: {quantize!r} is not supported; use int8")
        chosen = check_formats([*chosen, "torchscript_int8"], trained.kind)
    folder = Path(output)
    _check_folder(folder)
    test_X, test_y = _test_data(trained)

    _remove_previous_export(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    checks: dict[str, dict[str, Any]] = {}
    try:
        reference = _reference_outputs(trained, test_X[:_PARITY_BATCH])
        recorded = _recorded_score(trained, study, number) if retrained is None else {
            k: float(v) for k, v in trained.metrics.items() if k in ("test_accuracy", "test_rmse")}
        for name in chosen:
            exporter = EXPORTERS[name]
            t0 = time.perf_counter()
            path = exporter.write(trained, folder, test_X[:8].copy())
            written[name] = path
            run = exporter.runner(path)
            out = run(test_X[:_PARITY_BATCH])
            diff = float(np.max(np.abs(out.astype(np.float64) - reference))) if trained.kind != "sklearn" else 0.0
            if trained.kind == "sklearn":
                diff = float(np.max(np.abs(_as_float(out) - _as_float(reference)))) if len(out) else 0.0
            if exporter.exact and not diff <= tolerance:
                raise ExportCheckError(f"{name}: outputs differ from the PyTorch model by {diff:.3g} "
                                       f"(tolerance {tolerance:g}); the export was removed")
            score = _score(trained, run, test_X, test_y)
            if exporter.exact:
                _check_score(name, score, recorded)
            else:  # quantized: report what it costs and saves instead of holding it to the trial's score
                score.update({f"{k}_change": v - recorded[k] for k, v in score.items() if k in recorded})
                score["size_ratio"] = path.stat().st_size / _fp32_size(trained, folder, written, test_X[:8].copy())
            checks[name] = {"max_abs_diff": diff, "parity_batch": int(min(len(test_X), _PARITY_BATCH)),
                            **score, "seconds": round(time.perf_counter() - t0, 3)}
        if trained.kind == "text":  # the exported graphs take token ids: ship the tokenizer that makes them
            trained.extra["tokenizer"].save_pretrained(str(folder / "tokenizer"))
        card = _card(trained, study, number, written, checks, recorded)
        if retrained is not None:
            card["retrained"] = retrained
        (folder / CARD_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n")
        (folder / CARD_MD).write_text(_card_markdown(card))
        try:
            _record(study, number, folder, card)
        except Exception:  # noqa: BLE001 - a read-only storage: the export stands, only its listing is missing
            card["recorded_in_storage"] = False
    except BaseException:
        for path in written.values():
            path.unlink(missing_ok=True)
        raise
    finally:
        if workdir is not None:
            workdir.cleanup()
    return ExportResult(folder, study.study_name, number, written, checks, card)


# ---- choosing the trial --------------------------------------------------------------------------------


def _choose_trial(study: "optuna.Study", trial: int | None) -> int:
    if trial is not None:
        return trial_by_number(study, trial).number
    if len(study.directions) > 1:
        front = sorted(t.number for t in study.best_trials)
        raise UserInputError(f"study {study.study_name!r} has {len(study.directions)} objectives: choose one of its "
                             f"Pareto-optimal trials with --trial ({', '.join(map(str, front)) or 'none yet'})")
    try:
        return study.best_trial.number  # one query in the RDB storage
    except ValueError:
        raise UserInputError(f"study {study.study_name!r} has no complete trial to export yet") from None


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"-o {folder}: it is a file; give a folder to write the export into")
    if folder.is_dir() and (folder / CARD_JSON).exists():
        return  # re-exporting into an export folder replaces it
    if folder.is_dir() and any(folder.iterdir()):
        raise UserInputError(f"-o {folder}: the folder is not empty and holds no tuner export; choose a new folder")


class _RetrainContext:
    """What a task's ``run`` needs of a trial, for a re-training outside any study."""

    keep_last = True

    def __init__(self, trial_dir: Path, seed: int, metric: str, direction: str) -> None:
        import os

        self.trial_dir = trial_dir
        self.device = "cpu"
        self.seed = seed
        self.metric, self.direction = metric, direction
        self.metrics = (metric,)
        self.num_threads = max(1, os.cpu_count() or 1)
        self.attrs: dict[str, Any] = {}

    def report(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def set_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value


def _retrain(trained: TrainedModel, number: int, workdir: Path) -> tuple[TrainedModel, dict[str, Any]]:
    """Train the trial's configuration on train + validation for its best epoch count (the last epoch kept)."""
    import dataclasses

    from tuner.data import Part
    from tuner.tasks import get_task

    if trained.kind == "sklearn":
        return trained, {"note": "scikit-learn trials already refit their estimator on train + validation; "
                                 "exported as trained"}
    epochs = int(trained.extra.get("epoch") or trained.metrics.get("best_epoch") or trained.params.get("epochs") or 1)
    task = get_task(trained.task)(trained.task_args, source="export --retrain")

    def merge(data: Any) -> Any:  # train + val as the training part; test reported each epoch, never chosen on
        a, b = data.train.X, data.val.X
        if a.ndim == 3 and a.shape[2] != b.shape[2]:  # token ids padded to each part's longest: pad to the longer
            width = max(a.shape[2], b.shape[2])
            a, b = (np.pad(x, ((0, 0), (0, 0), (0, width - x.shape[2]))) for x in (a, b))
        return dataclasses.replace(data, train=Part(np.concatenate([a, b]), np.concatenate([data.train.y, data.val.y])),
                                   val=data.test)

    if trained.kind == "text":
        tokenized = task.tokenized
        task.tokenized = lambda tokenizer, max_length: merge(tokenized(tokenizer, max_length))  # type: ignore[method-assign]
        merged = task.tokenized(trained.extra["tokenizer"], trained.extra["max_length"])
    else:
        merged = merge(task.load_data())
        task.load_data = lambda: merged  # type: ignore[method-assign]
    params = {**trained.params, "epochs": epochs, "early_stopping_patience": 0}
    metric = "val_rmse" if trained.task_type == "regression" else "val_accuracy"
    direction = "minimize" if trained.task_type == "regression" else "maximize"
    t0 = time.perf_counter()
    ctx = _RetrainContext(workdir, seed=number, metric=metric, direction=direction)
    try:
        final = task.run(params, ctx)
    except TrialPruned as exc:  # the training loop's answer to a divergence with no finite epoch to keep
        raise UserInputError(f"--retrain: trial {number}'s configuration did not train on train + validation: {exc}; "
                             f"export it without --retrain") from None
    new = load_trained(workdir / "best.pt")
    new.metrics = dict(final)
    key = "test_rmse" if trained.task_type == "regression" else "test_accuracy"
    info = {"epochs": epochs, "train_samples": int(len(merged.train)), "seconds": round(time.perf_counter() - t0, 1),
            key: float(final[key]), f"trial_{key}": float(trained.metrics.get(key, float("nan")))}
    if "diverged_at_epoch" in ctx.attrs:
        info["note"] = (f"training diverged at epoch {ctx.attrs['diverged_at_epoch']} of {epochs}; "
                        f"the last finite epoch's weights are exported")
    return new, info


def _record(study: "optuna.Study", number: int, folder: Path, card: dict[str, Any], *, keep: int = 50) -> None:
    """Note the export in the study (the dashboard lists it on the trial's page; only these files are served)."""
    from tuner.engine import _attrs

    files = {name: dict(info) for name, info in card["files"].items()}
    files["model_card.json"] = {"file": CARD_JSON}
    files["model_card.md"] = {"file": CARD_MD}
    entry = {"trial": number, "folder": str(folder.resolve()), "files": files, "exported_at": card["exported_at"]}
    storage = study._storage
    previous = storage.get_study_system_attrs(study._study_id).get(_attrs.EXPORTS) or []
    kept = [e for e in previous if isinstance(e, dict) and e.get("folder") != entry["folder"]]
    storage.set_study_system_attr(study._study_id, _attrs.EXPORTS, (kept + [entry])[-keep:])


def _fp32_size(trained: TrainedModel, folder: Path, written: dict[str, Path], example: np.ndarray) -> int:
    """Bytes of the fp32 TorchScript file (written for the comparison if the export does not include it)."""
    if "torchscript" in written:
        return written["torchscript"].stat().st_size
    import tempfile

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        return EXPORTERS["torchscript"].write(trained, Path(tmp), example).stat().st_size


def _remove_previous_export(folder: Path) -> None:
    """Re-exporting into an export folder: remove the files its card lists (and the card), nothing else."""
    card = folder / CARD_JSON
    if not card.is_file():
        return
    try:
        files = json.loads(card.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        files = {}
    for info in files.values() if isinstance(files, dict) else []:
        name = str(info.get("file", "")) if isinstance(info, dict) else ""
        if name and "/" not in name and name not in ("..", "."):
            (folder / name).unlink(missing_ok=True)
    card.unlink(missing_ok=True)
    (folder / CARD_MD).unlink(missing_ok=True)
    if (folder / "tokenizer").is_dir():
        shutil.rmtree(folder / "tokenizer")


# ---- checking ------------------------------------------------------------------------------------------


def _test_data(trained: TrainedModel) -> tuple[np.ndarray, np.ndarray]:
    """The trial's test part, as raw features (what an export takes) and targets."""
    from tuner.tasks import get_task

    try:
        task = get_task(trained.task)(trained.task_args, source="export")
        data = task.load_data() if trained.kind != "text" else None
    except UserInputError as exc:
        raise UserInputError(f"cannot re-check the export on the trial's test data: {exc}") from None
    if trained.kind == "sklearn":
        return np.asarray(data.X_test), np.asarray(data.y_test)
    if trained.kind == "text":
        tokens = task.tokenized(trained.extra["tokenizer"], trained.extra["max_length"])
        return np.ascontiguousarray(tokens.test.X, dtype=np.int64), tokens.test.y
    X = data.test.X.astype(np.float64) * data.std + data.mean
    y = data.test.y
    if getattr(data, "task_type", "classification") == "regression":
        y = y.astype(np.float64) * float(data.y_std) + float(data.y_mean)
    if len(X) == 0:
        raise UserInputError("the trial's test part is empty: nothing to check the export on")
    return X.astype(np.float32), y


def _reference_outputs(trained: TrainedModel, X: np.ndarray) -> np.ndarray:
    if trained.kind == "sklearn":
        return np.asarray(trained.model.predict(X))
    import torch

    with torch.inference_mode():
        return trained.model(torch.from_numpy(X)).double().numpy()


def _as_float(a: np.ndarray) -> np.ndarray:
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError):
        return np.unique(a, return_inverse=True)[1].astype(np.float64)


def _score(trained: TrainedModel, run: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    out = np.concatenate([run(X[i:i + 1024]) for i in range(0, len(X), 1024)])
    if trained.task_type == "regression":
        pred = out.reshape(-1).astype(np.float64)
        return {"test_rmse": float(np.sqrt(np.mean((pred - y.astype(np.float64)) ** 2)))}
    labels = out if trained.kind == "sklearn" else out.argmax(axis=1)
    return {"test_accuracy": float(np.mean(np.asarray(labels).reshape(-1) == np.asarray(y).reshape(-1)))}


def _recorded_score(trained: TrainedModel, study: "optuna.Study", number: int) -> dict[str, float]:
    from tuner.engine import _attrs

    t = trial_by_number(study, number)
    metrics = {**trained.metrics, **(t.system_attrs.get(_attrs.METRICS) or {})}
    key = "test_rmse" if trained.task_type == "regression" else "test_accuracy"
    if key not in metrics:
        raise UserInputError(f"trial {number} recorded no {key}: nothing to check the export against")
    return {key: float(metrics[key])}


def _check_score(name: str, score: dict[str, float], recorded: dict[str, float]) -> None:
    for key, value in recorded.items():
        got = score[key]
        limit = _ACCURACY_TOLERANCE if key == "test_accuracy" else _RMSE_TOLERANCE * abs(value)
        if abs(got - value) > limit + 1e-12:
            raise ExportCheckError(f"{name}: {key} of the export is {got:.4f} but the trial recorded {value:.4f} "
                                   f"(allowed difference {limit:.4g}); the export was removed")


# ---- the model card ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import platform

    import optuna

    import tuner

    out = {"tuner": tuner.__version__, "optuna": optuna.__version__, "python": platform.python_version(),
           "numpy": np.__version__}
    for mod in ("torch", "sklearn", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def _card(trained: TrainedModel, study: "optuna.Study", number: int, written: dict[str, Path],
          checks: dict[str, dict[str, Any]], recorded: dict[str, float]) -> dict[str, Any]:
    from tuner._json import jsonable
    from tuner.engine import _attrs

    t = trial_by_number(study, number)
    metrics = {**trained.metrics, **(t.system_attrs.get(_attrs.METRICS) or {})}
    data = trained.data
    n_features = int(data.get("n_features") or 0)
    preprocessing: dict[str, Any]
    if trained.kind == "torch":
        preprocessing = {"standardize": "included in the exported model: (x - mean) / std per feature",
                         "mean": data.get("mean"), "std": data.get("std")}
        if trained.task_type == "regression":
            preprocessing["target"] = {"y_mean": data.get("y_mean"), "y_std": data.get("y_std"),
                                       "note": "the model outputs the target in its own units"}
    elif trained.kind == "text":
        preprocessing = {"tokenizer": "tokenizer/ (Hugging Face files; AutoTokenizer.from_pretrained)",
                         "max_length": trained.extra.get("max_length"), "encoder": trained.extra.get("encoder"),
                         "input": "token ids and attention mask stacked as [batch, 2, length] int64, right-padded"}
    else:
        preprocessing = {"note": "the exported pipeline includes its scaler; feed raw features"}
    return jsonable({
        "study": study.study_name,
        "trial": number,
        "kind": trained.kind,
        "task": trained.task,
        "task_type": trained.task_type,
        "estimator": trained.extra.get("estimator"),
        "params": trained.params,
        "values": t.values,
        "metric_names": study.metric_names,
        "directions": [d.name.lower() for d in study.directions],
        "metrics": {k: v for k, v in metrics.items() if k.startswith(("val_", "test_")) or k in ("n_params", "best_epoch")},
        "recorded_test": recorded,
        "data": {"dataset": data.get("dataset"), "task_args": trained.task_args,
                 "split": trained.task_args.get("split"), "split_seed": trained.task_args.get("split_seed"),
                 "sizes": data.get("sizes")},
        "input": ({"shape": ["batch", 2, "length"], "dtype": "int64", "sample_shape": None,
                   "layout": "sentences tokenized with tokenizer/ (ids and attention mask); tuner.load takes the texts"}
                  if trained.kind == "text" else
                  {"shape": ["batch", n_features] if n_features else None, "dtype": "float32",
                   "sample_shape": data.get("input_shape"), "layout": "one row of raw features per sample "
                   "(images flattened in C, H, W order)" if trained.kind == "torch" else "one row per sample"}),
        "output": ("the target value" if trained.task_type == "regression" else
                   ("the class index" if trained.kind == "sklearn" else "one logit per class")),
        "class_names": data.get("class_names"),
        "preprocessing": preprocessing,
        "files": {name: {"file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size}
                  for name, path in written.items()},
        "checks": checks,
        "versions": {**_versions(), **({"trained_with": trained.extra["versions"]} if trained.extra.get("versions") else {})},
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(trained.checkpoint),
    })


def _card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['study']}, trial {card['trial']}", "",
             f"- **Task**: {card['task']} ({card['task_type']})" + (f", estimator `{card['estimator']}`" if card.get("estimator") else ""),
             f"- **Data**: {card['data']['dataset']}, split {card['data']['split']} with seed {card['data']['split_seed']}"
             + (f"; sizes {card['data']['sizes']}" if card['data'].get('sizes') else ""),
             f"- **Input**: {card['input']['dtype']} array of shape {card['input']['shape']}; {card['input']['layout']}",
             f"- **Output**: {card['output']}" + (f"; classes {card['class_names']}" if card.get("class_names") else ""),
             f"- **Preprocessing**: {card['preprocessing'].get('standardize') or card['preprocessing'].get('note')}",
             f"- **Exported**: {card['exported_at']} with " + ", ".join(f"{k} {v}" for k, v in card["versions"].items() if isinstance(v, str)),
             "", "## Metrics", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(card["metrics"].items())]
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card["params"].items()]
    lines += ["", "## Files and checks", "",
              "| format | file | SHA-256 | max abs diff vs PyTorch | test score of the export (recorded) |", "|---|---|---|---:|---|"]
    recorded = ", ".join(f"{k} {v:.4f}" for k, v in card["recorded_test"].items())
    for name, info in card["files"].items():
        check = card["checks"].get(name, {})
        score = ", ".join(f"{k} {v:.4f}" for k, v in check.items() if k.startswith("test_"))
        lines.append(f"| {name} | `{info['file']}` | `{info['sha256'][:16]}…` | {check.get('max_abs_diff', 0):.2g} | "
                     f"{score} ({recorded}) |")
    lines += ["", "Load it with `tuner.load(FOLDER)` (`predict`, `predict_proba`) or `tuner predict FOLDER INPUT`.", ""]
    return "\n".join(lines)
