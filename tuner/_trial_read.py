"""Read a study's trials in a fixed number of queries.

Optuna's ``RDBStorage`` loads trials through the ORM and parses each parameter's distribution
JSON twice: 75 s for 100,000 trials on a small machine, 8 s for 20,000. The report, the dashboard
and tuner's own storage (``tuner._retry_storage``: every worker's first read of a study, the
samplers' reads after it) need the same :class:`~optuna.trial.FrozenTrial` lists, so for RDB
storages they are built here from one SQLAlchemy Core query per table (trials, values,
parameters, intermediate values, system and user attributes), with each distinct distribution
parsed once. Other storages go through ``get_all_trials``.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["read_trials", "read_rdb"]

# Up to this many trials, the other tables are read by trial id; beyond, joined on the scope.
_BY_ID_MAX = 500


def read_trials(study: "optuna.Study", *, skip_attr_prefixes: tuple[str, ...] = (),
                trial_ids: Sequence[int] | None = None) -> list["FrozenTrial"]:
    """Every trial of ``study``, ordered by number (what ``study.get_trials(deepcopy=False)`` returns).

    ``skip_attr_prefixes`` leaves out system attributes whose key starts with one of them (the
    report skips ``tuner:attr:``, per-trial extras such as confusion matrices that it does not draw).
    ``trial_ids`` reads only those trials (the dashboard's table reads one page of them).
    """
    from optuna.storages import RDBStorage

    storage = study._storage
    storage = getattr(storage, "_backend", storage)  # optuna.load_study wraps RDB storages in a cache
    if isinstance(storage, RDBStorage):
        where = None
        if trial_ids is not None:
            from optuna.storages._rdb import models as m

            where = m.TrialModel.trial_id.in_([int(i) for i in trial_ids])
        return read_rdb(storage, study._study_id, where=where, skip_attr_prefixes=skip_attr_prefixes)
    trials = study.get_trials(deepcopy=False)
    if trial_ids is not None:
        wanted = set(trial_ids)
        trials = [t for t in trials if t._trial_id in wanted]
    return list(trials)


class _LocalTime:
    """Naive UTC -> naive local time, as Optuna's RDB models do, with the offset cached per hour."""

    def __init__(self) -> None:
        self._offsets: dict[_dt.datetime, _dt.timedelta] = {}

    def __call__(self, value: Any) -> _dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns the stored text when the column is read as a string
            value = _dt.datetime.fromisoformat(value)
        hour = value.replace(minute=0, second=0, microsecond=0)
        offset = self._offsets.get(hour)
        if offset is None:
            local = hour.replace(tzinfo=_dt.timezone.utc).astimezone().replace(tzinfo=None)
            offset = self._offsets[hour] = local - hour
        return value + offset


def read_rdb(storage: "optuna.storages.RDBStorage", study_id: int, *, where: Any = None,
             skip_attr_prefixes: tuple[str, ...] = ()) -> list["FrozenTrial"]:
    """The trials of study ``study_id`` that match ``where`` (a condition on Optuna's trials table), by number.

    ``skip_attr_prefixes`` leaves out system attributes whose key starts with one of them.
    """
    import sqlalchemy as sa
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models as m
    from optuna.trial import FrozenTrial

    t = m.TrialModel
    inf = {m.TrialValueModel.TrialValueType.INF_POS: float("inf"), m.TrialValueModel.TrialValueType.INF_NEG: float("-inf")}
    iinf = {m.TrialIntermediateValueModel.TrialIntermediateValueType.INF_POS: float("inf"),
            m.TrialIntermediateValueModel.TrialIntermediateValueType.INF_NEG: float("-inf"),
            m.TrialIntermediateValueModel.TrialIntermediateValueType.NAN: float("nan")}

    scope = t.study_id == study_id if where is None else sa.and_(t.study_id == study_id, where)

    def scoped(query: Any, model: Any) -> Any:
        # A few trials are read by their ids alone: joined on the scope as well, SQLite walks the
        # whole study's index instead of the few ids.
        if len(rows) <= _BY_ID_MAX:
            return query.where(model.trial_id.in_(list(rows)))
        return query.join(t, t.trial_id == model.trial_id).where(scope)

    to_local = _LocalTime()
    sqlite = storage.engine.dialect.name == "sqlite"

    def when(column: Any) -> Any:
        # SQLite keeps datetimes as ISO text; datetime.fromisoformat parses it far faster than SQLAlchemy's regex.
        return sa.type_coerce(column, sa.String) if sqlite else column

    rows: dict[int, dict[str, Any]] = {}
    with storage.engine.connect() as conn:
        for tid, number, state, start, complete in conn.execute(
                sa.select(t.trial_id, t.number, t.state, when(t._datetime_start_utc), when(t._datetime_complete_utc))
                .where(scope).order_by(t.trial_id)).all():
            rows[tid] = {"number": number, "state": state, "start": to_local(start), "complete": to_local(complete),
                         "values": {}, "params": {}, "dists": {}, "inter": {}, "sys": {}, "user": {}}
        if not rows:
            return []
        v = m.TrialValueModel
        for tid, objective, value, vtype in conn.execute(
                scoped(sa.select(v.trial_id, v.objective, v.value, v.value_type), v)).all():
            rows[tid]["values"][objective] = inf.get(vtype, value)
        p = m.TrialParamModel
        dist_cache: dict[str, Any] = {}
        for tid, name, value, djson in conn.execute(
                scoped(sa.select(p.trial_id, p.param_name, p.param_value, p.distribution_json), p)
                .order_by(p.param_id)).all():
            dist = dist_cache.get(djson)
            if dist is None:
                dist = dist_cache[djson] = json_to_distribution(djson)
            row = rows[tid]
            row["params"][name] = dist.to_external_repr(value)
            row["dists"][name] = dist
        iv = m.TrialIntermediateValueModel
        for tid, step, value, vtype in conn.execute(
                scoped(sa.select(iv.trial_id, iv.step, iv.intermediate_value, iv.intermediate_value_type), iv)).all():
            rows[tid]["inter"][step] = iinf.get(vtype, value)
        loads = json.loads
        for model, key in ((m.TrialSystemAttributeModel, "sys"), (m.TrialUserAttributeModel, "user")):
            query = scoped(sa.select(model.trial_id, model.key, model.value_json), model)
            if key == "sys":
                for prefix in skip_attr_prefixes:
                    query = query.where(sa.not_(model.key.startswith(prefix, autoescape=True)))
            for tid, name, value_json in conn.execute(query).all():
                rows[tid][key][name] = loads(value_json)
    trials = []
    for tid, r in rows.items():
        values = r["values"]
        trials.append(FrozenTrial(
            number=r["number"], state=r["state"], value=None,
            values=(list(values.values()) if len(values) == 1 else [values[i] for i in sorted(values)]) if values else None,
            datetime_start=r["start"], datetime_complete=r["complete"], params=r["params"], distributions=r["dists"],
            user_attrs=r["user"], system_attrs=r["sys"], intermediate_values=r["inter"], trial_id=tid))
    trials.sort(key=lambda tr: tr.number)
    return trials
