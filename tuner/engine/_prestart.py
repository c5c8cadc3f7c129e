"""Trial workers in the processes Ray starts ahead of time, with their heavy imports done.

When a driver connects, Ray starts idle Python workers (about one per CPU) so that the first
tasks and actors need not wait for a new process. Tune's trial actors never get one: Tune
gives every trainable a runtime environment of environment variables
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
holds its memory for the whole run. Preloaded torch would size its thread pool before Ray sets
a trial's share, so :func:`thread_count_for_workers` sets it for Ray's start.
``TUNER_PRELOAD=0`` turns preloading off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["PRELOAD_ENV", "preload_modules", "ray_system_config", "thread_count_for_workers",
           "tune_actors_in_prestarted_workers"]

#: Set to ``0`` (or ``false``, ``no``, ``off``) to keep Ray's prestarted workers from importing
#: anything before work arrives. Worth it if workers die as they start: Ray's preloading
#: survives a module that is missing, but not one whose import raises something else (a
#: broken CUDA library under torch, say), which then ends every worker.
PRELOAD_ENV = "TUNER_PRELOAD"

#: What a GPU study's workers import before their first trial. None of them may touch CUDA at
#: import, because Ray assigns a worker's GPU (``CUDA_VISIBLE_DEVICES``) only when a trial
#: arrives, and a CUDA context created before that sees every GPU. Checked on torch 2.13's CPU
#: build only (``torch._dynamo`` imports 822 modules there, none calling CUDA at import); a
#: CUDA build imports more (triton), so the worker checks it at each process's first trial
#: (``tuner.engine._worker._cuda_before_placement``) and warns if it ever happens.
GPU_PRELOAD = ("ray.tune", "optuna", "sqlalchemy", "torch", "torch._dynamo")

#: Preload only where at most this many prestarted workers idle per worker the study uses. Ray
#: prestarts about one worker per CPU and keeps the idle ones for the whole run; a preloaded
#: one holds about 300 MB (CPU torch), so one trial at a time on a 64-CPU node would otherwise
#: park some 20 GB in workers that never run a trial.
MAX_IDLE_PER_USED = 3


def preload_modules(gpus_per_trial: float, concurrency: int, ray_cpus: float | None) -> list[str]:
    """The modules a study's prestarted workers should import: empty unless it uses GPUs.

    ``ray_cpus`` is the CPUs of the Ray about to start (``None``: this machine's). Only modules
    installed where a new process finds them (:func:`_installed`): a prestarted worker starts
    before the job's ``sys.path`` reaches it, and a module it cannot find would print a
    traceback from every worker instead of doing nothing.
    """
    if gpus_per_trial <= 0 or os.environ.get(PRELOAD_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    cpus = ray_cpus if ray_cpus is not None else (os.cpu_count() or 1)
    if concurrency * (1 + MAX_IDLE_PER_USED) < cpus:
        return []
    return [name for name in GPU_PRELOAD if _installed(name)]


def ray_system_config(modules: Sequence[str]) -> dict[str, object]:
    """``ray.init(_system_config=...)`` that has Ray's workers import ``modules`` when they start."""
    return {"preload_python_modules": list(modules)} if modules else {}


@contextlib.contextmanager
def thread_count_for_workers(cpus_per_trial: float) -> Iterator[None]:
    """While inside (around ``ray.init``), ``OMP_NUM_THREADS`` is a trial's CPU share, unless set.

    Ray sets it for a worker when an actor starts there, which is too late for a preloaded
    worker: OpenBLAS (with numpy) and torch size their thread pools when they load, so 8 packed
    trials on a 16-CPU machine would each run 16 threads. Ray's processes copy the environment
    as they start, so the driver's own is restored on leaving.
    """
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus_per_trial)))
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


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

    That is this interpreter's site-packages (``dist-packages`` on Debian's Python) or an
    absolute folder on ``PYTHONPATH``, which Ray's workers inherit (the lent GPU machine's
    bundle of Ray and Optuna is one); not the current folder or a ``sys.path`` entry the
    program added itself.
    """
    top = module.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or origin in ("built-in", "frozen"):
        return False
    paths = sysconfig.get_paths()
    roots = {Path(paths["purelib"]), Path(paths["platlib"])}
    roots |= {Path(p) for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages")}
    roots |= {Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)}
    path = Path(origin).resolve()
    return any(root.resolve() in path.parents for root in roots)
