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
arrived. It is limited to GPU studies because it costs where CPUs are scarce: every prestarted
worker imports, also those the study never uses, and on the 2-CPU VM that work competed with
the driver's and moved the first training no earlier. ``TUNER_PRELOAD=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["PRELOAD_ENV", "preload_modules", "ray_system_config", "tune_actors_in_prestarted_workers"]

#: Set to ``0`` to keep Ray's prestarted workers from importing anything before work arrives.
PRELOAD_ENV = "TUNER_PRELOAD"

#: What a GPU study's workers import before their first trial. None of them touches CUDA at
#: import (checked for torch 2.13, whose ``torch._dynamo`` imports 822 modules without a CUDA
#: call), which matters: Ray assigns a worker's GPU (``CUDA_VISIBLE_DEVICES``) only when a trial
#: arrives, and a CUDA context created before that would see every GPU. The worker checks it
#: (``tuner.engine._worker``) and warns if it ever happens.
GPU_PRELOAD = ("ray.tune", "optuna", "sqlalchemy", "torch", "torch._dynamo")


def preload_modules(gpus_per_trial: float) -> list[str]:
    """The modules a study's prestarted workers should import: empty unless it uses GPUs.

    Only modules installed with this interpreter (its site-packages): a prestarted worker
    starts before the job's ``sys.path`` reaches it, and a module it cannot find would print a
    traceback from every worker instead of doing nothing.
    """
    if gpus_per_trial <= 0 or os.environ.get(PRELOAD_ENV, "1").strip() == "0":
        return []
    return [name for name in GPU_PRELOAD if _installed(name)]


def ray_system_config(modules: Sequence[str]) -> dict[str, object]:
    """``ray.init(_system_config=...)`` that has Ray's workers import ``modules`` when they start."""
    return {"preload_python_modules": list(modules)} if modules else {}


@contextlib.contextmanager
def tune_actors_in_prestarted_workers() -> Iterator[None]:
    """While inside, Tune's trial actors ask for no environment variables of their own.

    Only for a Ray this process started on this machine, whose workers inherited the driver's
    environment: ``PL_DISABLE_FORK`` is set there (``tuner.engine._tune_env``) and the variables
    Tune copies are the driver's own. Tune's module is restored on leaving; with another Ray
    version whose module differs, nothing is changed.
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        yield
        return
    names = ("DEFAULT_ENV_VARS", "ENV_VARS_TO_PROPAGATE")
    if not all(hasattr(class_cache, name) for name in names):
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
