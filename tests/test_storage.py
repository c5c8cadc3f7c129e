"""Storage URLs and settings; PostgreSQL end to end on the real server."""

from __future__ import annotations

import multiprocessing.synchronize
import os
import sqlite3
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from optuna.trial import TrialState

import tuner
from tests import objectives
from tests._study_read import refuse_optuna_trial_reads
from tests.conftest import small_disk_at
from tuner import storage as st
from tuner.engine import _attrs


def test_resolve_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    assert st.resolve_url() == "sqlite:///tuner.db"
    assert st.resolve_url(None, "sqlite:///spec.db") == "sqlite:///spec.db"
    monkeypatch.setenv("TUNER_STORAGE", "sqlite:///env.db")
    assert st.resolve_url(None, "sqlite:///spec.db") == "sqlite:///env.db"
    assert st.resolve_url("sqlite:///flag.db", "sqlite:///spec.db") == "sqlite:///flag.db"
    assert st.resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_redact_urls_hides_every_password_and_leaves_other_text_as_it_is() -> None:
    # What a study stores of its spec: a password as user:pw@ or libpq's ?password= was kept as typed.
    spec = {"storage": "postgresql+psycopg://tuner:S3cret@db:5432/studies",
            "task_args": {"pretrained": {"study": "pre", "storage": "postgresql+psycopg://u@db/s?password=S3cret"},
                          "dataset": "data/my%20file.csv", "tags": ["sqlite:////tmp/a b.db", "obj.py:f"]},
            "objective": "tests.objectives:quadratic", "n_trials": 3}
    shown = st.redact_urls(spec)
    assert "S3cret" not in str(shown)
    assert shown["storage"] == "postgresql+psycopg://tuner:***@db:5432/studies"
    assert shown["task_args"]["pretrained"]["storage"] == "postgresql+psycopg://u@db/s?password=***"
    assert {k: v for k, v in shown.items() if k not in ("storage", "task_args")} == \
        {k: v for k, v in spec.items() if k not in ("storage", "task_args")}
    assert shown["task_args"]["dataset"] == "data/my%20file.csv"
    assert shown["task_args"]["tags"] == spec["task_args"]["tags"]


def test_sqlite_is_wal_with_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    storage = st.open_storage(url)
    optuna.create_study(storage=storage, study_name="x")
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


@pytest.mark.parametrize("url,match", [
    ("not a url", "not valid"),
    ("oracle://u@h/db", "unsupported database 'oracle'"),
    ("postgresql+asyncpg://u@h/db", "driver 'asyncpg' is not installed"),
    ("sqlite:////nonexistent-dir/x.db", "does not exist"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot open storage"),
    # tuner opens SQLite files itself: an option SQLAlchemy would only warn about and ignore is refused
    ("sqlite:////tmp/x.db?timeout=5", r"takes no options \(timeout\); drop the '\?\.\.\.' part"),
    ("sqlite:////tmp/x.db?mode=ro&uri=true", r"no options \(mode, uri\)"),
])
def test_bad_storage_urls_are_one_line_errors(url: str, match: str) -> None:
    with pytest.raises(tuner.StorageError, match=match) as info:
        st.open_storage(url)
    assert "\n" not in str(info.value)


def test_sqlite_files_sqlite_cannot_open_are_explained_not_sent_to_a_server(tmp_path: Path) -> None:
    # What open_storage says after SQLite's bare "unable to open database file".
    made = tmp_path / "made.db"
    assert "does not exist" in st._sqlite_open_problem(tmp_path / "no" / "x.db", readonly=False)
    assert "is a folder" in st._sqlite_open_problem(tmp_path, readonly=False)
    assert "running and reachable" not in st._sqlite_open_problem(made, readonly=False)
    assert not made.exists()  # a file created to ask the OS is removed again
    if Path("/proc/self").is_dir():
        assert st._sqlite_open_problem(Path("/proc/x.db"), readonly=False) == (
            "folder /proc refuses a new file x.db (No such file or directory); choose a path in a folder you can write")
        with pytest.raises(tuner.StorageError) as info:
            st.open_storage("sqlite:////proc/x.db")
        assert str(info.value) == ("cannot open storage sqlite:////proc/x.db: unable to open database file; folder "
                                   "/proc refuses a new file x.db (No such file or directory); choose a path in a "
                                   "folder you can write")


def test_anchor_sqlite_url_makes_relative_sqlite_paths_absolute(tmp_path: Path) -> None:
    assert st.anchor_sqlite_url("sqlite:///x.db", tmp_path) == f"sqlite:///{tmp_path / 'x.db'}"
    assert (st.anchor_sqlite_url("sqlite:///../y/x.db?timeout=5", tmp_path)
            == f"sqlite:///{tmp_path.parent / 'y' / 'x.db'}?timeout=5")
    for url in ("sqlite:////abs/x.db", "sqlite:///:memory:", "sqlite://", "postgresql+psycopg://u@h/db",
                "sqlite:///file:x.db?mode=ro&uri=true"):
        assert st.anchor_sqlite_url(url, tmp_path) == url


def test_sqlite_pysqlite_urls_are_sqlite_urls_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite+pysqlite://`` names SQLite's default driver, as ``sqlite://`` does: tuner's SQLite
    handling skipped it, so ``tuner ls`` left an empty file behind, a missing folder was "check
    that the database is running", and runs got no WAL, no busy timeout and no anchoring of a
    relative path to the spec's folder."""
    from tuner._api import validate

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    assert st.resolve_url("sqlite+pysqlite:///x.db") == "sqlite:///x.db"
    assert st.sqlite_path("SQLite+PySQLite:///x.db") == Path("x.db")
    assert st.anchor_sqlite_url("sqlite+pysqlite:///x.db", tmp_path / "s") == f"sqlite:///{tmp_path / 's' / 'x.db'}"
    with pytest.raises(tuner.StorageError, match="no storage at"):
        st.open_storage("sqlite+pysqlite:///none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(tuner.StorageError, match="folder no does not exist"):
        st.open_storage("sqlite+pysqlite:///no/x.db")
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "s.yaml").write_text("name: s\nobjective: tests.objectives:quadratic\n"
                                     "storage: sqlite+pysqlite:///s.db\nsearch_space: {params: {x: {float: [0, 1]}}}\n")
    url = validate(spec_dir / "s.yaml").storage
    assert st.sqlite_path(url) == spec_dir / "s.db"
    optuna.create_study(storage=st.open_storage(url), study_name="x")
    with sqlite3.connect(spec_dir / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with st.open_storage(url).engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_read_only_database_file(tmp_path: Path) -> None:
    """A database file the user cannot write: a clear error, the file untouched.

    Root writes any mode-0444 file, so under root the file is made immutable (chattr +i),
    which binds root too.
    """
    import subprocess

    path = tmp_path / "ro.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="keep")
    before = path.read_bytes()
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        st._CACHE.clear()
        with pytest.raises(tuner.StorageError, match="read-only"):
            st.open_storage(f"sqlite:///{path}")
        assert path.read_bytes() == before
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_readonly_open_of_missing_file_says_run_first(tmp_path: Path) -> None:
    with pytest.raises(tuner.StorageError, match="no storage at"):
        st.open_storage(f"sqlite:///{tmp_path / 'none.db'}", readonly=True)
    assert not (tmp_path / "none.db").exists()


def test_reading_an_empty_file_leaves_it_empty(tmp_path: Path) -> None:
    """`tuner show x --storage sqlite:///empty.db` said no study, and wrote a WAL header into the file."""
    from click.testing import CliRunner

    from tuner.cli import main

    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (["show", "x"], ["ls"], ["trial", "x", "0"]):
        out = CliRunner().invoke(main, [*command, "--storage", f"sqlite:///{empty}"])
        assert out.exit_code in (0, 2) and "Traceback" not in out.output, out.output
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


@pytest.mark.usefixtures("ray_cluster")
def test_postgresql_end_to_end(postgres_url: str) -> None:
    spec = {"name": "pg", "search_space": {"params": {"x": {"float": [-5.0, 5.0]}}}, "n_trials": 6,
            "concurrency": 2, "metric": "loss", "pruner": {"name": "median", "args": {"n_startup_trials": 2}},
            "seed": 0}
    study = tuner.run(spec, objectives.curve, storage=postgres_url)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 6
    # A second process-independent read through a new engine sees the same data.
    fresh = optuna.load_study(study_name="pg", storage=postgres_url)
    trials = fresh.get_trials()
    assert len(trials) == 6
    assert all(t.system_attrs[_attrs.WORKER]["pid"] > 0 for t in trials)
    assert all(t.intermediate_values for t in trials)
    assert [s.name for s in tuner.list_studies(postgres_url)] == ["pg"]
    resumed = tuner.run({**spec, "n_trials": 8}, objectives.curve, storage=postgres_url)
    assert len(resumed.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8


def test_polling_a_study_by_url_in_tests_leaves_no_connection_open(postgres_url: str) -> None:
    """The tests' study reader (tests/_study_read.py) closes what it opens: polling with plain
    ``optuna.load_study(storage=url)`` once ran the CI server out of connections."""
    import psycopg

    from tests._study_read import read_trials

    storage = optuna.storages.RDBStorage(postgres_url)
    optuna.create_study(study_name="polled", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.remove_session()
    storage.engine.dispose()
    database = postgres_url.rsplit("/", 1)[1]
    for _ in range(30):
        assert len(read_trials(postgres_url, "polled")) == 2
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        (open_connections,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                           (database,)).fetchone()
    assert open_connections == 0


def _index_names(url: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {ix["name"] for table in ("trials", "trial_values", "trial_params") for ix in inspector.get_indexes(table)}
    finally:
        engine.dispose()


def test_tuner_indexes_are_created_with_the_storage(tmp_path: Path, postgres_url: str) -> None:
    wanted = {name for name, _table, _cols in st._INDEXES}
    sqlite_url = f"sqlite:///{tmp_path / 'ix.db'}"
    for url in (sqlite_url, postgres_url):
        st.open_storage(url)
        assert wanted <= _index_names(url), url
        assert st.ensure_indexes(st.open_storage(url)) is True  # idempotent


def test_indexes_on_a_read_only_database_are_skipped_quietly(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "plain.db"
    optuna.create_study(study_name="plain", storage=f"sqlite:///{path}")  # made by plain Optuna: no tuner index
    path.chmod(0o444)
    immutable = os.geteuid() == 0  # root writes mode-0444 files; an immutable file binds root too
    if immutable:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        storage = st.open_storage(f"sqlite:///{path}", readonly=True)
        assert st.ensure_indexes(storage) is False
        assert optuna.load_study(study_name="plain", storage=storage).study_name == "plain"
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        st._CACHE.clear()


def _open_after(url: str, barrier: "multiprocessing.synchronize.Barrier", results: "multiprocessing.Queue[str]") -> None:
    """One of several processes that open the same new database at the same moment."""
    barrier.wait(timeout=60)
    try:
        st.open_storage(url)
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which names it
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_one_new_database_at_once_all_get_it(backend: str, tmp_path: Path,
                                                               request: pytest.FixtureRequest) -> None:
    """Two runs (or a run and a dashboard) started together on a brand-new database race to
    create Optuna's schema; the losers must wait for it, not exit with "already exists" or
    PostgreSQL's ``pg_type_typname_nsp_index`` duplicate (seen on a fresh clone's fault test)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for attempt in range(2):  # the race is lost in most rounds without the retry; two make it near-certain
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        else:
            url = request.getfixturevalue("postgres_url") if attempt == 0 else _second_pg_database(request)
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_after, args=(url, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=120) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["ok"] * 4
        engine = optuna.storages.RDBStorage(url, skip_table_creation=True).engine
        try:
            with engine.connect() as conn:
                import sqlalchemy as sa

                assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
                assert conn.execute(sa.text("SELECT count(*) FROM version_info")).scalar() == 1
        finally:
            engine.dispose()


def _second_pg_database(request: pytest.FixtureRequest) -> str:
    """Another fresh PostgreSQL database, dropped when the test ends."""
    import uuid

    import psycopg

    name = f"tuner_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def test_fold_in_sqlite_log_leaves_the_file_whole_and_the_log_empty(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    storage = st.open_storage(f"sqlite:///{db}")
    study = optuna.create_study(storage=storage, study_name="f")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=5)
    wal = db.with_name("f.db-wal")
    assert wal.stat().st_size > 0  # the trials are in the log so far, not in the file
    st.fold_in_sqlite_log(storage)
    assert wal.stat().st_size == 0
    copy = tmp_path / "copy" / "f.db"
    copy.parent.mkdir()
    copy.write_bytes(db.read_bytes())
    assert len(optuna.load_study(study_name="f", storage=f"sqlite:///{copy}").get_trials()) == 5
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)  # the storage still works after it
    assert len(study.get_trials()) == 6


def test_fold_in_sqlite_log_waits_briefly_for_a_reader_then_gives_up(tmp_path: Path) -> None:
    import time

    db = tmp_path / "r.db"
    storage = st.open_storage(f"sqlite:///{db}")
    study = optuna.create_study(storage=storage, study_name="r")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM trials").fetchone()  # a read snapshot the log must keep
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    started = time.monotonic()
    st.fold_in_sqlite_log(storage, wait_s=0.5)
    assert time.monotonic() - started < 10  # not the 60 s busy timeout
    reader.execute("COMMIT")
    reader.close()
    assert len(study.get_trials()) == 3


def test_fold_in_sqlite_log_never_creates_a_database_file(tmp_path: Path) -> None:
    db = tmp_path / "gone.db"
    storage = st.open_storage(f"sqlite:///{db}")
    optuna.create_study(storage=storage, study_name="g")
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    st.fold_in_sqlite_log(storage)
    assert not db.exists()


def test_fold_in_sqlite_log_leaves_postgresql_alone(postgres_url: str) -> None:
    storage = st.open_storage(postgres_url)
    optuna.create_study(storage=storage, study_name="p")
    st.fold_in_sqlite_log(storage)  # a no-op there: it neither raises nor harms the database
    assert optuna.load_study(study_name="p", storage=storage).study_name == "p"


def _mixed_study(url: str) -> optuna.Study:
    """A study with a trial in every state, values finite and infinite, and one system attribute on some."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(study_name="mixed", storage=st.open_storage(url), direction="maximize")
    dist = {"x": FloatDistribution(0.0, 1.0)}
    rows: list[tuple[TrialState, float | None, dict | None]] = [
        (TrialState.COMPLETE, 0.25, {"trial_dir": "/runs/t0"}), (TrialState.PRUNED, None, {"trial_dir": "/runs/t1"}),
        (TrialState.FAIL, None, None), (TrialState.COMPLETE, float("inf"), {"trial_dir": "/runs/t3"}),
        (TrialState.COMPLETE, -1.5, None), (TrialState.PRUNED, None, None)]
    for state, value, worker in rows:
        study.add_trial(create_trial(params={"x": 0.5}, distributions=dist, state=state, value=value,
                                     system_attrs={_attrs.WORKER: worker} if worker else {}))
    study.enqueue_trial({"x": 0.1})  # WAITING
    study.ask()  # takes the WAITING one: RUNNING
    study.enqueue_trial({"x": 0.2})  # WAITING
    return study


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trial_counts_are_one_query_with_optunas_answers(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = _mixed_study(url)
    storage = st.open_storage(url)
    sid = study._study_id
    cases = [None, TrialState.COMPLETE, (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.RUNNING,),
             (TrialState.WAITING, TrialState.FAIL), ()]
    expected = [len(storage.get_all_trials(sid, deepcopy=False, states=c if not isinstance(c, TrialState) else (c,)))
                for c in cases]
    assert expected == [8, 3, 5, 1, 2, 0]
    refuse_optuna_trial_reads(monkeypatch)
    assert [storage.get_n_trials(sid, c) for c in cases] == expected
    with pytest.raises(KeyError):
        storage.get_n_trials(sid + 100)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trial_outcomes_reads_number_state_first_value_and_one_attribute(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = _mixed_study(url)
    states = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
    expected = [st.TrialOutcome(t.number, t.state.name, t.values[0] if t.values else None,
                                t.system_attrs.get(_attrs.WORKER))
                for t in study.get_trials(deepcopy=False) if t.state.name in states]
    assert [o.state for o in expected] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "COMPLETE", "PRUNED", "RUNNING"]
    assert expected[3].value == float("inf") and expected[0].attr == {"trial_dir": "/runs/t0"}
    refuse_optuna_trial_reads(monkeypatch)
    for storage in (study._storage, st.open_storage(url), st.open_storage(url, readonly=True)):  # cache, writer, reader
        assert st.trial_outcomes(storage, study._study_id, states, _attrs.WORKER) == expected
    assert [o.number for o in st.trial_outcomes(study._storage, study._study_id, ("PRUNED",), _attrs.WORKER)] == [1, 5]
    assert st.trial_outcomes(study._storage, study._study_id + 100, states, _attrs.WORKER) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_waiting_trial_ids_are_the_enqueued_trials_not_yet_taken_oldest_first(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="w", storage=st.open_storage(url))
    neighbour = optuna.create_study(study_name="n", storage=study._storage)
    assert st.waiting_trial_ids(study._storage, study._study_id) == []
    neighbour.enqueue_trial({"x": 9.0})  # another study's queue must not leak in
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # COMPLETE trials
    for x in (0.25, 0.5, 0.75):
        study.enqueue_trial({"x": x})
    taken = study.ask()  # Optuna's own ask takes the oldest waiting trial
    assert taken.suggest_float("x", 0, 1) == 0.25
    waiting = [t._trial_id for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))]
    assert len(waiting) == 2
    refuse_optuna_trial_reads(monkeypatch)
    for storage in (study._storage, st.open_storage(url), st.open_storage(url, readonly=True)):  # cache, writer, reader
        assert st.waiting_trial_ids(storage, study._study_id) == waiting
    assert st.waiting_trial_ids(study._storage, study._study_id + 100) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_new_trials_are_created_as_optuna_creates_them_without_its_orm(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.storages import RDBStorage

    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    writer = st.open_storage(url)
    a = optuna.create_study(study_name="a", storage=writer)
    b = optuna.create_study(study_name="b", storage=writer)
    through_orm = []
    real_prepare = RDBStorage._get_prepared_new_trial
    monkeypatch.setattr(RDBStorage, "_get_prepared_new_trial",
                        lambda self, *args: (through_orm.append(args[1]), real_prepare(self, *args))[1])

    made = [writer._create_new_trial(a._study_id), writer._create_new_trial(b._study_id),
            writer._create_new_trial(a._study_id)]
    made_ids = [a._storage.create_new_trial(a._study_id), b._storage.create_new_trial(b._study_id)]  # Optuna's cache
    assert through_orm == []  # none of them went through Optuna's ORM

    plain = RDBStorage(url)  # Optuna's own storage reads back what was written
    for frozen in made:
        assert plain.get_trial(frozen._trial_id) == frozen  # number, state, start time, empty rest
        assert frozen.state == TrialState.RUNNING and frozen.datetime_complete is None
    assert [t.number for t in plain.get_all_trials(a._study_id)] == [0, 1, 2]  # numbered per study
    assert [t.number for t in plain.get_all_trials(b._study_id)] == [0, 1]
    assert plain.get_trial(made_ids[0]).number == 2 and plain.get_trial(made_ids[1]).number == 1
    with pytest.raises(KeyError):
        writer._create_new_trial(b._study_id + 100)

    a.enqueue_trial({"x": 0.5})  # a trial from a template takes Optuna's row-building path
    assert len(through_orm) == 1
    waiting = plain.get_all_trials(a._study_id, states=(TrialState.WAITING,))
    assert [(t.number, t.system_attrs["fixed_params"]) for t in waiting] == [(3, {"x": 0.5})]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_enqueued_trial_whose_commit_landed_before_the_connection_was_lost_is_not_inserted_twice(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WAITING row runs: inserted twice, an enqueued point or a rerun of an unfinished trial
    would run twice. The retry of an insert whose acknowledgement was lost finds its own row."""
    import contextlib

    import sqlalchemy.exc
    from optuna.storages._rdb import storage as optuna_rdb
    from optuna.trial import create_trial

    from tuner._retry_storage import INSERT_TOKEN

    url = f"sqlite:///{tmp_path / 'e.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="e", storage=st.open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    real_session = optuna_rdb._create_scoped_session
    lost: list[str] = []

    @contextlib.contextmanager
    def acknowledgement_lost_once(scoped_session: object, ignore_integrity_error: bool = False) -> object:
        with real_session(scoped_session, ignore_integrity_error) as session:
            yield session
        if not lost:  # committed: the database has the row; the client never hears so
            lost.append("commit")
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(optuna_rdb, "_create_scoped_session", acknowledgement_lost_once)
    study.enqueue_trial({"x": 0.5})
    template = create_trial(state=TrialState.WAITING, system_attrs={"fixed_params": {"x": 0.25}, _attrs.RERUN_OF: 0})
    lost.clear()
    study.add_trial(template)  # a rerun, as requeue_unfinished adds it
    lost.clear()
    study.add_trial(template)  # the same template added again on purpose: a second row, as in Optuna
    monkeypatch.setattr(optuna_rdb, "_create_scoped_session", real_session)

    waiting = optuna.storages.RDBStorage(url).get_all_trials(study._study_id, states=(TrialState.WAITING,))
    assert [(t.number, t.system_attrs["fixed_params"]) for t in waiting] == [(1, {"x": 0.5}), (2, {"x": 0.25}),
                                                                             (3, {"x": 0.25})]
    assert waiting[1].system_attrs[_attrs.RERUN_OF] == 0
    assert len({t.system_attrs[INSERT_TOKEN] for t in waiting}) == 3
    returned = study._storage._backend._create_new_trial(study._study_id, template)  # the template, a 4th time
    assert "_tuner_insert_token" not in returned.__dict__ and "_tuner_insert_token" not in template.__dict__
    again = study._storage._backend._create_new_trial(study._study_id, returned)  # a returned trial as a template
    assert again.number == returned.number + 1  # a new row, not taken for a retry of the call that made it
    assert study.ask().number == 1 and study.ask().number == 2  # the queue hands each out once


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trial_attributes_are_written_as_optuna_writes_them_without_its_orm(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage

    url = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="a", storage=st.open_storage(url))
    trial = study.ask()
    through_orm = []
    real_write = RDBStorage._set_trial_attr_without_commit
    monkeypatch.setattr(RDBStorage, "_set_trial_attr_without_commit",
                        lambda self, *args: (through_orm.append(args[2]), real_write(self, *args))[1])
    storage, writer = study._storage, st.open_storage(url)  # Optuna's cache over tuner's writer, and the writer
    placement = {"node": "n1", "pid": 7, "gpu": None, "trial_dir": "/runs/trial_00000"}
    storage.set_trial_system_attr(trial._trial_id, "tuner:worker", placement)
    writer.set_trial_system_attr(trial._trial_id, "tuner:metrics", {"acc": 0.5, "inf": float("inf")})
    writer.set_trial_system_attr(trial._trial_id, "tuner:metrics", {"acc": 0.75})  # written again: replaced
    storage.set_trial_user_attr(trial._trial_id, "note", ["a", 1, None])
    writer.set_trial_user_attr(trial._trial_id, "note2", "text")
    assert through_orm == []

    read = RDBStorage(url).get_trial(trial._trial_id)  # as Optuna's own storage reads them back
    assert read.system_attrs == {"tuner:worker": placement, "tuner:metrics": {"acc": 0.75}}
    assert read.user_attrs == {"note": ["a", 1, None], "note2": "text"}
    with pytest.raises(KeyError):
        writer.set_trial_system_attr(trial._trial_id + 100, "k", 1)
    study.tell(trial, 1.0)
    with pytest.raises(UpdateFinishedTrialError):  # a finished trial takes no more attributes, as in Optuna
        writer.set_trial_system_attr(trial._trial_id, "k", 1)
    with pytest.raises(UpdateFinishedTrialError):
        writer.set_trial_user_attr(trial._trial_id, "k", 1)
    assert RDBStorage(url).get_trial(trial._trial_id).system_attrs == read.system_attrs


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trials_created_at_once_by_several_writers_get_distinct_numbers(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'n.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="n", storage=st.open_storage(url))
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def create(count: int) -> None:
        writer = st.open_storage(url)  # its own engine and connections, as each worker process has
        start.wait()
        try:
            for _ in range(count):
                writer.create_new_trial(study._study_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    trials = optuna.storages.RDBStorage(url).get_all_trials(study._study_id)
    assert sorted(t.number for t in trials) == list(range(100))
    assert [t.number for t in sorted(trials, key=lambda t: t._trial_id)] == list(range(100))  # in id order


def test_tuners_own_queries_ride_out_a_lost_connection_like_its_storage_calls(tmp_path: Path) -> None:
    import sqlalchemy.exc

    from tuner._retry_storage import call_with_retries

    calls: list[str] = []

    def flaky(storage: optuna.storages.RDBStorage) -> str:
        calls.append(type(storage).__name__)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return "read"

    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert call_with_retries(st.open_storage(url), "test", flaky) == "read"
    assert calls == ["RetryingRDBStorage", "RetryingRDBStorage"]
    calls.clear()
    with pytest.raises(sqlalchemy.exc.OperationalError):  # a reader answers at once, as its own calls do
        call_with_retries(st.open_storage(url, readonly=True), "test", flaky)
    assert calls == ["TrialReadingRDBStorage"]


class _Clock:
    """A fake ``time`` for tuner._retry_storage: sleeping moves it on, at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_lost_storage_gets_one_retry_window_per_outage_not_one_per_call(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call on a storage shares the outage's window, which counts from its first failed
    call: once it is spent, a call that still fails gives up at once. Before, each call waited a
    window of its own, and a run that lost its database for good took 60 s to stop after saying
    "lost the storage for 10s" (tests/engine/test_faults.py)."""
    import sqlalchemy.exc

    from tuner import _retry_storage
    from tuner._retry_storage import call_with_retries
    from tuner.exceptions import StorageError

    clock = _Clock()
    monkeypatch.setattr(_retry_storage, "time", clock)
    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "10")
    down = True
    attempts: list[float] = []

    def read(storage: optuna.storages.RDBStorage) -> str:
        attempts.append(clock.now)
        if down:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
        return "read"

    storage = st.open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(StorageError, match="lost the storage for 10s"):
        call_with_retries(storage, "first", read)
    assert len(attempts) > 3 and attempts[-1] - attempts[0] >= 10  # the whole window, with backoff
    attempts.clear()
    with pytest.raises(StorageError):
        call_with_retries(storage, "second", read)
    assert len(attempts) == 1  # the outage's window is spent: one try, no second wait
    down = False
    assert call_with_retries(storage, "back", read) == "read"  # the database answered: the outage is over
    down, attempts = True, []
    with pytest.raises(StorageError):
        call_with_retries(storage, "next outage", read)
    assert attempts[-1] - attempts[0] >= 10  # a new outage, a whole new window

    # A call whose statement keeps failing gives up after its own window, though another
    # thread's calls succeed meanwhile (each success ends the storage's outage).
    def failing_while_others_succeed(storage: optuna.storages.RDBStorage) -> str:
        storage.__dict__.pop(_retry_storage._LOST_SINCE, None)  # as another thread's success does
        return read(storage)

    attempts.clear()
    with pytest.raises(StorageError):
        call_with_retries(storage, "keeps failing", failing_while_others_succeed)
    assert 10 <= attempts[-1] - attempts[0] <= 16


def test_a_refused_statement_is_raised_at_once_and_a_spent_window_is_said_once(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite reports "no such column" as an OperationalError, as it does a lost connection: it was
    retried for the whole window and then reported as a lost database. And a retried call over a
    retried call (Optuna's ``create_new_trial`` calls ``_create_new_trial``) wrapped the inner
    call's "lost the storage" in a second one."""
    import sqlalchemy as sa

    from tuner import _retry_storage
    from tuner._retry_storage import call_with_retries
    from tuner.exceptions import StorageError

    clock = _Clock()
    monkeypatch.setattr(_retry_storage, "time", clock)
    monkeypatch.setenv("TUNER_STORAGE_RETRY_S", "10")
    storage = st.open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    attempts: list[float] = []

    def bad_statement(db: optuna.storages.RDBStorage) -> None:
        attempts.append(clock.now)
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT no_such_column FROM trials"))

    with pytest.raises(sa.exc.OperationalError, match="no such column"):
        call_with_retries(storage, "bad statement", bad_statement)
    assert len(attempts) == 1

    def lost(db: optuna.storages.RDBStorage) -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    def outer(db: optuna.storages.RDBStorage) -> None:
        attempts.append(clock.now)
        call_with_retries(db, "inner", lost)

    attempts.clear()
    with pytest.raises(StorageError) as info:
        call_with_retries(storage, "outer", outer)
    assert len(attempts) == 1 and str(info.value).count("lost the storage") == 1, str(info.value)


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 400 KiB tmpfs: room for a storage and a few hundred writes (as tests/engine/test_faults.py's)."""
    with small_disk_at(tmp_path / "small_disk", 400) as folder:
        try:
            yield folder
        finally:
            for key in [k for k in st._CACHE if str(folder) in k[0]]:
                st._CACHE.pop(key).engine.dispose()


def test_a_full_disk_under_sqlite_fails_at_once_and_says_where_to_free_space(small_disk: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's "database or disk is full" is an OperationalError, as a lost connection is: it was
    retried for TUNER_STORAGE_RETRY_S, then reported as a lost database to "bring back"."""
    from tuner import _retry_storage
    from tuner.exceptions import StorageError

    clock = _Clock()
    monkeypatch.setattr(_retry_storage, "time", clock)
    url = f"sqlite:///{small_disk / 'f.db'}"
    study = optuna.create_study(storage=st.open_storage(url), study_name="full")
    trial = study.ask()
    with pytest.raises(StorageError) as info:
        for step in range(100_000):
            trial.report(float(step), step)
    message = str(info.value)
    assert f"folder {small_disk} has no room left" in message and "free space there" in message, message
    assert "finished trials are kept" in message and "lost" not in message
    assert clock.now == 1000.0  # no retry waited
    with pytest.raises(StorageError, match=f"disk is full; folder {small_disk} has no room left; free space there"):
        st.open_storage(f"sqlite:///{small_disk / 'new.db'}")  # a new storage on the full disk, at its open


def _comparable(trials: list) -> list[dict[str, str]]:
    return [{k: repr(v) for k, v in t.__dict__.items()} for t in trials]  # NaN != NaN: compare reprs


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tuners_trial_reads_return_what_optunas_return(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of trials in the driver and the workers goes through this one method: same trials, same selection.

    The two size thresholds of the reader (ids listed in one IN; other tables read by id or by a
    join) are lowered so that 120 trials cross both, as 1,200 do at their real values: writing the
    trials through Optuna one by one was most of this test's time (37 s on PostgreSQL).
    """
    import math

    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import create_trial

    from tuner import _retry_storage, _trial_read

    monkeypatch.setattr(_retry_storage, "_INCLUDED_IN_MAX", 100)
    monkeypatch.setattr(_trial_read, "_BY_ID_MAX", 50)

    url = f"sqlite:///{tmp_path / 'g.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    ours = st.open_storage(url)
    dists = {"x": FloatDistribution(-1.0, 1.0), "n": IntDistribution(1, 8, log=True),
             "c": CategoricalDistribution(["a", None, 3])}
    other = optuna.create_study(study_name="other", storage=ours)  # a neighbour whose trials must not leak in
    other.add_trial(create_trial(params={"x": 0.1}, distributions={"x": dists["x"]}, value=1.0))
    study = optuna.create_study(study_name="g", storage=ours, directions=["minimize", "maximize"])
    study.set_user_attr("u", 1)
    for i in range(120):  # more trials than one IN may list (100, lowered above)
        state = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.WAITING][i % 4]
        params = {"x": (i % 7) / 7, "n": 1 + i % 8, "c": ["a", None, 3][i % 3]} if i % 5 else {}
        study.add_trial(create_trial(
            params=params, distributions={k: dists[k] for k in params}, state=state,
            values=[float(i), math.inf if i % 3 else -math.inf] if state == TrialState.COMPLETE else None,
            intermediate_values={1: 0.5, 2: math.nan, 3: -math.inf} if i % 11 == 0 else {},
            system_attrs={_attrs.WORKER: {"host": "h", "pid": i}} if i % 2 else {}, user_attrs={"i": i}))
    for _ in range(3):
        study.ask()  # three of the WAITING trials become RUNNING
    ids = [t._trial_id for t in study.get_trials(deepcopy=False)]
    theirs = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    reader = st.open_storage(url, readonly=True)  # tuner's read-only storage reads the same way
    cases = [(None, set(), -1), ((TrialState.COMPLETE,), set(), -1), ((TrialState.WAITING, TrialState.RUNNING), set(), -1),
             (None, set(ids[10:20]), ids[60]), (None, set(), ids[115]), (None, set(ids[5:110]), ids[111]),
             ((TrialState.PRUNED,), set(ids[:40]), ids[30]), (None, set(ids[100:110]), -1),
             (None, set(ids[2:30]), ids[50])]
    for states, included, after in cases:
        expected = theirs._get_trials(study._study_id, states, set(included), after)
        got = ours._get_trials(study._study_id, states, set(included), after)
        assert _comparable(got) == _comparable(expected), (states, len(included), after)
        assert _comparable(reader._get_trials(study._study_id, states, set(included), after)) == _comparable(expected)
        assert got, (states, after)
    with pytest.MonkeyPatch.context() as mp:  # tuner's reader, not Optuna's ORM behind a wrapper
        mp.setattr(optuna.storages.RDBStorage, "_build_frozen_trial_from_trial_model",
                   lambda *_: pytest.fail("built through Optuna's ORM"))
        assert len(ours._get_trials(study._study_id, None, set(), -1)) == 120
        assert len(reader.get_all_trials(study._study_id, deepcopy=False)) == 120
    with pytest.raises(KeyError):
        ours._get_trials(study._study_id + 100, None, set(), -1)
    theirs.engine.dispose()
