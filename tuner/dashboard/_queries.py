"""What the dashboard reads from the storage, in a small fixed number of SQL queries per request.

Optuna's public API loads whole studies (every trial, through the ORM): 75 s at 100,000
trials. The dashboard's pages must answer in milliseconds, so this module queries Optuna's
tables directly with SQLAlchemy Core: the trials table is sorted, filtered and paginated in
SQL, and only the trials of the requested page are read in full (through the report's reader,
:func:`tuner.report.read_trials`, restricted to their ids). Nothing here writes.
"""

from __future__ import annotations

import datetime as _dt
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import unquote, urlparse

from tuner._json import jsonable
from tuner.engine import _attrs
from tuner.engine._study import (_is_int, _lease_alive, ended_unfinished, metric_names, run_log, run_row,
                                 shown_counts, shown_spec, stopped_counts, study_state)
from tuner.exceptions import UserInputError
from tuner.storage import SQL_INT_MAX, sqlite_path

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["DashboardData", "TrialQuery", "ParamFilter", "NotFound", "BadQuery", "SORT_KEYS", "MAX_PER_PAGE",
           "SQL_INT_MAX"]

MAX_PER_PAGE = 500
_REVERSE_FROM = 2_500    # from this row on, a page sorted by value or parameter may be read from the far end
_MEMOS = 64              # memoised answers kept (SQLite), least recently used dropped first
_RUNS_SHOWN = 20         # a study page lists its latest runs, newest first
#: Sort keys of the trials table besides ``value`` / ``value:K`` and ``param:NAME``.
SORT_KEYS = ("number", "state", "value", "duration", "started", "completed")
#: The states a trial filter takes: Optuna's, and STOPPED, the FAIL trials a run's stop or death
#: ended unfinished (a FAIL filter leaves them out, as the counts do).
_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "STOPPED", "WAITING")
# Per-trial attributes left out of table rows (they can be large: curves, confusion matrices).
_HEAVY_ATTRS = (_attrs.CURVE, _attrs.ATTR_PREFIX)


class NotFound(UserInputError):
    """A study, trial or artifact that does not exist (HTTP 404)."""


class BadQuery(UserInputError):
    """A query parameter that cannot be understood (HTTP 400)."""


@dataclass(frozen=True)
class ParamFilter:
    """``name`` within ``[low, high]`` (numbers; either end open), or equal to one of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "ParamFilter":
        """``lr:0.001:0.01``, ``lr::0.01``, ``width.0:64:`` (a range) or ``optimizer=adam|sgd`` (choices).

        Parameter names may themselves hold ``=`` and ``|`` (variants: ``lr|optimizer=sgd``), so
        the range form is recognised from the end (two numeric-or-empty bounds after the last two
        colons) and the choice form splits at the last ``=``.
        """
        parts = text.rsplit(":", 2)
        if len(parts) == 3 and parts[0] and all(_is_bound(b) for b in parts[1:]):
            low, high = _number_or_none(parts[1], text), _number_or_none(parts[2], text)
            if low is None and high is None:
                raise BadQuery(f"param filter {text!r}: give at least one bound")
            return cls(parts[0], low=low, high=high)
        name, sep, values = text.rpartition("=")
        choices = tuple(v for v in values.split("|") if v != "")
        if not sep or not name or not choices:
            raise BadQuery(f"param filter {text!r}: expected NAME:LOW:HIGH (either bound may be empty) "
                           f"or NAME=VALUE[|VALUE...]")
        return cls(name, choices=choices)


@dataclass(frozen=True)
class TrialQuery:
    """One page of the trials table: filters, sort and page (validated by :meth:`check`)."""

    states: tuple[str, ...] = ()
    value_min: float | None = None
    value_max: float | None = None
    objective: int = 0
    params: tuple[ParamFilter, ...] = ()
    sort: str = "number"
    order: str = "asc"
    page: int = 1
    per_page: int = 50

    def check(self, n_objectives: int) -> "TrialQuery":
        for state in self.states:
            if state not in _STATES:
                raise BadQuery(f"state {state!r}: expected one of {', '.join(_STATES)}")
        if self.order not in ("asc", "desc"):
            raise BadQuery(f"order {self.order!r}: expected asc or desc")
        if not 0 <= self.objective < max(1, n_objectives):
            raise BadQuery(f"objective {self.objective}: the study has {n_objectives} objective(s)")
        key, _, arg = self.sort.partition(":")
        if key not in SORT_KEYS and key != "param":
            raise BadQuery(f"sort {self.sort!r}: expected one of {', '.join(SORT_KEYS)}, value:K or param:NAME")
        if key == "param" and not arg:
            raise BadQuery("sort param: name the parameter, e.g. sort=param:lr")
        if key == "value" and arg and (not arg.isdigit() or int(arg) >= max(1, n_objectives)):
            raise BadQuery(f"sort {self.sort!r}: objective index out of range")
        if self.page < 1:
            raise BadQuery(f"page {self.page}: pages start at 1")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise BadQuery(f"per_page {self.per_page}: expected 1..{MAX_PER_PAGE}")
        if (self.page - 1) * self.per_page > SQL_INT_MAX:
            raise BadQuery(f"page {self.page}: far past the last trial")
        return self


@dataclass
class _StudyRow:
    study_id: int
    name: str
    directions: list[str]
    metric_names: list[str]
    system_attrs: dict[str, Any] = field(default_factory=dict)


class DashboardData:
    """Read-only queries over one storage (an Optuna ``RDBStorage``)."""

    def __init__(self, storage: "optuna.storages.RDBStorage") -> None:
        self.storage = storage
        self.engine = storage.engine
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._param_names: dict[int, tuple[int, frozenset[str]]] = {}  # study id -> (newest trial id read, names)
        self._memos: "OrderedDict[Any, tuple[int, Any]]" = OrderedDict()  # key -> (change marker, value)
        self._marker_conn: sqlite3.Connection | None = None
        self._marker_lock = threading.Lock()
        path = sqlite_path(str(self.engine.url)) if self._sqlite else None
        self._sqlite_file = path if path is not None and path.exists() else None

    # ---- change marker and memos ---------------------------------------------------------------

    def _marker(self) -> int | None:
        """A number that changes whenever another connection commits to the database (SQLite only).

        ``PRAGMA data_version`` on a connection of our own costs microseconds, so answers that
        depend only on the database (counts, orderings, summaries) are reused until anything
        is written. None for PostgreSQL: every request queries.
        """
        if self._sqlite_file is None:
            return None
        with self._marker_lock:
            try:
                if self._marker_conn is None:
                    self._marker_conn = sqlite3.connect(f"file:{self._sqlite_file}?mode=ro", uri=True,
                                                        check_same_thread=False)
                return int(self._marker_conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:  # cannot watch this file: answer every request from the database
                self._sqlite_file = None
                return None

    def _memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, reused while the database is unchanged (at most :data:`_MEMOS` answers kept)."""
        marker = self._marker()
        if marker is None:
            return compute()
        with self._marker_lock:
            hit = self._memos.get(key)
            if hit is not None and hit[0] == marker:
                self._memos.move_to_end(key)
                return hit[1]
        value = compute()  # outside the lock: requests for other keys go on meanwhile
        with self._marker_lock:
            self._memos[key] = (marker, value)
            while len(self._memos) > _MEMOS:
                self._memos.popitem(last=False)
        return value

    # ---- studies -------------------------------------------------------------------------------

    def studies(self) -> list[dict[str, Any]]:
        """Every study: state, trials by state, best value, last activity and progress."""
        from tuner.storage import study_overview

        rows = []
        for memo_row in self._memo(("overview",), lambda: study_overview(self.storage)):
            row = dict(memo_row)  # the memo is shared: leave it as it was
            attrs = row.pop("system_attrs")
            spec = attrs.get(_attrs.SPEC) if isinstance(attrs.get(_attrs.SPEC), dict) else {}
            rows.append(_study_summary(row, spec, attrs.get(_attrs.DRIVER), attrs.get(_attrs.RUN_LOG)))
        return rows

    def study(self, name: str) -> dict[str, Any]:
        """One study's summary: the studies-page row plus spec, best trial and a change marker."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        info = self._study_row(name)
        t = m.TrialModel

        def read() -> tuple[dict[str, int], Any, list[int], int]:
            counts: dict[str, int] = {}
            last = None
            with self.engine.connect() as conn:
                stopped = stopped_counts(conn, info.study_id).get(info.study_id, 0)
                for state, n, last_start, last_end in conn.execute(
                        sa.select(t.state, sa.func.count(), sa.func.max(t._datetime_start_utc),
                                  sa.func.max(t._datetime_complete_utc))
                        .where(t.study_id == info.study_id).group_by(t.state)):
                    counts[state.name] = n
                    for ts in (last_start, last_end):
                        if ts is not None and (last is None or ts > last):
                            last = ts
                return counts, last, self._best_trial_ids(conn, info), stopped

        counts, last, best_ids, stopped = self._memo(("study", info.study_id), read)
        counts = dict(counts)
        spec = info.system_attrs.get(_attrs.SPEC) if isinstance(info.system_attrs.get(_attrs.SPEC), dict) else {}
        summary = _study_summary({"study_id": info.study_id, "name": info.name, "directions": info.directions,
                                  "counts": counts, "best": None, "last_activity": last,
                                  "metrics": info.metric_names, "stopped_unfinished": stopped}, spec, info.system_attrs.get(_attrs.DRIVER),
                                 info.system_attrs.get(_attrs.RUN_LOG))
        best = self._read(info, best_ids) if best_ids else []
        summary["best"] = best[0]["values"][0] if len(info.directions) == 1 and best and best[0]["values"] else None
        summary["best_trials"] = best
        summary["spec"] = shown_spec(info.system_attrs)  # served to anyone who reaches the dashboard
        # The latest runs, newest first: when the study ran, where, and how each run ended. A run
        # is logged only as it ends: the one under way is read from the lease it holds.
        runs = run_log(info.system_attrs)
        lease = info.system_attrs.get(_attrs.DRIVER)
        live = [_running_row(lease)] if isinstance(lease, dict) and _lease_alive(lease) else []
        summary["runs"] = live + [run_row(run, utc=True) for run in reversed(runs[-_RUNS_SHOWN:])]
        summary["n_runs"] = len(runs) + len(live)
        summary["version"] = self.version(name, info=info)
        return summary

    def meta(self, name: str) -> dict[str, Any]:
        """Name, directions and metric names only (what a trial page needs; no trial is read)."""
        info = self._study_row(name)
        return {"name": info.name, "directions": info.directions, "metric_names": info.metric_names}

    def version(self, name: str, *, info: _StudyRow | None = None) -> str:
        """A marker that changes whenever a trial of the study is added or changes state, the
        study starts or stops being run, or a run is logged.

        The study page polls it and refreshes only when it changes. The trials' part is one
        aggregate query on the trials table (indexed by study). The run's part is read fresh:
        a driver releases its lease after its last trial ends, and one that dies writes nothing,
        so neither would show in the trials or in SQLite's change counter (without it the page
        kept saying "running" after the run ended).
        """
        info = info or self._study_row(name)
        trials = self._memo(("version", info.study_id), lambda: self._read_version(info))
        # the runs logged: a run that changed no trial (one of a finished study) still shows in the runs table
        runs = len(run_log(info.system_attrs))
        return f"{trials}-{'run' if _lease_alive(info.system_attrs.get(_attrs.DRIVER)) else 'idle'}-{runs}"

    def _read_version(self, info: _StudyRow) -> str:
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        t = m.TrialModel
        with self.engine.connect() as conn:
            n, max_id, n_done, last_done, n_steps = conn.execute(sa.select(
                sa.func.count(), sa.func.max(t.trial_id),
                sa.func.sum(sa.case((t.state != m.TrialState.RUNNING, 1), else_=0)),
                sa.func.max(t._datetime_complete_utc),
                sa.select(sa.func.count()).select_from(m.TrialIntermediateValueModel)
                .join(t, t.trial_id == m.TrialIntermediateValueModel.trial_id)
                .where(t.study_id == info.study_id, t.state == m.TrialState.RUNNING).scalar_subquery(),
            ).where(t.study_id == info.study_id)).one()
        return f"{n}-{max_id or 0}-{n_done or 0}-{last_done or ''}-{n_steps or 0}"

    # ---- trials --------------------------------------------------------------------------------

    def trials(self, name: str, query: TrialQuery) -> dict[str, Any]:
        """One page of the trials table, sorted and filtered in SQL, with the total that match."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        info = self._study_row(name)
        query.check(len(info.directions))
        key, _, arg = query.sort.partition(":")
        known = self.param_names(name) if key == "param" else []
        if key == "param" and arg not in known:  # a typo would sort by nothing, silently
            raise BadQuery(f"sort {query.sort!r}: the study has no parameter {arg!r}"
                           + (f"; it has {', '.join(known[:20])}" if known else " (no trial has parameters yet)"))
        t, v = m.TrialModel, m.TrialValueModel
        where = [t.study_id == info.study_id]
        if query.states:
            where.append(_state_condition(query.states, info.study_id))
        value = sa.orm.aliased(v)
        joined_value = False
        if query.value_min is not None or query.value_max is not None:
            joined_value = True
            if query.value_min is not None:
                where.append(value.value >= query.value_min)
            if query.value_max is not None:
                where.append(value.value <= query.value_max)
        with self.engine.connect() as conn:
            for f in query.params:
                where.append(self._param_condition(conn, info, f))

            def base(*columns: Any) -> Any:
                q = sa.select(*columns).select_from(t)
                if joined_value:
                    q = q.join(value, sa.and_(value.trial_id == t.trial_id, value.objective == query.objective))
                return q.where(*where)

            offset = (query.page - 1) * query.per_page
            shape = (info.study_id, query.states, query.value_min, query.value_max, query.objective, query.params,
                     query.sort, query.order)
            total = self._memo(("count", shape), lambda: conn.execute(base(sa.func.count())).scalar_one())
            unfiltered = not (query.states or joined_value or query.params)
            id_range = self._memo(("range", info.study_id), lambda: self._id_range(conn, info.study_id)) \
                if unfiltered else None
            ids = self._memo(("page", shape, offset, query.per_page),
                             lambda: self._ordered_ids(conn, base, query, query.per_page, offset, id_range, total))
        rows = self._read(info, ids) if ids else []
        by_id = {r["trial_id"]: r for r in rows}
        return {"study": info.name, "total": total, "page": query.page, "per_page": query.per_page,
                "pages": max(1, math.ceil(total / query.per_page)), "sort": query.sort, "order": query.order,
                "directions": info.directions, "metric_names": info.metric_names,
                "trials": [by_id[i] for i in ids if i in by_id]}

    def _id_range(self, conn: Any, study_id: int) -> tuple[int, int] | None:
        """``(first, last)`` trial id of the study when no other study's trial lies between them.

        Then "the study's values" is a range of the value and parameter indexes, read without
        looking up each trial (a study run alone, the common case); else None.
        """
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        t = m.TrialModel
        # min and max alone are index lookups (an aggregate with count() would scan the study).
        lo = conn.execute(sa.select(sa.func.min(t.trial_id)).where(t.study_id == study_id)).scalar()
        hi = conn.execute(sa.select(sa.func.max(t.trial_id)).where(t.study_id == study_id)).scalar()
        if lo is None or hi is None:
            return None
        n = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.study_id == study_id)).scalar_one()
        if hi - lo + 1 == n:  # n of the study's ids among exactly n integers: all of them are its own
            return int(lo), int(hi)
        inside = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.trial_id.between(lo, hi))).scalar_one()
        return (int(lo), int(hi)) if inside == n else None

    def _ordered_ids(self, conn: Any, base: Any, query: TrialQuery, limit: int | None, offset: int,
                     id_range: tuple[int, int] | None = None, total: int | None = None) -> list[int]:
        """Trial ids of the selection in the query's order: ``limit`` from ``offset`` (None: all)."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        t = m.TrialModel
        key, _, arg = query.sort.partition(":")
        if key in ("value", "param"):
            return self._sorted_by_joined(conn, base, query, key, arg, limit, offset, id_range, total)
        order_col: Any = {
            "duration": self._seconds(t._datetime_complete_utc) - self._seconds(t._datetime_start_utc),
            "started": t._datetime_start_utc,
            "completed": t._datetime_complete_utc,
            "state": t.state,
        }.get(key, t.number)
        if key == "number":  # trial ids order a study's trials as their numbers do: no sort needed
            q = base(t.trial_id).order_by(t.trial_id.asc() if query.order == "asc" else t.trial_id.desc())
            return [row[0] for row in conn.execute(q.limit(limit).offset(offset))]
        direction = order_col.asc() if query.order == "asc" else order_col.desc()
        # Missing values (running trials) always go last; ties by number.
        q = base(t.trial_id).order_by(sa.case((order_col.is_(None), 1), else_=0), direction, t.trial_id.asc())
        return [row[0] for row in conn.execute(q.limit(limit).offset(offset))]

    def _sorted_by_joined(self, conn: Any, base: Any, query: TrialQuery, key: str, arg: str,
                          limit: int | None, offset: int, id_range: tuple[int, int] | None = None,
                          total: int | None = None) -> list[int]:
        """Trial ids sorted by a value or a parameter; trials without one come last.

        Written as two queries rather than one ``ORDER BY value IS NULL, value``: the plain
        ``ORDER BY value, trial_id`` of the trials that have one walks the sort index
        (:data:`tuner.storage._INDEXES`) and stops after the page, instead of sorting the study.
        """
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        t = m.TrialModel
        if key == "value":
            side: Any = sa.orm.aliased(m.TrialValueModel)
            which = side.objective == (int(arg) if arg else query.objective)
            column = side.value
        else:
            side = sa.orm.aliased(m.TrialParamModel)
            which = side.param_name == arg
            column = side.param_value
        on = sa.and_(side.trial_id == t.trial_id, which)
        desc = query.order == "desc"

        def ordered(descending: bool) -> Any:
            order = (column.desc() if descending else column.asc(), side.trial_id.desc() if descending else side.trial_id.asc())
            if id_range is not None:  # the study's rows are a range of the index: no per-trial lookup
                return sa.select(side.trial_id).where(which, side.trial_id.between(*id_range)).order_by(*order)
            return base(t.trial_id).join(side, on).order_by(*order)

        def count_with() -> int:
            if id_range is not None:
                return int(conn.execute(sa.select(sa.func.count()).select_from(side)
                                        .where(which, side.trial_id.between(*id_range))).scalar_one())
            return int(conn.execute(base(sa.func.count()).join(side, on)).scalar_one())

        n_with: int | None = None
        if limit is not None and offset >= _REVERSE_FROM:
            # A deep page walks the index up to its offset: past the middle, walk from the other end.
            n_with = count_with()
        if n_with is not None and n_with / 2 < offset < n_with:
            end = min(offset + limit, n_with)
            back = conn.execute(ordered(not desc).limit(end - offset).offset(n_with - end))
            ids = [row[0] for row in back][::-1]
        elif n_with is not None and offset >= n_with:
            ids = []
        else:
            ids = [row[0] for row in conn.execute(ordered(desc).limit(limit).offset(offset))]
        if limit is not None and len(ids) == limit:
            return ids
        # The sorted part ended on this page (or before it): go on with the trials that lack it.
        if n_with is None:
            n_with = offset + len(ids) if ids or offset == 0 else count_with()
        # By trial id, which orders a study's trials as their numbers do (Optuna numbers them in
        # the order it inserts them) and needs no sort.
        without = base(t.trial_id).where(~sa.exists(sa.select(side.trial_id).where(on)))
        skip = max(0, offset - n_with)
        n_without = total - n_with if total is not None else None
        if limit is not None and n_without is not None and skip > n_without / 2:
            # deep in the tail too: walk it from its end
            end = min(skip + limit - len(ids), n_without)
            back = conn.execute(without.order_by(t.trial_id.desc()).limit(max(0, end - skip)).offset(n_without - end))
            return ids + [row[0] for row in back][::-1]
        lacking = without.order_by(t.trial_id.asc()).limit(None if limit is None else limit - len(ids)).offset(skip)
        return ids + [row[0] for row in conn.execute(lacking)]

    def param_names(self, name: str) -> list[str]:
        """The parameter names of the study (for the table's columns and filters).

        Read incrementally: names of trials already seen are kept per study, and each call reads
        only the parameters of trials added since (trial ids only grow), through the
        ``(trial_id, param_name)`` index. The first call for a study reads all of them once.
        """
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        info = self._study_row(name)
        t, p = m.TrialModel, m.TrialParamModel
        seen, names = self._param_names.get(info.study_id, (0, frozenset()))
        with self.engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(t.trial_id)).where(t.study_id == info.study_id)).scalar() or 0
            if newest > seen:
                found = conn.execute(
                    sa.select(p.param_name).where(
                        p.trial_id.between(seen + 1, newest),
                        p.trial_id.in_(sa.select(t.trial_id).where(t.study_id == info.study_id,
                                                                   t.trial_id.between(seen + 1, newest))))
                    .distinct()).scalars().all()
                names = names | frozenset(found)
                self._param_names[info.study_id] = (newest, names)
        return sorted(names)

    def trial(self, name: str, number: int, *, full: bool = True) -> dict[str, Any]:
        """One trial with everything stored about it (curves, metrics, placement, error, artifacts)."""
        info = self._study_row(name)
        trial_id = self._trial_id(info, number)
        rows = self._read(info, [trial_id], full=full)
        if not rows:
            raise NotFound(f"study {name!r} has no trial {number}")
        return rows[0]

    def compare(self, name: str, numbers: Sequence[int]) -> dict[str, Any]:
        """Two to five trials side by side: their rows and which parameters differ."""
        if not 2 <= len(numbers) <= 5 or len(set(numbers)) != len(numbers):
            raise BadQuery("compare: give 2 to 5 different trial numbers, e.g. trials=3,7")
        trials = [self.trial(name, n) for n in numbers]
        for t in trials:  # compared as the objective saw them, as the trial page shows them
            t["params"] = t.get("user_params") or t["params"]
        names = sorted({k for t in trials for k in t["params"]})
        # inactive in one trial and None in another differ (a choice of None is a value)
        differ = [k for k in names if len({(k in t["params"], repr(t["params"].get(k))) for t in trials}) > 1]
        return {"study": name, "trials": trials, "params": names, "differ": differ}

    def exports(self, name: str, number: int) -> list[dict[str, Any]]:
        """The exports ``tuner export`` recorded for trial ``number`` (newest first), with each file's presence."""
        info = self._study_row(name)
        out = []
        for index, entry in enumerate(info.system_attrs.get(_attrs.EXPORTS) or []):
            if not isinstance(entry, dict) or entry.get("trial") != number:
                continue
            folder = Path(str(entry.get("folder", "")))
            files = []
            for fmt, f in (entry.get("files") or {}).items():
                if not isinstance(f, dict):
                    continue
                path = folder / str(f.get("file", ""))
                exists = _inside(path, folder)
                files.append({"format": fmt, "file": str(f.get("file", "")), "exists": exists,
                              "bytes": f.get("bytes") if _is_int(f.get("bytes")) else _size(path) if exists else None})
            out.append({"index": index, "folder": str(folder), "exported_at": entry.get("exported_at"), "files": files})
        return out[::-1]

    def export_path(self, name: str, number: int, index: int, filename: str) -> Path:
        """A file of a recorded export of trial ``number`` (only the names the record lists), or :class:`NotFound`."""
        for entry in self.exports(name, number):
            if entry["index"] != index:
                continue
            for f in entry["files"]:
                if f["file"] == filename and "/" not in filename and "\\" not in filename and filename not in (".", ".."):
                    path = Path(entry["folder"]) / filename
                    if not _inside(path, Path(entry["folder"])):
                        raise NotFound(f"export file {filename!r} is recorded but gone from {entry['folder']}")
                    return path
        raise NotFound(f"trial {number} of study {name!r} has no exported file {filename!r} in export {index}")

    def artifact_path(self, name: str, number: int, artifact: str) -> Path:
        """The local file of an artifact recorded for the trial, or :class:`NotFound`.

        Only names listed in the trial's ``tuner:artifacts`` record resolve, and only to the
        ``file://`` URI stored next to them: a request never builds a path itself.
        """
        trial = self.trial(name, number, full=True)
        for entry in trial["artifacts"]:
            if entry.get("name") == artifact:
                uri = str(entry.get("uri", ""))
                parsed = urlparse(uri)
                if parsed.scheme != "file":
                    raise NotFound(f"artifact {artifact!r} is stored at {parsed.scheme or '?'}://, not on this machine")
                path = Path(unquote(parsed.path))
                worker = trial.get("worker")
                trial_dir = worker.get("trial_dir") if isinstance(worker, dict) else None
                if not _inside(path, Path(str(trial_dir)) if trial_dir else None):
                    raise NotFound(f"artifact {artifact!r} of trial {number} is recorded but its file is gone "
                                   f"(or is no longer a plain file in the trial's folder)")
                return path
        raise NotFound(f"trial {number} of study {name!r} has no artifact {artifact!r}")

    # ---- helpers -------------------------------------------------------------------------------

    def _study_row(self, name: str) -> _StudyRow:
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        with self.engine.connect() as conn:
            sid = conn.execute(sa.select(m.StudyModel.study_id).where(m.StudyModel.study_name == name)).scalar()
            if sid is None:
                raise NotFound(f"no study named {name!r}")
            directions = [d.name.lower() for d in conn.execute(
                sa.select(m.StudyDirectionModel.direction).where(m.StudyDirectionModel.study_id == sid)
                .order_by(m.StudyDirectionModel.objective)).scalars()]
            attrs = {k: _loads(val) for k, val in conn.execute(
                sa.select(m.StudySystemAttributeModel.key, m.StudySystemAttributeModel.value_json)
                .where(m.StudySystemAttributeModel.study_id == sid))}
        names = metric_names(attrs, len(directions))
        if not names:
            names = ["value"] if len(directions) == 1 else [f"objective {i}" for i in range(len(directions))]
        return _StudyRow(sid, name, directions, [str(n) for n in names], attrs)

    def _trial_id(self, info: _StudyRow, number: int) -> int:
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        if not 0 <= number <= SQL_INT_MAX:
            raise NotFound(f"study {info.name!r} has no trial {number}")
        with self.engine.connect() as conn:
            tid = conn.execute(sa.select(m.TrialModel.trial_id).where(
                m.TrialModel.study_id == info.study_id, m.TrialModel.number == number)).scalar()
        if tid is None:
            raise NotFound(f"study {info.name!r} has no trial {number}")
        return int(tid)

    def _best_trial_ids(self, conn: Any, info: _StudyRow, limit: int = 20) -> list[int]:
        """The best trial (one objective) or up to ``limit`` Pareto-optimal trials (several)."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        from tuner.storage import ranked_trial_ids

        t, v = m.TrialModel, m.TrialValueModel
        if len(info.directions) == 1:
            return ranked_trial_ids(conn, info.study_id, "COMPLETE", info.directions[0], limit=1)
        values: dict[int, dict[int, float]] = {}
        for tid, objective, value, value_type in conn.execute(
                sa.select(v.trial_id, v.objective, v.value, v.value_type).join(t, t.trial_id == v.trial_id)
                .where(t.study_id == info.study_id, t.state == m.TrialState.COMPLETE)):
            values.setdefault(tid, {})[objective] = v.stored_repr_to_value(value, value_type)  # inf is stored as NULL
        signs = [-1.0 if d == "maximize" else 1.0 for d in info.directions]
        points = sorted((tuple(s * vals.get(i, math.inf) for i, s in enumerate(signs)), tid)
                        for tid, vals in values.items())
        front: list[tuple[tuple[float, ...], int]] = []
        for point, tid in points:  # sorted on the first objective: a point is dominated only by earlier ones
            if not any(all(a <= b for a, b in zip(f, point)) and f != point for f, _ in front):
                front.append((point, tid))
        return [tid for _, tid in front[:limit]]

    def _param_names_for(self, conn: Any, info: _StudyRow, name: str) -> tuple[str, ...]:
        """Optuna's names of the parameter a filter names: the name itself, or for a parameter with
        variants its every variant (``lr`` is ``lr|optimizer=adam/adamw`` and ``lr|optimizer=sgd``),
        the name the objective, `tuner best` and README use. A name the study does not have is a
        422 listing the ones it has (it matched nothing, silently); () for a study with no
        parameters yet."""
        import sqlalchemy as sa
        from optuna.storages._rdb import models as m

        t, p = m.TrialModel, m.TrialParamModel
        names = self._memo(("param_names", info.study_id), lambda: tuple(sorted(conn.execute(
            sa.select(p.param_name).join(t, t.trial_id == p.trial_id).where(t.study_id == info.study_id)
            .distinct()).scalars().all())))
        if name in names:
            return (name,)
        variants = tuple(n for n in names if n.startswith(name + "|"))
        if variants or not names:
            return variants
        shown = sorted({n.split("|")[0] for n in names})
        raise BadQuery(f"param filter: the study has no parameter {name!r}; it has "
                       f"{', '.join(shown[:30])}{' ...' if len(shown) > 30 else ''}")

    def _param_condition(self, conn: Any, info: _StudyRow, f: ParamFilter) -> Any:
        """SQL condition ``the trial's parameter f.name passes the filter`` (on Optuna's internal values)."""
        import sqlalchemy as sa
        from optuna.distributions import CategoricalDistribution, json_to_distribution
        from optuna.storages._rdb import models as m

        t, p = m.TrialModel, m.TrialParamModel
        matched = self._param_names_for(conn, info, f.name)
        if not matched:
            return sa.false()
        cond = [p.param_name.in_(matched)]
        # Categorical values are stored as the index of the choice: map each choice (or range)
        # through every distribution the parameter had in this study (usually one).
        djsons = self._memo(("distributions", info.study_id, matched), lambda: conn.execute(
            sa.select(p.distribution_json).join(t, t.trial_id == p.trial_id)
            .where(t.study_id == info.study_id, p.param_name.in_(matched)).distinct()).scalars().all())
        dists = {djson: json_to_distribution(djson) for djson in djsons}
        if not f.choices and any(isinstance(d, CategoricalDistribution) for d in dists.values()):
            # A range over a choice compares the choices' values, not their stored indexes (a range
            # of 32 to 64 over [32, 64, 128] matched nothing, and 0 to 1 matched 32 and 64).
            ors = []
            for djson, dist in dists.items():
                if isinstance(dist, CategoricalDistribution):
                    idx = [i for i, c in enumerate(dist.choices) if _in_range(c, f.low, f.high)]
                    if idx:
                        ors.append(sa.and_(p.distribution_json == djson, p.param_value.in_([float(i) for i in idx])))
                else:
                    ors.append(sa.and_(p.distribution_json == djson, *(
                        [p.param_value >= f.low] if f.low is not None else []),
                        *([p.param_value <= f.high] if f.high is not None else [])))
            if not ors and not any(_in_range(c, None, None) for d in dists.values()
                                   if isinstance(d, CategoricalDistribution) for c in d.choices):
                raise BadQuery(f"param {f.name!r} is a choice of text: filter it by value, e.g. "
                               f"{f.name}={next(str(c) for d in dists.values() if isinstance(d, CategoricalDistribution) for c in d.choices)}")
            cond.append(sa.or_(*ors) if ors else sa.false())
        elif f.choices:
            ors = []
            for djson, dist in dists.items():
                if isinstance(dist, CategoricalDistribution):
                    idx = [i for i, c in enumerate(dist.choices) if str(c) in f.choices or repr(c) in f.choices]
                    if idx:
                        ors.append(sa.and_(p.distribution_json == djson, p.param_value.in_([float(i) for i in idx])))
                else:
                    numbers = [x for x in (_number_or_none(c, f.name) for c in f.choices) if x is not None]
                    if numbers:
                        ors.append(sa.and_(p.distribution_json == djson, p.param_value.in_(numbers)))
            cond.append(sa.or_(*ors) if ors else sa.false())
        else:
            if f.low is not None:
                cond.append(p.param_value >= f.low)
            if f.high is not None:
                cond.append(p.param_value <= f.high)
        # ``trial_id IN (matching parameter rows)`` reads the (param_name, param_value) index once;
        # a correlated EXISTS would probe the parameters of every trial of the study.
        return t.trial_id.in_(sa.select(p.trial_id).where(*cond))

    def _seconds(self, column: Any) -> Any:
        import sqlalchemy as sa

        if self._sqlite:
            return sa.func.julianday(column) * 86400.0
        return sa.func.extract("epoch", column)

    def _read(self, info: _StudyRow, trial_ids: Sequence[int], *, full: bool = False) -> list[dict[str, Any]]:
        """Rows for ``trial_ids`` (heavy attributes only when ``full``)."""
        import optuna

        from tuner.report import read_trials

        study = optuna.Study(info.name, self.storage)
        trials = read_trials(study, trial_ids=trial_ids, skip_attr_prefixes=() if full else _HEAVY_ATTRS)
        from tuner.space import stored_params_reader

        as_seen = stored_params_reader(info.system_attrs.get(_attrs.SPACE))  # the space parsed once per read
        return [_trial_dict(t, info, full=full, as_seen=as_seen) for t in trials]


def _state_condition(states: tuple[str, ...], study_id: int) -> Any:
    """SQL condition: the trial is in one of ``states`` (:data:`_STATES`). FAIL and STOPPED split
    Optuna's FAIL by the stored error, as ``ended_unfinished`` does (a stop's error has no
    traceback; an objective's own ``Interrupted`` has one)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    from tuner.engine._study import unfinished_error_rows

    t, a = m.TrialModel, m.TrialSystemAttributeModel
    # this study's stopped trials only: the error rows of every study's failures are not scanned
    mine = sa.orm.aliased(t)
    stopped = (sa.select(a.trial_id).join(mine, mine.trial_id == a.trial_id)
               .where(mine.study_id == study_id, unfinished_error_rows(a), a.value_json.like('%"traceback": ""%')))
    ors: list[Any] = []
    plain = [m.TrialState[s] for s in states if s not in ("FAIL", "STOPPED")]
    if plain:
        ors.append(t.state.in_(plain))
    if "FAIL" in states and "STOPPED" in states:
        ors.append(t.state == m.TrialState.FAIL)
    elif "FAIL" in states:
        ors.append(sa.and_(t.state == m.TrialState.FAIL, t.trial_id.not_in(stopped)))
    elif "STOPPED" in states:
        ors.append(sa.and_(t.state == m.TrialState.FAIL, t.trial_id.in_(stopped)))
    return sa.or_(*ors)


def _in_range(choice: Any, low: float | None, high: float | None) -> bool:
    """A choice that is a number (not a bool) within ``[low, high]`` (open ends: None)."""
    if isinstance(choice, bool) or not isinstance(choice, (int, float)) or choice != choice:
        return False
    return (low is None or choice >= low) and (high is None or choice <= high)


def _trial_dict(t: "FrozenTrial", info: _StudyRow, *, full: bool,
                as_seen: Callable[[Any], dict[str, Any] | None] = lambda params: None) -> dict[str, Any]:
    sa_ = t.system_attrs
    start, end = t.datetime_start, t.datetime_complete
    duration = (end - start).total_seconds() if start and end else (
        (_dt.datetime.now() - start).total_seconds() if start and t.state.name == "RUNNING" else None)
    row: dict[str, Any] = {
        "trial_id": t._trial_id,
        "number": t.number,
        # STOPPED: a FAIL its run's stop or death ended unfinished (optuna_state keeps Optuna's name)
        "state": "STOPPED" if ended_unfinished(sa_.get(_attrs.ERROR)) else t.state.name,
        "optuna_state": t.state.name,
        "values": list(t.values) if t.values is not None else None,
        "params": {k: jsonable(v) for k, v in t.params.items()},  # Optuna's names: the table's sortable columns
        # As the objective saw them (fixed values in, per-layer lists rebuilt): what `tuner best` shows
        # and a spec's `enqueue` takes; the trial page and the best trials show these.
        "user_params": jsonable(as_seen(t.params)),
        "started": start.isoformat(timespec="seconds") if start else None,
        "completed": end.isoformat(timespec="seconds") if end else None,
        "duration_s": duration,
        "metrics": jsonable(sa_.get(_attrs.METRICS)),
        "error": jsonable(sa_.get(_attrs.ERROR)),
        "worker": jsonable(sa_.get(_attrs.WORKER)),
        "rerun_of": sa_.get(_attrs.RERUN_OF) if _is_int(sa_.get(_attrs.RERUN_OF)) else None,
    }
    if full:
        row["intermediate_values"] = {str(k): _finite(v) for k, v in sorted(t.intermediate_values.items())}
        row["curve"] = jsonable(sa_.get(_attrs.CURVE) or [])
        worker = sa_.get(_attrs.WORKER)
        trial_dir = worker.get("trial_dir") if isinstance(worker, dict) else None
        row["artifacts"] = [{**a, "exists": _file_exists(a.get("uri"), trial_dir)}
                            for a in (sa_.get(_attrs.ARTIFACTS) or []) if isinstance(a, dict)]
        row["attrs"] = {k[len(_attrs.ATTR_PREFIX):]: jsonable(v) for k, v in sa_.items() if k.startswith(_attrs.ATTR_PREFIX)}
        row["user_attrs"] = jsonable(dict(t.user_attrs))
        row["distributions"] = {k: type(d).__name__ for k, d in t.distributions.items()}
        row["timing"] = _timing_rows(sa_.get(_attrs.TIMING), start)
    return row


def _timing_rows(timing: Any, started: "_dt.datetime | None") -> list[dict[str, Any]]:
    """The trial's phases in order: ``[{phase, seconds, what}]`` (empty for trials run before timings were kept)."""
    from tuner.report._timing import PHASES, trial_phases

    return [{"phase": name, "seconds": seconds, "what": PHASES[name]}
            for name, seconds in trial_phases(timing, started).items()]


def _study_summary(row: dict[str, Any], spec: dict[str, Any], lease: Any, runs: Any) -> dict[str, Any]:
    counts = {k: int(v) for k, v in row["counts"].items()}
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    target = spec.get("n_trials") if isinstance(spec.get("n_trials"), int) else None
    state = study_state(counts, spec, lease, runs)
    last = row.get("last_activity")
    return {
        "name": row["name"],
        "state": state,
        "directions": row["directions"],
        "metric_names": row.get("metrics") or (spec.get("metrics") if isinstance(spec.get("metrics"), list) else None),
        "counts": counts,
        # of the FAIL trials, those their run ended unfinished; ``shown_counts`` lists them apart
        "stopped_unfinished": int(row.get("stopped_unfinished") or 0),
        "shown_counts": shown_counts(counts, int(row.get("stopped_unfinished") or 0)),
        "n_trials": sum(counts.values()),
        "finished": finished,
        "target": target,
        "progress": min(1.0, finished / target) if target else None,
        "best": _finite(row.get("best")),
        "last_activity": _iso_utc(last),
        "task": spec.get("task"),
    }


def _running_row(lease: dict[str, Any]) -> dict[str, Any]:
    """The run holding the study's lease as a row of the runs table: when and where it started,
    its length so far, ``running`` for how it ended, and no trial counts (the run log has them
    once it ends; the study's counts show its trials meanwhile)."""
    row = run_row({"started": lease.get("started"), "host": lease.get("host"), "pid": lease.get("pid"),
                   "end": "running"}, utc=True)
    started = lease.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool) and math.isfinite(started):
        row["duration_s"] = max(0.0, time.time() - started)
    return row


def _file_exists(uri: Any, trial_dir: Any = None) -> bool:
    """Whether a recorded ``file://`` artifact is still there and servable (checkpoints outside the best K are removed)."""
    parsed = urlparse(str(uri or ""))
    return parsed.scheme == "file" and _inside(Path(unquote(parsed.path)), Path(str(trial_dir)) if trial_dir else None)


def _inside(path: Path, folder: Path | None) -> bool:
    """Whether ``path`` is a regular file that may be served: no symbolic link on its way, and
    inside ``folder`` (the trial's or export's folder, when recorded) once links are resolved.

    The worker records each artifact at its resolved path and leaves out links that lead out of
    the trial's folder (``best.pt -> /etc/passwd``); a storage written otherwise would record
    such a file outside the folder, and a file swapped for a link after it was recorded no longer
    resolves to itself. Either is refused: a download serves only files that stay where they
    were recorded.
    """
    try:
        if not path.is_absolute() or path.resolve() != path or not path.is_file():
            return False
        return folder is None or path.is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):  # a link loop, an unreadable folder, a NUL byte
        return False


def _size(path: Path) -> int | None:
    """The size of a file on disk, None if it cannot be read (an export's model card is listed
    without its size: the card cannot hold its own)."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def _iso_utc(value: Any) -> str | None:
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value)
    if isinstance(value, _dt.datetime):
        return value.replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds")
    return None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _number_or_none(text: str, context: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadQuery(f"{context!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadQuery(f"{context!r}: {text!r} is not a finite number")
    return value


def _is_bound(text: str) -> bool:
    if text.strip() == "":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
