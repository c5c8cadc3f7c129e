"""Objectives used by the engine tests. Module-level so Ray workers import them by reference."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any


def quadratic(params: dict[str, Any], ctx: Any) -> float:
    """Minimum 0 at x=2, y=-1; cheap."""
    return (params["x"] - 2.0) ** 2 + (params.get("y", -1.0) + 1.0) ** 2


def curve(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """Reports a learning curve; bad x values plateau high so the pruner has something to cut."""
    loss = 1.0
    for step in range(1, 9):
        loss = abs(params["x"] - 2.0) + 1.0 / step
        ctx.report(step, {"loss": loss, "acc": 1.0 / (1.0 + loss)})
    return {"loss": loss, "acc": 1.0 / (1.0 + loss)}


def _meet(folder: Path, tag: str, number: int, wait: bool, once: bool = False) -> None:
    """Marks this trial as running under ``tag`` and, when ``wait``, waits (up to 30 s) until
    another trial runs under the same tag; with ``once``, only until two trials under ``tag``
    have met, so that a late trial whose partners have all finished does not wait out the 30 s."""
    mine = folder / f"{tag}-{number}"
    met = folder / f"{tag}.met"
    mine.touch()
    try:
        deadline = time.time() + 30.0
        while wait and time.time() < deadline and not (once and met.exists()):
            if any(p != mine for p in folder.glob(f"{tag}-*")):
                met.touch()
                break
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        mine.unlink()


def rendezvous(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """Waits (up to 30 s) until another trial is running too, then records when it ran.

    Proves two trials ran at once without depending on how fast a loaded machine starts the
    second worker: a fixed sleep overlaps only if both workers are up within that sleep. A
    driver that runs trials one at a time makes every trial wait out the 30 s and overlap none.
    """
    start = time.time()
    _meet(Path(params["folder"]), "running", ctx.number, wait=True)
    return {"value": params["x"] ** 2, "start": start, "end": time.time(), "pid": float(os.getpid())}


def gpu_rendezvous(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """``rendezvous`` per GPU: a trial of the first wave (number below ``params["wave"]``) waits (up
    to 30 s) until another trial runs with its GPU visible, or two already have, then records when
    and where it ran.

    Proves trials share a GPU without depending on how fast a loaded machine starts its workers;
    later trials do not wait, since nothing guarantees them a partner on their GPU, and neither
    does a first-wave trial once its GPU has been shared (its partners may all have finished).
    """
    start = time.time()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "-1") or "-1"
    _meet(Path(params["folder"]), f"gpu{gpu}", ctx.number, wait=ctx.number < params["wave"], once=True)
    return {"value": params["x"] ** 2, "start": start, "end": time.time(), "pid": float(os.getpid()),
            "gpu": float(gpu)}


def flaky(params: dict[str, Any], ctx: Any) -> float:
    """Raises for some trials, returns NaN for others."""
    if ctx.number % 3 == 1:
        raise RuntimeError(f"boom in trial {ctx.number}")
    if ctx.number % 3 == 2:
        return math.nan
    return params["x"]


def always_fails(params: dict[str, Any], ctx: Any) -> float:
    raise ValueError("this objective never works")


def kills_worker(params: dict[str, Any], ctx: Any) -> float:
    """Trial 1 kills its own worker process mid-trial (SIGKILL), the others succeed."""
    if ctx.number == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return params["x"]


def hangs(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 hangs (until trial_timeout ends it)."""
    if ctx.number == 0:
        time.sleep(3600)
    return params["x"]


def slow_steps(params: dict[str, Any], ctx: Any) -> float:
    """About 2 s per trial in small steps (for kill -9 tests)."""
    for step in range(1, 6):
        time.sleep(0.4)
        ctx.report(step, params["x"] + 1.0 / step)
    return params["x"]


def writes_checkpoint(params: dict[str, Any], ctx: Any) -> float:
    (ctx.trial_dir / "model.txt").write_text(f"x={params['x']}\n")
    ctx.set_attr("note", {"device": ctx.device, "seed": ctx.seed})
    return params["x"]


def dashboard_mix(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """A bit of everything the dashboard shows: a learning curve, a checkpoint file, an extra
    attribute, marked training phases, and a failure with a traceback for every fourth trial."""
    if ctx.number % 4 == 3:
        raise RuntimeError(f"diverged in trial {ctx.number}: loss is <nan> & rising")
    loss = 1.0
    ctx.mark("training_started")
    for step in range(1, 5):
        loss = abs(params["x"] - 2.0) + 1.0 / step
        ctx.report(step, {"loss": loss, "val_acc": 1.0 / (1.0 + loss)})
        time.sleep(float(params.get("delay", 0.0)))
    ctx.mark("training_ended")
    (ctx.trial_dir / "best.pt").write_bytes(f"weights of trial {ctx.number}\n".encode())
    ctx.set_attr("confusion_matrix", [[5, 1], [2, 7]])
    return {"loss": loss, "val_acc": 1.0 / (1.0 + loss)}


def chatty(params: dict[str, Any], ctx: Any) -> float:
    """Many small storage writes (20 reports and an attribute) in about half a second: with many
    trials at once this is what contends for a SQLite file's write lock."""
    value = 0.0
    for step in range(1, 21):
        value = (params["x"] - 0.5) ** 2 + 1.0 / step
        ctx.report(step, value)
        time.sleep(0.02)
    ctx.set_attr("steps", 20)
    return value


def plugin_probe(params: dict[str, Any], ctx: Any) -> float:
    """Records the sampler and pruner configuration the worker running this trial really built."""
    study = ctx._study  # the worker's study: its pruner, and the sampler that sampled this trial
    ctx.set_attr("multivariate", bool(study.sampler._multivariate))
    ctx.set_attr("group", bool(study.sampler._group))
    ctx.set_attr("n_ei_candidates", int(study.sampler._n_ei_candidates))
    ctx.set_attr("alternate", int(getattr(study.sampler, "_other_every", 0)))
    ctx.set_attr("reduction_factor", int(study.pruner._reduction_factor))
    return float(params["x"])


def choice_bowl(params: dict[str, Any], ctx: Any) -> float:
    """A bowl whose best y depends on a categorical choice: an interaction for the TPE tests."""
    shift = {"a": -3.0, "b": 0.0, "c": 3.0}[params["opt"]]
    return (params["x"] - 1.0) ** 2 + (params["y"] - shift) ** 2 + (0.5 if params["opt"] == "b" else 0.0)


def worker_state(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """Records what the worker process imported before this objective ran, its pid and torch's threads."""
    import sys

    threads = float(sys.modules["torch"].get_num_threads()) if "torch" in sys.modules else math.nan
    return {"value": params["x"] ** 2, "pid": float(os.getpid()), "torch_threads": threads,
            "had_dynamo": float("torch._dynamo" in sys.modules), "had_ray_tune": float("ray.tune" in sys.modules)}


def reports_another_metric(params: dict[str, Any], ctx: Any) -> dict[str, float]:
    """Reports `acc` per step but returns `loss` too: in a `metric: loss` study the pruner never sees a value."""
    for step in range(1, 4):
        ctx.report(step, {"acc": 0.5 + 0.1 * step})
    return {"loss": params["x"], "acc": 0.8}


def returns_a_flag(params: dict[str, Any], ctx: Any) -> Any:
    """Returns a bool for even trial numbers and a numeric string for odd ones: neither is a number."""
    return params["x"] > 0 if ctx.number % 2 == 0 else str(params["x"])


def first_sleeps_others_fail(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 runs for two minutes (so a max_failures stop cuts it short); every other trial raises."""
    if ctx.number == 0:
        time.sleep(120)
        return params["x"]
    raise RuntimeError(f"trial {ctx.number} fails on its own")


def warns_and_prints(params: dict[str, Any], ctx: Any) -> float:
    """Output a worker sends to the driver's console: an Optuna UserWarning (a step reported
    twice), a warning of the objective's own and a print."""
    import warnings

    ctx.report(1, params["x"])
    ctx.report(1, params["x"])
    warnings.warn("a warning from the objective", UserWarning)
    print("printed by the objective", flush=True)
    return params["x"]


def warns_then_prunes(params: dict[str, Any], ctx: Any) -> float:
    """Records a warning (as a checkpoint that could not be written does), then prunes itself:
    odd trials after one report, even ones before any."""
    from tuner import TrialPruned

    ctx.warn(f"trial {ctx.number}: its checkpoint was not written")
    if ctx.number % 2:
        ctx.report(3, params["x"])
    raise TrialPruned("stopped by the objective")


def counts_on(params: dict[str, Any], ctx: Any) -> float:
    """Counts to 5, one report a step, keeping its count in its folder; a rerun goes on from the
    count of the trial it reruns (``ctx.resumed_from``). Returns how many steps this trial counted."""
    saved = ctx.resumed_from / "count.txt" if ctx.resumed_from is not None else None
    start = int(saved.read_text()) if saved is not None and saved.exists() else 0
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    for step in range(start + 1, 6):
        (ctx.trial_dir / "count.txt").write_text(str(step))
        ctx.report(step, float(step))
    return float(5 - start)


def saves_then_fails(params: dict[str, Any], ctx: Any) -> float:
    """Saves a checkpoint of its own under the name the built-in tasks use, then fails."""
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    (ctx.trial_dir / "resume.pt").write_bytes(b"mine")
    raise RuntimeError("failed after saving")


def fails_where_its_worker_cannot_store_it(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 raises with its worker's storage writes failing from then on (in that process
    only), as in a storage outage longer than the worker's retries; later trials return."""
    if ctx.number != 0:
        return params["x"]
    from tuner._retry_storage import RetryingRDBStorage
    from tuner.exceptions import StorageError

    def away_for_this_trial(real: Any) -> Any:
        def write(self: Any, trial_id: int, *args: Any, **kwargs: Any) -> Any:
            if trial_id == ctx._trial_id:
                raise StorageError("lost the storage for 0s (test)")
            return real(self, trial_id, *args, **kwargs)
        return write

    for name in ("set_trial_system_attr", "set_trial_state_values"):
        setattr(RetryingRDBStorage, name, away_for_this_trial(getattr(RetryingRDBStorage, name)))
    raise ValueError("the objective's own error, raised in a storage outage")


def prunes_the_optuna_way(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 reports, then raises Optuna's own TrialPruned, as objectives written for Optuna do."""
    import optuna

    ctx.report(0, params["x"])
    if ctx.number == 0:
        raise optuna.TrialPruned()
    return params["x"]


def raises_a_long_message_and_one_that_cannot_be_printed(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 raises with a 5 MB message; trial 1 with an exception whose __str__ raises."""
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    if ctx.number == 0:
        raise ValueError("y" * 5_000_000)
    raise Unprintable()


def holds_the_interpreter(params: dict[str, Any], ctx: Any) -> float:
    """Trial 0 blocks for an hour in one C call that keeps the GIL (C's sleep through
    ``ctypes.PyDLL``, which does not release it, unlike ``CDLL``): no other thread of the
    process runs meanwhile, the trial_timeout watchdog included, and it burns no CPU."""
    if ctx.number == 0:
        import ctypes

        ctypes.PyDLL(None).sleep(3600)
    return params["x"]
