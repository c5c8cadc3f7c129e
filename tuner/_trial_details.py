"""One trial in full, for the terminal: ``tuner trial STUDY N``.

``tuner show`` lists trials one line each and a failure by its first line; what a trial stored
beyond that (the traceback of a failure, the per-epoch curve, the confusion matrix, where it ran
and where its time went, its files) was only on the dashboard, which a user on a cluster's head
node over SSH does not open to read one traceback. One trial is read in a fixed number of
queries, whatever the study's size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tuner.engine import _attrs
from tuner.engine._study import _is_int

if TYPE_CHECKING:
    import optuna

__all__ = ["trial_details", "trial_lines"]

#: A curve longer than this is shown by its first and last epochs (``--json`` has every one).
CURVE_ROWS = 25
#: A confusion matrix is drawn up to this many classes (``--json`` has any size).
MATRIX_CLASSES = 20


def trial_details(name: str, number: int, storage: str | None = None) -> dict[str, Any]:
    """Everything stored about trial ``number`` of study ``name`` (values as stored: a NaN stays
    NaN for the text; ``tuner._json.jsonable`` makes it JSON).

    ``storage`` comes last and may be left out, as in every other function of the API; the
    order of before (``name, storage, number``) is still read, with a DeprecationWarning."""
    if isinstance(storage, int) and not isinstance(storage, bool) and (number is None or isinstance(number, str)):
        import warnings

        warnings.warn("trial_details(name, storage, number) is deprecated: call trial_details(name, number, storage)",
                      DeprecationWarning, stacklevel=2)
        number, storage = storage, number
    from tuner._api import _objective_names, _user_params, load_study
    from tuner._trial_read import read_trials
    from tuner.report._timing import trial_phases

    study = load_study(name, storage)
    trial_id = _trial_id(study, name, number)
    trial = read_trials(study, trial_ids=[trial_id])[0]
    attrs = trial.system_attrs
    start, end = trial.datetime_start, trial.datetime_complete
    worker = attrs.get(_attrs.WORKER) if isinstance(attrs.get(_attrs.WORKER), dict) else {}
    extras = {k[len(_attrs.ATTR_PREFIX):]: v for k, v in attrs.items() if k.startswith(_attrs.ATTR_PREFIX)}
    return {
        "study": name,
        "number": trial.number,
        "state": trial.state.name,
        "objectives": _objective_names(study),
        "directions": [d.name.lower() for d in study.directions],
        "values": list(trial.values) if trial.values is not None else None,
        "params": _user_params(study)(trial) or dict(trial.params),
        "started": start.isoformat(sep=" ", timespec="seconds") if start else None,
        "completed": end.isoformat(sep=" ", timespec="seconds") if end else None,
        "duration_s": (end - start).total_seconds() if start and end else None,
        "worker": worker,
        "phases": trial_phases(attrs.get(_attrs.TIMING), start),
        "metrics": attrs.get(_attrs.METRICS) if isinstance(attrs.get(_attrs.METRICS), dict) else {},
        "curve": [row for row in attrs.get(_attrs.CURVE) or [] if isinstance(row, dict)],
        "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "attrs": extras,
        "user_attrs": dict(trial.user_attrs),
        "error": attrs.get(_attrs.ERROR) if isinstance(attrs.get(_attrs.ERROR), dict) else None,
        "rerun_of": attrs.get(_attrs.RERUN_OF),
        "artifacts": [a for a in attrs.get(_attrs.ARTIFACTS) or [] if isinstance(a, dict)],
    }


def _trial_id(study: "optuna.Study", name: str, number: int) -> int:
    """The id of trial ``number``, or one line naming the numbers the study has."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    from tuner.exceptions import StudyNotFoundError

    from tuner.storage import SQL_INT_MAX

    t = m.TrialModel
    engine = getattr(study._storage, "_backend", study._storage).engine
    with engine.connect() as conn:
        if 0 <= number <= SQL_INT_MAX:  # a bigger one names no trial, and SQLite cannot even bind it
            found = conn.execute(sa.select(t.trial_id).where(t.study_id == study._study_id, t.number == number)).scalar()
            if found is not None:
                return int(found)
        last = conn.execute(sa.select(sa.func.max(t.number)).where(t.study_id == study._study_id)).scalar()
    held = "it has no trials yet" if last is None else f"its trials are numbered 0 to {last}"
    raise StudyNotFoundError(f"study {name!r} has no trial {number}; {held} (tuner show {name} lists the best)")


def trial_lines(d: dict[str, Any]) -> list[str]:
    """The trial as ``tuner trial`` prints it: a headline, then one block per thing it stored."""
    lines = [_headline(d)]
    lines += _when_and_where(d)
    if d["params"]:
        lines.append("params:")
        lines += [f"  {k}: {_param(v)}" for k, v in d["params"].items()]
    if d["metrics"]:  # a list or dict the objective returned is shortened, as attributes are (--json: whole)
        lines.append("metrics: " + ", ".join(f"{k} {_short(v)}" for k, v in d["metrics"].items()))
    lines += _curve(d)
    lines += _per_class(d["attrs"].get("per_class"))
    lines += _matrix(d["attrs"].get("confusion_matrix"), d["attrs"].get("per_class"))
    others = {k: v for k, v in {**d["attrs"], **d["user_attrs"]}.items() if k not in ("per_class", "confusion_matrix")}
    if others:
        lines.append("attributes: " + ", ".join(f"{k} {_short(v)}" for k, v in others.items()))
    if d["artifacts"]:
        lines.append("files:")
        lines += [f"  {_path(a.get('uri'))} ({_size(a.get('size'))})" for a in d["artifacts"]]
    if d["error"]:
        error = d["error"]
        lines.append(f"error: {error.get('type') or 'Error'}: {error.get('message') or ''}".rstrip(": "))
        traceback = str(error.get("traceback") or "").rstrip()
        if traceback:
            lines.append("traceback:")
            lines += ["  " + line for line in traceback.splitlines()]
    return lines


def _headline(d: dict[str, Any]) -> str:
    """``trial 12 of study 'quickstart': COMPLETE, val_accuracy 0.985185 (maximize)``."""
    text = f"trial {d['number']} of study {d['study']!r}: {d['state']}"
    last = list(d["intermediate_values"].items())[-1] if d["intermediate_values"] else None
    if d["state"] == "PRUNED" and last is not None:
        text += f" at step {last[0]}"  # where the pruner stopped it
    if d["values"] is not None:
        text += ", " + ", ".join(f"{m} {_num(v)} ({x})" for m, v, x in zip(d["objectives"], d["values"], d["directions"]))
    elif d["state"] == "PRUNED" and last is not None:
        text += f", {d['objectives'][0]} {_num(last[1])} ({d['directions'][0]})"
    if d.get("rerun_of") is not None:
        epoch = d["attrs"].get("resumed_at_epoch")
        went_on = f" from the end of its epoch {epoch}" if _is_int(epoch) else ""
        text += f" (trial {d['rerun_of']}'s parameters, run again{went_on}: its run left it unfinished)"
    return text


def _when_and_where(d: dict[str, Any]) -> list[str]:
    lines = []
    if d["started"]:
        length = f", {_seconds(d['duration_s'])}" if d["duration_s"] is not None else " (not finished)"
        lines.append(f"ran {d['started']}{length}")
    w = d["worker"]
    if w:
        gpus = f", GPUs {','.join(map(str, w['gpu_ids']))}" if isinstance(w.get("gpu_ids"), list) and w["gpu_ids"] else ""
        lines.append(f"on {w.get('host') or '?'}, pid {w.get('pid') or '?'}{gpus}; folder {w.get('trial_dir') or '-'}")
    if d["phases"]:
        lines.append("time: " + ", ".join(f"{phase} {_seconds(s)}" for phase, s in d["phases"].items()))
    return lines


def _curve(d: dict[str, Any]) -> list[str]:
    """The per-epoch values as a table (every key any epoch reported), or the pruner's
    intermediate values for an objective that reported no curve."""
    rows = d["curve"]
    if not rows:
        if not d["intermediate_values"]:
            return []
        rows = [{"step": int(k), d["objectives"][0]: v} for k, v in d["intermediate_values"].items()]
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "step"]
    shown: list[dict[str, Any] | None] = list(rows)
    if len(rows) > CURVE_ROWS:
        shown = rows[:5] + [None] + rows[-(CURVE_ROWS - 5):]
    widths = [max([len(k), *(len(_num(row[k])) for row in shown if row is not None and k in row)]) for k in keys]
    lines = [f"curve ({len(rows)} step{'s' if len(rows) != 1 else ''}):",
             "  " + f"{'step':>5}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    for row in shown:
        if row is None:
            lines.append(f"  {'...':>5}  ({len(rows) - CURVE_ROWS} steps left out; --json has them all)")
            continue
        lines.append("  " + f"{_short(row.get('step', '')):>5}  "
                     + "  ".join(f"{_num(row[k]) if k in row else '-':>{w}}" for k, w in zip(keys, widths)))
    return lines


def _per_class(per_class: Any) -> list[str]:
    if not isinstance(per_class, dict) or not per_class:
        return []
    lines = ["per class (test part):", f"  {'class':>8}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"]
    for label, scores in per_class.items():
        if isinstance(scores, dict):
            lines.append(f"  {str(label)[:8]:>8}  " + "  ".join(
                f"{_num(scores.get(k)):>9}" for k in ("precision", "recall", "f1")) + f"  {_short(scores.get('support')):>7}")
    return lines


def _matrix(matrix: Any, per_class: Any = None) -> list[str]:
    """The test part's confusion matrix (rows: true class, columns: predicted), up to
    :data:`MATRIX_CLASSES`, labelled by the class names the per-class table uses (its keys, in
    the matrix's order): labelled 0..n-1, the matrix of classes 5..9 read as another one's."""
    if not (isinstance(matrix, list) and matrix and all(isinstance(r, list) and len(r) == len(matrix) for r in matrix)):
        return []
    if len(matrix) > MATRIX_CLASSES:
        return [f"confusion matrix (test part): {len(matrix)} x {len(matrix)} (--json has it)"]
    names = [str(k) for k in per_class] if isinstance(per_class, dict) and len(per_class) == len(matrix) else \
        [str(i) for i in range(len(matrix))]
    names = [name if len(name) <= 12 else name[:11] + "~" for name in names]
    width = max(3, *(len(_short(v)) for row in matrix for v in row), *(len(name) for name in names))
    label = max(3, *(len(name) for name in names))
    lines = ["confusion matrix (test part; rows: true class, columns: predicted):",
             "  " + " " * (label + 1) + " ".join(f"{name:>{width}}" for name in names)]
    lines += [f"  {name:>{label}} " + " ".join(f"{_short(v):>{width}}" for v in row) for name, row in zip(names, matrix)]
    return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def _param(value: Any) -> str:
    """A parameter's value: None is one a choice can hold, printed as None (``-`` is for what is missing)."""
    if value is None:
        return "None"
    if isinstance(value, list):
        return "[" + ", ".join(_param(v) for v in value) + "]"
    from tuner.space import reads_as_another_type

    if isinstance(value, str) and reads_as_another_type(value):
        return repr(value)  # the choice "1" is not the choice 1, nor "null" None
    return _num(value)


def _short(value: Any) -> str:
    text = _num(value) if not isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _seconds(seconds: Any) -> str:
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "-"
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s" if seconds < 600 else f"{seconds / 60:.1f} min"


def _size(size: Any) -> str:
    if not _is_number(size):
        return "size unknown"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "-"


def _path(uri: Any) -> str:
    from urllib.parse import unquote, urlparse

    parsed = urlparse(str(uri or ""))
    return unquote(parsed.path) if parsed.scheme == "file" else str(uri or "?")
