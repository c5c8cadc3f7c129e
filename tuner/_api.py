"""The public Python API; the CLI is a thin layer over these functions.

Heavy modules (Optuna, Ray, torch) are imported inside the functions, so ``import tuner``
and ``tuner --help`` stay fast.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from tuner.engine import _attrs
from tuner.exceptions import SpecError, UserInputError
from tuner.spec import StudySpec, load_spec, spec_from_mapping

if TYPE_CHECKING:
    import optuna

    from tuner.engine._progress import Progress

__all__ = ["run", "validate", "load_study", "list_studies", "study_details", "best_trial", "delete_study", "StudyInfo"]


def validate(spec: str | Path | Mapping[str, Any] | StudySpec, overrides: Mapping[str, Any] | None = None,
             *, objective: Callable[..., Any] | None = None) -> StudySpec:
    """Parse and check a spec (and its search spaces, task and sampler settings) without running it."""
    # A function passed in stands for the spec's objective (a spec may leave `objective:` out), or
    # replaces it: the study records the function that runs.
    named = None if objective is None else \
        f"{getattr(objective, '__module__', 'python')}:{getattr(objective, '__name__', 'objective')}"
    if isinstance(spec, StudySpec):
        if overrides or (named is not None and spec.task is None and spec.objective != named):
            return spec_from_mapping(spec.raw, source=spec.source, base_dir=spec.base_dir, overrides=overrides,
                                     default_objective=named)
        return spec
    if isinstance(spec, Mapping):
        return spec_from_mapping(dict(spec), source="<python>", overrides=overrides, default_objective=named)
    return load_spec(spec, overrides=overrides, default_objective=named)


def run(
    spec: str | Path | Mapping[str, Any] | StudySpec,
    objective: Callable[..., Any] | None = None,
    *,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    ray_address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    force: bool = False,
    quiet: bool = True,
    progress: "Progress | None" = None,
) -> "optuna.Study":
    """Run (or resume) a study and return it.

    ``spec`` is a path to a study YAML, a mapping with the same keys, or a validated spec.
    ``objective`` is ``fn(params, ctx) -> float | dict``; it replaces the spec's ``objective:``
    (and may be given instead of one): the study records the function as its objective. A study
    resumed with another function than its earlier runs' is refused (by name, as with
    ``objective:``). The study ends when ``n_trials`` trials have finished (complete or pruned),
    counting those of earlier runs.
    """
    from tuner.engine._driver import run_study
    from tuner.engine._progress import Progress

    checked = validate(spec, overrides, objective=objective)
    if objective is not None and checked.task is not None:
        raise SpecError(checked.source, "task", "the spec names a task and an objective function was passed",
                        "drop `task:` from the spec or do not pass objective=")
    if objective is not None and not callable(objective):
        raise UserInputError(f"objective must be callable, got {type(objective).__name__}")
    url = run_storage_url(checked, storage, overrides)
    study, _summary = run_study(checked, url, objective=objective, ray_address=ray_address, num_cpus=num_cpus,
                                num_gpus=num_gpus, force=force, progress=progress or Progress(quiet=quiet))
    return study


def run_storage_url(checked: StudySpec, storage: str | None, overrides: Mapping[str, Any] | None = None) -> str:
    """The storage URL a run of ``checked`` uses (the flag, ``TUNER_STORAGE``, the spec's ``storage:``,
    the default). One taken from the spec's ``storage:`` is opened here, so that a bad one (a
    missing folder, an unknown role) is an error that names the spec file and its key: the URL
    alone, made absolute from the spec's folder, did not say where it came from."""
    import os

    from tuner.exceptions import StorageError
    from tuner.storage import open_storage, resolve_url

    url = resolve_url(storage, checked.storage)
    if checked.storage is None or storage or os.environ.get("TUNER_STORAGE") or (overrides or {}).get("storage"):
        return url  # not the file's (a --set storage= names itself, as --storage does)
    try:
        open_storage(url)  # cached: the run opens the same storage object
    except StorageError as exc:
        raise SpecError(checked.source, "storage", str(exc).removeprefix("storage ")) from None  # said once
    return url


def load_study(name: str, storage: str | None = None) -> "optuna.Study":
    """An existing study, read from the storage (any machine that reaches it can)."""
    from tuner.engine._study import load_study as _load
    from tuner.storage import open_storage

    return _load(open_storage(storage, readonly=True), name)


def delete_study(name: str, storage: str | None = None, *, artifacts: bool = False) -> dict[str, Any]:
    """Delete study ``name`` with its trials (refused while a run holds it); with ``artifacts``,
    also the folders its trials wrote in (checkpoints, files). Returns what was deleted:
    ``{"name", "trials", "folders_removed", "folders_kept"}``.

    Only folders the study's own trials recorded, named as tuner names them
    (``<study>/trial_NNNNN`` or ``trial_NNNNN.K``), are removed: a path in a database written
    otherwise cannot make this remove anything else. Exports (``tuner export -o DIR``) are yours.
    """
    from tuner.engine._study import delete_study as _delete
    from tuner.storage import open_storage

    load_study(name, storage)  # read-only first: a missing study or database is one line, and nothing is created
    said: list[str] = []  # what the deletion found: "12 trials: 10 complete, 2 pruned"
    folders = _delete(open_storage(storage), name, on_delete=said.append)
    trials = said[0]
    removed, kept = [], []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            continue
        if artifacts and _is_trial_folder(path, name):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(folder)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # the study's folder, once empty
                continue
        kept.append(folder)
    return {"name": name, "trials": trials, "folders_removed": removed, "folders_kept": kept}


def _is_trial_folder(path: Path, study: str) -> bool:
    """A folder tuner made for a trial of ``study``: ``<study>/trial_NNNNN`` (``.K`` when taken)."""
    import re

    return path.parent.name == study and re.fullmatch(r"trial_\d{5,}(\.\d+)?", path.name) is not None and \
        not path.is_symlink()


@dataclass
class StudyInfo:
    """One line of ``tuner ls``."""

    name: str
    directions: list[str]
    metrics: list[str]
    counts: dict[str, int]
    n_trials_target: int | None
    best: Any
    last_activity: str | None
    running: bool
    state: str = "stopped"  # running / finished / failed / stopped, as the dashboard says
    stopped_unfinished: int = 0  # of the FAIL trials, those their run ended unfinished (not failures of their own)
    extra: dict[str, Any] = field(default_factory=dict)


def list_studies(storage: str | None = None) -> list[StudyInfo]:
    """Every study in the storage with trial counts by state and its best value."""
    from tuner.engine._study import metric_names, study_state
    from tuner.storage import open_storage, study_overview

    st = open_storage(storage, readonly=True)
    out = []
    for row in study_overview(st):
        attrs = row["system_attrs"]
        spec = attrs.get(_attrs.SPEC) or {}
        state = study_state(row["counts"], spec, attrs.get(_attrs.DRIVER), attrs.get(_attrs.RUN_LOG))
        out.append(StudyInfo(
            name=row["name"], directions=row["directions"], metrics=metric_names(attrs, len(row["directions"])) or [],
            counts=row["counts"], n_trials_target=spec.get("n_trials"), best=row["best"],
            last_activity=_iso(row["last_activity"]), running=state == "running", state=state,
            stopped_unfinished=row.get("stopped_unfinished", 0)))
    return out


def _iso(value: Any) -> str | None:
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="seconds")
    return None if value is None else str(value)


def _trial_row(t: Any) -> dict[str, Any]:
    duration = None
    if t.datetime_start and t.datetime_complete:
        duration = (t.datetime_complete - t.datetime_start).total_seconds()
    from tuner.engine._study import ended_unfinished

    worker = t.system_attrs.get(_attrs.WORKER) or {}
    error = t.system_attrs.get(_attrs.ERROR)
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.values,
        "params": dict(t.params),
        "metrics": t.system_attrs.get(_attrs.METRICS),
        "intermediate_steps": len(t.intermediate_values),
        "started": _iso(t.datetime_start),
        "completed": _iso(t.datetime_complete),
        "duration_s": duration,
        "host": worker.get("host"),
        "gpu_ids": worker.get("gpu_ids"),
        "error": (f"{error.get('type')}: {error.get('message')}" if error else None),
        "stopped_unfinished": ended_unfinished(error),  # FAIL as its run's stop or death ended it, no failure
    }


def study_details(name: str, storage: str | None = None, *, top: int = 10) -> dict[str, Any]:
    """What ``tuner show`` prints: the spec, counts, best and the top trials.

    Counts and the ranking are queries and only the trials shown are read: reading every trial
    through Optuna took 8 s at 20,000 trials. A Pareto front still needs every complete trial.
    """
    from tuner._trial_read import read_trials
    from tuner.engine._study import metric_names, run_log, run_row, shown_spec, stopped_counts, study_state
    from tuner.storage import ranked_trial_ids

    study = load_study(name, storage)
    database = getattr(study._storage, "_backend", study._storage)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    directions = [d.name.lower() for d in study.directions]
    with database.engine.connect() as conn:
        counts = _state_counts(conn, study._study_id)
        stopped = stopped_counts(conn, study._study_id).get(study._study_id, 0)
        failed_ids = ranked_trial_ids(conn, study._study_id, "FAIL", None, limit=5)[::-1]  # the last five, in order
        top_ids = (ranked_trial_ids(conn, study._study_id, "COMPLETE", directions[0], limit=top)
                   if len(directions) == 1 else [])
    shown = {t._trial_id: t for t in read_trials(study, trial_ids=top_ids + failed_ids)}
    ranked = [shown[i] for i in top_ids] if len(directions) == 1 else list(study.best_trials)
    user_params = _user_params(study)
    runs = run_log(attrs)
    return {
        "name": name,
        "state": study_state(counts, attrs.get(_attrs.SPEC), attrs.get(_attrs.DRIVER), runs),
        "directions": directions,
        "metrics": metric_names(attrs, len(directions)),
        "counts": counts,
        "stopped_unfinished": stopped,  # of the FAIL trials, those their run ended unfinished
        "n_trials": sum(counts.values()),
        "spec": shown_spec(attrs),
        "runs": [run_row(run) for run in runs],
        "best": best_trial(name, storage, study=study) if counts.get("COMPLETE") else None,
        "top": [{**_trial_row(t), "objective_params": user_params(t)} for t in ranked[:top]],
        "recent_failures": [_trial_row(shown[i]) for i in failed_ids],
    }


def _state_counts(conn: Any, study_id: int) -> dict[str, int]:
    """Trials per state name, as one GROUP BY, in Optuna's order of states (the same on every database)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    t = m.TrialModel
    rows = conn.execute(sa.select(t.state, sa.func.count()).where(t.study_id == study_id).group_by(t.state)).all()
    return {state.name: int(n) for state, n in sorted(rows, key=lambda row: row[0].value)}


def best_trial(name: str, storage: str | None = None, *, study: "optuna.Study | None" = None) -> dict[str, Any]:
    """The best trial (or the Pareto front for several objectives) with parameters and metrics."""
    study = study or load_study(name, storage)
    # What the values are: ``metrics`` is taken (a trial's own metrics), so the study's are ``objectives``.
    goal = {"objectives": _objective_names(study), "directions": [d.name.lower() for d in study.directions]}
    if len(study.directions) > 1:
        front = study.best_trials
        if not front:
            raise _no_complete_trial(study, name)
        user_params = _user_params(study)
        return {"name": name, **goal, "pareto_front": [_best_row(study, t, user_params) for t in front]}
    try:
        t = study.best_trial
    except ValueError:
        raise _no_complete_trial(study, name) from None
    return {"name": name, **goal, **_best_row(study, t)}


def _no_complete_trial(study: "optuna.Study", name: str) -> Exception:
    """The error for a study with nothing to rank, saying what its trials are: "run it first" was
    wrong for a study that had run and whose every trial was pruned or failed."""
    from tuner.engine._study import shown_counts, stopped_counts
    from tuner.exceptions import StudyNotFoundError

    database = getattr(study._storage, "_backend", study._storage)
    with database.engine.connect() as conn:
        counts = _state_counts(conn, study._study_id)
        stopped = stopped_counts(conn, study._study_id).get(study._study_id, 0) if counts else 0
    if not counts:
        return StudyNotFoundError(f"study {name!r} has no trial yet; run it first (tuner run SPEC)")
    held = ", ".join(f"{n} {state.lower()}" for state, n in shown_counts(counts, stopped).items())
    if stopped and stopped == sum(counts.values()) - counts.get("RUNNING", 0):
        # nothing but trials a stop ended: nothing went wrong, the study was stopped before one finished
        return StudyNotFoundError(f"study {name!r} has no complete trial ({held}); its run was stopped before one "
                                  "finished: run the same spec again to resume")
    return StudyNotFoundError(f"study {name!r} has no complete trial ({held}); see why with tuner show {name}, "
                              "or run more trials")


def _objective_names(study: "optuna.Study") -> list[str]:
    """The study's metric names (:func:`~tuner.engine._study.metric_names`; ``value``, ``value_1`` ...
    for a study stored without them)."""
    from tuner.engine._study import metric_names

    names = metric_names(study._storage.get_study_system_attrs(study._study_id), len(study.directions))
    if names:
        return names
    return ["value"] if len(study.directions) == 1 else [f"value_{i}" for i in range(len(study.directions))]


def _best_row(study: "optuna.Study", t: Any,
              user_params: Callable[[Any], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    row = _trial_row(t)
    row["params_user"] = (user_params or _user_params(study))(t)
    return row


def _user_params(study: "optuna.Study") -> Callable[[Any], dict[str, Any] | None]:
    """A function giving a trial's parameter dict as the objective saw it (fixed values included,
    per-layer lists rebuilt), or None. The stored space is read and parsed once, not per trial
    (``tuner show --top 100`` parsed it a hundred times)."""
    from tuner.space import stored_params_reader

    read = stored_params_reader(study._storage.get_study_system_attrs(study._study_id).get(_attrs.SPACE))
    return lambda t: read(t.params)
