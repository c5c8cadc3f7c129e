"""The code that runs one trial inside a Ray worker.

The driver creates each trial row in the storage; Ray Tune calls :func:`trainable` with its
id. The worker then does the rest of Optuna's ask/tell cycle itself: it asks the sampler for
the parameters (a fresh sampler per trial, seeded by trial number: Optuna's samplers keep
their state in the storage), runs the objective or built-in task with a
:class:`~tuner.engine._context.TrialContext`, and tells the study how it ended. Sampling and
storage writes thus run in parallel across workers, as with Optuna's own ``n_jobs``, instead
of queueing on the driver's single thread (see bench/README.md for what that buys). The
driver only counts verdicts and records trials whose worker died.

The worker opens the storage once per process (actors are reused). Exceptions never escape:
a failing objective must not cost a Ray actor restart.
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

from optuna.exceptions import TrialPruned as _OptunaTrialPruned

from tuner.engine import _attrs
from tuner._json import jsonable
from tuner.engine._context import TrialContext, real_number
from tuner.engine._study import drop_resume_points, rerun_chain_folders
from tuner.exceptions import TrialPruned

STATE_KEY = "tuner_state"
VALUES_KEY = "tuner_values"
WARNINGS_KEY = "tuner_warnings"
#: Where a pruned trial stopped: ``{"step": ..., "value": ...}`` (the study metric at its last
#: report; both None when the objective raised ``TrialPruned`` before reporting anything).
PRUNED_AT_KEY = "tuner_pruned_at"
#: A failed trial's error (``{type, message, traceback}``) that its worker could not store: the
#: driver stores it once Tune's loop has ended (``_driver``), instead of losing the traceback.
UNSTORED_ERROR_KEY = "tuner_unstored_error"


@dataclass
class JobInfo:
    """Everything a worker needs about the study; shipped once through Ray's object store."""

    storage_url: str
    study_name: str
    metrics: tuple[str, ...]
    directions: tuple[str, ...]
    pruner: str
    pruner_args: dict[str, Any]
    sampler: str
    sampler_args: dict[str, Any]
    space: Any  # tuner.space.SearchSpace
    task: str | None
    task_args: dict[str, Any]
    objective_ref: str | None
    # A Python callable given to tuner.run(), pickled by the driver (cloudpickle). It is
    # unpickled only after the worker has put the driver's sys.path in place, so functions
    # from the user's own modules resolve the same way they did in the driver.
    objective_blob: bytes | None
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
    #: Built-in tasks save resume points between epochs: the study reruns what a stop cuts short.
    resume_points: bool = False


_STUDIES: dict[tuple[str, str], Any] = {}
_OBJECTIVES: dict[str, Callable[..., Any]] = {}
_TRIALS_IN_PROCESS = 0  # trials this worker process has picked up (1 during its first)


def _process_started() -> float | None:
    """When this process started (Unix seconds, to about 10 ms); None where /proc is missing.

    From the kernel's own record, not from an import: a worker's first trial also pays Ray's
    start of the process and the imports before any tuner code runs, and the timing should show it.
    """
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
        started_after_boot = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return now - (uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return None


_PROCESS_STARTED = _process_started()


def _study(job: JobInfo) -> Any:
    """The study object of this worker process, opened once (workers are reused)."""
    key = (job.storage_url, job.study_name)
    if key not in _STUDIES:
        import optuna

        from tuner.engine._plugins import make_pruner
        from tuner.storage import open_storage

        storage = open_storage(job.storage_url, worker=True)
        _STUDIES[key] = optuna.load_study(study_name=job.study_name, storage=storage,
                                          sampler=optuna.samplers.RandomSampler(),
                                          pruner=make_pruner(job.pruner, job.pruner_args, space=job.space))
    return _STUDIES[key]


def _ask(job: JobInfo, study: Any, trial_id: int, number: int) -> tuple[Any, dict[str, Any]]:
    """Optuna's ask, second half: sample the parameters of the trial the driver created."""
    import optuna

    from tuner.engine._plugins import make_sampler, qmc_study_seed, trial_seed

    study.sampler = make_sampler(job.sampler, job.sampler_args, seed=trial_seed(job.seed, number), space=job.space,
                                 study_seed=qmc_study_seed(job.seed, job.study_name))
    # An incremental read (new and unfinished trials only) that also puts the trial the driver
    # just created into this process's storage cache, which Optuna's writes rely on.
    study._storage.get_all_trials(study._study_id, deepcopy=False)
    # Optuna's Trial reads the trial and calls the sampler's before_trial, as study.ask() does.
    trial = optuna.Trial(study, trial_id)
    return trial, job.space.suggest(trial)


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


def _cuda_before_placement(job: JobInfo) -> str | None:
    """A warning when this process's CUDA state predates its first trial's GPU assignment.

    Ray sets a worker's ``CUDA_VISIBLE_DEVICES`` when the trial arrives. CUDA reads it once,
    when it starts in the process (torch's context, or merely ``torch.cuda.is_available()``),
    so a module a prestarted worker imported (``tuner.engine._preload``) that touched CUDA
    leaves the trial seeing every GPU instead of its own: it shows as torch's context already
    made, or as more devices than Ray assigned.
    """
    if job.gpus <= 0 or _TRIALS_IN_PROCESS != 1 or "torch" not in sys.modules:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        cuda = sys.modules["torch"].cuda
        early = bool(cuda.is_initialized())
        if not early and visible and cuda.is_available():
            early = cuda.device_count() > len([d for d in visible.split(",") if d.strip()])
    except Exception:  # noqa: BLE001 - a partial torch: nothing to say
        return None
    if not early:
        return None
    return (f"CUDA started in this worker before Ray assigned its GPU (CUDA_VISIBLE_DEVICES={visible}), so the "
            "trial may not run on its own GPU; set TUNER_PRELOAD=0 to keep Ray's workers from importing torch "
            "ahead of time")


#: What is kept of a failed trial's traceback, and of any one piece of it (a frame, a message).
_TRACEBACK_CHARS, _PIECE_CHARS = 20000, 2000


def _error_info(exc: BaseException) -> dict[str, str]:
    """The error stored with a failed trial: its type, message and traceback, always as text.

    Each piece of the traceback is cut to its first ``_PIECE_CHARS``: cut only as a whole, a
    long message (a shape-mismatch dump, a column list) filled the kept tail and pushed every
    frame out. An exception whose ``__str__`` raises is described instead: recording it failed
    before, and the trial was stored as if its run had been cut short."""
    try:
        message = str(exc)
    except Exception as inner:  # noqa: BLE001 - the user's __str__ is broken; say so, keep the rest
        message = f"<the exception's message could not be made: {type(inner).__name__}>"
    pieces = traceback.TracebackException(type(exc), exc, exc.__traceback__).format()
    text = "".join(p if len(p) <= _PIECE_CHARS else f"{p[:_PIECE_CHARS]}... ({len(p):,} characters)\n"
                   for p in pieces)
    return {"type": type(exc).__name__, "message": message[:2000], "traceback": text[-_TRACEBACK_CHARS:]}


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
    from optuna.trial import TrialState

    from tuner.engine._plugins import training_seed

    global _TRIALS_IN_PROCESS
    _TRIALS_IN_PROCESS += 1
    timing: dict[str, Any] = {"process_started": _PROCESS_STARTED, "process_trial": _TRIALS_IN_PROCESS,
                              "picked_up": time.time()}
    if _TRIALS_IN_PROCESS == 1 and (preloader := sys.modules.get("tuner.engine._preload")) is not None:
        timing["preloaded"] = list(preloader.PRELOADED)  # what Ray's worker imported before this trial came
    trial_id: int = config["trial_id"]
    number: int = config["number"]
    study = _study(job)
    storage = study._storage
    trial_dir = Path(job.artifacts_dir) / job.study_name / f"trial_{number:05d}"
    watchdog: _Watchdog | None = None
    trial = None
    ctx: TrialContext | None = None
    claimed = False  # whether trial_dir is this trial's (else a folder of that name may be another's)
    builtin = job.task is not None  # resume.pt in a folder is a built-in task's, not a user's file
    try:
        trial, params = _ask(job, study, trial_id, number)
        timing["asked"] = time.time()
        trial_dir, dir_warning = _make_trial_dir(trial_dir, job)
        claimed = True
        early_cuda = _cuda_before_placement(job)  # before _device() looks at the GPU
        storage.set_trial_system_attr(trial_id, _attrs.WORKER, jsonable(_placement(job, trial_dir)))
        reruns, resume_warning = _take_over(job, storage, study._study_id, trial_id, trial_dir)
        ctx = TrialContext(study=study, trial=trial, number=number, params=params, metrics=job.metrics,
                           directions=job.directions, trial_dir=trial_dir, device=_device(job),
                           seed=training_seed(job.seed, number),
                           num_threads=max(1, int(job.cpus)), prune=job.pruner != "none",
                           resumable=job.resume_points and builtin, resumed_from=reruns[0] if reruns else None)
        for warning in (dir_warning, resume_warning):
            if warning:
                ctx.warn(warning)
        if early_cuda:
            ctx.warn(early_cuda)
        if job.trial_timeout:
            def timed_out(folder: Path = trial_dir) -> None:
                storage.set_trial_system_attr(trial_id, _attrs.ERROR, {
                    "type": "TrialTimeout", "traceback": "",
                    "message": f"trial exceeded trial_timeout={job.trial_timeout:g}s and was stopped"})
                _store_curve(ctx)  # after the error: the error is what must be stored if time runs out
                if builtin:  # last, just before the process exits: a timed-out trial is not run again
                    drop_resume_points([folder])

            watchdog = _Watchdog(job.trial_timeout, timed_out)
        result = _call(job, params, ctx)
        values = _values(job, result, ctx)
        metrics = result if isinstance(result, Mapping) else {job.metrics[0]: result}
        storage.set_trial_system_attr(trial_id, _attrs.METRICS, jsonable(dict(metrics)))
        _record_artifacts(storage, trial_id, trial_dir)
        _store_curve(ctx)
        _record_timing(storage, trial_id, timing, ctx)
        study.tell(trial, values)
        return {STATE_KEY: "COMPLETE", VALUES_KEY: values, WARNINGS_KEY: ctx.warnings}
    except (TrialPruned, _OptunaTrialPruned):  # Optuna's own, as objectives written for Optuna raise it
        _record_artifacts(storage, trial_id, trial_dir)
        _store_curve(ctx)
        _record_timing(storage, trial_id, timing, ctx)
        study.tell(trial, state=TrialState.PRUNED)
        return {STATE_KEY: "PRUNED", VALUES_KEY: None, WARNINGS_KEY: ctx.warnings if ctx is not None else [],
                PRUNED_AT_KEY: _pruned_at(ctx)}
    except BaseException as exc:  # noqa: BLE001 - a trial's failure is data, recorded with its traceback
        if isinstance(exc, KeyboardInterrupt):
            raise
        try:
            # Refused for a trial a later run already stored as unfinished (a killed driver's
            # orphaned worker): that trial keeps its resume point for its rerun.
            storage.set_trial_system_attr(trial_id, _attrs.ERROR, _error_info(exc))
            if claimed and builtin:
                drop_resume_points([trial_dir])  # failed on its own: not run again
            if claimed:
                _record_artifacts(storage, trial_id, trial_dir)
            _store_curve(ctx)
            _record_timing(storage, trial_id, timing, ctx)
            if trial is not None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the storage did not answer: the driver stores it (UNSTORED_ERROR_KEY)
            return {STATE_KEY: "FAIL", VALUES_KEY: None, UNSTORED_ERROR_KEY: _error_info(exc)}
        return {STATE_KEY: "FAIL", VALUES_KEY: None}
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _take_over(job: JobInfo, storage: Any, study_id: int, trial_id: int, trial_dir: Path
               ) -> tuple[list[Path], str | None]:
    """The folders of the unfinished trials this one runs again (nearest first: the first is
    ``ctx.resumed_from``), and a warning where they could not be read.

    A built-in task's rerun also gets the nearest resume point among them moved into its folder
    here, before the task loads its data: a rerun stopped while it loads still holds the point
    for the next. Resuming is a convenience: a storage or file error here costs the epochs the
    point held, never the trial.
    """
    try:
        folders = rerun_chain_folders(storage, study_id, storage.get_trial_system_attrs(trial_id))
        if folders and job.task is not None and job.resume_points:
            from tuner.tasks._resume import take_over

            take_over(folders, trial_dir)
    except Exception as exc:  # noqa: BLE001 - see above
        return [], f"the trial this one runs again could not be looked up ({type(exc).__name__}: {exc}"[:300] + ")"
    return folders, None


def _pruned_at(ctx: TrialContext | None) -> dict[str, Any]:
    """The step a pruned trial stopped at and its study metric there, for the run's console line.

    The pruner decides on the last report, so that is where the trial stopped; an objective that
    raises ``TrialPruned`` itself may not have reported at all (both None then).
    """
    if ctx is None:
        return {"step": None, "value": None}
    return {"step": ctx.last_step, "value": ctx.last_value}


def _store_curve(ctx: TrialContext | None) -> None:
    """Store the reports the curve's throttle held back (``TrialContext.store_curve``), as the trial ends."""
    if ctx is None:
        return
    try:
        ctx.store_curve()
    except Exception:  # noqa: BLE001 - Optuna's intermediate values hold every report; a lost tail costs nothing else
        pass


def _record_timing(storage: Any, trial_id: int, timing: dict[str, Any], ctx: TrialContext | None) -> None:
    """Store the trial's moments (the worker's and the task's ``ctx.mark`` ones) in one write.

    One write at the end, not one per moment: a trial's timing is read after it ends (the
    dashboard, ``bench gpu_packing``), and short trials should not pay a write per phase.
    """
    moments = {**timing, **(ctx.marks if ctx is not None else {}), "finished": time.time()}
    # To the millisecond: finer is noise for a phase, and a study of 100,000 trials stores it 100,000 times.
    moments = {k: round(v, 3) if isinstance(v, float) else v for k, v in moments.items()}
    try:
        storage.set_trial_system_attr(trial_id, _attrs.TIMING, jsonable(moments))
    except Exception:  # noqa: BLE001 - the timing is informative: a failed write never costs the trial
        pass


def _record_artifacts(storage: Any, trial_id: int, trial_dir: Path, *, max_files: int = 100) -> None:
    """Record the files the trial left in its folder (name, ``file://`` URI, size).

    The record is what makes a file downloadable from the dashboard and findable by export: a
    reader serves only URIs listed here, never a path taken from a request. Sub-folders are
    listed with their relative names (``checkpoints/e3.pt``); at most ``max_files`` are kept.
    """
    try:
        root = trial_dir.resolve()
        # A link that leads out of the trial's folder is not the trial's file: never listed
        # (else a download would serve whatever it points at). A file is recorded at its
        # resolved path, which readers check it still resolves to before serving it.
        files = sorted(p for p in trial_dir.rglob("*")
                       if p.is_file() and p.resolve().is_relative_to(root))[:max_files]
        if not files:
            return
        storage.set_trial_system_attr(trial_id, _attrs.ARTIFACTS, [
            {"name": p.relative_to(trial_dir).as_posix(), "uri": p.resolve().as_uri(), "size": p.stat().st_size}
            for p in files])
    except OSError:  # an unreadable folder costs the listing, never the trial
        pass


def _make_trial_dir(trial_dir: Path, job: JobInfo) -> tuple[Path, str | None]:
    """The trial's folder, and a warning when it had to be a scratch folder instead."""
    try:
        return _fresh_folder(trial_dir), None
    except OSError as exc:
        # An unwritable artifact folder must not lose the trial: it runs in a scratch folder.
        scratch = _fresh_folder(Path(os.environ.get("TMPDIR", "/tmp")) / "tuner-scratch" / job.study_name / trial_dir.name)
        return scratch, (f"artifacts folder {trial_dir.parent} unusable ({exc.strerror or exc}); this trial's files "
                         f"went to {scratch}: fix artifacts_dir (or its permissions) for the next trials")


def _fresh_folder(trial_dir: Path) -> Path:
    """A new folder for the trial: ``trial_dir``, or ``trial_dir.1``, ``.2``, ... when one of that name exists.

    An existing one is another study's: a study deleted by ``--force``, or one whose SQLite file
    was removed, leaves its trial folders behind, a new study of the same name numbers its trials
    from 0 again, and two storages in one folder share ``tuner_runs/<study>/``. A trial records
    every file in its folder as its own (the dashboard serves them, export looks there for weights,
    ``tuner rm --artifacts`` removes them), so it must never share one, even one still empty while
    the other study's trial trains. Each folder is claimed by creating it (``mkdir`` fails if it
    exists, atomically, also for two runs at the same moment); nothing is deleted or moved.
    """
    trial_dir.parent.mkdir(parents=True, exist_ok=True)
    candidate = trial_dir
    for k in range(1, 10_000):
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = trial_dir.with_name(f"{trial_dir.name}.{k}")
    raise OSError(f"every folder from {trial_dir.name} to {candidate.name} exists already")


def _call(job: JobInfo, params: dict[str, Any], ctx: TrialContext) -> Any:
    if job.task is not None:
        from tuner.tasks import get_task

        task = get_task(job.task, source=job.source)(job.task_args, source=job.source)
        return task.run(params, ctx)
    if job.objective_blob is not None:
        fn = _unpickle_objective(job.objective_blob)
    else:
        fn = resolve_objective(job.objective_ref or "", extra_paths=job.driver_sys_path)
    return fn(params, ctx)


def _unpickle_objective(blob: bytes) -> Callable[..., Any]:
    key = hashlib.sha1(blob).hexdigest()
    if key not in _OBJECTIVES:
        import cloudpickle

        _OBJECTIVES[key] = cloudpickle.loads(blob)
    return _OBJECTIVES[key]


def _values(job: JobInfo, result: Any, ctx: TrialContext) -> list[float]:
    """The objective values, in spec order; anything missing, not a real number or non-finite is an error.

    Not ``float(v)``: it would take ``True`` as 1.0 and ``"0.5"`` as 0.5, so a returned flag or
    an unparsed string would rank the trial; :func:`real_number` says what counts.
    """
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
        f = real_number(v)
        if f is None:
            raise TypeError(f"the objective returned a non-number for {name!r}: {v!r}"[:500])
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
