"""Drives one run of a study: Optuna asks, Ray Tune places and runs, the storage remembers.

The Ray Tune side is a plain ``Tuner`` over a function trainable with reused actors. Two
small adapters connect it to Optuna (both in :mod:`tuner.engine._tune_glue`, which is imported
while Ray starts):

* ``OptunaSearcher`` (a Tune ``Searcher``) asks the Optuna study for the next trial whenever
  Tune has a free slot, until enough trials have finished;
* ``Recorder`` (a Tune ``Callback``) tells the study how each trial ended, including trials
  whose worker died, and drives the progress display.

There is no polling: Tune's event loop calls both when something happens.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from tuner.engine import _tune_env  # noqa: F401 - Ray Tune's environment, before Ray starts
from tuner.engine import _preload_trace
from tuner.engine._prestart import (preload_modules, preload_warnings, ray_system_config,
                                    tune_actors_in_prestarted_workers, tuners_choice, worker_environment)
from tuner.engine._progress import Progress, failure_text
from tuner.engine._ray_stop import shutdown_local_ray
from tuner.engine._scratch import make_scratch
from tuner.engine._study import (MAX_RERUNS, DriverLease, enqueue_points, mark_failed, open_for_run, record_spec,
                                 recover_stale_trials, refuse_if_running, refuse_incompatible, requeue_unfinished,
                                 run_line, run_log, run_row)
from tuner.engine._worker import JobInfo, trainable
from tuner.exceptions import TooManyFailuresError, TunerError, UserInputError, exception_chain

if TYPE_CHECKING:
    import optuna

    from tuner.spec import StudySpec

_log = logging.getLogger("tuner")

@dataclass
class RunSummary:
    """What one ``tuner run`` did (the study itself holds the trials)."""

    study_name: str
    storage_url: str  # its password hidden: `tuner run --json` prints the summary
    resumed: bool
    recovered: list[int]
    finished_before: int
    n_trials: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    cut_short: int = 0  # trials the stop itself ended (Ctrl-C, max_failures): not failures of their own
    elapsed_s: float = 0.0
    stopped_reason: str | None = None
    best_value: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished_total(self) -> int:
        return self.finished_before + self.complete + self.pruned


class _RunState:
    """Counters shared by the searcher and the recorder (both run on Tune's driver thread)."""

    def __init__(self, study: "optuna.Study", spec: "StudySpec", finished_before: int, deadline: float | None) -> None:
        self.study = study
        self.spec = spec
        self.target = spec.n_trials
        self.finished = finished_before
        self.running: dict[str, tuple[int, int]] = {}  # Tune trial id -> (Optuna trial id, number)
        # Of those, the ones Tune has started on a worker; the rest wait for a free slot (Tune holds
        # max_concurrent_trials of them even when fewer fit in the cluster's CPUs and GPUs).
        self.started: set[str] = set()
        self.failed = 0
        self.complete = 0
        self.pruned = 0
        self.deadline = deadline
        self.stop_reason: str | None = None
        self.interrupt_requested = False  # Ctrl-C, seen by the recorder at Tune's next step
        self.interrupt_signal = "Ctrl-C"  # or SIGTERM: what the stopping line names
        self.lease: Any = None  # the run's DriverLease, whose stop_requested the recorder reads (`tuner stop`)
        self.failures_at_stop = 0  # state.failed when max_failures stopped the run
        self.cut_short_ids: set[str] = set()  # Tune trial ids whose workers the stop killed
        self.cut_short = 0  # trials the stop ended unfinished (stored FAIL with the stop as reason)
        self.unstored_errors: dict[int, dict[str, str]] = {}  # Optuna trial id -> error its worker could not store
        self.preload_crash: str | None = None  # why Ray's workers die as they start, once one did
        self.preloaded_by_tuner: set[str] = set()  # what tuner itself has this run's workers preload
        self.grid = None
        from tuner.engine._retention import CheckpointRetention

        self.retention = CheckpointRetention(study, spec.keep_checkpoints, enabled=spec.task is not None)
        if spec.sampler == "grid":
            from tuner.engine._plugins import make_sampler

            self.grid = make_sampler("grid", spec.sampler_args, seed=spec.seed, space=spec.search_space)
            self.target = min(self.target, max(self.grid.n_points, finished_before))

    def new_trial(self) -> tuple[int, int]:
        """Create the next trial row (the first half of Optuna's ask; workers do the sampling).

        On Tune's driver thread, once per trial, so each database round trip here is a limit on
        trials per second: Optuna's own ``Study._pop_waiting_trial_id`` re-reads every unfinished
        and newly finished trial to find the enqueued ones, and ``get_trial_number_from_id`` loads
        the whole trial; together 9 of this call's 13 ms per trial (SQLite, 300 trivial trials at
        concurrency 2 on the project's 2-CPU VM). :meth:`_pop_waiting` asks for WAITING trials
        alone (an indexed query), and the number of a trial just created is in Optuna's cache.
        """
        from tuner.engine._grid import GRID_INDEX_ATTR

        storage = self.study._storage
        trial_id = self._pop_waiting()  # trials enqueued with study.enqueue_trial() go first
        if trial_id is None:
            trial_id = storage.create_new_trial(self.study._study_id)
        if self.grid is not None:
            storage.set_trial_system_attr(trial_id, GRID_INDEX_ATTR, self.grid.next_index(self.study))
        cached = getattr(storage, "_trial_id_to_study_id_and_number", {}).get(trial_id)
        return trial_id, cached[1] if cached else storage.get_trial_number_from_id(trial_id)

    def _pop_waiting(self) -> int | None:
        """The first enqueued trial no one has taken yet, now RUNNING (None if there is none).

        What ``Study._pop_waiting_trial_id`` does, reading only the WAITING trials: a trial
        another process took first is skipped as there.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        from tuner.storage import waiting_trial_ids

        storage = self.study._storage
        for trial_id in waiting_trial_ids(storage, self.study._study_id):  # past Optuna's cache, which reads much more
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except UpdateFinishedTrialError:
                continue
        return None

    def count(self, final_state: Any) -> None:
        """Count a trial that ended in ``final_state`` (an Optuna TrialState)."""
        name = final_state.name
        if name in ("COMPLETE", "PRUNED"):
            self.finished += 1
            if name == "COMPLETE":
                self.complete += 1
            else:
                self.pruned += 1
        else:
            self.failed += 1

    def want_more(self) -> bool:
        if self.stop_reason is not None or self.finished >= self.target:
            return False  # a run that reached its target as its time ran out is done, not timed out
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop_reason = "timeout"
            return False
        return True

    def done(self) -> bool:
        return not self.want_more() and not self.running


class _BackgroundImport:
    """Imports a module in a thread, so that the caller can wait on something else meanwhile.

    Ray's start spends most of its two to three seconds waiting on the processes it launches,
    which leaves the interpreter free to import Ray Tune (about a second: pandas, pyarrow) beside
    it. Alone, the two took 2.9-3.4 s together against 4.4-5.0 s one after the other (2-CPU VM);
    in a whole ``tuner run`` there, where Ray's new processes want the same two cores, Ray's start
    began 0.7 s earlier and ended 0.6 s earlier in the usual case (median time to the first trial
    over 6 interleaved runs: 4.38 s against 4.72 s). The thread is not a daemon: a run that fails
    meanwhile still lets the import finish before the interpreter exits, instead of tearing it
    down half-done.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread = threading.Thread(target=self._run, name=f"import {name}")
        self._thread.start()

    def _run(self) -> None:
        try:
            importlib.import_module(self._name)
        except BaseException:  # noqa: BLE001 - the caller's own import of the module repeats it and raises
            pass

    def wait(self, timeout: float | None = None) -> None:
        """Until the import has ended, imported or failed (then the caller's own import raises the error).

        ``timeout`` (seconds) is for a caller that was interrupted: a Ctrl-C can land while the
        main thread holds a lock the import needs (logging's module lock, seen once in about 25
        interrupts during Ray's start), and an unbounded wait then never ends.
        """
        self._thread.join(timeout)


def tuner_error_in(exc: BaseException) -> TunerError | None:
    """The tuner error that ``exc`` wraps through its causes or contexts, if any."""
    return next((e for e in exception_chain(exc) if isinstance(e, TunerError)), None)


def _init_ray_importing_tune(ray_address: str | None, num_cpus: float | None, num_gpus: float | None,
                             preload: Sequence[str] = (), cpus_per_trial: float = 1) -> bool:
    """:func:`_init_ray`, with Ray Tune imported beside Ray's start when there is a start to overlap.

    The import is joined before this returns, so that it never runs beside the driver's own work
    (``warnings.catch_warnings``, which Optuna's calls use, is not thread-safe); with Ray up
    already (a notebook, the tests) Tune is imported later, in the caller's thread.
    """
    import ray

    if ray.is_initialized():
        return _init_ray(ray_address, num_cpus, num_gpus, preload, cpus_per_trial)
    glue = _BackgroundImport("tuner.engine._tune_glue")
    try:
        started = _init_ray(ray_address, num_cpus, num_gpus, preload, cpus_per_trial)
        glue.wait()  # a failed import is repeated by the caller, inside the run's clean-up
        return started
    except BaseException:
        # Interrupted (Ctrl-C) while Ray was starting, or after it started but before the caller
        # learnt that it owns it: stop what has started now. Left to the interpreter's exit, Ray's
        # threads were still running during finalisation and the process died of a segfault
        # (exit 139 instead of 130) in about one interrupt in five at the right moment.
        glue.wait(timeout=5.0)
        _stop_partial_ray()
        raise


def _stop_partial_ray() -> None:
    """Shut down a local Ray whose start was cut short, as far as it got; never raises."""
    try:
        from ray._private import worker as ray_worker

        if ray_worker.global_worker.connected or getattr(ray_worker, "_global_node", None) is not None:
            shutdown_local_ray()
    except BaseException:  # noqa: BLE001 - a second Ctrl-C or a half-made node: the exit goes on
        pass
    finally:
        _preload_trace.close()  # its folder's other clean-up is an atexit handler, which os._exit skips


def _init_ray(ray_address: str | None, num_cpus: float | None, num_gpus: float | None,
              preload: Sequence[str] = (), cpus_per_trial: float = 1) -> bool:
    """Start or join Ray; returns True when this call started it (and so must shut it down).

    ``preload``: modules the workers of a Ray started here import before work arrives, with
    thread pools sized for ``cpus_per_trial`` (:mod:`tuner.engine._prestart`); a cluster's
    workers are configured where it was started.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": True,
                              "logging_level": logging.WARNING}
    environment: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()  # what preloaded workers inherit
    if ray_address:
        _check_reachable(ray_address)
        kwargs["address"] = ray_address
        # Ray 2.60 clusters use token auth by default, but ray.init(address=host:port) sends the
        # token (from $RAY_AUTH_TOKEN or ~/.ray/auth_token) only once token mode is switched on,
        # which ray.init does by itself for `auto` alone.
        try:
            from ray._private.authentication.authentication_token_setup import (
                maybe_enable_token_auth_if_token_available,
            )

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        except ImportError:  # other Ray versions: nothing to do
            pass
    else:
        # A fresh local instance, even when `ray start` left one running on this machine:
        # joining a cluster is what --ray-address (e.g. `auto`) is for.
        kwargs["address"] = "local"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        if preload:
            kwargs["_system_config"] = ray_system_config(preload)
            environment = worker_environment(preload, cpus_per_trial, _preload_trace.open_folder())
    try:
        try:
            with environment:
                ray.init(**kwargs)
        except BaseException:
            _preload_trace.close()  # no Ray, no workers to trace
            raise
    except ray.exceptions.AuthenticationError:
        raise UserInputError(f"the Ray cluster at {ray_address} refused this machine's auth token; copy the head "
                             f"node's ~/.ray/auth_token here or set RAY_AUTH_TOKEN") from None
    except ConnectionError as exc:
        raise UserInputError(f"cannot join the Ray cluster at {ray_address}: {str(exc).splitlines()[0]}; "
                             f"check `ray status` there or drop --ray-address") from None
    return True


def cluster_address(ray_address: str | None) -> str | None:
    """The cluster to join, or None to start Ray here: Ray's own ``local`` (and a blank) means the latter.

    So that ``--ray-address local`` gets what a local start gets (``--num-cpus``, the prestarted
    and preloaded workers) instead of being taken for a cluster. Any other value must be
    ``auto`` or ``HOST:PORT``: checked here, before the storage is opened, because Ray's own
    check comes only inside ``ray.init`` (a traceback ending in ``Invalid address format``)
    after the study's database has been created.
    """
    if ray_address is None or ray_address.strip().lower() in ("", "local"):
        return None
    address = ray_address.strip()
    if address.lower() == "auto":
        return "auto"
    if problem := _address_problem(address):
        raise UserInputError(f"--ray-address {ray_address!r}: {problem}; expected HOST:PORT of the cluster's head "
                             f"(e.g. 10.0.0.1:6379, as `ray status` there prints it), auto or local")
    return address


def _address_problem(address: str) -> str | None:
    """What is wrong with ``address`` as a ``HOST:PORT`` Ray address, or None when nothing is."""
    if "://" in address:
        scheme = address.split("://", 1)[0]
        if scheme.lower() == "ray":
            return "Ray Client addresses (ray://) are not supported"
        return f"a {scheme}:// URL is not a Ray address"
    if any(c.isspace() for c in address):
        return "it contains a space"
    host, colon, port = address.rpartition(":")
    if not colon:
        return "no port"
    if not host or host in ("[]",):
        return "no host"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"the port {port!r} is not a number from 1 to 65535"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return "an IPv6 host goes in brackets, e.g. [::1]:6379"
    return None


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong host:port (Ray itself retries for minutes before giving up)."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.removeprefix("[").removesuffix("]"), int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise UserInputError(f"cannot join the Ray cluster at {address}: {reason}; "
                             f"check the address (`ray status` on the head node prints it) or drop --ray-address") from None


def run_study(
    spec: "StudySpec",
    storage_url: str,
    *,
    objective: Callable[..., Any] | None = None,
    ray_address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> tuple["optuna.Study", RunSummary]:
    """Run ``spec`` until ``n_trials`` trials have finished (complete or pruned) in the storage."""
    progress = progress or Progress(quiet=True)
    with _ray_console(progress.mute_workers):
        return _run_study(spec, storage_url, objective=objective, ray_address=ray_address, num_cpus=num_cpus,
                          num_gpus=num_gpus, force=force, progress=progress)


def _run_study(
    spec: "StudySpec",
    storage_url: str,
    *,
    objective: Callable[..., Any] | None,
    ray_address: str | None,
    num_cpus: float | None,
    num_gpus: float | None,
    force: bool,
    progress: Progress,
) -> tuple["optuna.Study", RunSummary]:
    from optuna.trial import TrialState

    from tuner.spec import check_task_storage
    from tuner.storage import fold_in_sqlite_log, open_storage, redact, sqlite_path

    import optuna

    started, started_at = time.monotonic(), time.time()
    ray_address = cluster_address(ray_address)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tuner reports progress itself
    check_task_storage(spec, storage_url)  # a pretrained study not in the storage, before anything is created
    storage = open_storage(storage_url)
    refuse_incompatible(storage, spec, force=force)  # a changed space is refused before Ray starts
    refuse_if_running(storage, spec.name)  # so is a study another run drives (the lease below decides)
    owns_ray = False
    preload = preload_modules(spec.resources.gpus, spec.concurrency, num_cpus) if ray_address is None else []
    objective_blob = None
    if _finished_count(storage, spec.name) < spec.n_trials or force:
        objective_blob = _pickle_objective(objective)  # an objective Ray cannot send is refused before Ray starts
        # Start Ray and check that a trial fits before anything is written to the storage.
        owns_ray = _init_ray_importing_tune(ray_address, num_cpus, num_gpus, preload, spec.resources.cpus)
        try:
            _quiet_ray_logging(progress.mute_workers)
            _warn_capacity(spec, progress)
            if ray_address is None and (note := _mps_note(spec)):
                progress.note(note)
            for line in preload_warnings(preload, local_start=owns_ray and ray_address is None):
                progress.warn(line)
        except BaseException:
            _shutdown_ray(owns_ray)
            raise
    deleted: list[str] = []

    def on_delete(line: str) -> None:
        deleted.append(line)
        progress.warn(line)  # a deletion is told even under --quiet (and --json, on stderr)

    try:
        study, resumed = open_for_run(storage, spec, force=force, on_delete=on_delete)
        lease = DriverLease(study)
        recovered = lease.acquire()
        try:
            record_spec(study, spec)
            enqueued = enqueue_points(study, spec)
            rerun, given_up = requeue_unfinished(study, spec)
            scratch = make_scratch()
        except BaseException as exc:
            lease.release({"started": started_at, **_run_entry(None, None, exc, len(recovered))})
            raise
    except BaseException:
        _shutdown_ray(owns_ray)
        raise
    state: _RunState | None = None
    end: str | None = None  # how the run ended, once it did (the run log's ``end``)
    ended_by: BaseException | None = None
    try:
        database = getattr(study._storage, "_backend", study._storage)  # a COUNT, not Optuna's cache (every trial)
        finished_before = database.get_n_trials(study._study_id, (TrialState.COMPLETE, TrialState.PRUNED))
        deadline = started + spec.timeout if spec.timeout else None
        state = _RunState(study, spec, finished_before, deadline)
        state.lease = lease
        if preload:
            state.preloaded_by_tuner = set(tuners_choice(spec.resources.gpus, spec.concurrency, num_cpus))
        summary = RunSummary(spec.name, redact(storage_url), resumed, recovered, finished_before, spec.n_trials)
        if deleted:
            summary.extra["force_deleted"] = deleted[0]
        progress.start(spec, summary, state)
        if resumed and (runs := run_log(study._storage.get_study_system_attrs(study._study_id))):
            progress.note(f"last run: {run_line(run_row(runs[-1]))}")  # how it ended: interrupted, lost, ...
        if enqueued:
            when = "first" if state.want_more() else f"when the study is resumed past n_trials={spec.n_trials}"
            progress.note(f"enqueued {enqueued} point{'s' if enqueued != 1 else ''} of the spec's enqueue: "
                          f"{'they run' if enqueued != 1 else 'it runs'} {when}")
        if rerun:
            progress.note(f"running again, with their parameters, {_trials_text(rerun)} an earlier run left "
                          f"unfinished (rerun_unfinished: false turns this off)")
        if given_up:
            progress.warn(f"not running again {_trials_text(given_up)} left unfinished {MAX_RERUNS} times "
                          f"with the same parameters (a configuration that may be what ended those runs)")
        if state.want_more():
            if not owns_ray:
                owns_ray = _init_ray(ray_address, num_cpus, num_gpus, preload, spec.resources.cpus)
                _quiet_ray_logging(progress.mute_workers)
            artifacts = spec.artifacts_dir or _default_artifacts_dir(storage_url, sqlite_path)
            job = JobInfo(
                storage_url=storage_url, study_name=spec.name, metrics=spec.metrics, directions=spec.directions,
                pruner=spec.pruner, pruner_args=spec.pruner_args, sampler=spec.sampler, sampler_args=spec.sampler_args,
                space=spec.search_space, task=spec.task, task_args=spec.task_args,
                objective_ref=spec.objective,
                objective_blob=objective_blob if objective_blob is not None else _pickle_objective(objective),
                artifacts_dir=str(Path(artifacts).resolve()),
                source=spec.source, base_dir=spec.base_dir, driver_cwd=os.getcwd(),
                driver_sys_path=[p for p in sys.path if p and os.path.isdir(p)][:20],
                cpus=spec.resources.cpus, gpus=spec.resources.gpus, seed=spec.seed, trial_timeout=spec.trial_timeout,
                resume_points=spec.rerun_unfinished and spec.sampler != "grid",  # what requeue_unfinished reruns
            )
            from tuner.engine import _tune_glue  # imported already, unless Ray was up before this run

            tune = _tune_glue.tune
            fn = tune.with_resources(tune.with_parameters(trainable, job=job),
                                     {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus})
            tuner = tune.Tuner(
                fn,
                tune_config=tune.TuneConfig(
                    search_alg=_tune_glue.OptunaSearcher(state),
                    num_samples=-1,
                    max_concurrent_trials=spec.concurrency,
                    reuse_actors=True,
                    trial_dirname_creator=lambda t: f"t{t.trial_id}",
                    trial_name_creator=lambda t: f"t{t.trial_id}",
                ),
                run_config=tune.RunConfig(
                    name="run",
                    storage_path=str(scratch),
                    verbose=0,
                    stop=_tune_glue.Stopper(state),
                    callbacks=[_tune_glue.Recorder(state, progress)],
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    log_to_file=False,
                ),
            )
            # Tune's end-of-run analysis looks for per-trial result files, which tuner does not
            # write (the storage is the record); its warning about them is noise.
            logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
            # On Ctrl-C Tune suggests `Tuner.restore(...)`; with tuner, resuming is re-running the
            # same command (the storage is the state), which the final summary says instead. Its
            # "Trials did not complete: [t1a2b3]" (ERROR) names Tune's ids, which nobody can look up.
            logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
            # A Ray started here gave its workers the driver's environment: Tune's actors need
            # none of their own, and so start in the workers Ray started ahead of time.
            in_prestarted = (tune_actors_in_prestarted_workers() if owns_ray and ray_address is None
                             else contextlib.nullcontext())
            try:
                with in_prestarted, _interrupt_stops(state):
                    tuner.fit()
            except tune.TuneError as exc:
                # A tuner error raised in a Tune callback (the storage lost while recording a dead
                # worker's trial) comes back as TuneError(traceback text): re-raise ours, so the
                # CLI prints its one line and exits 2 as it does when the searcher raises it.
                inner = tuner_error_in(exc)
                if inner is None:
                    raise
                raise inner from None
        interrupted = bool(state.running) or (state.stop_reason is None and state.want_more())
        _store_unstored_errors(state)
        _end_unfinished(state, progress)
        state.running.clear()
        state.started.clear()
        # This run holds the lease, and every trial it started has now ended: a trial still
        # RUNNING is a row whose creation was retried after a lost connection and never ran.
        recover_stale_trials(study, reason="created twice when a storage write was retried after a lost "
                                           "connection; this copy never ran")
        summary.complete, summary.pruned, summary.failed = state.complete, state.pruned, state.failed
        summary.cut_short = state.cut_short
        summary.stopped_reason = state.stop_reason or ("interrupted" if interrupted else None)
        end = summary.stopped_reason or "done"
        summary.elapsed_s = time.monotonic() - started
        summary.best_value = _best(study)
        progress.end(summary)
        if state.stop_reason == "max_failures":
            fix = (f"{state.preload_crash}; then run again to resume (`tuner show {spec.name}` lists the errors)"
                   if state.preload_crash else
                   f"see `tuner show {spec.name}` for their errors, fix the objective and run again to resume")
            unfinished = (f"; {state.cut_short} running trial{'s' if state.cut_short != 1 else ''} stopped unfinished"
                          if state.cut_short else "")
            trials = "trial" if state.failed == 1 else "trials"
            err = TooManyFailuresError(f"stopped: {state.failed} {trials} failed in this run "
                                       f"(max_failures={spec.max_failures}){unfinished}; {fix}")
            err.study = study  # type: ignore[attr-defined]
            err.summary = summary  # type: ignore[attr-defined]
            raise err
        return study, summary
    except BaseException as exc:
        ended_by = exc
        raise
    finally:
        lease.release({"started": started_at, **_run_entry(state, end, ended_by, len(recovered))})
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            _shutdown_ray(owns_ray)
        finally:
            # Every trial of this run has ended and Tune has stopped its workers (and with a Ray
            # of our own, their processes): what the run wrote is all in the log by now.
            fold_in_sqlite_log(storage)


def _trials_text(numbers: list[int]) -> str:
    """``3 trials (12, 13, 14)``, the numbers cut after ten."""
    shown = ", ".join(map(str, numbers[:10])) + (", ..." if len(numbers) > 10 else "")
    return f"{len(numbers)} trial{'s' if len(numbers) != 1 else ''} ({shown})"


def _run_entry(state: "_RunState | None", end: str | None, ended_by: BaseException | None,
               recovered: int) -> dict[str, Any]:
    """This run as the study's run log keeps it (``tuner:runs``): its trials and how it ended
    (``end``: the run's stop reason or ``done``, None when it did not get that far)."""
    unfinished = state.cut_short if state else 0
    if end is None:  # the run did not reach its end: an error, or a second Ctrl-C
        end = "interrupted" if isinstance(ended_by, KeyboardInterrupt) else "error"
        # its running trials stay RUNNING, for the next run to mark FAIL: they ended unfinished too
        unfinished = max(unfinished, len(state.running)) if state else 0
    entry: dict[str, Any] = {"end": end, "complete": state.complete if state else 0,
                             "pruned": state.pruned if state else 0, "failed": state.failed if state else 0,
                             "stopped_unfinished": unfinished, "recovered": recovered}
    if end == "error":
        message = " ".join(str(ended_by).split())
        entry["error"] = f"{type(ended_by).__name__}: {message}"[:300] if message else type(ended_by).__name__
    return entry


def _store_unstored_errors(state: _RunState) -> None:
    """FAIL, with their own errors, the trials whose workers could not store that they failed.

    The storage did not answer the worker (an outage longer than its retries). Left RUNNING, the
    trial would be failed below as a row created twice that never ran, and its traceback lost.
    Done once Tune's loop has ended, not in its callback: a storage still away must not hold up
    Tune, nor raise into it. Still away now, the trial is left to that sweep or the next run.
    """
    from tuner.exceptions import StorageError

    for trial_id, error in state.unstored_errors.items():
        try:
            mark_failed(state.study, trial_id, error)  # a no-op for a trial finished meanwhile
        except StorageError:  # still away (its retries spent): nothing more to do here
            break
        except Exception:  # noqa: BLE001 - this trial's write failed otherwise: the others may still go in
            continue


def _end_unfinished(state: _RunState, progress: Progress) -> None:
    """Settle the trials Tune stopped before it reported them, after the run's loop has ended.

    A trial whose worker told the study how it ended (it failed or finished just as the run
    stopped) counts as that and gets its console line; one still RUNNING was ended by the stop
    itself (Ctrl-C, or ``max_failures`` reached by other trials) and is stored FAIL with the stop
    as its reason, counted apart (``cut_short``): it did not fail, and calling it a failure, or
    "interrupted" when nobody interrupted it, misled the user about what went wrong.
    """
    from optuna.trial import TrialState

    from tuner.engine import _attrs

    if state.stop_reason == "max_failures":
        failures = state.failures_at_stop
        error = {"type": "StoppedByMaxFailures", "traceback": "",
                 "message": f"the run stopped after {failures} failure{'s' if failures != 1 else ''} "
                            f"(max_failures={state.spec.max_failures}) before this trial finished"}
    elif state.stop_reason == "stop_requested":
        by = (getattr(state.lease, "stop_requested", None) or {}).get("by", "?")
        error = {"type": "StoppedByRequest", "traceback": "",
                 "message": f"the run was stopped by `tuner stop` ({by}) before this trial finished"}
    else:
        error = {"type": "Interrupted", "traceback": "",
                 "message": "the run was interrupted before this trial finished"}
    storage = state.study._storage
    for trial_id, number in sorted(state.running.values(), key=lambda entry: entry[1]):
        mark_failed(state.study, trial_id, error)  # a no-op for a trial its worker finished
        try:
            trial = storage.get_trial(trial_id)
        except Exception:  # noqa: BLE001 - the storage's own retries are spent: it stays the stop's
            state.cut_short += 1
            continue
        stored_error = trial.system_attrs.get(_attrs.ERROR)
        if trial.state == TrialState.FAIL and stored_error == error:
            state.cut_short += 1
            continue
        state.count(trial.state)
        values = trial.values if trial.state == TrialState.COMPLETE else None
        progress.trial_done(trial.number, trial.state.name, values, state,
                            reason=failure_text(stored_error) if trial.state == TrialState.FAIL else None)


@contextlib.contextmanager
def _interrupt_stops(state: _RunState) -> Iterator[None]:
    """Around Tune's loop: a first Ctrl-C asks the run to stop, a second raises KeyboardInterrupt.

    Tune's own handler ends its loop without a word and leaves the running trials to its
    clean-up, which waited 10 s on trainables that answer only when their trial ends. Here the
    handler only flags the interrupt; the recorder, at Tune's next step (a tenth of a second),
    says so and kills the running trials' workers (``Recorder.cut_short``), so the run ends in
    about a second. The previous handler (Python's: KeyboardInterrupt) is back for a second Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; Tune's own handling applies
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield  # started with SIGINT ignored (`tuner run ... &` from a script): a Ctrl-C is not for this run
        return
    restore = previous if previous is not None else signal.default_int_handler
    # SIGTERM (`kill PID`, a batch scheduler, `timeout`) stops the run as a Ctrl-C does: before,
    # Ray's fault handler printed a stack dump and the process died, the running trials left
    # RUNNING until the next run called them lost. A second SIGTERM ends the process at once.
    previous_term = signal.getsignal(signal.SIGTERM)
    restore_term = previous_term if previous_term not in (None, signal.SIG_IGN) else signal.SIG_DFL

    def on_sigint(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, restore)
        state.interrupt_requested = True

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, restore_term)
        state.interrupt_requested = True
        state.interrupt_signal = "SIGTERM"

    tune_handler = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # read by Tune when fit() starts
    signal.signal(signal.SIGINT, on_sigint)
    if previous_term is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, restore)
        if previous_term is not signal.SIG_IGN:
            signal.signal(signal.SIGTERM, restore_term)
        if tune_handler is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_handler


# Ray's own loggers that speak to the console during a run, and the level tuner gives them.
_TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"


@contextlib.contextmanager
def _ray_console(quiet: bool) -> Iterator[None]:
    """What Ray prints on the driver's console during a run, cut to what a tuner user can use.

    * Ray's ``Token authentication is enabled ...`` warning at every local start: nothing to
      act on for a Ray that exists for one run (``--ray-address`` clusters pass their token).
    * The raylet's messages (``(raylet) A worker died ... the OOM killer ...``), on stdout
      (``--json`` too): tuner prints its own line for the trial whose worker died and stores the
      error with it; the raylet's text stays in Ray's session logs
      (``/tmp/ray/session_latest/logs``) and goes to tuner's logger at DEBUG.
    * With ``quiet``, the workers' own output as well (``(trainable pid=...)`` lines: warnings
      from Optuna or the objective), which Ray keeps in the same session logs.

    Ray's printer is a module function its listener threads look up at each message; it is
    wrapped for this run only and restored after it (a notebook keeps Ray's behaviour).
    """
    token_logger = logging.getLogger(_TOKEN_SETUP_LOGGER)
    token_level = token_logger.level
    token_logger.setLevel(logging.ERROR)
    try:
        from ray._private import worker as ray_worker

        original = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):  # another Ray version: its console as it is
        ray_worker, original = None, None

    def filtered(data: dict[str, Any], ignore_prefix: bool) -> None:
        if ray_worker is None or ray_worker.print_to_stdstream is not filtered:
            return original(data, ignore_prefix)  # the run has ended: Ray's behaviour again
        if data.get("pid") == "raylet":
            _log.debug("ray: %s", " ".join(map(str, data.get("lines", ()))))
            return None
        if quiet:
            return None
        return original(data, ignore_prefix)

    if ray_worker is not None:
        ray_worker.print_to_stdstream = filtered
    ray_level = logging.getLogger("ray").level
    try:
        yield
    finally:
        token_logger.setLevel(token_level)
        if quiet:
            logging.getLogger("ray").setLevel(ray_level)
        if ray_worker is not None and ray_worker.print_to_stdstream is filtered:
            ray_worker.print_to_stdstream = original


def _quiet_ray_logging(quiet: bool) -> None:
    """With ``--quiet``, Ray's warnings off the console once Ray is up (``ray.init`` sets its level)."""
    if quiet:
        logging.getLogger("ray").setLevel(logging.ERROR)


def _shutdown_ray(owned: bool) -> None:
    if owned:
        try:
            shutdown_local_ray()
        finally:
            _preload_trace.close()


def _finished_count(storage: Any, name: str) -> int:
    """Finished (complete or pruned) trials of an existing study, 0 for a new one; read-only."""
    from optuna.trial import TrialState

    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return storage.get_n_trials(study_id, (TrialState.COMPLETE, TrialState.PRUNED))


def _pickle_objective(objective: Callable[..., Any] | None) -> bytes | None:
    if objective is None:
        return None
    import cloudpickle

    try:
        return cloudpickle.dumps(objective)
    except Exception as exc:  # noqa: BLE001 - e.g. a closure over a lock or an open file
        raise UserInputError(f"the objective function cannot be sent to Ray workers ({type(exc).__name__}: {exc}); "
                             f"define it at module level or pass it as `objective: module:function` in the spec") from None


def _best(study: "optuna.Study") -> Any:
    try:
        if len(study.directions) > 1:
            return [t.values for t in study.best_trials]
        return study.best_value
    except ValueError:
        return None


def _default_artifacts_dir(storage_url: str, sqlite_path: Callable[[str], Path | None]) -> Path:
    """Next to a SQLite file; ``./tuner_runs`` otherwise (override with ``artifacts_dir:``)."""
    path = sqlite_path(storage_url)
    return (path.parent if path is not None else Path.cwd()) / "tuner_runs"


def _mps_note(spec: "StudySpec") -> str | None:
    """A hint to start NVIDIA MPS when trials share this machine's GPUs and it is not running.

    Without MPS, trials packed on a GPU are separate CUDA contexts that the GPU time-slices;
    with it their kernels overlap. Measured with bench/gpu_packing.py on an H100, 8 small CNN
    trials per GPU: a trial's training took 6.7 s without MPS and 2.8 s with it (1.6-1.9 s
    alone). Only the local machine can be checked, so a cluster run gets no hint.
    """
    if not 0 < spec.resources.gpus < 1 or spec.concurrency < 2 or not shutil.which("nvidia-smi"):
        return None
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    if (pipe / "control").exists():
        return None
    return (f"note: trials share GPUs (resources.gpus: {spec.resources.gpus:g}) but NVIDIA MPS is not running; "
            "start it with `nvidia-cuda-mps-control -d` so their kernels overlap (README: How a run works)")


def _warn_capacity(spec: "StudySpec", progress: Progress) -> None:
    import ray

    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if spec.resources.gpus > 0 and gpus < spec.resources.gpus:
        raise UserInputError(f"{spec.source}: resources.gpus: each trial asks for {spec.resources.gpus:g} GPU but the "
                             f"Ray cluster has {gpus:g}; set resources.gpus: 0 or join a cluster with GPUs (--ray-address)")
    if spec.resources.cpus > cpus:
        raise UserInputError(f"{spec.source}: resources.cpus: each trial asks for {spec.resources.cpus:g} CPUs but the "
                             f"Ray cluster has {cpus:g}; lower it or pass --num-cpus")
    fit = math.floor(cpus / spec.resources.cpus + 1e-9)
    if spec.resources.gpus > 0:
        fit = min(fit, math.floor(gpus / spec.resources.gpus + 1e-9))
    if fit < spec.concurrency:
        progress.note(f"note: only {fit} trials fit at once in this Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs); "
                      f"concurrency {spec.concurrency} is capped by that (declare more with --num-cpus/--num-gpus)")
