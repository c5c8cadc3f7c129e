"""Trial workers in the processes Ray starts ahead of time, with their heavy imports done.

When a driver connects, Ray starts idle Python workers (one per CPU, at most one per logical
CPU of the machine) so that the first tasks and actors need not wait for a new process. Tune's
trial actors never get one: Tune gives every trainable a runtime environment of environment variables
(``ray.tune.execution.class_cache``: ``PL_DISABLE_FORK=1``, plus the variables it copies from
the driver so that they reach remote nodes), Ray hands an idle worker only to an actor whose
runtime environment matches the worker's, and so each trial worker is a new process (Python,
``import ray``, a round trip to Ray's runtime-env agent) while the prestarted ones idle.

On a Ray instance that tuner starts on this machine those variables reach every worker anyway:
workers inherit the environment of the raylet, which inherits the driver's. So for such a run
(:func:`tune_actors_in_prestarted_workers`) Tune's list is emptied, and its trial actors start
in the prestarted processes. On the project's 2-CPU VM, 6 interleaved pairs of quickstart runs
against the code before gave a median wall time of 28.5 s against 30.9 s and the first training
0.7 s sooner (README, "GPU packing"). A run that joins a cluster (``--ray-address``) or a Ray
already up keeps Tune's behaviour.

Prestarted workers can also import modules before any work arrives (Ray's
``preload_python_modules``; :func:`preload_modules`). For GPU studies tuner has them import
Ray Tune, Optuna, SQLAlchemy and torch (with ``torch._dynamo``, which a process's first torch
optimizer imports), the seconds a packed GPU worker otherwise spends on imports after its trial
arrived (not yet measured on a GPU). It is limited to GPU studies because it costs where CPUs
are scarce: every prestarted worker imports, also those the study never uses, and on the 2-CPU
VM that work competed with the driver's and moved the first training no earlier; and to studies
that use enough of the workers (:data:`MAX_IDLE_PER_USED`), because an idle preloaded worker
holds its memory for the whole run. ``TUNER_PRELOAD`` (:data:`PRELOAD_ENV`) turns it off, or
names modules of the user's own (a heavy library their objective imports) to preload as well.

Ray is told to preload one module, :mod:`tuner.engine._preload`, which imports the list from
the environment (:func:`worker_environment`) and survives any module's failure, which Ray's
own preloading does not. Preloaded torch would size its thread pool before Ray sets a trial's
share, so :func:`worker_environment` sets that for Ray's start too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

from tuner.engine._preload_trace import TRACE_ENV

__all__ = ["PRELOAD_ENV", "WORKER_IMPORTS_ENV", "preload_modules", "preload_warnings", "ray_system_config",
           "requested_modules", "tune_actors_in_prestarted_workers", "tuners_choice", "worker_environment"]

#: ``0`` (or ``false``, ``no``, ``off``, ``none``, ``disabled``) keeps Ray's workers from importing anything before work
#: arrives (say, if a preloaded module touches the GPU at import); unset (or ``1``) is the
#: default, GPU studies only; a comma-separated list of modules (``transformers,my_pkg.train``)
#: preloads those too, in every run that starts its own Ray.
PRELOAD_ENV = "TUNER_PRELOAD"

#: Where the driver puts the modules to preload, for Ray's processes to inherit
#: (:mod:`tuner.engine._preload` reads it in each worker).
WORKER_IMPORTS_ENV = "TUNER_WORKER_IMPORTS"

#: The one module Ray itself is told to preload; it imports the rest.
_PRELOADER = "tuner.engine._preload"

_OFF = ("0", "false", "no", "off", "none", "disable", "disabled")
_ON = ("", "1", "true", "yes", "on")

#: What a GPU study's workers import before their first trial. None of them may touch CUDA at
#: import, because Ray assigns a worker's GPU (``CUDA_VISIBLE_DEVICES``) only when a trial
#: arrives, and a CUDA context created before that sees every GPU. Checked on torch 2.13's CPU
#: build only (``torch._dynamo`` imports 822 modules there, none calling CUDA at import); a
#: CUDA build imports more (triton), so the worker checks it at each process's first trial
#: (``tuner.engine._worker._cuda_before_placement``) and warns if it ever happens.
GPU_PRELOAD = ("ray.tune", "optuna", "sqlalchemy", "torch", "torch._dynamo")

#: tuner's own modules that every trial imports (the worker, the built-in tasks): 0.2 s after
#: the others on the project's CPUs, and preloaded whenever anything is.
TUNER_MODULES = ("tuner.engine._worker", "tuner.tasks")

#: Preload only where at most this many prestarted workers idle per worker the study uses. Ray
#: prestarts one worker per CPU (at most one per logical CPU of the machine) and keeps the idle
#: ones for the whole run; a preloaded one holds about 300 MB (CPU torch), so one trial at a
#: time on a 64-CPU node would otherwise park some 20 GB in workers that never run a trial.
MAX_IDLE_PER_USED = 3


def preload_modules(gpus_per_trial: float, concurrency: int, ray_cpus: float | None) -> list[str]:
    """The modules a run's workers should import as they start: by default, for GPU studies only.

    ``ray_cpus`` is the CPUs of the Ray about to start (``None``: this machine's); Ray prestarts
    one worker per CPU, but no more than the machine's logical CPUs (``os.cpu_count()``). Empty
    where tuner itself is not installed where a new process finds it (:func:`_installed`): a
    prestarted worker starts before the job's ``sys.path`` reaches it, and could not import
    :mod:`tuner.engine._preload` (:func:`preload_warnings` tells a user who named modules).
    """
    if _preload_off():
        return []
    extras = requested_modules()
    automatic = _automatic(gpus_per_trial, concurrency, ray_cpus)
    if not automatic and not extras or not _installed("tuner"):  # the last reads .pth files: only when needed
        return []
    return list(dict.fromkeys([*tuners_choice(gpus_per_trial, concurrency, ray_cpus), *extras]))


def tuners_choice(gpus_per_trial: float, concurrency: int, ray_cpus: float | None) -> tuple[str, ...]:
    """The modules tuner itself has a run's workers preload when it preloads (the user's aside):
    taking one of these out of ``TUNER_PRELOAD`` does not stop its preloading."""
    return (*GPU_PRELOAD, *TUNER_MODULES) if _automatic(gpus_per_trial, concurrency, ray_cpus) else TUNER_MODULES


def _automatic(gpus_per_trial: float, concurrency: int, ray_cpus: float | None) -> bool:
    """Whether the study preloads by default: GPU trials using enough of the prestarted workers."""
    logical_cpus = os.cpu_count() or 1
    prestarted = min(ray_cpus, logical_cpus) if ray_cpus is not None else logical_cpus
    return gpus_per_trial > 0 and concurrency * (1 + MAX_IDLE_PER_USED) >= prestarted


def requested_modules() -> list[str]:
    """The modules the user named in ``TUNER_PRELOAD`` (none when it is unset, on or off)."""
    setting = os.environ.get(PRELOAD_ENV, "").strip()
    if setting.lower() in _ON or setting.lower() in _OFF:
        return []
    return list(dict.fromkeys(name.strip() for name in setting.split(",") if name.strip()))


def preload_warnings(preloading: Sequence[str], local_start: bool) -> list[str]:
    """What the user who named modules in ``TUNER_PRELOAD`` must hear: those this run cannot preload.

    ``preloading`` is what :func:`preload_modules` chose; ``local_start``, whether this run
    started Ray here (a cluster's workers, or a Ray already running, were started without it).
    """
    named = requested_modules()
    if not named:
        return []
    listed = ", ".join(named)
    if not local_start:
        return [f"TUNER_PRELOAD: {listed} not preloaded: only a run that starts its own Ray preloads (this one "
                f"joined a cluster or a Ray already running; a cluster takes it from `ray start`'s environment)"]
    if not preloading:
        return [f"TUNER_PRELOAD: {listed} not preloaded: Ray's new workers cannot import tuner itself; install it "
                f"(`pip install -e .` in its checkout) or put its folder on PYTHONPATH"]
    warnings = []
    if unknown := [name for name in named if not _found_here(name)]:
        warnings.append(f"TUNER_PRELOAD: no module named {', '.join(unknown)} here; check the name "
                        f"(a comma-separated list of importable modules, or 0 to turn preloading off)")
    if unseen := [name for name in named if _found_here(name) and not _installed(name)]:
        warnings.append(f"TUNER_PRELOAD: Ray's workers cannot import {', '.join(unseen)} before their first trial "
                        f"(found here only through the current folder or this program's sys.path); install it or "
                        f"put its folder on PYTHONPATH to have it preloaded")
    return warnings


def _preload_off() -> bool:
    return os.environ.get(PRELOAD_ENV, "").strip().lower() in _OFF


def _found_here(module: str) -> bool:
    """Whether this process finds ``module``'s top-level package (without importing anything)."""
    try:
        return importlib.util.find_spec(module.partition(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def ray_system_config(modules: Sequence[str]) -> dict[str, object]:
    """``ray.init(_system_config=...)`` that has Ray's workers import ``modules`` when they start.

    Through :mod:`tuner.engine._preload`, with the list in :func:`worker_environment`'s.
    """
    return {"preload_python_modules": [_PRELOADER]} if modules else {}


@contextlib.contextmanager
def worker_environment(modules: Sequence[str], cpus_per_trial: float, trace: Path | None = None) -> Iterator[None]:
    """While inside (around ``ray.init``), the environment a preloading Ray's processes inherit.

    The list of ``modules`` for :mod:`tuner.engine._preload`, the ``trace`` folder where its
    workers note what they import (:mod:`tuner.engine._preload_trace`), and ``OMP_NUM_THREADS`` set to a
    trial's CPU share unless the user set it: Ray sets that for a worker when an actor starts
    there, too late for a preloaded one, whose OpenBLAS (with numpy) and torch sized their
    thread pools as they loaded (8 packed trials on a 16-CPU machine would each run 16
    threads). Ray's processes copy the environment as they start, so the driver's own is
    restored on leaving.
    """
    added = {WORKER_IMPORTS_ENV: ",".join(modules)}
    if trace is not None:
        added[TRACE_ENV] = str(trace)
    if "OMP_NUM_THREADS" not in os.environ:
        added["OMP_NUM_THREADS"] = str(max(1, int(cpus_per_trial)))
    saved = {key: os.environ.get(key) for key in added}
    os.environ.update(added)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def tune_actors_in_prestarted_workers() -> Iterator[None]:
    """While inside, Tune's trial actors ask for no environment variables of their own.

    Only for a Ray this process started on this machine, whose workers inherited the driver's
    environment: ``PL_DISABLE_FORK`` is set there (``tuner.engine._tune_env``) and the variables
    Tune copies are the driver's own (nothing between ``ray.init`` and ``fit`` sets any). Tune's
    module is restored on leaving.
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        yield
        return
    names = ("DEFAULT_ENV_VARS", "ENV_VARS_TO_PROPAGATE")
    if not all(hasattr(class_cache, name) for name in names) or any(
            os.environ.get(key) != value for key, value in class_cache.DEFAULT_ENV_VARS.items()):
        # Another Ray version, or a variable Tune sets that the workers did not inherit (Tune
        # added one, or the user set PL_DISABLE_FORK otherwise): Tune's way, new processes.
        yield
        return
    saved = {name: getattr(class_cache, name) for name in names}
    class_cache.DEFAULT_ENV_VARS = {}
    class_cache.ENV_VARS_TO_PROPAGATE = set()
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(class_cache, name, value)


def _installed(module: str) -> bool:
    """Whether ``module``'s top-level package lies where a new worker process finds it too.

    That is the standard library, this interpreter's site-packages (``dist-packages`` on
    Debian's Python), a folder a ``.pth`` file there adds, an editable install's import hook
    (``pip install -e``), or an absolute folder on ``PYTHONPATH``, which Ray's workers inherit
    (the lent GPU machine's bundle of Ray and Optuna is one); not the current folder or a
    ``sys.path`` entry the program added itself.
    """
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names:
        return True
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    # A namespace package (``google`` of protobuf) has no file of its own, only folders.
    locations = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
    if not locations:
        return False
    if any(_is_editable_hook(finder) and finder.find_spec(top) is not None for finder in sys.meta_path):
        return True
    site_dirs = _site_dirs()
    roots = {root.resolve() for root in (*site_dirs, *_pth_folders(site_dirs))}
    roots |= {Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)}
    return any(root in Path(location).resolve().parents for location in locations for root in roots)


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = [Path(paths["purelib"]), Path(paths["platlib"])]
    dirs += [Path(p) for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages")]
    return list(dict.fromkeys(dirs))


def _pth_folders(site_dirs: Sequence[Path]) -> set[Path]:
    """The folders that ``.pth`` files in ``site_dirs`` put on every new process's ``sys.path``."""
    folders: set[Path] = set()
    for site_dir in site_dirs:
        try:
            pth_files = sorted(site_dir.glob("*.pth"))
        except OSError:
            continue
        for pth in pth_files:
            try:
                lines = pth.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    folder = Path(line) if os.path.isabs(line) else site_dir / line
                    if folder.is_dir():
                        folders.add(folder)
    return folders


def _is_editable_hook(finder: object) -> bool:
    """An import hook that setuptools' editable installs put in every process through a ``.pth``."""
    return (getattr(finder, "__module__", "") or "").startswith("__editable__") and hasattr(finder, "find_spec")
