"""Storage URLs and database settings.

All state lives in Optuna's RDB storage (SQLAlchemy): SQLite by default, PostgreSQL when
several machines share a study. This module owns the URL rules and the engine settings
(SQLite in WAL mode with a busy timeout, a bounded PostgreSQL pool) and turns every
connection problem into a one-line :class:`~tuner.exceptions.StorageError`.
"""

from __future__ import annotations

import functools
import gc
import os
import random
import sqlite3
import sys
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tuner.exceptions import StorageError, exception_chain

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna

__all__ = ["DEFAULT_STORAGE", "resolve_url", "open_storage", "check_url", "storage_failure", "sqlite_path", "anchor_sqlite_url",
           "redact", "redact_urls", "ensure_indexes", "init_rdb_storage",
           "fold_in_sqlite_log", "trial_outcomes", "TrialOutcome",
           "ranked_trial_ids", "waiting_trial_ids", "SQL_INT_MAX"]

DEFAULT_STORAGE = "sqlite:///tuner.db"
#: The largest integer SQLite and PostgreSQL store; a bigger trial number or row count names
#: nothing (and SQLite refuses to bind it: OverflowError), so it is refused or capped before any query.
SQL_INT_MAX = 2**63 - 1
_SQLITE_BUSY_TIMEOUT_S = 60.0
_CACHE: dict[tuple[str, bool], "optuna.storages.RDBStorage"] = {}
_INIT_RACE_WINDOW_S = 30.0


def resolve_url(url: str | None = None, spec_url: str | None = None) -> str:
    """The storage URL to use: flag, then ``TUNER_STORAGE``, then the spec, then ``sqlite:///tuner.db``."""
    chosen = url or os.environ.get("TUNER_STORAGE") or spec_url or DEFAULT_STORAGE
    chosen = _plain_sqlite(chosen.strip())
    if chosen.startswith("postgresql://") or chosen.startswith("postgres://"):
        # psycopg (v3) is what tuner installs; SQLAlchemy's bare scheme would look for psycopg2.
        chosen = "postgresql+psycopg://" + chosen.split("://", 1)[1]
    return chosen


def _plain_sqlite(url: str) -> str:
    """``url`` with SQLite's default driver named the plain way: ``sqlite+pysqlite://`` is ``sqlite://``.

    SQLAlchemy takes both for the same driver; tuner's SQLite handling (WAL, busy timeout, read-only
    reads that create no file, paths anchored to the spec's folder, one-line errors) keys on the
    plain form, and skipped the other: ``tuner ls`` left an empty file behind, a missing folder
    was "a database not running". Normalised once, where a URL comes in (:func:`resolve_url`) and
    where a spec's URL is read (:func:`sqlite_path`, :func:`anchor_sqlite_url`).
    """
    scheme, sep, rest = url.partition("://")
    return "sqlite://" + rest if sep and scheme.lower() == "sqlite+pysqlite" else url


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases or in-memory SQLite)."""
    url = _plain_sqlite(url)
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def anchor_sqlite_url(url: str, base_dir: Path) -> str:
    """``url`` with a relative SQLite path made absolute from ``base_dir``; any other URL as it is.

    A spec's ``storage: sqlite:///studies.db`` must name one file whatever folder the run starts
    in (resuming is rerunning the spec), as the spec's search space and objective paths do.
    """
    text = _plain_sqlite(url.strip())
    path = sqlite_path(text)
    if path is None or path.is_absolute() or "uri=true" in text.partition("?")[2].lower():
        return url  # (a URI option is left as written for open_storage to refuse: tuner takes none)
    query = text[len("sqlite:///"):].partition("?")[1:]
    return "sqlite:///" + os.path.normpath(Path(base_dir) / path) + "".join(query)


#: Query options of a database URL that carry a password (libpq reads ``?password=``).
_PASSWORD_OPTIONS = frozenset({"password", "passwd", "pwd"})


def redact(url: str) -> str:
    """The URL with any password hidden (``user:***@``, ``?password=***``), for messages."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if any(k.lower() in _PASSWORD_OPTIONS for k in parsed.query):
            parsed = parsed.set(query={k: "***" if k.lower() in _PASSWORD_OPTIONS else v
                                       for k, v in parsed.query.items()})
        return parsed.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")  # as the user:*** reads
    except Exception:  # noqa: BLE001 - a message helper must never fail
        return url


def redact_urls(value: Any) -> Any:
    """A JSON value (a stored spec) with the password of every URL in it hidden (:func:`redact`).

    The spec a study records (``tuner:spec``) is served by the dashboard, written into reports
    and printed by ``tuner show --json``: its ``storage:`` (or a ``pretrained: {storage: ...}``)
    once kept the database password as typed. A string without a password is left as it is
    (:func:`redact` would rewrite some of them, ``%``-quoting included).
    """
    if isinstance(value, dict):
        return {k: redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_urls(v) for v in value]
    if isinstance(value, str) and "://" in value and _has_password(value):
        return redact(value)
    return value


def _has_password(url: str) -> bool:
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return False
    return parsed.password is not None or any(k.lower() in _PASSWORD_OPTIONS for k in parsed.query)


def check_url(url: str) -> None:
    """Raise :class:`StorageError` for a URL tuner would refuse to open (its form alone: nothing is
    opened or created), for ``tuner validate`` to say what ``tuner run`` would."""
    _check_url(resolve_url(url))


def _check_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(f"storage URL {url!r} is not valid; use sqlite:///path.db or postgresql+psycopg://user@host/db") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise StorageError(f"storage URL {redact(url)!r}: unsupported database {backend!r}; use sqlite:///path.db or postgresql+psycopg://user@host/db")
    if backend == "postgresql" and parsed.get_driver_name() not in ("psycopg", "psycopg2"):
        raise StorageError(f"storage URL {redact(url)!r}: driver {parsed.get_driver_name()!r} is not installed; use postgresql+psycopg://...")
    if backend == "sqlite" and parsed.host:
        raise StorageError(f"storage URL {url!r} is not valid; use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if backend == "sqlite" and parsed.query:
        # tuner opens SQLite files itself (WAL, its own busy timeout, read-only reads): an option
        # in the URL would be ignored, as SQLAlchemy only warns, so a `?timeout=` seemed to hold.
        raise StorageError(f"storage URL {url!r}: tuner opens SQLite files itself and takes no options "
                           f"({', '.join(sorted(parsed.query))}); drop the '?...' part")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(f"storage URL {url!r} is an in-memory database, which trial workers and later commands "
                           "cannot see; use a file: sqlite:///tuner.db")


def _sqlite_engine_kwargs(path: Path, readonly: bool = False) -> dict[str, Any]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=_SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if readonly and _empty(path):
            return conn  # switching an empty file to WAL writes its header: a read leaves the file as it was
        # WAL + NORMAL sync: readers never block the writer, and a killed process loses nothing
        # committed (only an OS crash can lose the last transactions).
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if readonly and _frozen(path):
                # A WAL file in a folder nobody may write: SQLite cannot create the shared-memory
                # file its readers need. With no -wal or -shm file nothing can be writing it, so
                # it is read as the immutable file it is.
                conn.close()
                return sqlite3.connect(_file_uri(path, "immutable=1"), uri=True, check_same_thread=False)
            # A read-only file (reports, the dashboard) cannot switch modes: read it as it is.
            return conn
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    return {"creator": connect}


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _file_uri(path: Path, option: str) -> str:
    """SQLite's ``file:`` URI of ``path`` with one query option (``mode=rw``, ``immutable=1``)."""
    return f"file:{urllib.parse.quote(str(path.resolve()))}?{option}"


def _frozen(path: Path) -> bool:
    """A database in a read-only folder with no -wal/-shm files beside it: no writer can exist."""
    side = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    return not os.access(path.parent, os.W_OK) and not any(p.exists() for p in side)


def _check_sqlite_path(url: str, path: Path, readonly: bool) -> None:
    """One-line errors for a SQLite file that cannot be read (``readonly``) or written."""
    try:
        exists = path.exists()
        if readonly and not exists:
            raise StorageError(f"no storage at {path}: run a study first, or pass --storage / TUNER_STORAGE")
        if not path.parent.exists():
            raise StorageError(f"storage {url}: folder {path.parent} does not exist; create it or choose another path")
        if exists and not path.is_file():
            raise StorageError(f"storage {path} is not a database file; pass a file path such as sqlite:///{path}/tuner.db")
        if exists and not readonly and not os.access(path, os.W_OK):
            raise StorageError(f"storage {path} is read-only; make it writable or pass another --storage")
        if exists and not readonly and not os.access(path.parent, os.W_OK):
            raise StorageError(f"storage {path} cannot be written: SQLite keeps its journal in folder {path.parent}, "
                               "which is read-only; make the folder writable or pass another --storage")
        if not exists and not os.access(path.parent, os.W_OK):
            raise StorageError(f"cannot create {path}: folder {path.parent} is not writable; pass another --storage")
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte, ...
        raise StorageError(f"storage {url[:100]!r}: {getattr(exc, 'strerror', None) or exc}; choose another path") from None


def _sqlite_open_problem(path: Path, readonly: bool) -> str:
    """What is wrong with a SQLite file that SQLite could not open, with the fix.

    Called after SQLite failed, where :func:`_check_sqlite_path` saw nothing wrong: root passes
    every ``os.access`` check, and special file systems (``/proc``, ``/sys``) refuse to create
    files that permissions allow. SQLite's own words ("unable to open database file") do not
    say why, and a SQLite file has no server to be "running and reachable". The OS is asked
    the same question (open or create the file) to get its reason; a file created to ask is
    removed again.
    """
    where = "choose a path in a folder you can write" if not readonly else "check the path"
    try:
        if not path.parent.is_dir():
            return f"folder {path.parent} does not exist or is not a folder; create it or {where}"
        if path.is_dir():
            return f"{path} is a folder, not a database file; pass a file path such as sqlite:///{path}/tuner.db"
        if path.exists():
            with open(path, "rb" if readonly else "r+b"):
                pass
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            os.unlink(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if path.exists():
            purpose = "reading" if readonly else "writing"
            return f"cannot open {path} for {purpose} ({reason}); {where}"
        return f"folder {path.parent} refuses a new file {path.name} ({reason}); {where}"
    return (f"SQLite cannot use {path} (its file system may not support SQLite's locks, or the -wal/-shm "
            f"files SQLite keeps beside it); {where}")


def _refuse_foreign_tables(url: str, path: Path | None, connect_args: dict[str, Any]) -> None:
    """Refuse a database whose tables under Optuna's names are another application's, before anything is written.

    Optuna creates only the tables that are missing and then reads and writes the ones it found:
    pointed at an application's database with a ``trials`` table of its own, a run added eleven
    tables, a study and a lease to it (and switched a SQLite file to WAL), then failed on
    ``no such column: trials.trial_id`` in every statement. A table of Optuna's needs at least
    its key columns, which every Optuna schema since 1.0 has had; an ``alembic_version`` table
    with no Optuna ``version_info`` beside it is another application's migrations (Optuna
    creates ``version_info`` first). Checked on every open but a trial worker's (the driver
    checked), on a connection of its own that changes nothing: read-only for a SQLite file.
    """
    clashes = _foreign_tables(url, path, connect_args)
    if clashes:
        raise StorageError(f"storage {redact(url)} belongs to another application ({'; '.join(clashes)}), "
                           "so tuner leaves it untouched; give tuner a database of its own, e.g. sqlite:///tuner.db")


def _foreign_tables(url: str, path: Path | None, connect_args: dict[str, Any]) -> list[str]:
    """What makes the database another application's (see :func:`_refuse_foreign_tables`); [] when nothing does."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from sqlalchemy.pool import NullPool

    if path is not None:
        if not path.is_file() or _empty(path):
            return []  # a new database: nothing to clash with
        uri = _file_uri(path, "mode=ro")
        engine = sa.create_engine("sqlite://", poolclass=NullPool,
                                  creator=lambda: sqlite3.connect(uri, uri=True, timeout=_SQLITE_BUSY_TIMEOUT_S))
    else:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            present = set(inspector.get_table_names())
            clashes = []
            for table in models.BaseModel.metadata.sorted_tables:
                if table.name in present:
                    keys = [*(c.name for c in table.primary_key.columns),
                            *sorted({f.parent.name for f in table.foreign_keys})]
                    have = {c["name"] for c in inspector.get_columns(table.name)}
                    if missing := [k for k in keys if k not in have]:
                        clashes.append(f"its table {table.name} has no column {', '.join(missing)}")
            if "alembic_version" in present and "version_info" not in present:
                clashes.append("its table alembic_version records migrations that are not Optuna's")
            return clashes
    except sa.exc.SQLAlchemyError:
        if path is not None:
            return []  # SQLite could not read the file this way: the open that follows says why
        raise  # a server that cannot be reached: reported as the open would report it
    finally:
        engine.dispose()


def open_storage(url: str | None = None, *, readonly: bool = False, worker: bool = False) -> "optuna.storages.RDBStorage":
    """Open (and create, unless ``readonly``) the storage at ``url``; cached per process.

    ``worker=True`` skips schema creation and version checks: the driver already did both,
    and trial workers open the storage once per process.
    """
    url = resolve_url(url)
    key = (url, readonly)
    if key in _CACHE:
        return _CACHE[key]
    _check_url(url)
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        _check_sqlite_path(url, path, readonly)
        engine_kwargs = _sqlite_engine_kwargs(path, readonly)
    elif url.startswith("postgresql"):
        engine_kwargs = {"pool_size": 4, "max_overflow": 4, "pool_pre_ping": True, "pool_recycle": 300,
                         "connect_args": {"connect_timeout": 10}}
    # Writers ride out a database restart (tuner/_retry_storage.py); readers such as the
    # dashboard answer at once instead, and the next request tries again.
    from tuner._retry_storage import RetryingRDBStorage, TrialReadingRDBStorage

    storage_cls: type[optuna.storages.RDBStorage] = TrialReadingRDBStorage if readonly else RetryingRDBStorage
    try:
        if not worker:
            _refuse_foreign_tables(url, path, engine_kwargs.get("connect_args", {}))
        storage = init_rdb_storage(storage_cls, url, engine_kwargs=engine_kwargs,
                                   skip_compatibility_check=worker, skip_table_creation=worker or readonly)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        # Optuna wraps the driver's error in StorageInternalError when it reads the schema version.
        reason, fix = _database_problem(exc, path, readonly)
        raise StorageError(f"cannot open storage {redact(url)}: {reason}; {fix}") from None
    except ImportError:  # Optuna's message when the URL's database driver is missing
        raise StorageError(f"storage URL {redact(url)!r}: its database driver is not installed; "
                           "use sqlite:///path.db or postgresql+psycopg://user@host/db") from None
    except RuntimeError as exc:  # optuna's schema-version mismatch
        raise StorageError(f"storage {redact(url)}: {str(exc).splitlines()[0]}") from None
    if not readonly and not worker:
        ensure_indexes(storage)
    _CACHE[key] = storage
    return storage


def _database_problem(exc: BaseException, path: Path | None, readonly: bool) -> tuple[str, str]:
    """What the database said (its first line) and the fix, for a database error of ``exc``'s chain."""
    import sqlalchemy.exc

    from tuner._retry_storage import _SQLITE_ERROR, _SQLITE_FULL, _sqlite_code

    cause = next((e for e in exception_chain(exc) if isinstance(e, sqlalchemy.exc.SQLAlchemyError)), exc)
    lines = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    reason = lines[0] if lines else type(cause).__name__
    if "version_info" in reason:  # Optuna's first table is missing
        fix = "it holds no tuner studies; run a study first or correct the URL"
    elif "database" in reason and "does not exist" in reason:
        fix = "create it first (e.g. createdb) or correct the URL"
    elif _sqlite_code(cause) == _SQLITE_FULL:
        fix = (f"folder {path.parent if path else '?'} has no room left; free space there and run the command "
               "again: finished trials are kept")
    elif isinstance(cause, sqlalchemy.exc.OperationalError) and _sqlite_code(cause) == _SQLITE_ERROR:
        fix = "check that the URL points at a tuner (Optuna) database"  # no such table or column: not an open problem
    elif path is not None and isinstance(cause, sqlalchemy.exc.OperationalError):
        fix = _sqlite_open_problem(path, readonly)
    elif isinstance(cause, sqlalchemy.exc.OperationalError):
        fix = "check that the database is running and reachable"
    else:
        fix = "check that the URL points at a tuner (Optuna) database"
    return reason, fix


def storage_failure(exc: BaseException, flag: str | None = None, *, url: str | None = None) -> StorageError | None:
    """A database error that reached a command, as one line naming the storage; None when ``exc`` is none.

    Readers (``tuner ls``, ``show``, ``best``, the dashboard) ask the database after it opened,
    and a database that lost its server, or whose tables are not quite Optuna's (a column
    dropped by hand), failed them with SQLAlchemy's traceback. The storage named is ``url``,
    else the one this process opened last (a command opens one), else the one ``flag`` resolves to.
    """
    if "sqlalchemy" not in sys.modules:  # nothing has touched a database (and the CLI stays light)
        return None
    import sqlalchemy.exc

    if not any(isinstance(e, sqlalchemy.exc.SQLAlchemyError) for e in exception_chain(exc)):
        return None
    url = url or (next(reversed(_CACHE))[0] if _CACHE else resolve_url(flag))
    reason, fix = _database_problem(exc, sqlite_path(url), readonly=True)
    return StorageError(f"storage {redact(url)}: {reason}; {fix}")


def fold_in_sqlite_log(storage: "optuna.storages.RDBStorage", *, wait_s: float = 2.0) -> None:
    """Copy SQLite's write-ahead log into the database file and empty it; other databases: nothing.

    In WAL mode recent writes live in ``NAME.db-wal`` beside the file until a checkpoint, which
    SQLite runs by itself only every 1,000 pages or when the last connection closes cleanly. A run
    ends with its driver's connections still open (``tuner.run`` returns the study; Ray's workers
    may outlive the driver for a moment), so without this a copy of ``tuner.db`` made after the
    run, a backup or a file sent to another machine, lacks the run's trials. ``TRUNCATE`` also
    leaves the log empty, so a database file deleted by hand cannot meet a stale log later.
    It uses a connection of its own, which waits at most ``wait_s`` for a reader to finish (not
    the pool's 60 s busy timeout) and never creates the file; best effort, since the log is
    still a correct part of the database when it cannot be folded in.
    """
    path = sqlite_path(storage.url)
    if path is None:
        return
    try:
        conn = sqlite3.connect(_file_uri(path, "mode=rw"), uri=True, timeout=wait_s)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:  # busy past wait_s, or no such file: the log stays a valid part of the database
        pass


def _lost_init_race(exc: BaseException) -> bool:
    """Whether ``exc`` is another process creating the same new database's schema at this moment.

    Optuna's ``RDBStorage`` creates its tables, its version row and its Alembic stamp with
    check-then-create steps, so two processes opening one brand-new database at once (two
    ``tuner run`` on a cluster's fresh PostgreSQL, a run and a dashboard, a run and a plain
    Optuna script) collide: PostgreSQL answers ``duplicate key ... pg_type_typname_nsp_index``
    or ``relation ... already exists``, SQLite ``table ... already exists`` or ``UNIQUE
    constraint failed: alembic_version``. Each of these means the other side got there first.
    """
    import sqlalchemy.exc

    return any(isinstance(e, sqlalchemy.exc.IntegrityError)
               or (isinstance(e, sqlalchemy.exc.SQLAlchemyError) and "already exists" in str(e))
               for e in exception_chain(exc))  # Optuna wraps the driver's error in StorageInternalError


def init_rdb_storage(storage_cls: "type[optuna.storages.RDBStorage]", url: str, **kwargs: Any) -> "optuna.storages.RDBStorage":
    """``storage_cls(url, **kwargs)``, tried again while it loses a schema-creation race.

    A retry rather than a lock because the other party need not be tuner (a plain Optuna
    script takes no lock of ours), and a retry is enough: once the winner has created an
    object, the loser's next check finds it and skips it, so each attempt gets further
    and Optuna's own steps are idempotent on a finished schema.
    """
    deadline = time.monotonic() + _INIT_RACE_WINDOW_S
    delay = 0.05
    while True:
        try:
            return storage_cls(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only a lost race is retried; the rest is raised as it is
            if not _lost_init_race(exc) or time.monotonic() >= deadline:
                raise
        # The failed attempt's engine holds pooled connections in reference cycles: close them
        # now rather than whenever the collector runs (each racer may lose several times).
        gc.collect()
        time.sleep(delay * (1 + random.random()))  # jitter: racers that collided should not collide again
        delay = min(delay * 2, 1.0)


#: Indexes tuner adds to Optuna's tables (name, table, columns). Optuna indexes trials by study
#: only, so counting a study's trials by state, sorting its trials by value and filtering them
#: by a parameter range each read every row of the study; with these the dashboard's table and
#: ``tuner ls`` read an index instead (measured in bench/dashboard_scale.py). They hold no data
#: of their own and Optuna's queries and migrations ignore them.
_INDEXES = (
    ("ix_tuner_trials_study_state", "trials", ("study_id", "state", "datetime_start", "datetime_complete")),
    ("ix_tuner_trial_values_sort", "trial_values", ("objective", "value", "trial_id")),
    ("ix_tuner_trial_params_filter", "trial_params", ("param_name", "param_value", "trial_id")),
)


def ensure_indexes(storage: "optuna.storages.RDBStorage") -> bool:
    """Create tuner's indexes if missing; False (and nothing changed) when the database is read-only."""
    import sqlalchemy as sa

    try:
        with storage.engine.begin() as conn:
            for name, table, columns in _INDEXES:
                conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})"))
    except sa.exc.SQLAlchemyError:
        return False
    return True


class TrialOutcome(NamedTuple):
    """A trial as the driver ranks it: no parameters, attributes or curve."""

    number: int
    state: str           # Optuna's TrialState name
    value: float | None  # the first objective's value (None unless the trial has one)
    attr: Any            # the requested system attribute, decoded (None when the trial has none)


def trial_outcomes(storage: Any, study_id: int, states: Sequence[str], system_attr: str) -> list[TrialOutcome]:
    """Number, state, first value and one system attribute of the study's trials in ``states``.

    One query on Optuna's tables, where reading the trials through Optuna loads every
    parameter, attribute and intermediate value of each (8 s for 20,000 trials on SQLite, when a
    resumed run ranks its checkpoints). ``storage``: an RDB storage, or Optuna's cache over one.
    """
    import json

    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    from tuner._retry_storage import call_with_retries

    t, v, a = m.TrialModel, m.TrialValueModel, m.TrialSystemAttributeModel
    query = (sa.select(t.number, t.state, v.value, v.value_type, a.value_json)
             .outerjoin(v, sa.and_(v.trial_id == t.trial_id, v.objective == 0))
             .outerjoin(a, sa.and_(a.trial_id == t.trial_id, a.key == system_attr))
             .where(t.study_id == study_id, t.state.in_([m.TrialState[s] for s in states]))
             .order_by(t.number))

    def read(database: "optuna.storages.RDBStorage") -> list[TrialOutcome]:
        with database.engine.connect() as conn:
            return [TrialOutcome(number, state.name,
                                 None if value_type is None else v.stored_repr_to_value(value, value_type),
                                 None if attr is None else json.loads(attr))
                    for number, state, value, value_type, attr in conn.execute(query)]

    return call_with_retries(getattr(storage, "_backend", storage), "trial_outcomes", read)


def waiting_trial_ids(storage: Any, study_id: int) -> list[int]:
    """Ids of the study's WAITING (enqueued, not yet taken) trials, oldest first.

    One prebuilt indexed query, asked once per new trial by the driver, where Optuna's
    ``get_all_trials(states=(WAITING,))`` builds its statements anew and, when none is waiting
    (nearly always), checks with a second query that the study exists: 0.54 ms of CPU per call
    against 0.08 (SQLite, a 400-trial study). ``storage``: an RDB storage, or Optuna's cache
    over one.
    """
    database = getattr(storage, "_backend", storage)
    query = _waiting_query()

    def read(db: "optuna.storages.RDBStorage") -> list[int]:
        with db.engine.connect() as conn:
            return list(conn.execute(query, {"study_id": study_id}).scalars())

    from tuner._retry_storage import call_with_retries

    return call_with_retries(database, "waiting_trial_ids", read)


@functools.lru_cache(maxsize=1)
def _waiting_query() -> Any:
    """Built once: SQLAlchemy then reuses its compiled form (a bound study id, not a literal)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    t = m.TrialModel
    return (sa.select(t.trial_id).where(t.study_id == sa.bindparam("study_id"), t.state == m.TrialState.WAITING)
            .order_by(t.trial_id))


def ranked_trial_ids(conn: Any, study_id: int, state: str, direction: str | None, *, limit: int) -> list[int]:
    """Ids of the study's ``state`` trials, best first by the first objective (``direction``), else newest first.

    One query on ``conn`` (a SQLAlchemy connection to the storage's engine). Ties go to the lower
    number, as a stable sort of Optuna's trials does. Infinite values are stored as NULL with a
    type: they rank by that type, so +inf leads a maximisation and trails a minimisation.
    """
    import sqlalchemy as sa
    from optuna.storages._rdb import models as m

    t, v = m.TrialModel, m.TrialValueModel
    kind = v.TrialValueType
    query = sa.select(t.trial_id).where(t.study_id == study_id, t.state == m.TrialState[state])
    if direction is None:
        query = query.order_by(t.number.desc())
    else:
        first, last = (kind.INF_POS, kind.INF_NEG) if direction == "maximize" else (kind.INF_NEG, kind.INF_POS)
        rank = sa.case((v.value_type == first, 0), (v.value_type == last, 2), else_=1)
        query = (query.join(v, sa.and_(v.trial_id == t.trial_id, v.objective == 0))
                 .order_by(rank, v.value.desc() if direction == "maximize" else v.value.asc(), t.number))
    # a limit past what SQL binds (``tuner show --top 10**20``) means all of them
    return [int(i) for i in conn.execute(query.limit(min(limit, SQL_INT_MAX))).scalars()]


def study_overview(storage: "optuna.storages.RDBStorage") -> list[dict[str, Any]]:
    """All studies with trial counts by state, best first-objective value and last activity, and
    ``stopped_unfinished``: how many of the FAIL trials their run ended unfinished.

    A fixed number of grouped queries whatever the number of studies and trials (``tuner ls``
    and the dashboard's studies page must stay fast at 100,000 trials).
    """
    import json

    import sqlalchemy as sa
    from optuna.storages._rdb import models as m
    from optuna.study import StudyDirection

    out: dict[int, dict[str, Any]] = {}
    with storage.engine.connect() as conn:
        for sid, name in conn.execute(sa.select(m.StudyModel.study_id, m.StudyModel.study_name).order_by(m.StudyModel.study_id)):
            out[sid] = {"study_id": sid, "name": name, "directions": [], "counts": {}, "best": None,
                        "last_activity": None, "system_attrs": {}, "metrics": None, "stopped_unfinished": 0}
        for sid, objective, direction in conn.execute(sa.select(
                m.StudyDirectionModel.study_id, m.StudyDirectionModel.objective, m.StudyDirectionModel.direction)
                .order_by(m.StudyDirectionModel.study_id, m.StudyDirectionModel.objective)):
            if sid in out:
                out[sid]["directions"].append(direction.name.lower())
        for sid, key, value in conn.execute(sa.select(
                m.StudySystemAttributeModel.study_id, m.StudySystemAttributeModel.key, m.StudySystemAttributeModel.value_json)):
            if sid in out:
                out[sid]["system_attrs"][key] = json.loads(value)
        t = m.TrialModel
        for sid, state, n, last_start, last_end in conn.execute(sa.select(
                t.study_id, t.state, sa.func.count(), sa.func.max(t._datetime_start_utc), sa.func.max(t._datetime_complete_utc))
                .group_by(t.study_id, t.state)):
            if sid not in out:
                continue
            row = out[sid]
            row["counts"][state.name] = n
            for ts in (last_start, last_end):
                if ts is not None and (row["last_activity"] is None or ts > row["last_activity"]):
                    row["last_activity"] = ts
        v = m.TrialValueModel
        for sid, lo, hi in conn.execute(sa.select(t.study_id, sa.func.min(v.value), sa.func.max(v.value))
                                        .join(v, v.trial_id == t.trial_id)
                                        .where(v.objective == 0, t.state == m.TrialState.COMPLETE)
                                        .group_by(t.study_id)):
            if sid in out and out[sid]["directions"]:
                maximize = out[sid]["directions"][0] == StudyDirection.MAXIMIZE.name.lower()
                out[sid]["best"] = hi if maximize else lo
        from tuner.engine._study import stopped_counts

        for sid, n in stopped_counts(conn).items():
            if sid in out:
                out[sid]["stopped_unfinished"] = n
    for row in out.values():
        row["metrics"] = row["system_attrs"].get("study:metric_names")
    return list(out.values())
