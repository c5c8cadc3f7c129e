"""``tuner export``: write the chosen trial's model in the chosen formats, check each, write a model card.

Nothing is reported as exported before it is checked: every written file is loaded back and
run on held-out test data (parity with the PyTorch model: max absolute difference of the
outputs, below ``tolerance``; for regression plus a relative part, see :func:`_parity_tolerance`) and scored (test accuracy within 0.5 percentage points of what
the trial recorded; for regression the test RMSE within 0.5 %). The export is built in a work
folder beside the output folder and moved in only once every check passed, so a failed check
(or any other failure) raises and leaves the output folder, and a previous export in it, as it was.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from tuner.exceptions import TrialPruned, UserInputError
from tuner.storage import redact_urls
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
#: Regression parity: this fraction of the largest output's magnitude is allowed on top of ``tolerance``
#: (float32 carries about 7 digits: 84 units in its last place).
_REGRESSION_RTOL = 1e-5
#: The name of the temporary folder ``--retrain`` trains in starts with this.
_RETRAIN_PREFIX = "tuner-retrain-"


class ExportCheckError(UserInputError):
    """An export that does not reproduce the trial (exit code 2; nothing is written)."""


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

    The export is built and checked in a work folder beside ``output`` and moved in only when
    every check passed: a failure leaves ``output`` (a previous export in it, its record in the
    study) as it was, and creates no folder.
    """
    from tuner._api import load_study

    if not tolerance >= 0:  # NaN too: it would pass no check and say so only after the writing
        raise UserInputError(f"--tolerance must be >= 0 (got {tolerance:g}): it is the largest absolute difference "
                             f"allowed between the exported file's outputs and the model's, e.g. 1e-4")
    if quantize is not None and quantize != "int8":
        raise UserInputError(f"--quantize: {quantize!r} is not supported; use int8")
    study = load_study(study_name, storage)
    _check_built_in_task(study)
    number = _choose_trial(study, trial)
    checkpoint = find_checkpoint(study, number)
    trained = load_trained(checkpoint)
    chosen = check_formats(list(formats) if formats else
                           (["sklearn"] if trained.kind == "sklearn" else list(TORCH_FORMATS)), trained.kind)
    if quantize is not None:
        if trained.kind not in EXPORTERS["torchscript_int8"].kinds:
            raise UserInputError(f"--quantize {quantize} does not apply to a {trained.kind} model (it quantizes a "
                                 f"neural network's linear layers); export without --quantize")
        chosen = check_formats([*chosen, "torchscript_int8"], trained.kind)
    folder = Path(output)
    _check_folder(folder)
    target = Path(os.path.abspath(folder))  # ".", "a/..": a name and a parent to put the work folder beside

    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(_no_room_is_one_line(shown=str(output)))  # left last: after the work folder went
        stage = cleanup.enter_context(_staging(target, shown=str(output)))  # an unusable -o fails before training
        retrained: dict[str, Any] | None = None
        if retrain:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=_RETRAIN_PREFIX)))
            trained, retrained = _retrain(trained, number, workdir)
        test_X, test_y = _test_data(trained)
        reference = _reference_outputs(trained, test_X[:_PARITY_BATCH])
        recorded = _recorded_score(trained, study, number) if retrained is None else {
            k: float(v) for k, v in trained.metrics.items() if k in ("test_accuracy", "test_rmse")}
        written: dict[str, Path] = {}
        checks: dict[str, dict[str, Any]] = {}
        for name in chosen:
            exporter = EXPORTERS[name]
            t0 = time.perf_counter()
            path = exporter.write(trained, stage, test_X[:8].copy())
            written[name] = path
            run = exporter.runner(path)
            out = run(test_X[:_PARITY_BATCH])
            if trained.kind == "sklearn":
                diff = float(np.max(np.abs(_as_float(out) - _as_float(reference)))) if len(out) else 0.0
            else:
                diff = float(np.max(np.abs(out.astype(np.float64) - reference)))
            allowed, how = _parity_tolerance(trained, tolerance, reference)
            if exporter.exact and not diff <= allowed:
                raise ExportCheckError(f"{name}: outputs differ from {_compared_with(trained, retrained)} by "
                                       f"{diff:.3g} (tolerance {how}); {_NOTHING_WRITTEN}")
            score = _score(trained, run, test_X, test_y)
            if exporter.exact:
                _check_score(name, score, recorded, "epochs" in (retrained or {}))
            else:  # quantized: report what it costs and saves instead of holding it to the trial's score
                score.update({f"{k}_change": v - recorded[k] for k, v in score.items() if k in recorded})
                score["size_ratio"] = path.stat().st_size / _fp32_size(trained, stage, written, test_X[:8].copy())
            checks[name] = {"max_abs_diff": diff, "tolerance": allowed,
                            "parity_batch": int(min(len(test_X), _PARITY_BATCH)),
                            **score, "seconds": round(time.perf_counter() - t0, 3)}
        if trained.kind == "text":  # the exported graphs take token ids: ship the tokenizer that makes them
            trained.extra["tokenizer"].save_pretrained(str(stage / "tokenizer"))
        card = _card(trained, study, number, written, checks, recorded, retrained, checkpoint)
        (stage / CARD_JSON).write_text(json.dumps(card, indent=2, default=str) + "\n")
        (stage / CARD_MD).write_text(_card_markdown(card))
        _swap_in(stage, target, shown=str(output))
    files = {name: folder / path.name for name, path in written.items()}
    try:
        _record(study, number, folder, card)
    except Exception:  # noqa: BLE001 - a read-only storage: the export stands, only its listing is missing
        card["recorded_in_storage"] = False
    return ExportResult(folder, study.study_name, number, files, checks, card)


_NOTHING_WRITTEN = "nothing was exported (the output folder is as it was)"


# ---- where the files go ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(target: Path, *, shown: str) -> Iterator[Path]:
    """A fresh work folder beside ``target`` (same file system: the files are moved in by renaming),
    removed on the way out, with the parent folders it had to create when the export failed."""
    missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]  # deepest first
    # An existing output folder holds its own work folder: `-o .` or a mounted folder under a
    # parent the user cannot write must work; a new one is made beside, so it can be renamed in.
    home = target if target.is_dir() else target.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name or 'export'}.tuner-export-", dir=home))
    except OSError as exc:
        _remove_empty(missing)
        raise UserInputError(f"-o {shown}: cannot create the export folder ({_why_not(target, exc)}); "
                             f"give a folder in a writable location (e.g. -o ./{target.name or 'export'})") from None
    stage = work / "new"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        _remove_empty(missing)
        raise
    shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _no_room_is_one_line(*, shown: str) -> Iterator[None]:
    """A full disk (or quota) while the export is written: one line and exit 2, not a traceback.

    It is the user's to fix (free space, or another disk), and nothing was lost: the work folder
    is removed by :func:`_staging` before this says so, and the output folder was not touched.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        written = Path(exc.filename) if exc.filename else None
        where = f" writing {written.name}" if written else ""
        if written is not None and any(part.startswith(_RETRAIN_PREFIX) for part in written.parts):  # --retrain's
            raise UserInputError(f"{exc.strerror or 'No space left on device'} writing {written} (--retrain trains "
                                 f"in the temporary folder {tempfile.gettempdir()}); {_NOTHING_WRITTEN}; free space "
                                 f"there or point TMPDIR at another disk") from None
        raise UserInputError(f"-o {shown}: {exc.strerror or 'No space left on device'}{where}; {_NOTHING_WRITTEN}; "
                             f"free space there or export to another disk with -o") from None


def _why_not(target: Path, exc: OSError) -> str:
    """The reason a folder cannot be made there, in the user's terms (a file on the way, no such place)."""
    for ancestor in [target, *target.parents]:
        if ancestor.exists() and not ancestor.is_dir():
            return f"{ancestor} is a file"
        if ancestor.is_dir():
            return f"{ancestor} takes no new folder: {exc.strerror or exc}"
    return exc.strerror or str(exc)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders the export created (deepest first) when nothing ended up in them."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def _swap_in(stage: Path, target: Path, *, shown: str) -> None:
    """Move the checked export from ``stage`` into ``target``: one rename when ``target`` does not exist;
    else the previous export's files move aside, the new ones in, and the previous ones are deleted only
    once every new one is in place (a failure puts the previous ones back)."""
    if not target.exists():
        try:
            os.rename(stage, target)
            return
        except OSError as exc:
            raise UserInputError(f"-o {shown}: cannot create the export folder ({_why_not(target, exc)}); "
                                 f"{_NOTHING_WRITTEN}") from None
    new = sorted(p.name for p in stage.iterdir())
    old = sorted(set(_previous_export_names(target)) | {n for n in new if (target / n).exists()})
    aside = stage.parent / "previous"
    aside.mkdir()
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for name in old:
            shutil.move(str(target / name), str(aside / name))
            moved_aside.append(name)
        for name in new:
            shutil.move(str(stage / name), str(target / name))
            moved_in.append(name)
    except BaseException as exc:  # a Ctrl-C too: the previous export goes back before the work folder goes
        undo = list(moved_in)
        if len(moved_aside) == len(old):  # failed moving in: the name being moved may be there in part
            undo += [n for n in new if n not in moved_in][:1]
        for name in undo:
            path = target / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for name in moved_aside:
            shutil.move(str(aside / name), str(target / name))
        if not isinstance(exc, OSError):
            raise
        raise UserInputError(f"-o {shown}: cannot move the new export into the folder ({exc.strerror or exc}); "
                             f"the previous export is as it was") from None


def _previous_export_names(folder: Path) -> list[str]:
    """The names an export folder's previous export owns: the files its card lists, the cards, the tokenizer."""
    card = folder / CARD_JSON
    if not card.is_file():
        return []
    try:
        files = json.loads(card.read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        files = {}
    names = {CARD_JSON, CARD_MD, "tokenizer"}
    for info in files.values() if isinstance(files, dict) else []:
        name = str(info.get("file", "")) if isinstance(info, dict) else ""
        if name and "/" not in name and name not in ("..", "."):
            names.add(name)
    return sorted(n for n in names if (folder / n).exists())


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


def _check_built_in_task(study: "optuna.Study") -> None:
    """A study of the user's own objective trains no model tuner can rebuild: say so, not "pick another trial"."""
    from tuner.engine import _attrs

    spec = study._storage.get_study_system_attrs(study._study_id).get(_attrs.SPEC)
    if not isinstance(spec, dict) or spec.get("task"):
        return  # a built-in task, or a study tuner did not run (its trials are looked at one by one)
    name = study.study_name
    what = f"objective {spec['objective']}" if spec.get("objective") else "a Python objective"
    raise UserInputError(f"study {name!r} has no checkpoint to export: it ran {what}, which is not a built-in task, "
                         f"so its trials save no model tuner can rebuild; `tuner best {name}` prints the best "
                         f"parameters to train and save your model with")


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

    def __init__(self, trial_dir: Path, seed: int, metric: str, direction: str, stop_after_epoch: int) -> None:
        import os

        #: The loop ends after this epoch, its schedule still laid out over the trial's ``epochs``.
        self.stop_after_epoch = stop_after_epoch
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
    """Train the trial's configuration on train + validation for its best epoch count (the last epoch kept).

    The learning-rate schedule keeps the trial's horizon (its ``epochs``; a step schedule's
    ``step_epochs``) and the training stops after the best epoch: rebuilt for the shorter run, a
    cosine or one-cycle schedule decayed to nothing by then and a step schedule decayed 100-fold
    where the trial had not decayed yet, so the weights exported were not the ones the best
    epoch was chosen on."""
    import dataclasses

    from tuner.data import Part
    from tuner.tasks import get_task

    if trained.kind == "sklearn":
        return trained, {"note": "scikit-learn trials already refit their estimator on train + validation; "
                                 "exported as trained"}
    epochs = int(trained.extra.get("epoch") or trained.metrics.get("best_epoch") or trained.params.get("epochs") or 1)
    task = get_task(trained.task)(_retrain_task_args(trained, number), source="export --retrain")

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
    params = {**trained.params, "early_stopping_patience": 0}
    metric = "val_rmse" if trained.task_type == "regression" else "val_accuracy"
    direction = "minimize" if trained.task_type == "regression" else "maximize"
    t0 = time.perf_counter()
    ctx = _RetrainContext(workdir, seed=number, metric=metric, direction=direction, stop_after_epoch=epochs)
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


def _retrain_task_args(trained: TrainedModel, number: int) -> dict[str, Any]:
    """The trial's task arguments, with ``pretrained`` set to the very checkpoint the trial
    fine-tuned from (its ``best.pt`` records it). A ``pretrained: {study: NAME}`` reference would
    be looked up again: outside a run there is no storage to look it up in (the export failed),
    and the study's best trial may have changed since, which would retrain from other weights."""
    args = dict(trained.task_args)
    if args.get("pretrained") is None:
        return args
    used = trained.extra.get("pretrained_from")
    if not used:
        raise UserInputError(f"--retrain: trial {number}'s checkpoint does not say which weights it fine-tuned "
                             "from; export it without --retrain")
    if not Path(used).is_file():
        raise UserInputError(f"--retrain: trial {number} fine-tuned from {used}, which is no longer there; put it "
                             "back, or export the trial without --retrain")
    args["pretrained"] = str(used)
    return args


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


def _parity_tolerance(trained: TrainedModel, tolerance: float, reference: np.ndarray) -> tuple[float, str]:
    """The largest difference allowed between a file's outputs and the model's, and how it was made.

    Logits (and a scikit-learn model's answers) are held to ``tolerance`` as given. A torch
    regression network answers in the target's units: float32 has about 7 significant digits, so
    at targets around 1.5e6 two runtimes' roundings differ by 0.1 or more and an absolute 1e-4
    refused every export. There ``tolerance`` gets ``_REGRESSION_RTOL`` of the largest output's
    magnitude added (numpy's ``atol + rtol * |y|``), which for targets near 1 is what it was.
    """
    if trained.kind == "sklearn" or trained.task_type != "regression" or not len(reference):
        return tolerance, f"{tolerance:g}"
    scale = float(np.max(np.abs(reference)))
    if not np.isfinite(scale):
        return tolerance, f"{tolerance:g}"
    allowed = tolerance + _REGRESSION_RTOL * scale
    return allowed, f"{allowed:.3g} = {tolerance:g} + {_REGRESSION_RTOL:g} x the largest output {scale:.3g}"


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


def _check_score(name: str, score: dict[str, float], recorded: dict[str, float], retrained: bool = False) -> None:
    whose = "the retrained model scored" if retrained else "the trial recorded"
    for key, value in recorded.items():
        got = score[key]
        limit = _ACCURACY_TOLERANCE if key == "test_accuracy" else _RMSE_TOLERANCE * abs(value)
        if abs(got - value) > limit + 1e-12:
            raise ExportCheckError(f"{name}: {key} of the export is {got:.4f} but {whose} {value:.4f} "
                                   f"(allowed difference {limit:.4g}); {_NOTHING_WRITTEN}")


def _compared_with(trained: TrainedModel, retrained: dict[str, Any] | None) -> str:
    """What an exported file's outputs were compared with (the card and the error messages say it)."""
    if trained.kind == "sklearn":
        return "the trial's model as trained"
    return "the retrained PyTorch model" if retrained and "epochs" in retrained else "the PyTorch model"


def _checked_against(retrained: dict[str, Any] | None) -> str:
    """Whose test score an exported file's score was held to."""
    if retrained and "epochs" in retrained:
        return "the retrained model's test score"
    return "the trial's recorded test score"


def _sklearn_preprocessing(model: Any) -> str:
    """What the exported scikit-learn object does to raw features, read from the object itself."""
    steps = getattr(model, "steps", None)
    if not steps:
        return (f"none: the exported object is a bare {type(model).__name__}, with no preprocessing; "
                f"feed the raw features as the data file holds them")
    names = [type(step).__name__ for _, step in steps]
    before = names[:-1]
    if not before:
        return f"none: the exported object is a Pipeline of one step ({names[-1]}); feed raw features"
    does = "scales the raw features itself" if all(n.endswith("Scaler") for n in before) else \
        "transforms the raw features itself"
    return f"the exported object is a Pipeline ({' -> '.join(names)}): it {does}; feed raw features"


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
          checks: dict[str, dict[str, Any]], recorded: dict[str, float], retrained: dict[str, Any] | None,
          checkpoint: Path) -> dict[str, Any]:
    """The model card of the exported model; a retrained export's metrics and sizes are the retrained
    model's (the trial's own metrics are kept apart, as the trial's)."""
    from tuner._json import jsonable
    from tuner.engine import _attrs
    from tuner.export._predictor import _schema  # here: _predictor imports this module

    t = trial_by_number(study, number)
    trial_metrics = {k: v for k, v in {**trained.metrics, **(t.system_attrs.get(_attrs.METRICS) or {})}.items()
                     if k.startswith(("val_", "test_")) or k in ("n_params", "best_epoch")}
    data = dict(trained.data)
    info = retrained or {}
    retrained_model = "epochs" in info
    if retrained_model:
        # the validation part was trained on (and stood in for by the test part): only test metrics describe it
        metrics = {k: v for k, v in trained.metrics.items() if k.startswith("test_") or k == "n_params"}
        sizes = data.get("sizes") or {}
        data["sizes"] = {"train": int(info["train_samples"]), **({"test": sizes["test"]} if "test" in sizes else {})}
    else:
        metrics = trial_metrics
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
        preprocessing = {"note": _sklearn_preprocessing(trained.model)}
    card = {
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
        "metrics": metrics,
        **({"retrained": retrained} if retrained is not None else {}),
        **({"trial_metrics": trial_metrics} if retrained_model else {}),
        "recorded_test": recorded,
        "checked_against": _checked_against(retrained),
        "compared_with": _compared_with(trained, retrained),
        # a `pretrained: {storage: URL}` with a password: the card is shared with the model
        "data": {"dataset": data.get("dataset"), "task_args": redact_urls(trained.task_args),
                 "split": trained.task_args.get("split"), "split_seed": trained.task_args.get("split_seed"),
                 "sizes": data.get("sizes"),
                 **({"sizes_note": "train: the trial's train and validation parts, retrained on both"}
                    if retrained_model else {})},
        "input": ({"shape": ["batch", 2, "length"], "dtype": "int64", "sample_shape": None,
                   "layout": "sentences tokenized with tokenizer/ (ids and attention mask); tuner.load takes the texts"}
                  if trained.kind == "text" else
                  {"shape": ["batch", n_features] if n_features else None, "dtype": "float32",
                   "sample_shape": data.get("input_shape"), "layout": _layout(trained)}),
        "output": ("the target value" if trained.task_type == "regression" else
                   ("the class index" if trained.kind == "sklearn" else "one logit per class")),
        "class_names": data.get("class_names"),
        "schema": _schema(trained),  # CSV feature/label names and label type, read by tuner predict
        "preprocessing": preprocessing,
        "files": {name: {"file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size}
                  for name, path in written.items()},
        "checks": checks,
        "versions": {**_versions(), **({"trained_with": trained.extra["versions"]} if trained.extra.get("versions") else {})},
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # a retrained model's own checkpoint was a temporary file: name the trial's, its parameters' source
        "checkpoint": str(checkpoint),
    }
    return jsonable(card)


def _layout(trained: TrainedModel) -> str:
    """How a sample is laid out in an input row: the C, H, W note only for images (a sample shape
    of more than one axis), where the order matters; a table's row is its features as they are."""
    if trained.kind != "torch":
        return "one row per sample"
    shape = trained.data.get("input_shape")
    if isinstance(shape, (list, tuple)) and len(shape) > 1:
        return "one row of raw features per sample (images flattened in C, H, W order)"
    return "one row of raw features per sample"


def _card_markdown(card: dict[str, Any]) -> str:
    retrained = card.get("retrained") or {}
    lines = [f"# Model card: {card['study']}, trial {card['trial']}", "",
             f"- **Task**: {card['task']} ({card['task_type']})" + (f", estimator `{card['estimator']}`" if card.get("estimator") else "")]
    if "epochs" in retrained:
        lines.append(f"- **Retrained**: this model was retrained on train + validation ({retrained['train_samples']} "
                     f"samples) for {retrained['epochs']} epochs from trial {card['trial']}'s parameters; it is not "
                     f"the model the trial trained (that one's metrics are under \"Trial {card['trial']}'s metrics\")"
                     + (f"; {retrained['note']}" if retrained.get("note") else ""))
    elif retrained.get("note"):
        lines.append(f"- **Retrained**: no; {retrained['note']}")
    lines += [f"- **Data**: {card['data']['dataset']}, split {card['data']['split']} with seed {card['data']['split_seed']}"
              + (f"; sizes {card['data']['sizes']}" if card['data'].get('sizes') else "")
              + (f" ({card['data']['sizes_note']})" if card['data'].get('sizes_note') else ""),
              f"- **Input**: {card['input']['dtype']} array of shape {card['input']['shape']}; {card['input']['layout']}",
              f"- **Output**: {card['output']}" + (f"; classes {card['class_names']}" if card.get("class_names") else ""),
              f"- **Preprocessing**: {card['preprocessing'].get('standardize') or card['preprocessing'].get('note')}",
              f"- **Exported**: {card['exported_at']} with " + ", ".join(f"{k} {v}" for k, v in card["versions"].items() if isinstance(v, str)),
              "", "## Metrics", ""]
    if "trial_metrics" in card:
        lines += ["Of the exported (retrained) model, on the test part; the validation part was trained on.", ""]
    lines += _metrics_table(card["metrics"])
    if "trial_metrics" in card:
        lines += ["", f"## Trial {card['trial']}'s metrics", "",
                  "Of the model the trial trained in the study (not the exported one).", ""]
        lines += _metrics_table(card["trial_metrics"])
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card["params"].items()]
    against = card.get("compared_with", "the PyTorch model")
    expected = card.get("checked_against", "the trial's recorded test score")
    lines += ["", "## Files and checks", "",
              f"| format | file | SHA-256 | max abs diff vs {against} | test score of the export ({expected}) |",
              "|---|---|---|---:|---|"]
    recorded = ", ".join(f"{k} {v:.4f}" for k, v in card["recorded_test"].items())
    for name, info in card["files"].items():
        check = card["checks"].get(name, {})
        score = ", ".join(f"{k} {v:.4f}" for k, v in check.items() if k.startswith("test_"))
        lines.append(f"| {name} | `{info['file']}` | `{info['sha256'][:16]}…` | {check.get('max_abs_diff', 0):.2g} | "
                     f"{score} ({recorded}) |")
    lines += ["", "Load it with `tuner.load(FOLDER)` (`predict`, `predict_proba`) or `tuner predict FOLDER INPUT`.", ""]
    return "\n".join(lines)


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    return ["| metric | value |", "|---|---:|"] + [
        f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())]
