"""Follow a study that another process runs: ``tuner watch STUDY``.

A run prints its own progress, but only in the terminal that started it; a study run in a
``tmux`` pane, by a scheduler, on a cluster's head node or by a colleague is followed here from
the storage alone, with the run's own lines (``trial 5 pruned at step 4 value=0.48``) and status
line, until that run ends.

Each poll costs two small queries whatever the study's size: the trials whose id is above the
highest seen or that were unfinished at the last poll (trials only ever move out of RUNNING and
WAITING), and the study's attributes (the run's lease, which says whether it is still alive).
The counts by state are read once and kept up to date from the transitions seen, rather than
counted again per poll (a GROUP BY over 50,000 trials every two seconds).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from tuner.engine import _attrs
from tuner.exceptions import UserInputError

if TYPE_CHECKING:
    import optuna

    from tuner.engine._progress import Progress

__all__ = ["watch", "WatchSummary"]

_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class WatchSummary:
    """How the watched study stood when the watch ended."""

    study_name: str
    state: str  # running (the watch was stopped), finished, failed or stopped
    counts: dict[str, int]
    n_trials: int | None
    best_value: Any
    seen: int = 0  # trials that finished while watched
    stopped_unfinished: int = 0  # of the FAIL trials, those a run's stop ended (not failures of their own)
    run: dict[str, Any] | None = None  # the watched run's entry in the run log, once it ended
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


class _Trials:
    """The study's trials as the watch knows them: counts by state, the unfinished ones, the
    highest id seen; :meth:`poll` returns those that finished since the last call."""

    def __init__(self, engine: Any, study_id: int) -> None:
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        self._engine, self._study_id, self._t = engine, study_id, m.TrialModel
        with engine.connect() as conn:
            rows = conn.execute(sa.select(self._t.trial_id, self._t.state)
                                .where(self._t.study_id == study_id)).all()
        self.counts: dict[str, int] = {}
        self.unfinished: dict[int, str] = {}
        self.max_id = 0
        for trial_id, state in rows:
            self.counts[state.name] = self.counts.get(state.name, 0) + 1
            self.max_id = max(self.max_id, trial_id)
            if state.name not in _FINISHED:
                self.unfinished[trial_id] = state.name
        #: FAIL trials their run ended unfinished (``UNFINISHED_ERRORS``): told and counted apart, as
        #: the run does. Counted once the watch begins to follow (:meth:`count_stopped`), then kept.
        self.stopped = 0

    def count_stopped(self) -> None:
        """Count the FAIL trials read so far that their run ended unfinished (a Ctrl-C's, a stop's,
        a dead run's), by their stored error. Trials read unfinished are left to :meth:`poll`,
        which tells them when it sees them finish (counted here too, they were counted twice).
        One query, over the errors of such trials alone (not every failure's traceback)."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        from tuner.engine._study import _loads, ended_unfinished, unfinished_error_rows

        t, a = self._t, m.TrialSystemAttributeModel
        where = [t.study_id == self._study_id, t.trial_id <= self.max_id, t.state == m.TrialState.FAIL,
                 unfinished_error_rows(a)]
        if self.unfinished:
            where.append(t.trial_id.not_in(list(self.unfinished)))
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(a.value_json).join(t, t.trial_id == a.trial_id).where(*where)).scalars().all()
        self.stopped = sum(1 for text in rows if ended_unfinished(_loads(text)))

    def poll(self) -> list[int]:
        """Ids of the trials that finished since the last poll (new ones that are already
        finished included), in the order of their numbers."""
        import sqlalchemy as sa

        t = self._t
        seen_before = list(self.unfinished)
        where = t.trial_id > self.max_id
        if seen_before:
            where = sa.or_(where, t.trial_id.in_(seen_before))
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t.trial_id, t.number, t.state)
                                .where(t.study_id == self._study_id, where).order_by(t.number)).all()
        done = []
        for trial_id, _number, state in rows:
            before = self.unfinished.get(trial_id)  # None: a trial new to the watch
            if before is not None:
                if before == state.name:
                    continue
                self.counts[before] -= 1
            self.counts[state.name] = self.counts.get(state.name, 0) + 1
            self.max_id = max(self.max_id, trial_id)
            if state.name in _FINISHED:
                self.unfinished.pop(trial_id, None)
                done.append(trial_id)
            else:
                self.unfinished[trial_id] = state.name
        self.counts = {k: v for k, v in self.counts.items() if v}
        return done


#: The longest pause between two looks at the storage: a day (``time.sleep`` overflows on 1e300
#: or inf, and a watch that looks less than daily watches nothing).
_MAX_INTERVAL_S = 86_400.0


def watch(name: str, storage: str | None = None, *, interval: float = 2.0, wait: bool = False,
          progress: "Progress | None" = None, sleep: Callable[[float], None] = time.sleep) -> WatchSummary:
    """Follow study ``name`` until the run that is running it ends; returns how the study stood then.

    A study no run is running gets one line saying how it stands, and the watch ends at once;
    with ``wait``, the watch waits for the study to be created and a run of it to start (a
    ``tuner run`` just launched in the background), saying what it waits for.
    A storage that stops answering (a database restart) is retried at the next poll, with one
    line saying so, for as long as the watch lasts: Ctrl-C ends it (``KeyboardInterrupt``).
    """
    from tuner._api import _objective_names, load_study
    from tuner._retry_storage import _is_transient
    from tuner.engine._progress import Progress, goal_text
    from tuner.engine._study import study_state
    from tuner.exceptions import StorageError, StudyNotFoundError
    from tuner.storage import redact, resolve_url, sqlite_path

    if not 0 < interval <= _MAX_INTERVAL_S:  # NaN fails too; inf or 1e300 overflowed time.sleep
        raise UserInputError(f"--interval must be a number of seconds > 0 and at most {_MAX_INTERVAL_S:g} (a day), "
                             f"got {interval:g}; e.g. --interval 2")
    progress = progress or Progress()
    where = redact(resolve_url(storage))
    said: set[str] = set()  # what the watch has said it waits for (once each)
    database_file = sqlite_path(resolve_url(storage))
    while True:
        try:
            if not (wait and database_file is not None and not database_file.exists()):  # `tuner run` creates it
                study = load_study(name, storage)
                break
        except StudyNotFoundError:
            if not wait:
                raise
        except StorageError as exc:  # with wait: a database `tuner run` is still creating, or one not up yet
            if not wait:
                raise
            if str(exc) not in said:
                progress.warn(f"waiting: {exc}")
                said.add(str(exc))
        if "study" not in said:
            progress.warn(f"waiting for study {name!r} to be created in {where} (Ctrl-C stops waiting)")
            said.add("study")
        sleep(interval)
    backend = getattr(study._storage, "_backend", study._storage)
    while True:
        try:
            trials = _Trials(backend.engine, study._study_id)
            attrs = study._storage.get_study_system_attrs(study._study_id)
        except Exception as exc:  # noqa: BLE001 - a lost database is waited for, as below; anything else is raised
            if not _is_transient(exc):
                raise
            if "lost" not in said:
                progress.warn(f"the storage did not answer ({_first_cause(exc)}); trying again every {interval:g}s")
                said.add("lost")
            sleep(interval)
            continue
        said.discard("lost")
        spec = attrs.get(_attrs.SPEC) if isinstance(attrs.get(_attrs.SPEC), dict) else {}
        lease = attrs.get(_attrs.DRIVER)
        state = study_state(trials.counts, spec, lease, attrs.get(_attrs.RUN_LOG))
        if state == "running" or not wait:
            try:
                trials.count_stopped()
            except Exception as exc:  # noqa: BLE001 - as above: a lost database is waited for
                if not _is_transient(exc):
                    raise
                sleep(interval)
                continue
            break
        if "run" not in said:
            progress.warn(f"waiting for a run of study {name!r} to start (it is {state}; Ctrl-C stops waiting)")
            said.add("run")
        sleep(interval)
    target = _target(spec)
    directions = [d.name.lower() for d in study.directions]
    progress.track(directions, study)
    goal = goal_text(_objective_names(study), directions)
    n_finished = trials.counts.get("COMPLETE", 0) + trials.counts.get("PRUNED", 0)
    of_target = f"{n_finished}/{target}" if target is not None else f"{n_finished}"
    if state != "running":
        summary = _summary(name, state, trials, target, progress, seen=0)
        progress.warn(f"study {name!r} ({goal}) in {where} is not running: {_standing(summary)} "
                      f"(--wait waits for a run to start)")
        return summary
    progress.follow_run_started(lease.get("started"))
    progress.warn(f"watching study {name!r} ({goal}) in {where}: {of_target} trials finished; run by pid "
                  f"{lease.get('pid')} on {lease.get('host')} since {_clock(lease.get('started'))} (Ctrl-C stops "
                  f"watching, not the run)")
    seen = 0
    lost = False
    polled: list[int] = []  # finished trials found, not yet told (a read that failed keeps them)
    ending = False  # the run has ended: one more poll for what it stored as it ended, then stop
    while True:
        try:
            polled += trials.poll()
            finished = _read(study, polled)
            attrs = study._storage.get_study_system_attrs(study._study_id)
        except Exception as exc:  # noqa: BLE001 - a lost database is retried; anything else is raised
            if not _is_transient(exc):
                raise
            if not lost:
                progress.warn(f"the storage did not answer ({_first_cause(exc)}); trying again every {interval:g}s")
            lost = True
            sleep(interval)
            continue
        if lost:
            progress.warn("the storage answers again")
            lost = False
        polled = []
        if isinstance(attrs.get(_attrs.SPEC), dict):
            # the run records its spec just after it takes the study: a watch that began in between
            # read none (or a resumed study's previous spec), so the target is read again each poll
            spec = attrs[_attrs.SPEC]
            target = _target(spec)
        seen += _tell_all(progress, finished, trials, target)
        if not finished:
            progress.tick(_RunView(trials, target))
        if ending:
            # with the trials the run ended with, and the run's own entry in the run log
            state = study_state(trials.counts, spec, attrs.get(_attrs.DRIVER), attrs.get(_attrs.RUN_LOG))
            summary = _summary(name, state, trials, target, progress, seen=seen)
            summary.run = _logged_run(attrs, lease)
            died = summary.run is None and _names_same_run(attrs.get(_attrs.DRIVER), lease)
            progress.warn(f"the run ended{_run_text(summary.run, died)}: study {name!r} {_standing(summary)}")
            return summary
        state = study_state(trials.counts, spec, attrs.get(_attrs.DRIVER), attrs.get(_attrs.RUN_LOG))
        if state != "running":
            ending = True
            continue
        sleep(interval)


def _target(spec: dict[str, Any]) -> int | None:
    """The stored spec's ``n_trials``, or None where it has none (a study no tuner run has driven)."""
    from tuner.engine._study import _is_int

    return spec["n_trials"] if _is_int(spec.get("n_trials")) else None


class _RunView:
    """What :class:`~tuner.engine._progress.Progress` reads of a run, for a watched study's counts
    (``counts``: as they stood when one trial of a poll's batch finished; default: now)."""

    def __init__(self, trials: _Trials, target: int | None, counts: dict[str, int] | None = None) -> None:
        counts = trials.counts if counts is None else counts
        self.complete, self.pruned = counts.get("COMPLETE", 0), counts.get("PRUNED", 0)
        self.failed = counts.get("FAIL", 0) - trials.stopped  # as the run counts them: a stop's trials apart
        self.finished = self.complete + self.pruned
        self.target = target if target is not None else "?"
        self.running = {i: None for i, s in trials.unfinished.items() if s == "RUNNING"}
        self.started = set(self.running)


def _read(study: "optuna.Study", trial_ids: list[int]) -> list[Any]:
    from tuner._trial_read import read_trials

    if not trial_ids:
        return []
    return read_trials(study, trial_ids=trial_ids)


def _tell_all(progress: "Progress", finished: list[Any], trials: _Trials, target: int | None) -> int:
    """The trials one poll found finished, in the order they finished, each line with the counts
    as they stood then (not the poll's final counts on every line); returns how many."""
    finished = sorted(finished, key=lambda t: (t.datetime_complete or _dt.datetime.max, t.number))
    counts = dict(trials.counts)
    for trial in finished:  # back to the counts before the batch ...
        counts[trial.state.name] -= 1
    for trial in finished:  # ... then forward, one trial at a time
        counts[trial.state.name] += 1
        if trial.state.name == "FAIL" and _stopped_by_run(trial):
            trials.stopped += 1  # the run prints no line for it either: its summary counts them
            continue
        _tell(progress, trial, _RunView(trials, target, counts))
    return len(finished)


def _stopped_by_run(trial: Any) -> bool:
    """Whether a FAIL trial is one its run ended unfinished (Ctrl-C, ``tuner stop``, ``max_failures``, a dead run)."""
    from tuner.engine._study import ended_unfinished

    return ended_unfinished(trial.system_attrs.get(_attrs.ERROR))


def _tell(progress: "Progress", trial: Any, view: _RunView) -> None:
    """One finished trial, in the line its run printed for it."""
    from tuner.engine._progress import failure_text

    state = trial.state.name
    pruned_at = None
    if state == "PRUNED" and trial.intermediate_values:
        step = max(trial.intermediate_values)
        pruned_at = {"step": step, "value": trial.intermediate_values[step]}
    elif state == "PRUNED":
        pruned_at = {"step": None, "value": None}
    values = trial.values if state == "COMPLETE" else None
    reason = failure_text(trial.system_attrs.get(_attrs.ERROR)) if state == "FAIL" else None
    progress.trial_done(trial.number, state, values, view, reason=reason, pruned_at=pruned_at)


def _summary(name: str, state: str, trials: _Trials, target: int | None, progress: "Progress", *,
             seen: int) -> WatchSummary:
    return WatchSummary(study_name=name, state=state, counts=dict(trials.counts), n_trials=target,
                        best_value=progress.best_value(), seen=seen, stopped_unfinished=trials.stopped)


def _logged_run(attrs: dict[str, Any], lease: Any) -> dict[str, Any] | None:
    """The watched run's entry in the study's run log (the run holding ``lease`` when the watch
    began): by host, pid and the lease's start, since a notebook's or a container's runs can
    share a host and pid."""
    from tuner.engine._study import run_log

    if not isinstance(lease, dict):
        return None
    for run in reversed(run_log(attrs)):
        if all(run.get(k) == lease.get(k) for k in ("host", "pid")) and run.get("claimed") == lease.get("started"):
            return run
    return None


def _names_same_run(held: Any, lease: Any) -> bool:
    """Whether the study's lease is still the watched run's: a run that ends gives it up."""
    return (isinstance(held, dict) and isinstance(lease, dict)
            and all(held.get(k) == lease.get(k) for k in ("host", "pid", "started")))


def _run_text(run: dict[str, Any] | None, died: bool) -> str:
    """`` (interrupted; this run: 9 complete, 3 pruned, 0 failed, 2 stopped unfinished)``: how the
    watched run ended, in its own summary's words, from the run log; a run that ended without
    giving the study up (``died``) was killed, crashed, or could not reach the storage as it ended."""
    from tuner.engine._study import RUN_ENDS

    if run is None:
        return (" without giving the study up (killed, crashed, or cut off from the storage; the next run marks "
                "its running trials FAIL)") if died else ""
    end = str(run.get("end") or "?")
    if end == "lost":  # logged by a run that took the study over since: this run's trials were not counted
        left = run.get("stopped_unfinished") or 0
        return f" ({RUN_ENDS[end]}; the next run marked the {left} trial{'s' if left != 1 else ''} it left running FAIL)"
    counts = ", ".join(f"{run.get(k) or 0} {k.replace('_', ' ')}" for k in ("complete", "pruned", "failed", "stopped_unfinished")
                       if k != "stopped_unfinished" or run.get(k))
    error = f": {run['error']}" if run.get("error") else ""
    return f" ({RUN_ENDS.get(end, end)}{error}; this run: {counts})"


def _standing(summary: WatchSummary) -> str:
    """``finished, 30/30 trials finished (17 complete, 13 pruned, 0 failed); best 0.99`` and what to do next."""
    from tuner.engine._progress import format_best

    c = summary.counts
    of_target = f"{summary.finished}/{summary.n_trials}" if summary.n_trials is not None else f"{summary.finished}"
    stopped = summary.stopped_unfinished
    unfinished = f", {stopped} stopped unfinished" if stopped else ""
    text = (f"{summary.state}, {of_target} trials finished ({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} "
            f"pruned, {c.get('FAIL', 0) - stopped} failed{unfinished}); "
            f"{format_best(summary.best_value, summary.study_name)}")
    if summary.state == "stopped":
        text += "; run its spec again to resume it"
    return text


def _first_cause(exc: BaseException) -> str:
    """The database's own words for a lost connection, on one line: the deepest error of the chain
    (Optuna wraps SQLAlchemy's, SQLAlchemy the driver's) that says something."""
    from tuner.exceptions import exception_chain

    for link in reversed(list(exception_chain(exc))):
        lines = str(getattr(link, "orig", None) or link).strip().splitlines()
        text = " ".join(lines[0].split()) if lines else ""
        if text.strip("()[] "):
            return text[:200]
    return type(exc).__name__


def _clock(started: Any) -> str:
    try:
        return _dt.datetime.fromtimestamp(float(started)).isoformat(sep=" ", timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
