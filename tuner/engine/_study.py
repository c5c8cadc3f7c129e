"""Opening a study for a run: create or resume, refuse incompatible specs, recover stale trials.

A study is run by one driver at a time. The driver holds a lease (a study attribute with its
host, pid and a heartbeat); a new run on a study whose driver died turns the trials that
driver left RUNNING into FAIL, so that they never count and are never lost silently.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from tuner.engine import _attrs
from tuner.exceptions import StudyNotFoundError, UserInputError

if TYPE_CHECKING:
    import optuna

    from tuner.spec import StudySpec

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

LEASE_HEARTBEAT_S = 10.0
LEASE_STALE_S = 60.0
#: How often a run looks for a `tuner stop` addressed to it (one single-row query).
STOP_POLL_S = 2.0


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against pid reuse), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
        return data.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def load_study(storage: "optuna.storages.BaseStorage", name: str) -> "optuna.Study":
    """An existing study by name, or :class:`StudyNotFoundError` listing what exists."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyNotFoundError(f"no study named {name!r} in this storage; "
                                 f"{_existing_studies_hint(name, [s.study_name for s in storage.get_all_studies()])}") from None


def _existing_studies_hint(name: str, names: list[str], shown: int = 20) -> str:
    """The studies there are: the names closest to ``name`` first, then the rest in order, cut at
    ``shown`` with a count of the others (a list cut silently read as if they did not exist)."""
    import difflib

    if not names:
        return "the storage holds no studies yet"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    ordered = close + sorted(n for n in names if n not in close)
    more = f" and {len(ordered) - shown} more (tuner ls lists them)" if len(ordered) > shown else ""
    prefix = f"did you mean {close[0]!r}? " if close else ""
    return f"{prefix}existing studies: {', '.join(ordered[:shown])}{more}"


def open_for_run(storage: "optuna.storages.BaseStorage", spec: "StudySpec", *, force: bool,
                 on_delete: Callable[[str], None] | None = None) -> tuple["optuna.Study", bool]:
    """Create the study, or load it for resuming; returns (study, resumed).

    Refuses (exit 2, nothing touched) when the stored study ran with another search space,
    other metrics or directions, unless ``force`` asks to delete it and start over. Then
    ``on_delete`` is told what is deleted (a line for the console) before it is: ``--force``
    used to delete a study's trials without a word.
    """
    import optuna

    from tuner.engine._plugins import check_plugins, make_pruner

    check_plugins(spec)
    # The driver never samples (workers do, see _worker.py); its study needs only the pruner.
    sampler = optuna.samplers.RandomSampler()
    pruner = make_pruner(spec.pruner, spec.pruner_args, space=spec.search_space)
    directions = list(spec.directions)
    exists = any(s.study_name == spec.name for s in storage.get_all_studies())
    if exists:
        problem = refuse_incompatible(storage, spec, force=force)
        if problem and force:
            delete_study(storage, spec.name, on_delete=None if on_delete is None else (
                lambda trials: on_delete(f"--force: deleted study {spec.name!r} ({trials}) to start over")))
            exists = False
    if exists:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    else:
        try:
            study = optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner,
                                        directions=directions)
        except optuna.exceptions.DuplicatedStudyError:
            # Another run created it between our look and our create: that run now owns it.
            raise UserInputError(f"study {spec.name!r} was created by another run at the same moment; "
                                 f"wait for that run to end, then run this command again to resume it") from None
        with warnings.catch_warnings():  # experimental in Optuna since 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.metrics))
        storage.set_study_system_attr(study._study_id, _attrs.SPACE, spec.search_space.to_dict())
    return study, exists


def delete_study(storage: "optuna.storages.BaseStorage", name: str, *,
                 on_delete: Callable[[str], None] | None = None) -> list[str]:
    """Delete study ``name`` and its trials (``tuner rm``, ``--force``); returns the folders its
    trials recorded (``trial_dir``), for the caller to remove or leave.

    The study's lease is claimed first: a live run, or one that starts at this moment, makes the
    claim fail (one line, exit 2) instead of losing its study under it. ``on_delete`` is told
    what is deleted (``12 trials: 10 complete, 2 pruned``) before it is.
    """
    import optuna

    study_id = storage.get_study_id_from_name(name)
    _claim(storage, study_id, _own_record(), name)
    folders = _trial_folders(storage, study_id)
    if on_delete is not None:
        on_delete(_trials_text(storage, study_id))
    optuna.delete_study(study_name=name, storage=storage)
    return folders


def _trial_folders(storage: "optuna.storages.BaseStorage", study_id: int) -> list[str]:
    """The ``trial_dir`` each trial of the study recorded (one query on the attribute table)."""
    engine = _engine(storage)
    if engine is None:
        return []
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    a, t = m.TrialSystemAttributeModel, m.TrialModel
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.value_json).join(t, t.trial_id == a.trial_id)
                            .where(t.study_id == study_id, a.key == _attrs.WORKER)).all()
    folders = []
    for (text,) in rows:
        try:
            folder = json.loads(text).get("trial_dir")
        except (ValueError, AttributeError):
            continue
        if isinstance(folder, str) and folder:
            folders.append(folder)
    return sorted(set(folders))


def _trials_text(storage: "optuna.storages.BaseStorage", study_id: int) -> str:
    """``N trials: C complete, P pruned, ...`` of a study, one COUNT per state (no trial is read)."""
    from optuna.trial import TrialState

    database = getattr(storage, "_backend", storage)
    counts = {state: database.get_n_trials(study_id, (state,)) for state in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)}
    total = sum(counts.values())
    if not total:
        return "no trials"
    names = {TrialState.FAIL: "failed"}
    parts = [f"{n} {names.get(state, state.name.lower())}" for state, n in counts.items() if n]
    return f"{total} trial{'s' if total != 1 else ''}: {', '.join(parts)}"


def refuse_if_running(storage: "optuna.storages.BaseStorage", name: str) -> None:
    """Raise (exit 2) when a live run holds the study's lease; reads only.

    The driver asks before it starts Ray, so that a second run of a study is refused at once
    instead of after Ray's start (seconds). :meth:`DriverLease.acquire` remains the check that
    counts: it alone is atomic against a run that starts at the same moment.
    """
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return
    _check_no_live_driver(storage.get_study_system_attrs(study_id), name)


def record_spec(study: "optuna.Study", spec: "StudySpec") -> None:
    """Store the spec this run drives the study with (reports and ``tuner show`` read it).

    Written only once the run holds the lease: a run refused because another one drives the
    study must not leave its own spec behind. Any password in a URL of it (``storage:``) is
    hidden first: the dashboard, reports and ``tuner show --json`` show the stored spec, and
    nothing reads a URL back from it (a run is given its storage)."""
    from tuner.storage import redact_urls

    storage = study._storage
    storage.set_study_system_attr(study._study_id, _attrs.SPEC,
                                  redact_urls(json.loads(json.dumps(spec.to_dict(), default=str))))
    attrs = storage.get_study_system_attrs(study._study_id)
    # A study tuner did not create (plain Optuna), whose trials fit the space: adopted, it gets the
    # space later runs are compared with, and names for its values (Optuna called them `value`).
    if _attrs.SPACE not in attrs:
        storage.set_study_system_attr(study._study_id, _attrs.SPACE, spec.search_space.to_dict())
    if not attrs.get(_OPTUNA_METRIC_NAMES):
        storage.set_study_system_attr(study._study_id, _OPTUNA_METRIC_NAMES, list(spec.metrics))


def enqueue_points(study: "optuna.Study", spec: "StudySpec") -> int:
    """Enqueue the spec's ``enqueue`` points that no earlier run of the study enqueued; returns how many.

    Once per point and study: a resumed run must not try the baseline again, while a point added
    to the spec between runs is enqueued by the next. Points are told apart by their Optuna
    params, so reordering the list or rewriting a value (1e-3 as 0.001) enqueues nothing new.
    Called with the lease held: two runs cannot enqueue the same point at once.
    """
    if not spec.enqueue:
        return 0
    storage = study._storage
    done = list(storage.get_study_system_attrs(study._study_id).get(_attrs.ENQUEUED) or [])
    added = 0
    for point in spec.enqueue:
        flat = spec.search_space.partial_optuna_params(point)
        key = json.dumps(flat, sort_keys=True, default=str)
        if key in done:
            continue
        study.enqueue_trial(flat)
        done.append(key)
        added += 1
        storage.set_study_system_attr(study._study_id, _attrs.ENQUEUED, done)  # per point: a crash enqueues none twice
    return added


#: A configuration whose trial was left unfinished this many times is not run again: it may be
#: what ended its runs (a trial that takes the machine down with it).
MAX_RERUNS = 3


def requeue_unfinished(study: "optuna.Study", spec: "StudySpec") -> tuple[list[int], list[int]]:
    """Enqueue again, with their parameters, the trials earlier runs left unfinished; returns the
    numbers of those enqueued and of those given up (the configuration was left unfinished
    :data:`MAX_RERUNS` times).

    A Ctrl-C, a `tuner stop`, ``max_failures`` reached by other trials or a killed run ends the
    trials it was running: they did not fail, and their configurations were never judged. Ray
    Tune's ``Tuner.restore`` resumes such trials, and Optuna's ``RetryFailedTrialCallback``
    re-enqueues them; tuner used to drop them, and a resumed study drew new points instead.

    A trial is enqueued again once: its rerun carries ``tuner:rerun_of``, which is how the next
    resume knows (a crash between the two writes cannot enqueue it twice), and how many times a
    configuration was left unfinished is the length of that chain. Oldest first, at most as many
    as the study still needs once the trials already waiting (``enqueue`` points) have run. A
    trial stopped before a worker sampled it runs again with the parameters it was enqueued with,
    if any. Called with the lease held: no other run enqueues them at the same time.
    """
    from optuna.trial import TrialState, create_trial

    from tuner._trial_read import read_trials

    if not spec.rerun_unfinished or spec.sampler == "grid":  # grid search tries a failed point again itself
        return [], []
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is None:
        return [], []
    origins, unfinished = _with_retry(storage, "read_unfinished_trials",
                                      lambda: _rerun_records(engine, study._study_id))
    recorded = storage.get_study_system_attrs(study._study_id).get(_attrs.RERUN)
    given_up_before = {n for n in recorded if _is_int(n)} if isinstance(recorded, list) else set()
    run_again = set(origins.values())
    pending = [trial_id for trial_id, number in unfinished if number not in run_again and number not in given_up_before]
    room = spec.n_trials - backend.get_n_trials(study._study_id, (TrialState.COMPLETE, TrialState.PRUNED,
                                                                  TrialState.WAITING))
    rerun: list[int] = []
    given_up: list[int] = []
    heavy = (_attrs.CURVE, _attrs.ATTR_PREFIX, _attrs.TIMING, _attrs.METRICS, _attrs.ARTIFACTS)  # not needed here
    for trial in (read_trials(study, trial_ids=pending, skip_attr_prefixes=heavy) if pending else []):
        fixed = trial.system_attrs.get("fixed_params")
        params = {**(fixed if isinstance(fixed, dict) else {}), **trial.params}  # what it was enqueued with, and drew
        if not params:
            continue  # nothing chose its parameters (the query leaves most such trials out)
        if _times_left_unfinished(trial.number, origins) >= MAX_RERUNS:
            given_up.append(trial.number)
            if spec.task is not None:  # a built-in task's resume point: nothing will resume it now
                try:
                    drop_resume_points([*_own_folder(trial.system_attrs),
                                        *rerun_chain_folders(storage, study._study_id, trial.system_attrs)])
                except Exception:  # noqa: BLE001 - disk housekeeping must never stop a run from starting
                    pass
            storage.set_study_system_attr(study._study_id, _attrs.RERUN, sorted(given_up_before | set(given_up)))
            continue
        if len(rerun) >= room:
            continue  # owed still: a later resume past n_trials runs it
        study.add_trial(create_trial(state=TrialState.WAITING, system_attrs={
            "fixed_params": dict(params), _attrs.RERUN_OF: trial.number}))
        rerun.append(trial.number)
    return rerun, given_up


def rerun_chain_folders(storage: Any, study_id: int, system_attrs: dict[str, Any]) -> list[Path]:
    """The folders of the unfinished trials a rerun (whose system attributes are given) runs
    again, nearest first, of those that had a folder this process can see.

    ``tuner:rerun_of`` names the trial whose parameters a rerun runs; if that one was a rerun
    too, its own ``rerun_of`` names the one before (at most ``MAX_RERUNS`` deep). A trial
    stopped before a worker took it never had a folder: the walk goes on past it. A folder on
    another node's disk is not seen (resuming across nodes needs a shared ``artifacts_dir``).
    """
    folders: list[Path] = []
    origin = system_attrs.get(_attrs.RERUN_OF)
    seen: set[int] = set()
    while _is_int(origin) and origin not in seen and len(seen) < MAX_RERUNS:
        seen.add(origin)
        try:
            attrs = storage.get_trial_system_attrs(storage.get_trial_id_from_study_id_trial_number(study_id, origin))
        except KeyError:
            break
        folders += [f for f in _own_folder(attrs) if _is_dir(f)]
        origin = attrs.get(_attrs.RERUN_OF)
    return folders


def _own_folder(system_attrs: dict[str, Any]) -> list[Path]:
    """The trial's folder as its worker recorded it (none if no worker took the trial)."""
    worker = system_attrs.get(_attrs.WORKER)
    folder = worker.get("trial_dir") if isinstance(worker, dict) else None
    return [Path(folder)] if isinstance(folder, str) and folder else []


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a folder this process may not read (Python 3.11 raises on EACCES)
        return False


def drop_resume_points(folders: list[Path]) -> None:
    """Delete the built-in tasks' resume points in ``folders``: their trials will not be resumed."""
    from tuner.tasks._resume import drop

    for folder in folders:
        drop(folder)


def _is_int(value: Any) -> bool:
    """A whole number as JSON stores one (``True`` is an int to Python, not to a run log)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _times_left_unfinished(number: int, origins: dict[int, int]) -> int:
    """How many times trial ``number``'s configuration was left unfinished: it, and each trial
    whose parameters it ran again before it (``origins``: rerun number -> the number it reruns)."""
    times, seen = 1, {number}
    while number in origins and origins[number] not in seen:
        number = origins[number]
        seen.add(number)
        times += 1
    return times


def _rerun_records(engine: Any, study_id: int) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """The study's reruns (number -> the number whose parameters it runs again), and the ids and
    numbers of its FAIL trials whose stored error says their run ended them unfinished, oldest first."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    from sqlalchemy.orm import aliased

    t, a, p = m.TrialModel, m.TrialSystemAttributeModel, m.TrialParamModel
    # A trial with no parameter drawn and none enqueued has nothing to run again: left out here, it
    # is not read at every resume (a Ctrl-C leaves such rows: trials Tune held for a free slot).
    enqueued = aliased(a)  # another row of the attributes table than the error's
    chosen = sa.or_(sa.exists().where(p.trial_id == t.trial_id),
                    sa.exists().where(enqueued.trial_id == t.trial_id, enqueued.key == "fixed_params"))
    with engine.connect() as conn:
        reruns = conn.execute(sa.select(t.number, a.value_json).join(a, a.trial_id == t.trial_id).where(
            t.study_id == study_id, a.key == _attrs.RERUN_OF)).all()
        rows = conn.execute(sa.select(t.trial_id, t.number, a.value_json).join(a, a.trial_id == t.trial_id).where(
            t.study_id == study_id, t.state == m.TrialState.FAIL, unfinished_error_rows(a), chosen)
            .order_by(t.number)).all()
    origins = {number: origin for number, text in reruns if _is_int(origin := _loads(text))}
    unfinished = [(trial_id, number) for trial_id, number, text in rows
                  if ended_unfinished(_loads(text))]
    return origins, unfinished


def refuse_incompatible(storage: "optuna.storages.BaseStorage", spec: "StudySpec", *, force: bool) -> str | None:
    """Raise (exit 2) when a stored study of this name ran with another space, metrics or directions.

    Reads only, so the driver calls it before starting Ray as well; with ``force`` it returns the
    problem (None when compatible or absent) for the caller to start over.
    """
    try:
        study_id = storage.get_study_id_from_name(spec.name)
    except KeyError:
        return None
    attrs = storage.get_study_system_attrs(study_id)
    # A study tuner did not create (plain Optuna) stores no space: what its trials drew is compared.
    problem = (_unlike_trials(storage, study_id, spec) if _attrs.SPACE not in attrs else None) \
        or _incompatibility(attrs, spec, [d.name.lower() for d in storage.get_study_directions(study_id)])
    if problem and not force:
        raise UserInputError(f"{spec.source}: study {spec.name!r} already exists with {problem}; "
                             f"use a new `name:` (or --name), or --force to delete it and start over")
    return problem


def _incompatibility(attrs: dict[str, Any], spec: "StudySpec", directions: list[str]) -> str | None:
    from tuner.storage import redact_urls

    stored_space = attrs.get(_attrs.SPACE)
    if stored_space is not None and stored_space != spec.search_space.to_dict():
        changed = _diff_keys(stored_space.get("params", stored_space), spec.search_space.to_dict().get("params", {}))
        return f"a different search space ({changed})"
    if directions != list(spec.directions):
        return f"directions {directions} (this run has {list(spec.directions)})"
    stored_spec = shown_spec(attrs) or {}
    if stored_spec.get("metrics") and list(stored_spec["metrics"]) != list(spec.metrics):
        return f"metrics {stored_spec['metrics']} (this run has {list(spec.metrics)})"
    named = attrs.get(_OPTUNA_METRIC_NAMES)  # Optuna's own names: all a plain Optuna study says of its values
    if isinstance(named, list) and named and named != list(spec.metrics):
        return f"metrics {named} (this run has {list(spec.metrics)})"
    # What the trials train and measure: a resumed study whose later trials ran another objective,
    # task or data would rank values that cannot be compared (and the pruner would cut trials
    # against them). Only a spec stored by a tuner that recorded the field is compared.
    # Compared with their passwords hidden, as they are stored (a `pretrained: {storage: URL}`).
    new = redact_urls(json.loads(json.dumps({k: getattr(spec, k) for k in _WHAT_IS_MEASURED}, default=str)))
    for key in _WHAT_IS_MEASURED:
        if key == "objective" and _same_objective(stored_spec.get(key), new[key]):
            continue  # the same function from a moved folder, another machine or __main__: one objective
        if key in stored_spec and stored_spec[key] != new[key]:
            old = stored_spec[key]
            if isinstance(old, dict) and isinstance(new[key], dict):
                return f"other {key} ({_changed_values(old, new[key])})"
            return f"{key} {old!r} (this run has {new[key]!r})"
    return None


#: Where Optuna keeps ``study.metric_names`` (set_metric_names) among the study's system attributes.
_OPTUNA_METRIC_NAMES = "study:metric_names"


def _unlike_trials(storage: "optuna.storages.BaseStorage", study_id: int, spec: "StudySpec") -> str | None:
    """How the trials of a study tuner did not create differ from the spec's space (None when they
    fit it): a parameter the space does not draw, or draws from another distribution, and one every
    trial of the space draws that its complete trials lack. Such a study (a plain Optuna one of the
    same name) was adopted whatever it held: TPE then learnt from trials over other parameters, and
    one ranking mixed them. Two grouped queries, no trial read."""
    from optuna.distributions import json_to_distribution

    space = spec.search_space
    drawn, complete, counts = _trial_param_rows(storage, study_id)
    removed: set[str] = set()
    changed: set[str] = set()
    for name, text in drawn:
        expected, found = space.optuna_distribution(name), json_to_distribution(text)
        if expected is None:
            removed.add(name)
        elif found != expected:
            changed.add(f"{name} {_domain(found)} -> {_domain(expected)}")
    added = [name for name in space.drawn_by_every_trial() if complete and counts.get(name, 0) < complete]
    parts = [f"{label}: {', '.join(sorted(names)[:5])}" for label, names in
             (("added", added), ("removed", removed), ("changed", changed)) if names]
    return f"a different search space than its trials' ({'; '.join(parts)})" if parts else None


def _trial_param_rows(storage: "optuna.storages.BaseStorage",
                      study_id: int) -> tuple[list[tuple[str, str]], int, dict[str, int]]:
    """The study's distinct (param name, distribution JSON) pairs, its number of complete trials
    that drew any parameter, and of those, how many drew each parameter."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    engine = _engine(storage)
    if engine is None:  # a storage without SQL tables (none that tuner opens): nothing to compare
        return [], 0, {}
    t, p = m.TrialModel, m.TrialParamModel
    done = sa.and_(t.study_id == study_id, t.state == m.TrialState.COMPLETE)
    with engine.connect() as conn:
        drawn = [(str(name), str(text)) for name, text in conn.execute(
            sa.select(p.param_name, p.distribution_json).join(t, t.trial_id == p.trial_id)
            .where(t.study_id == study_id).distinct())]
        complete = conn.execute(sa.select(sa.func.count(sa.distinct(p.trial_id)))
                                .join(t, t.trial_id == p.trial_id).where(done)).scalar() or 0
        counts = {str(name): int(n) for name, n in conn.execute(
            sa.select(p.param_name, sa.func.count(sa.distinct(p.trial_id))).join(t, t.trial_id == p.trial_id)
            .where(done).group_by(p.param_name))}
    return drawn, int(complete), counts


def _domain(distribution: Any) -> str:
    """An Optuna distribution as a space file writes it: ``float [-5.0, 5.0] log``, ``choice [a, b]``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return f"choice {list(distribution.choices)}"
    kind = "int" if type(distribution).__name__ == "IntDistribution" else "float"
    text = f"{kind} [{distribution.low}, {distribution.high}]"
    if getattr(distribution, "log", False):
        text += " log"
    step = getattr(distribution, "step", None)
    if step is not None and not (kind == "int" and step == 1):
        text += f" step {step}"
    return text


# The spec's fields that decide what a trial's value means; the others (n_trials, concurrency,
# resources, sampler, pruner, timeouts, ...) may change between runs of one study.
_WHAT_IS_MEASURED = ("task", "objective", "task_args")


def _same_objective(old: Any, new: Any) -> bool:
    """Whether two ``objective`` references name one objective: the same function in a file (or
    module) of the same name. A file objective is stored with its absolute path, which a moved
    folder or another machine changes, so only the file's name counts (``obj.py`` and the module
    ``obj`` are one); a function passed from a script or notebook (``__main__``) says nothing of
    where it came from, so its name alone counts. Compared by the function's name only, a resume
    with ``obj3.py:objective`` in place of ``obj.py:objective`` mixed another formula's values
    into the study."""
    if not isinstance(old, str) or not isinstance(new, str):
        return old == new
    (old_file, old_fn), (new_file, new_fn) = _objective_parts(old), _objective_parts(new)
    return old_fn == new_fn and (old_file is None or new_file is None or old_file == new_file)


def _objective_parts(reference: str) -> tuple[str | None, str]:
    """(the file's or module's last name, or None for ``__main__``; the function's name)."""
    where, _, function = reference.rpartition(":")
    stem = Path(where).stem if where.endswith(".py") else where.rpartition(".")[2]
    return (None if stem in ("", "__main__", "python") else stem), function


def _changed_values(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new), key=str)
    return ", ".join(f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
                     for k in keys if old.get(k, "(unset)") != new.get(k, "(unset)"))[:300]


def _diff_keys(old: Any, new: Any) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "its structure changed"
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = [f"{label}: {', '.join(names[:5])}" for label, names in
             (("added", added), ("removed", removed), ("changed", changed)) if names]
    return "; ".join(parts) or "settings changed"


# ---------------------------------------------------------------------------- the driver lease


def _lease_alive(lease: dict[str, Any] | None) -> bool:
    if not lease:
        return False
    if lease.get("host") == socket.gethostname():
        pid = int(lease.get("pid", -1))
        return pid > 0 and _proc_start_time(pid) == lease.get("proc_start")
    return time.time() - float(lease.get("heartbeat", 0)) < LEASE_STALE_S


def shown_spec(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The spec the study last ran with (``tuner:spec``), as it may be shown: with the password of
    any URL in it hidden. tuner stores it so (:func:`record_spec`); a study run by an older tuner
    kept its ``storage:`` as typed, which the dashboard served to anyone who could reach it."""
    from tuner.storage import redact_urls

    spec = attrs.get(_attrs.SPEC)
    return redact_urls(spec) if isinstance(spec, dict) else None


def metric_names(attrs: dict[str, Any], n_objectives: int) -> list[str] | None:
    """What the study's values are called, from its system attributes: Optuna's own names
    (``study.metric_names``), else the metrics of the spec tuner last ran it with; None when
    neither names each objective. One rule for ``tuner ls``, ``show``, ``best``, ``watch``, the
    dashboard and the report: ``ls`` read the spec first and ``show`` Optuna alone, so a study
    adopted from plain Optuna was ``loss (min)`` in one and ``value (minimize)`` in the other."""
    spec = attrs.get(_attrs.SPEC)
    for names in (attrs.get(_OPTUNA_METRIC_NAMES), spec.get("metrics") if isinstance(spec, dict) else None):
        if isinstance(names, list) and names and len(names) == n_objectives:
            return [str(n) for n in names]
    return None


def study_state(counts: dict[str, int], spec: Any, lease: dict[str, Any] | None, runs: Any = None) -> str:
    """``running``, ``finished``, ``failed`` or ``stopped``: one answer for ``tuner ls``, ``tuner
    watch`` and the dashboard, which used to judge the same study two ways.

    ``failed`` is a study whose last run stopped at ``max_failures``, as its run log
    (``runs``, :func:`run_log`) says. The driver counts failures per run, so the study's FAIL
    trials over all its runs, which include the trials a Ctrl-C or a stop ended, say nothing
    of it; they are the guess for a study run before runs were logged. A study with no
    ``n_trials`` target (run by plain Optuna, or until a time limit) is ``finished`` once nothing
    in it is RUNNING.
    """
    spec = spec if isinstance(spec, dict) else {}
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    target = spec.get("n_trials") if isinstance(spec.get("n_trials"), int) else None
    max_failures = spec.get("max_failures") if isinstance(spec.get("max_failures"), int) else None
    if _lease_alive(lease):
        return "running"
    if target is not None and finished >= target:
        return "finished"
    logged = [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []
    if logged:
        # A lease still held is a run that died (it logged nothing): whatever the last log says, it ran after.
        if logged[-1].get("end") == "max_failures" and not lease:
            return "failed"
    elif max_failures is not None and counts.get("FAIL", 0) > max_failures:
        return "failed"
    if target is None and not counts.get("RUNNING"):
        return "finished"
    return "stopped"


#: How each logged run ended (``tuner:runs``' ``end``), in the words ``tuner show`` and the dashboard use.
RUN_ENDS = {
    "done": "done",
    "timeout": "stopped: timeout reached",
    "max_failures": "stopped: too many failures",
    "interrupted": "interrupted",
    "stop_requested": "stopped by `tuner stop`",
    "error": "ended by an error",
    "lost": "lost (killed, crashed, or cut off from the storage)",
}
#: The error types of trials their run ended unfinished: its stop (Ctrl-C, ``tuner stop``,
#: ``max_failures`` reached by other trials) or its death (``DriverLost``, stored by the next
#: run). Stored FAIL, but not failures of their own.
UNFINISHED_ERRORS = frozenset({"Interrupted", "StoppedByRequest", "StoppedByMaxFailures", "DriverLost"})


def unfinished_error_rows(attributes: Any) -> Any:
    """The SQL condition that picks, of the trial attributes table (``attributes``), the stored
    errors that may say their run ended the trial unfinished: a cheap filter on the JSON text
    (Optuna writes it with ``json.dumps``' separators), for :func:`ended_unfinished` to confirm."""
    import sqlalchemy as sa

    return sa.and_(attributes.key == _attrs.ERROR,
                   sa.or_(*[attributes.value_json.like(f'%"type": "{kind}"%') for kind in UNFINISHED_ERRORS]))


def ended_unfinished(error: Any) -> bool:
    """Whether a trial's stored error (``tuner:error``) is one its run wrote as it ended the trial
    unfinished. The run writes no traceback; an objective's own exception class of the same name
    (``class Interrupted(Exception)``) comes with one, and is a failure of its own."""
    return isinstance(error, dict) and error.get("type") in UNFINISHED_ERRORS and not error.get("traceback")


def stopped_counts(conn: Any, study_id: int | None = None) -> dict[int, int]:
    """Per study id, how many of its FAIL trials their run ended unfinished (:func:`ended_unfinished`):
    ``tuner ls``, ``tuner show`` and the dashboard count them apart from the trials that failed
    on their own, which a Ctrl-C leaving ten trials "failed" made look like a broken objective.
    One query over such trials' errors alone (not every failure's traceback)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    t, a = m.TrialModel, m.TrialSystemAttributeModel
    where = [t.state == m.TrialState.FAIL, unfinished_error_rows(a)]
    if study_id is not None:
        where.append(t.study_id == study_id)
    out: dict[int, int] = {}
    for sid, text in conn.execute(sa.select(t.study_id, a.value_json).join(t, t.trial_id == a.trial_id).where(*where)):
        if ended_unfinished(_loads(text)):
            out[sid] = out.get(sid, 0) + 1
    return out


def shown_counts(counts: dict[str, int], stopped: int) -> dict[str, int]:
    """Trial counts by state as people read them: ``FAIL`` the trials that failed on their own,
    ``STOPPED`` (after it) those their run ended unfinished, which a resume runs again."""
    out: dict[str, int] = {}
    for state, n in counts.items():
        if state == "FAIL":
            if n - stopped:
                out["FAIL"] = n - stopped
            if stopped:
                out["STOPPED"] = stopped
        else:
            out[state] = n
    return out


#: The run log keeps the latest runs (about 50 kB at most): a study resumed every hour for a
#: month stays one small row.
RUN_LOG_KEEP = 100


def run_log(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's logged runs, oldest first (``[]`` for a study run before runs were logged)."""
    runs = attrs.get(_attrs.RUN_LOG)
    return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []


def record_run(study: "optuna.Study", entry: dict[str, Any]) -> None:
    """Append one run to the study's run log (``tuner:runs``).

    Only the run holding the study's lease writes it: the lost run's entry just after the lease
    is taken over, a run's own as it gives the lease up, in the same transaction
    (:meth:`DriverLease.release`). Why a run ended used to be printed once, in its own terminal;
    the log keeps it for ``tuner show``, ``tuner watch``, the dashboard and the study's state
    (``failed`` is a last run stopped by ``max_failures``).
    """
    storage = study._storage
    runs = run_log(storage.get_study_system_attrs(study._study_id))
    storage.set_study_system_attr(study._study_id, _attrs.RUN_LOG, (runs + [entry])[-RUN_LOG_KEEP:])


def _log_and_release(engine: Any, study_id: int, held: str, entry: dict[str, Any]) -> bool:
    """Give up the lease (still ``held``) and append ``entry`` to the run log, in one transaction;
    False, writing nothing, when the lease is no longer this run's (another run took the study
    over and logs this one as lost)."""
    import sqlalchemy as sa

    table, this = _lease_row(study_id)
    log = sa.and_(table.c.study_id == study_id, table.c.key == _attrs.RUN_LOG)
    with engine.begin() as conn:
        if not conn.execute(sa.update(table).where(this, table.c.value_json == held)
                            .values(value_json=json.dumps(None))).rowcount:
            # A retry of this very transaction, whose commit a lost connection did not acknowledge, finds it done.
            row = conn.execute(sa.select(table.c.value_json).where(log)).first()
            runs = run_log({_attrs.RUN_LOG: _loads(row[0]) if row is not None else None})
            return bool(runs) and runs[-1] == json.loads(json.dumps(entry))
        row = conn.execute(sa.select(table.c.value_json).where(log)).first()
        runs = run_log({_attrs.RUN_LOG: _loads(row[0]) if row is not None else None})
        text = json.dumps((runs + [entry])[-RUN_LOG_KEEP:])
        if row is None:
            conn.execute(sa.insert(table).values(study_id=study_id, key=_attrs.RUN_LOG, value_json=text))
        else:
            conn.execute(sa.update(table).where(log).values(value_json=text))
    return True


def _loads(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def run_row(run: dict[str, Any], *, utc: bool = False) -> dict[str, Any]:
    """One logged run (``tuner:runs``) to show: its times as ISO text (local, or UTC for the
    dashboard, as its other times), its length, and how it ended in words."""
    def seconds(value: Any) -> float | None:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        return number if math.isfinite(number) else None

    def when(value: Any) -> str | None:
        if (number := seconds(value)) is None:
            return None
        try:  # with its offset: local time for the terminal, UTC for the dashboard
            stamp = _dt.datetime.fromtimestamp(number, _dt.timezone.utc)
            return (stamp if utc else stamp.astimezone()).isoformat(timespec="seconds")
        except (ValueError, OverflowError, OSError):
            return None

    started, ended = seconds(run.get("started")), seconds(run.get("ended"))
    counts = {k: run.get(k) if _is_int(run.get(k)) else None
              for k in ("complete", "pruned", "failed", "stopped_unfinished", "recovered")}
    end = str(run.get("end") or "?")
    return {"started": when(started), "ended": when(ended), "last_heard": when(run.get("last_heard")),
            "duration_s": max(0.0, ended - started) if started is not None and ended is not None else None,
            "host": str(run.get("host") or "?"), "pid": run.get("pid") if _is_int(run.get("pid")) else None,
            "end": end, "end_text": RUN_ENDS.get(end, end), **counts,
            "error": run.get("error") if isinstance(run.get("error"), str) else None}


def run_line(run: dict[str, Any]) -> str:
    """A logged run (:func:`run_row`) on one line, as ``tuner show`` lists runs and a resume names
    the last: ``2026-12-07 13:05:12  31.2s  done: 13 complete, 17 pruned, 0 failed (pid 4121 on node-1)``."""
    started = (run["started"] or "?")[:19].replace("T", " ")  # local time, its offset left out
    length = f"{run['duration_s']:.1f}s" if run["duration_s"] is not None else "?"
    trials = ", ".join(f"{run[k]} {k.replace('_', ' ')}" for k in ("complete", "pruned", "failed", "stopped_unfinished")
                       if run[k] is not None and (run[k] or k != "stopped_unfinished"))
    if run["end"] == "lost":
        left = run["stopped_unfinished"] or 0
        heard = (run["last_heard"] or "?")[:19].replace("T", " ")
        trials = f"last heard {heard}; the next run marked the {left} trial{'s' if left != 1 else ''} it left running FAIL"
    elif run["recovered"]:
        trials += f"; marked FAIL the {run['recovered']} trial{'s' if run['recovered'] != 1 else ''} an earlier run left running"
    error = f" ({run['error']})" if run["error"] else ""
    return f"{started}  {length:>8}  {run['end_text']}{error}: {trials} (pid {run['pid'] or '?'} on {run['host']})"


def _lost_run(lease: Any, recovered: list[int]) -> dict[str, Any] | None:
    """The run log's entry for a run that died holding the lease: when it ended is not known, only
    its last heartbeat; its trials are counted in no run (the trials it finished are stored as
    they ended, those it left RUNNING are the ``stopped_unfinished``)."""
    if not isinstance(lease, dict):
        return None
    return {"started": lease.get("started"), "claimed": lease.get("started"), "ended": None,
            "last_heard": lease.get("heartbeat"), "host": lease.get("host"), "pid": lease.get("pid"),
            "end": "lost", "complete": None, "pruned": None,
            "failed": None, "stopped_unfinished": len(recovered)}


def _check_no_live_driver(attrs: dict[str, Any], name: str) -> None:
    lease = attrs.get(_attrs.DRIVER)
    if _lease_alive(lease) and not (lease.get("host") == socket.gethostname() and lease.get("pid") == os.getpid()):
        raise UserInputError(f"study {name!r} is being run right now by pid {lease.get('pid')} on {lease.get('host')}; "
                             f"wait for it to end, or stop it first (tuner stop {name})")


def _own_record() -> dict[str, Any]:
    """This process as a lease holder: host, pid and start time (pids are reused), heartbeat."""
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start_time(os.getpid()),
            "started": now, "heartbeat": now}


class DriverLease:
    """Marks the study as run by this process and keeps a heartbeat while it runs.

    Every write after the claim (heartbeat, release) is a compare-and-swap from the text this
    driver wrote last: a driver whose heartbeat went stale (a storage outage longer than
    ``LEASE_STALE_S``) and whose lease another run took over must neither write it back nor
    erase it on release.
    """

    def __init__(self, study: "optuna.Study") -> None:
        self._study = study
        self._storage = study._storage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._held: str | None = None  # the lease row's text as this driver last wrote it
        self.lost = False
        self._record = _own_record()
        #: A `tuner stop` addressed to this run (:func:`request_stop`), once the heartbeat thread saw one.
        self.stop_requested: dict[str, Any] | None = None

    def acquire(self) -> list[int]:
        """Take the lease; returns the numbers of stale RUNNING trials it turned into FAIL."""
        self._record["heartbeat"] = time.time()
        previous, self._held = _claim(self._storage, self._study._study_id, self._record, self._study.study_name)
        recovered = recover_stale_trials(self._study, reason=_stale_reason(previous))
        if (lost := _lost_run(previous, recovered)) is not None:
            try:
                record_run(self._study, lost)
            except Exception:  # noqa: BLE001 - the history is informative; the run goes on
                _log.debug("could not log the lost run of study %r", self._study.study_name, exc_info=True)
        self._thread = threading.Thread(target=self._beat, name="tuner-lease", daemon=True)
        self._thread.start()
        return recovered

    def _replace(self, value: dict[str, Any] | None) -> bool:
        """Write ``value`` over the lease if it is still this driver's; False when it is not."""
        with self._lock:
            return self._replace_held(value)

    def _replace_held(self, value: dict[str, Any] | None) -> bool:
        """:meth:`_replace`, with ``self._lock`` held by the caller."""
        if self._held is None:  # a storage without SQL tables (none that tuner opens)
            self._storage.set_study_system_attr(self._study._study_id, _attrs.DRIVER, value)
            return True
        text = json.dumps(value)
        if not _swap(self._storage, self._study._study_id, self._held, text):
            return False
        self._held = text
        return True

    def _write(self) -> bool:
        """The heartbeat; none once the release has begun (a beat still retrying through an outage
        when the release gave up waiting for it must not write the lease back over the release)."""
        with self._lock:
            if self._stop.is_set():
                return True
            self._record["heartbeat"] = time.time()
            return self._replace_held(dict(self._record))

    def _beat(self) -> None:
        last_write = time.monotonic()
        while not self._stop.wait(min(STOP_POLL_S, LEASE_HEARTBEAT_S)):
            if self.stop_requested is None:
                try:
                    self.stop_requested = self._stop_request()
                except Exception:  # noqa: BLE001 - looked for again at the next tick
                    pass
            if time.monotonic() - last_write < LEASE_HEARTBEAT_S:
                continue
            last_write = time.monotonic()
            try:
                if not self._write():
                    self.lost = True
                    _log.warning("study %r: another run took over this study's lease while this run could not "
                                 "reach the storage; stop one of them", self._study.study_name)
                    return
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried; the run goes on
                pass

    def _stop_request(self) -> dict[str, Any] | None:
        """The study's `tuner stop` request when it names this run (an older one named another)."""
        engine = _engine(self._storage)
        if engine is None:
            request = self._storage.get_study_system_attrs(self._study._study_id).get(_attrs.STOP)
        else:
            import sqlalchemy as sa

            table, _ = _lease_row(self._study._study_id)
            with engine.connect() as conn:
                row = conn.execute(sa.select(table.c.value_json).where(
                    table.c.study_id == self._study._study_id, table.c.key == _attrs.STOP)).first()
            request = json.loads(row[0]) if row is not None else None
        return request if isinstance(request, dict) and _names_run(request.get("run"), self._record) else None

    def release(self, run: dict[str, Any] | None = None) -> None:
        """Give the lease up, logging ``run`` (:func:`record_run`) first: who sees the lease gone
        (``tuner watch``, the dashboard) then finds how the run ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost:
            return  # the lease is another run's now
        if run is not None:
            # ``claimed``: the lease's own start, which tells this run from an earlier one with the same pid
            entry = {"started": self._record["started"], "ended": time.time(), "host": self._record["host"],
                     "pid": self._record["pid"], **run, "claimed": self._record["started"]}
            try:
                if self._held is None:  # a storage without SQL tables (none that tuner opens)
                    record_run(self._study, entry)
                else:
                    with self._lock:  # after a heartbeat the join above gave up on: it has written by then
                        held = self._held
                        if _with_retry(self._storage, "release_lease", lambda: _log_and_release(
                                _engine(self._storage), self._study._study_id, held, entry)):
                            self._held = json.dumps(None)
                        else:
                            self.lost = True  # another run took the study over, and logs this one as lost
                    return
            except Exception:  # noqa: BLE001 - the history is informative: the lease is released below
                _log.debug("could not log this run of study %r", self._study.study_name, exc_info=True)
        try:
            self._replace(None)
        except Exception:  # noqa: BLE001 - a stale lease is detected by pid/heartbeat anyway
            pass


def _names_run(target: Any, lease: dict[str, Any] | None) -> bool:
    """Whether a stop request's ``run`` is the run holding ``lease`` (host, pid and start: pids are reused)."""
    return (isinstance(target, dict) and isinstance(lease, dict)
            and all(target.get(k) == lease.get(k) for k in ("host", "pid", "started")))


def request_stop(storage: "optuna.storages.BaseStorage", name: str) -> dict[str, Any] | None:
    """Ask the run that holds study ``name``'s lease to stop (``tuner stop``); returns its lease,
    None when no live run holds it. The run sees the request within ``STOP_POLL_S`` and stops
    as at a Ctrl-C: its running trials are ended and stored as stopped, and a re-run resumes."""
    study_id = storage.get_study_id_from_name(name)
    lease = storage.get_study_system_attrs(study_id).get(_attrs.DRIVER)
    if not _lease_alive(lease):
        return None
    request = {"run": {k: lease.get(k) for k in ("host", "pid", "started")},
               "by": f"pid {os.getpid()} on {socket.gethostname()}", "at": time.time()}
    storage.set_study_system_attr(study_id, _attrs.STOP, request)
    return lease


def _lease_row(study_id: int) -> tuple[Any, Any]:
    """Optuna's study attribute table and the condition that picks the study's lease row.

    The columns are named one by one so that each dialect quotes them (``key`` is reserved in
    MySQL)."""
    import sqlalchemy as sa

    table = sa.table("study_system_attributes", sa.column("study_id"), sa.column("key"), sa.column("value_json"))
    return table, sa.and_(table.c.study_id == study_id, table.c.key == _attrs.DRIVER)


def _with_retry(storage: "optuna.storages.BaseStorage", name: str, step: Callable[[], _T]) -> _T:
    """``step()``, riding out a database restart as every other write does."""
    from tuner._retry_storage import RetryingRDBStorage, _retrying

    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RetryingRDBStorage):
        return _retrying(name, lambda _b: step())(backend)
    return step()


def _engine(storage: "optuna.storages.BaseStorage") -> Any:
    return getattr(getattr(storage, "_backend", storage), "engine", None)


def _claim(storage: "optuna.storages.BaseStorage", study_id: int, record: dict[str, Any],
           name: str) -> tuple[Any, str | None]:
    """Write ``record`` as the study's lease unless a live driver holds it.

    Returns the lease it replaced and the text written (None where the storage has no SQL
    tables: none that tuner opens, which fall back to a plain write). One compare-and-swap on
    the attribute's row, so that of several runs started at the same moment exactly one wins:
    each may have read "no live driver", but only the first UPDATE (or INSERT, guarded by
    Optuna's unique (study_id, key)) finds the row as it was read. The losers read again and
    are refused, naming the winner.
    """
    engine = _engine(storage)
    if engine is None:
        previous = storage.get_study_system_attrs(study_id).get(_attrs.DRIVER)
        _check_no_live_driver({_attrs.DRIVER: previous}, name)
        storage.set_study_system_attr(study_id, _attrs.DRIVER, dict(record))
        return previous, None
    mine = json.dumps(record)
    return _with_retry(storage, "claim_lease", lambda: (_compare_and_swap(engine, study_id, mine, name), mine))


def _compare_and_swap(engine: Any, study_id: int, mine: str, name: str) -> Any:
    import sqlalchemy as sa

    table, this = _lease_row(study_id)
    insert_refused = False
    for _ in range(5):
        with engine.begin() as conn:
            row = conn.execute(sa.select(table.c.value_json).where(this)).first()
        if row is None and insert_refused:
            # Not another driver's lease (there is none): the study itself is gone.
            raise StudyNotFoundError(f"study {name!r} was deleted while this run was starting")
        if row is not None and row[0] == mine:
            return None  # our own write, whose acknowledgement a lost connection swallowed
        held = json.loads(row[0]) if row is not None else None
        _check_no_live_driver({_attrs.DRIVER: held}, name)
        try:
            with engine.begin() as conn:
                if row is None:
                    conn.execute(sa.insert(table).values(study_id=study_id, key=_attrs.DRIVER, value_json=mine))
                    return None
                swapped = conn.execute(sa.update(table).where(this, table.c.value_json == row[0])
                                       .values(value_json=mine)).rowcount
            if swapped == 1:
                return held
        except sa.exc.IntegrityError:
            insert_refused = True  # another driver inserted the first lease between our read and our insert
    raise UserInputError(f"study {name!r}: could not take its lease (other runs kept changing it); "
                         f"make sure only one run drives it, then run this command again")


def _swap(storage: "optuna.storages.BaseStorage", study_id: int, old: str, new: str) -> bool:
    """Replace the lease text ``old`` by ``new``; False when the row no longer holds ``old``."""
    import sqlalchemy as sa

    engine = _engine(storage)
    table, this = _lease_row(study_id)

    def step() -> bool:
        with engine.begin() as conn:
            if conn.execute(sa.update(table).where(this, table.c.value_json == old).values(value_json=new)).rowcount:
                return True
            # A retried UPDATE whose first attempt landed finds its own text.
            return conn.execute(sa.select(table.c.value_json).where(this)).scalar() == new

    return _with_retry(storage, "renew_lease", step)


def _stale_reason(lease: dict[str, Any] | None) -> str:
    if lease:
        return (f"the run driving this trial (pid {lease.get('pid')} on {lease.get('host')}) stopped "
                f"without finishing it (killed or crashed)")
    return "the run driving this trial stopped without finishing it (killed or crashed)"


def mark_failed(study: "optuna.Study", trial_id: int, error: dict[str, str]) -> None:
    """FAIL a trial that is still RUNNING, keeping a more precise error a worker may have written."""
    from optuna.trial import TrialState

    storage = study._storage
    try:
        if storage.get_trial(trial_id).state != TrialState.RUNNING:
            return
        if _attrs.ERROR not in storage.get_trial_system_attrs(trial_id):
            storage.set_trial_system_attr(trial_id, _attrs.ERROR, error)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except RuntimeError:  # finished meanwhile
        pass


def recover_stale_trials(study: "optuna.Study", *, reason: str) -> list[int]:
    """Turn RUNNING trials left by a dead driver into FAIL with ``reason`` as their error.

    Reads the RUNNING rows alone, past Optuna's cache: through it, the first read of a process
    loads every trial of the study (7 s for 20,000 on SQLite, at each resume).
    """
    from optuna.trial import TrialState

    storage = study._storage
    database = getattr(storage, "_backend", storage)
    running = database.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
    recovered = []
    for t in sorted(running, key=lambda t: t.number):
        try:
            if _attrs.ERROR not in t.system_attrs:
                storage.set_trial_system_attr(t._trial_id, _attrs.ERROR,
                                              {"type": "DriverLost", "message": reason, "traceback": ""})
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            recovered.append(t.number)
        except RuntimeError:  # finished meanwhile
            continue
    return recovered
