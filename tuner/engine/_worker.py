"""The code that runs one trial inside a Ray worker.

Ray Tune calls :func:`trainable` with the parameters the driver's Optuna study chose. The
worker opens the storage once per process (actors are reused), runs the objective or the
built-in task with a :class:`~tuner.engine._context.TrialContext`, records placement, curve,
final metrics and any error itself, and returns only the verdict to the driver, which tells
Optuna. Exceptions never escape: a failing objective must not cost a Ray actor restart.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from tuner.engine import _attrs
from tuner.engine._context import TrialContext, _jsonable
from tuner.exceptions import TrialPruned

STATE_KEY = "tuner_state"
VALUES_KEY = "tuner_values"


@dataclass
class JobInfo:
    """Everything a worker needs about the study; shipped once through Ray's object store."""

    storage_url: str
    study_name: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    pruner: str
    pruner_args: dict[str, Any]
    task: str | None
    task_args: dict[str, Any]
    objective_ref: str | None
    objective_fn: Callable[..., Any] | None
    artifacts_dir: str
    source: str
    base_dir: str
    driver_cwd: str
    driver_sys_path: list[str]
    cpus: float
    gpus: float
    seed: int | None
    trial_timeout: float | None
    extra: dict[str, Any] = field(default_factory=dict)


_STUDIES: dict[tuple[str, str], Any] = {}
_OBJECTIVES: dict[str, Callable[..., Any]] = {}


def _study(job: JobInfo) -> Any:
    """The study object of this worker process, opened once (workers are reused)."""
    key = (job.storage_url, job.study_name)
    if key not in _STUDIES:
        import optuna

        from tuner.engine._plugins import make_pruner
        from tuner.storage import open_storage

        class _P:  # the pruner factory reads only these two fields
            pruner, pruner_args = job.pruner, job.pruner_args

        storage = open_storage(job.storage_url, worker=True)
        _STUDIES[key] = optuna.load_study(study_name=job.study_name, storage=storage,
                                          sampler=optuna.samplers.RandomSampler(), pruner=make_pruner(_P))  # type: ignore[arg-type]
    return _STUDIES[key]


def resolve_objective(ref: str, *, extra_paths: list[str] | None = None) -> Callable[..., Any]:
    """Import ``package.module:function`` or ``/abs/path/file.py:function``."""
    if ref in _OBJECTIVES:
        return _OBJECTIVES[ref]
    for p in reversed(extra_paths or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    module_name, _, func_name = ref.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        name = "tuner_objective_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ImportError(f"{module_name} has no function {func_name!r}")
    _OBJECTIVES[ref] = fn
    return fn


def _placement(job: JobInfo, trial_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "trial_dir": str(trial_dir),
                            "started": time.time(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import ray

        ctx = ray.get_runtime_context()
        info["node_id"] = ctx.get_node_id()
        info["ip"] = ray.util.get_node_ip_address()
        info["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
        info["gpus"] = job.gpus
        info["cpus"] = job.cpus
    except Exception:  # noqa: BLE001 - placement is informative, never fatal
        pass
    return info


def _device(job: JobInfo) -> str:
    if job.gpus <= 0 or not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cuda"


def _error_info(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-20000:]}


class _Watchdog:
    """Ends a hung trial: records it FAIL, then exits the worker process (threads can't be killed)."""

    def __init__(self, seconds: float, on_timeout: Callable[[], None]) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds, on_timeout), daemon=True)
        self._thread.start()

    def _run(self, seconds: float, on_timeout: Callable[[], None]) -> None:
        if not self._done.wait(seconds):
            try:
                on_timeout()
            finally:
                os._exit(70)

    def cancel(self) -> None:
        self._done.set()


def run_trial(job: JobInfo, config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one trial and return ``{tuner_state, tuner_values}``; everything else goes to storage."""
    trial_id: int = config["trial_id"]
    number: int = config["number"]
    params: dict[str, Any] = dict(config["params"])
    study = _study(job)
    storage = study._storage
    trial_dir = Path(job.artifacts_dir) / job.study_name / f"trial_{number:05d}"
    seed = (job.seed if job.seed is not None else 0) * 1_000_003 + number
    watchdog: _Watchdog | None = None
    try:
        trial_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # An unwritable artifact folder must not lose the trial: it runs without one.
        trial_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "tuner-scratch" / job.study_name / f"trial_{number:05d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        storage.set_trial_system_attr(trial_id, _attrs.ATTR_PREFIX + "artifact_warning",
                                      f"artifacts folder unusable ({exc.strerror or exc}); used {trial_dir}")
    storage.set_trial_system_attr(trial_id, _attrs.WORKER, _jsonable(_placement(job, trial_dir)))
    ctx = TrialContext(study=study, trial_id=trial_id, number=number, params=params, metrics=job.metrics,
                       directions=job.directions, trial_dir=trial_dir, device=_device(job), seed=seed,
                       num_threads=max(1, int(job.cpus)), prune=job.pruner != "none")
    if job.trial_timeout:
        def _on_timeout() -> None:
            storage.set_trial_system_attr(trial_id, _attrs.ERROR, {
                "type": "TrialTimeout", "message": f"trial exceeded trial_timeout={job.trial_timeout:g}s and was stopped",
                "traceback": ""})
        watchdog = _Watchdog(job.trial_timeout, _on_timeout)
    try:
        result = _call(job, params, ctx)
        values = _values(job, result, ctx)
        metrics = result if isinstance(result, Mapping) else {job.metrics[0]: result}
        storage.set_trial_system_attr(trial_id, _attrs.METRICS, _jsonable(dict(metrics)))
        return {STATE_KEY: "COMPLETE", VALUES_KEY: values}
    except TrialPruned:
        return {STATE_KEY: "PRUNED", VALUES_KEY: None}
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, recorded with its traceback
        if isinstance(exc, KeyboardInterrupt):
            raise
        try:
            storage.set_trial_system_attr(trial_id, _attrs.ERROR, _error_info(exc))
        except Exception:  # noqa: BLE001 - the driver records a generic error then
            pass
        return {STATE_KEY: "FAIL", VALUES_KEY: None}
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _call(job: JobInfo, params: dict[str, Any], ctx: TrialContext) -> Any:
    if job.task is not None:
        from tuner.tasks import get_task

        task = get_task(job.task, source=job.source)(job.task_args, source=job.source)
        return task.run(params, ctx)
    fn = job.objective_fn or resolve_objective(job.objective_ref or "", extra_paths=job.driver_sys_path)
    return fn(params, ctx)


def _values(job: JobInfo, result: Any, ctx: TrialContext) -> list[float]:
    """The objective values, in spec order; anything missing or non-finite is an error."""
    if isinstance(result, Mapping):
        missing = [m for m in job.metrics if m not in result]
        if missing:
            raise ValueError(f"the objective returned no {missing[0]!r} (it returned {sorted(map(str, result))}); "
                             f"return it or change the spec's metric")
        raw = [result[m] for m in job.metrics]
    elif len(job.metrics) == 1:
        raw = [result]
    else:
        raise TypeError(f"the objective must return a dict with {list(job.metrics)} for a multi-objective study, "
                        f"got {type(result).__name__}")
    values = []
    for name, v in zip(job.metrics, raw):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"the objective returned a non-number for {name!r}: {v!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"the objective returned {f} for {name!r}")
        values.append(f)
    return values


def trainable(config: dict[str, Any], job: JobInfo | None = None) -> dict[str, Any]:
    """Ray Tune function trainable: one Optuna trial per call."""
    assert job is not None  # bound with tune.with_parameters by the driver; not user input
    if job.driver_cwd and os.path.isdir(job.driver_cwd) and os.getcwd() != job.driver_cwd:
        os.chdir(job.driver_cwd)
    # `objective: pkg.mod:fn` imports like `python -c` would in the user's folder: the driver's
    # working directory and the spec's folder come first, then the driver's own sys.path.
    for p in reversed([job.driver_cwd, job.base_dir, *job.driver_sys_path]):
        if p not in sys.path:
            sys.path.insert(0, p)
    return run_trial(job, config)
