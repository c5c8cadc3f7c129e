"""The Ray Tune side of a run: the searcher, callback and stopper that connect Tune to the study.

Apart from :mod:`tuner.engine._driver` because importing Ray Tune takes about a second (it
pulls in pandas and pyarrow): the driver imports this module in a thread while Ray starts, which
spends most of its time waiting on its processes, so a run's first trial starts sooner
(``_driver._BackgroundImport`` has the figures). Tune's environment (:mod:`._tune_env`) is
set before Tune is imported, whoever imports this.

* :class:`OptunaSearcher` (a Tune ``Searcher``) asks the Optuna study for the next trial
  whenever Tune has a free slot, until enough trials have finished;
* :class:`Recorder` (a Tune ``Callback``) tells the study how each trial ended, including
  trials whose worker died, and drives the progress display;
* :class:`Stopper` stops every running trial once ``max_failures`` is exceeded or Ctrl-C was
  pressed; the recorder kills those trials' workers at that moment (see :meth:`Recorder.cut_short`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.engine import _tune_env  # noqa: F401, I001 - before Ray Tune's import

from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from tuner.engine import _attrs, _preload_trace
from tuner.engine._progress import Progress, failure_text
from tuner.engine._study import mark_failed
from tuner.engine._worker import PRUNED_AT_KEY, STATE_KEY, UNSTORED_ERROR_KEY, VALUES_KEY, WARNINGS_KEY

if TYPE_CHECKING:
    from tuner.engine._driver import _RunState


class _Unpicklable:
    """Tune pickles its config for experiment restore, which tuner never uses (the storage is
    the state); the live study, counters and streams must not travel."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pass


class OptunaSearcher(_Unpicklable, Searcher):
    """Asks the Optuna study for a trial whenever Tune has a free slot."""

    def __init__(self, state: "_RunState") -> None:
        super().__init__(metric=None, mode=None)
        self._state = state

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        state = self._state
        if not state.want_more():
            return Searcher.FINISHED if not state.running else None
        if state.finished + len(state.running) >= state.target:
            return None  # wait: a running trial may still fail and need replacing
        optuna_id, number = state.new_trial()
        state.running[trial_id] = (optuna_id, number)
        return {"trial_id": optuna_id, "number": number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the recorder tells Optuna: it also sees why a trial errored

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text("state lives in the Optuna storage\n")

    def restore(self, checkpoint_path: str) -> None:
        pass


#: The reasons a run stops every running trial at once (others, timeout and done, let them finish).
STOPS = ("max_failures", "interrupted", "stop_requested")

#: How long past its ``trial_timeout`` a trial may run before the driver ends its worker. The
#: worker's own watchdog ends it at the timeout, counted from when the trial started; it is a
#: thread, which never runs while the trial's code holds the interpreter in one long C call (a
#: regular expression that backtracks, ``sum(range(10**12))``). The driver counts from when Tune
#: started the worker, before its imports: the margin covers a cold start.
TIMEOUT_GRACE_S = 30.0


class Recorder(_Unpicklable, tune.Callback):
    """Tells the study how each trial ended (worker deaths included) and shows progress."""

    def __init__(self, state: "_RunState", progress: Progress) -> None:
        self._state = state
        self._progress = progress
        self._tune_trials: dict[str, Any] = {}  # Tune's trial objects of the running trials, for their actors
        self._started_at: dict[str, float] = {}  # Tune trial id -> time.monotonic() when it got its worker
        self._overdue: set[str] = set()  # Tune trial ids whose workers the driver ended past trial_timeout

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial got its worker (a new actor or a reused one): it runs now, no longer queued."""
        if trial.trial_id in self._state.running:
            self._state.started.add(trial.trial_id)
            self._tune_trials[trial.trial_id] = trial
            self._started_at[trial.trial_id] = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Act on a Ctrl-C (:func:`tuner.engine._driver._interrupt_stops` only flags it) or a
        `tuner stop` (the lease's thread only notes it): say so, stop."""
        state = self._state
        if state.stop_reason in STOPS:
            return
        if getattr(state, "interrupt_requested", False):
            state.stop_reason = "interrupted"
            n = len(state.running)
            by = getattr(state, "interrupt_signal", "Ctrl-C")
            again = "press Ctrl-C again" if by == "Ctrl-C" else f"a second {by}"
            self._progress.note(f"stopping{'' if by == 'Ctrl-C' else f' ({by})'}: marking {n} running "
                                f"trial{'s' if n != 1 else ''} interrupted; {again} to quit at once")
            self.cut_short()
        elif request := getattr(getattr(state, "lease", None), "stop_requested", None):
            state.stop_reason = "stop_requested"
            n = len(state.running)
            self._progress.warn(f"stopping: `tuner stop` from {request.get('by', '?')}; marking {n} running "
                                f"trial{'s' if n != 1 else ''} stopped")
            self.cut_short()
        else:
            self._end_overdue()

    def _end_overdue(self) -> None:
        """End the workers of trials :data:`TIMEOUT_GRACE_S` past ``trial_timeout``: their own
        watchdog could not (see there). Each is then stored as timed out (``on_trial_error``)."""
        timeout = self._state.spec.trial_timeout
        if not timeout:
            return
        now = time.monotonic()
        for tune_id, started in list(self._started_at.items()):
            if tune_id in self._overdue or now - started < timeout + TIMEOUT_GRACE_S:
                continue
            self._overdue.add(tune_id)
            self._kill_worker(tune_id)

    def cut_short(self) -> None:
        """Kill the workers of the trials still running, now that the run stops (Ctrl-C, max_failures).

        Tune would ask each to stop, and a function trainable answers only once its trial has
        ended: Tune waits 5 s, then kills it 10 s after asking, so every stop took 10 s in which
        nothing was printed. These trials are ended by the stop, not failed: they are left in
        ``state.running`` for the driver, which stores them with the stop as their reason
        (``_driver._end_unfinished``) unless their worker told the study first.
        """
        state = self._state
        for tune_id in list(state.running):
            state.cut_short_ids.add(tune_id)
            self._kill_worker(tune_id)  # one never started (queued) is ended by Tune's stop

    def _kill_worker(self, tune_id: str) -> None:
        """Kill the Ray actor running Tune trial ``tune_id``, if it has one; Tune then reports it errored."""
        import ray

        actor = getattr(getattr(self._tune_trials.get(tune_id), "temporary_state", None), "ray_actor", None)
        if actor is None:
            return
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - dead already, or Ray's private API changed: Tune stops it (slower)
            pass

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from optuna.trial import TrialState

        result = trial.last_result or {}
        if STATE_KEY not in result:
            self._finish(trial, TrialState.FAIL, None,
                         {"type": "NoResult", "message": "the trial ended without reporting a result", "traceback": ""})
            return
        values = result.get(VALUES_KEY)
        st = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED}.get(result[STATE_KEY], TrialState.FAIL)
        entry = self._state.running.get(trial.trial_id)
        for warning in result.get(WARNINGS_KEY) or ():
            # Printed even with --quiet: the run goes on, but a later export will miss the file.
            self._progress.warn(f"warning: trial {entry[1] if entry else '?'}: {warning}")
        unstored = result.get(UNSTORED_ERROR_KEY)
        if entry is not None and isinstance(unstored, dict):
            # No storage call here: Tune's loop (and its stop) must not wait on a storage that
            # just failed the worker. The driver stores it once the loop has ended.
            self._state.unstored_errors[entry[0]] = unstored
        self._finish(trial, st, values, None, pruned_at=result.get(PRUNED_AT_KEY))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from optuna.trial import TrialState

        if trial.trial_id in getattr(self._state, "cut_short_ids", ()):
            return  # its worker was killed by the stop (cut_short): the driver settles it
        if trial.trial_id in self._overdue:
            timeout = self._state.spec.trial_timeout or 0.0
            self._finish(trial, TrialState.FAIL, None, {
                "type": "TrialTimeout", "traceback": "",
                "message": f"trial exceeded trial_timeout={timeout:g}s and did not stop (its code held the "
                           f"interpreter, where the timeout cannot act); the run ended its worker "
                           f"{TIMEOUT_GRACE_S:g}s later"})
            return
        message = "the worker process running this trial died"
        try:
            err = trial.get_error()
            if err is not None:
                message = f"{message}: {str(err).strip().splitlines()[-1][:500]}"
        except Exception:  # noqa: BLE001 - best effort: the cause is informative only
            pass
        if cause := self._preload_crash(trial):
            message = f"{message}; {cause}"
        self._finish(trial, TrialState.FAIL, None, {"type": "WorkerDied", "message": message, "traceback": ""})

    def _preload_crash(self, tune_trial: Any) -> str:
        """Why this trial's worker died, if it died importing a preloaded module before the trial.

        Only for a trial its worker never started (no placement stored), with a worker's note of
        its own (:func:`tuner.engine._preload_trace.claim`). Said once on the console as well,
        and kept for the run's final message: every new worker dies the same way, so such a run
        can only end at ``max_failures``.
        """
        entry = self._state.running.get(tune_trial.trial_id)
        if entry is None or not self._never_started(entry[0]):
            return ""
        claimed = _preload_trace.claim()
        if claimed is None:
            return ""
        module, pid = claimed
        if module in self._state.preloaded_by_tuner:  # the trials import it as well
            fix = f"check that `python -c 'import {module}'` works on this machine, or set TUNER_PRELOAD=0"
        else:
            fix = f"drop {module} from TUNER_PRELOAD, or set TUNER_PRELOAD=0"
        cause = (f"Ray worker {pid} died while preloading {module}, before it ran a trial (a crash in native code "
                 f"or a kill, which no Python error handler catches); {fix}")
        if self._state.preload_crash is None:
            self._progress.warn(f"warning: {cause}")
        self._state.preload_crash = cause
        return cause

    def _never_started(self, trial_id: int) -> bool:
        try:
            return _attrs.WORKER not in self._state.study._storage.get_trial_system_attrs(trial_id)
        except Exception:  # noqa: BLE001 - the storage's own retries are spent: attribute nothing
            return False

    def _finish(self, tune_trial: Any, st: Any, values: list[float] | None, error: dict | None, *,
                pruned_at: dict[str, Any] | None = None) -> None:
        from optuna.trial import TrialState

        state = self._state
        entry = state.running.pop(tune_trial.trial_id, None)
        state.started.discard(tune_trial.trial_id)
        self._tune_trials.pop(tune_trial.trial_id, None)
        self._started_at.pop(tune_trial.trial_id, None)
        if entry is None:
            return
        trial_id, number = entry
        if error is not None:  # the worker could not tell the study itself: it died or never ran the trial
            mark_failed(state.study, trial_id, error)
            if error.get("type") in ("WorkerDied", "TrialTimeout") and state.spec.task is not None:
                _drop_resume_point(state.study, trial_id)  # not run again: a killer or a crash may strike again
            # A worker can die (its node lost) after telling the study: count what the storage
            # holds, or a COMPLETE trial counted as failed is run again, one trial too many.
            try:
                stored = state.study._storage.get_trial(trial_id)
                st, values = stored.state, (stored.values if stored.state == TrialState.COMPLETE else None)
            except Exception:  # noqa: BLE001 - the storage's own retries are spent; count the failure
                pass
        state.count(st)
        try:
            state.retention.trial_finished(trial_id, number, st.name, values)
        except Exception:  # noqa: BLE001 - disk housekeeping must never stop a study
            pass
        reason = None
        if st not in (TrialState.COMPLETE, TrialState.PRUNED):
            # An error its worker could not store is still the trial's reason (stored at the run's end).
            reason = self._stored_failure(trial_id) or failure_text(state.unstored_errors.get(trial_id))
            if state.grid is not None:  # grid search: a failed point is tried again
                idx = state.study._storage.get_trial_system_attrs(trial_id).get("tuner:grid_index")
                if idx is not None:
                    state.grid.release(int(idx))
            if state.failed > state.spec.max_failures and state.stop_reason is None:
                state.stop_reason = "max_failures"
                state.failures_at_stop = state.failed
                self._progress.trial_done(number, st.name, values, state, reason=reason)
                self.cut_short()
                return
        self._progress.trial_done(number, st.name, values, state, reason=reason,
                                  pruned_at=pruned_at if st == TrialState.PRUNED else None)

    def _stored_failure(self, trial_id: int) -> str | None:
        """The failed trial's stored error as one line (the worker's own when it wrote one)."""
        try:
            return failure_text(self._state.study._storage.get_trial_system_attrs(trial_id).get(_attrs.ERROR))
        except Exception:  # noqa: BLE001 - the storage's own retries are spent: the line says less
            return "its error could not be read: the storage did not answer"

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._progress.tick(self._state)


class Stopper(_Unpicklable, tune.Stopper):
    """Ends each trial at its one result; stops every running trial once ``max_failures`` is exceeded
    or the run is interrupted (Ctrl-C)."""

    def __init__(self, state: "_RunState") -> None:
        self._state = state

    def __call__(self, trial_id: str, result: dict) -> bool:
        # A trial's only result is its last (the worker returns once, with the trial's state).
        # Without this, Tune sends the actor one more `train` call to learn that the function
        # has returned, a round trip through its loop per trial, before it stops the trial.
        return STATE_KEY in result

    def stop_all(self) -> bool:
        return self._state.stop_reason in STOPS


def _drop_resume_point(study: Any, trial_id: int) -> None:
    """Delete the resume point of a trial whose worker died (where this driver sees its folder)."""
    from tuner.engine._study import _own_folder, drop_resume_points

    try:
        drop_resume_points(_own_folder(study._storage.get_trial_system_attrs(trial_id)))
    except Exception:  # noqa: BLE001 - disk housekeeping must never stop a study
        pass
