"""Export formats: one :class:`Exporter` each, registered by name.

An exporter writes one file for a :class:`TrainedModel` and can run that file again, so every
export is checked by running what was written (not the model in memory) on held-out data.

torch's own writers are never given a path: given one, its C++ zip writer meets a full disk
with ``c10::Error ... unexpected pos`` and, from a destructor, aborts the whole process
(``Aborted``, nothing cleaned up). Given a Python file instead (:func:`_save_through`), the
file's own ``OSError`` (``No space left on device``) reaches ``tuner export``, which says it in
one line and removes its work folder.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import io
import logging
import shutil
import warnings
from pathlib import Path
from typing import IO, Any, Callable, ClassVar

import numpy as np

from tuner.exceptions import UserInputError
from tuner.export._trained import TrainedModel

__all__ = ["Exporter", "EXPORTERS", "TORCH_FORMATS", "check_formats"]


class Exporter(abc.ABC):
    """Writes a trained model in one format and loads it back as ``fn(X raw float32) -> outputs``."""

    name: ClassVar[str]
    filename: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]           # "torch" and/or "sklearn"
    exact: ClassVar[bool] = True               # held to the parity tolerance and the recorded test score

    @abc.abstractmethod
    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        """Write the file into ``folder``; ``example`` is a batch of raw inputs (tracing, shapes)."""

    @abc.abstractmethod
    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A function running the written file: raw inputs ``(n, n_features)`` -> outputs (logits or values)."""


class StateDictExporter(Exporter):
    """Weights plus what rebuilds the network (task, params, data description): ``torch.load`` it
    with ``weights_only=True``, or give it to ``tuner.load`` or a fine-tuning study's ``pretrained:``."""

    name, filename, kinds = "state_dict", "model.pt", ("torch", "text")

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        import torch

        # image/tabular: the bare network (standardisation is rebuilt from ``data``); text: the whole
        # classifier, frozen encoder weights included, with the encoder it was built on
        net = trained.model.classifier if trained.kind == "text" else trained.model.net
        path = folder / self.filename
        extra = {"model": trained.extra.get("encoder"), "max_length": trained.extra.get("max_length")} \
            if trained.kind == "text" else {}
        from tuner.tasks._base import save_torch_file  # through a Python file: see the module's docstring

        save_torch_file(path, {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                               "task": trained.task, "task_args": trained.task_args, "params": trained.params,
                               "data": trained.data, "metrics": trained.metrics, "epoch": trained.extra.get("epoch"),
                               "torch_version": str(torch.__version__), **extra})
        return path

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        from tuner.export._trained import load_trained

        return _torch_runner(load_trained(path).model)


class TorchScriptExporter(Exporter):
    """A traced TorchScript module with the standardisation inside: ``torch.jit.load`` needs no tuner."""

    name, filename, kinds = "torchscript", "model.torchscript.pt", ("torch", "text")

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        import torch

        path = folder / self.filename
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(trained.model, torch.from_numpy(example), check_trace=False)
        _save_through(path, lambda fh: torch.jit.save(traced, fh))
        return path

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        return _torch_runner(torch.jit.load(str(path), map_location="cpu").eval())


class ExportedProgramExporter(Exporter):
    """``torch.export``'s ExportedProgram (``.pt2``), with the standardisation inside and a dynamic
    batch axis: the format PyTorch recommends now that it deprecates TorchScript (torch 2.13 warns
    on ``torch.jit.trace`` and ``torch.jit.load``). ``torch.export.load(path).module()`` runs it
    with no tuner installed; AOTInductor and ExecuTorch compile it for serving and devices."""

    name, filename, kinds = "exported_program", "model.pt2", ("torch", "text")

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        import torch

        path = folder / self.filename
        x = torch.from_numpy(example)
        x = torch.cat([x, x]) if len(x) < 2 else x  # a batch of one would pin the batch axis to 1
        shapes = {0: torch.export.Dim("batch")}
        if trained.kind == "text":  # token ids [batch, 2, length]: the length varies too, up to what the
            # encoder's position table holds (512): torch.export finds that bound itself (Dim.AUTO)
            auto = getattr(torch.export.Dim, "AUTO", None)
            shapes[2] = auto if auto is not None else torch.export.Dim("length", max=512)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(trained.model.eval(), (x,), dynamic_shapes=(shapes,))
        except Exception as exc:  # noqa: BLE001 - an older torch, or a graph torch.export cannot capture
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise UserInputError(f"exported_program: torch {torch.__version__} could not capture the model "
                                 f"({type(exc).__name__}: {first}); export the other formats with --format "
                                 f"state_dict,torchscript,onnx, or use the torch version in constraints.txt") from None
        _save_through(path, lambda fh: torch.export.save(program, fh))
        return path

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        import torch

        return _torch_runner(torch.export.load(str(path)).module())


class QuantizedTorchScriptExporter(TorchScriptExporter):
    """TorchScript with int8 dynamic quantization of the linear layers (weights int8, activations
    quantized on the fly): smaller and faster on CPU, not bit-exact, so the export reports its
    accuracy and size change instead of holding it to the parity tolerance."""

    name, filename, kinds = "torchscript_int8", "model.int8.torchscript.pt", ("torch", "text")
    exact = False

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        import copy

        import torch
        from torch import nn

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API, still the CPU int8 path in torch 2.x
            quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(trained.model).eval(), {nn.Linear},
                                                               dtype=torch.qint8)
        return super().write(dataclasses.replace(trained, model=quantized), folder, example)


class OnnxExporter(Exporter):
    """ONNX with a dynamic batch axis (input ``input``, output ``output``), run by onnxruntime."""

    name, filename, kinds = "onnx", "model.onnx", ("torch", "text")

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        import torch

        path = folder / self.filename
        x = torch.from_numpy(example)
        # torch.export needs at least two samples to treat the batch axis as dynamic.
        x = torch.cat([x, x]) if len(x) < 2 else x
        text = trained.kind == "text"  # token ids [batch, 2, length]: the length varies too
        shapes = {0: torch.export.Dim("batch"), 2: torch.export.Dim("length")} if text else {0: torch.export.Dim("batch")}
        axes = {"input": {0: "batch", 2: "length"} if text else {0: "batch"}, "output": {0: "batch"}}
        quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" notes from the op registry
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(trained.model, (x,), str(path), input_names=["input"], output_names=["output"],
                                  dynamic_shapes=(shapes,), dynamo=True,
                                  external_data=False)  # one self-contained file
            except OSError:  # the file could not be written (a full disk): the other exporter would not do better
                raise
            except Exception:  # noqa: BLE001 - the graph capture failed: use the TorchScript-based exporter
                torch.onnx.export(trained.model, (x,), str(path), input_names=["input"], output_names=["output"],
                                  dynamic_axes=axes, dynamo=False)
            finally:
                quiet.setLevel(level)
        return path

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda X: np.asarray(session.run(None, {name: _as_input(X)})[0])


class SklearnExporter(Exporter):
    """The fitted scikit-learn estimator (with its preprocessing steps when it is a Pipeline) as joblib, with
    its versions and SHA-256 in the model card; :func:`tuner.load` unpickles it only when the checksum matches."""

    name, filename, kinds = "sklearn", "model.joblib", ("sklearn",)

    def write(self, trained: TrainedModel, folder: Path, example: np.ndarray) -> Path:
        path = folder / self.filename
        shutil.copyfile(trained.checkpoint, path)
        return path

    def runner(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        import joblib

        model = joblib.load(path)
        return lambda X: np.asarray(model.predict(X))


EXPORTERS: dict[str, Exporter] = {e.name: e for e in (StateDictExporter(), TorchScriptExporter(), OnnxExporter(),
                                                       ExportedProgramExporter(), QuantizedTorchScriptExporter(),
                                                       SklearnExporter())}
TORCH_FORMATS = ("state_dict", "torchscript", "onnx", "exported_program")


def check_formats(formats: list[str], kind: str) -> list[str]:
    """The formats to write for a ``kind`` model ("torch"/"sklearn"); unknown or unsuitable ones are errors."""
    out = []
    for f in formats:
        if f not in EXPORTERS:
            raise UserInputError(f"--format: unknown format {f!r}; use {', '.join(TORCH_FORMATS)}, torchscript_int8 "
                                 f"(torch and text tasks) or sklearn")
        if kind not in EXPORTERS[f].kinds:
            fits = [n for n, e in EXPORTERS.items() if kind in e.kinds]
            raise UserInputError(f"--format: {f} does not apply to a {kind} model; use {', '.join(fits)}")
        if f not in out:
            out.append(f)
    return out


def _save_through(path: Path, save: Callable[[IO[bytes]], None]) -> None:
    """``save(file)`` into ``path`` through a Python file, raising the file's own ``OSError``.

    torch turns a failed write into ``RuntimeError: ... unexpected pos`` (or, writing to a path
    itself, aborts the process); the first error the file raised is kept and raised instead, so a
    full disk reads ``[Errno 28] No space left on device``.
    """
    with open(path, "wb") as fh:
        from tuner.tasks._base import KeepsFileErrors

        writer = KeepsFileErrors(fh)
        try:
            save(writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
    if writer.error is not None:  # swallowed on the way (a writer that ignores a failed write)
        raise writer.error


def _torch_runner(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    def run(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(_as_input(X)))
        return out.float().numpy()

    return run


def _as_input(X: np.ndarray) -> np.ndarray:
    """Features as float32; token ids (text models) stay int64."""
    X = np.asarray(X)
    return np.ascontiguousarray(X, dtype=np.int64 if X.dtype.kind in "iu" else np.float32)
