"""Bad storage and bad references (issue 7) through the real CLI: one line, exit 2, nothing touched.

Wrong storage URLs, an unreachable or missing database, a read-only SQLite file or folder, a
study name that does not exist and an objective that cannot be imported are the mistakes users
make most after typos in specs. Each must end the command at once with exit code 2 and one
stderr line that names the thing and the fix -- never a traceback, never a hang -- and a study
already in the storage must stay exactly as it was. The commands run as users run them: a
``python -m tuner.cli`` subprocess.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, _pg_available

STUDY = "existing"
SPEC = f"""\
name: {STUDY}
objective: tests.objectives:quadratic
search_space:
  params:
    x: {{float: [-5.0, 5.0]}}
n_trials: 6
concurrency: 1
pruner: none
seed: 0
"""
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def _cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=ENV, check=False)
    return out, time.monotonic() - start


def _one_line_error(out: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit 2, exactly one stderr line `error: ...` holding each expected piece and a fix, no traceback."""
    lines = out.stderr.splitlines()
    assert out.returncode == 2, f"exit {out.returncode}: {out.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    for piece in expected:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"
    assert "; " in lines[0], f"no fix in {lines[0]!r}"
    return lines[0]


def _snapshot(db: Path) -> dict[str, Any]:
    """The SQL dump and the bytes of the database and its WAL (the -shm index is rewritten by readers)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)) as conn:
        dump = "\n".join(conn.iterdump())
        studies = conn.execute("SELECT study_name FROM studies ORDER BY study_id").fetchall()
        trials = conn.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, db.with_name(db.name + "-wal"))
             if p.exists() and p.stat().st_size}  # readers may leave an empty WAL behind: no data
    return {"studies": studies, "trials": trials, "dump": hashlib.sha256(dump.encode()).hexdigest(), "files": files}


@pytest.fixture(scope="module")
def finished_db(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-contained copy (no -wal/-shm) of a SQLite storage holding a finished tuner study of 3 trials."""
    import tuner
    from tests import objectives
    from tuner import storage as tuner_storage

    folder = tmp_path_factory.mktemp("finished")
    live = folder / "live.db"
    spec = {"name": STUDY, "search_space": {"params": {"x": {"float": [-5.0, 5.0]}}}, "n_trials": 3,
            "concurrency": 1, "pruner": "none", "seed": 0}
    study = tuner.run(spec, objectives.quadratic, storage=f"sqlite:///{live}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    for key in [k for k in tuner_storage._CACHE if str(live) in k[0]]:
        tuner_storage._CACHE.pop(key).engine.dispose()
    copy = folder / "finished.db"
    with closing(sqlite3.connect(f"file:{live}?mode=ro", uri=True)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    return copy


@pytest.fixture()
def storage(finished_db: Path, tmp_path: Path) -> tuple[str, Path]:
    """A fresh copy of the finished study's database for one test: (URL, file)."""
    db = tmp_path / "store" / "tuner.db"
    db.parent.mkdir()
    db.write_bytes(finished_db.read_bytes())
    return f"sqlite:///{db}", db


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(SPEC)
    return path


# --------------------------------------------------------------------------- storage URLs


@pytest.mark.parametrize("url,expected", [
    ("notadb://x", ["storage URL 'notadb://x'", "unsupported database 'notadb'"]),
    ("sqlite:/relative-broken", ["'sqlite:/relative-broken' is not valid", "sqlite:///"]),
    ("sqlite://relative", ["'sqlite://relative' is not valid", "sqlite:////absolute/path.db"]),
    ("sqlite://", ["in-memory database", "sqlite:///tuner.db"]),
    ("postgresql+psycopg://postgres@[::1:5432/x", ["is not valid"]),
    ("mysql://u@127.0.0.1:1/x", ["'mysql://u@127.0.0.1:1/x'", "driver is not installed"]),
    ("postgresql+psycopg://postgres@127.0.0.1:1/test", ["127.0.0.1:1/test", "Connection refused", "reachable"]),
    ("sqlite:///{tmp}/no/such/folder/x.db", ["folder", "does not exist"]),
    ("sqlite:///{tmp}", ["is not a database file", "tuner.db"]),
    ("sqlite:///{spec}", ["file is not a database", "tuner (Optuna) database"]),
    # A folder that passes every permission check (root does) but refuses new files: the line says
    # so, not "check that the database is running and reachable" (a SQLite file has no server).
    pytest.param("sqlite:////proc/x.db", ["sqlite:////proc/x.db", "folder /proc refuses a new file x.db",
                                          "choose a path in a folder you can write"],
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")),
])
def test_bad_storage_urls_fail_fast_in_one_line(url: str, expected: list[str], spec_file: Path, tmp_path: Path) -> None:
    """`tuner run` with each wrong --storage: exit 2 within seconds, one line naming it and a fix, nothing created."""
    from tuner.exceptions import StorageError
    from tuner.storage import open_storage

    url = url.format(tmp=tmp_path, spec=spec_file)
    spec_before = spec_file.read_bytes()
    files_before = sorted(p.name for p in tmp_path.iterdir())
    # Fast: the storage call itself gives up within seconds (a connect timeout is 10 s, a retry
    # window 120 s), timed in-process where interpreter start-up on a busy machine does not count.
    start = time.monotonic()
    with pytest.raises(StorageError):
        open_storage(url)
    assert time.monotonic() - start < 5, f"open_storage took {time.monotonic() - start:.1f}s to fail"
    out, seconds = _cli("run", str(spec_file), "--storage", url)
    line = _one_line_error(out, *expected)
    if url.startswith("sqlite"):
        assert "running and reachable" not in line, line
    assert seconds < 60, f"tuner run took {seconds:.1f}s to fail"  # start-up included: no hang, no retries
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before and spec_file.read_bytes() == spec_before


def test_a_bad_storage_from_the_spec_names_the_spec_file_and_its_key(tmp_path: Path) -> None:
    """The spec's `storage:` (made absolute from the spec's folder) failed as a bare URL, without
    saying that it came from the spec; --storage, which names it itself, keeps the bare URL."""
    spec = tmp_path / "study.yaml"
    spec.write_text(SPEC + 'storage: "sqlite:///nodir/x.db"\n')
    out, _ = _cli("run", str(spec))
    _one_line_error(out, f"error: {spec}: storage: sqlite:///{tmp_path}/nodir/x.db: folder {tmp_path}/nodir "
                         "does not exist")
    out, _ = _cli("run", str(spec), "--storage", f"sqlite:///{tmp_path}/other/y.db")
    _one_line_error(out, f"error: storage sqlite:///{tmp_path}/other/y.db: folder {tmp_path}/other does not exist")
    out, _ = _cli("run", str(spec), "--set", f"storage=sqlite:///{tmp_path}/third/z.db")  # typed, not the file's
    _one_line_error(out, f"error: storage sqlite:///{tmp_path}/third/z.db: folder {tmp_path}/third does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize("url,expected", [
    ("notadb://x", "unsupported database 'notadb'"),
    ("sqlite://", "in-memory database"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/test", "Connection refused"),
])
def test_read_commands_refuse_bad_urls_too(url: str, expected: str) -> None:
    for args in (["ls"], ["show", STUDY], ["best", STUDY]) if url == "notadb://x" else (["ls"],):
        out, seconds = _cli(*args, "--storage", url)
        _one_line_error(out, expected)
        assert seconds < 60


@pytest.mark.postgres
def test_postgresql_database_that_does_not_exist(spec_file: Path) -> None:
    """The real server answers 'no such database': the error names it and says to create it."""
    if not _pg_available():
        pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (start it: pg_ctlcluster ... main start)")
    from tuner.exceptions import StorageError
    from tuner.storage import open_storage

    url = "postgresql+psycopg://postgres@127.0.0.1:5432/tuner_no_such_db_7"
    start = time.monotonic()
    with pytest.raises(StorageError, match="create it first"):
        open_storage(url)
    assert time.monotonic() - start < 5
    for args in (["run", str(spec_file)], ["ls"]):
        out, seconds = _cli(*args, "--storage", url)
        _one_line_error(out, 'database "tuner_no_such_db_7" does not exist', "create it first")
        assert seconds < 60
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'tuner_no_such_db_7'").fetchone() is None


# --------------------------------------------------------------------------- read-only SQLite


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make a file or folder unwritable for this process: chmod, or chattr +i under root (root ignores modes)."""
    root = os.geteuid() == 0
    mode = path.stat().st_mode
    if root:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


@pytest.mark.parametrize("what,expected", [
    ("file", "is read-only; make it writable"),
    ("folder", "which is read-only; make the folder writable"),
])
def test_read_only_storage_refuses_run_but_still_reads(what: str, expected: str, storage: tuple[str, Path],
                                                        spec_file: Path) -> None:
    """`tuner run` says it cannot write; `tuner ls/show/best` still read the study; the file is unchanged."""
    url, db = storage
    before = _snapshot(db)
    with _read_only(db if what == "file" else db.parent):
        out, _ = _cli("run", str(spec_file), "--storage", url)
        _one_line_error(out, str(db), expected)
        listing, _ = _cli("ls", "--storage", url)
        assert listing.returncode == 0, listing.stderr[-2000:]
        assert STUDY in listing.stdout and "finished" in listing.stdout
        show, _ = _cli("show", STUDY, "--storage", url)
        assert show.returncode == 0 and f"study {STUDY} (finished): complete 3" in show.stdout, show.stderr[-2000:]
        best, _ = _cli("best", STUDY, "--storage", url)
        assert best.returncode == 0 and best.stdout.startswith("trial ") and "x:" in best.stdout, best.stderr[-2000:]
    assert _snapshot(db) == before


# --------------------------------------------------------------------------- names and references


def test_changed_search_space_is_refused_before_anything_starts(storage: tuple[str, Path], spec_file: Path) -> None:
    """The study exists with another space: one line saying so (no Ray start-up chatter), nothing touched."""
    url, db = storage
    before = _snapshot(db)
    spec_file.write_text(SPEC.replace("[-5.0, 5.0]", "[-4.0, 4.0]"))
    out, _ = _cli("run", str(spec_file), "--storage", url)
    _one_line_error(out, f"{spec_file}: study '{STUDY}' already exists with a different search space (changed: x)",
                    "--force")
    assert _snapshot(db) == before


@pytest.mark.parametrize("command", ["show", "best", "report", "export"])
def test_unknown_study_name(command: str, storage: tuple[str, Path], tmp_path: Path) -> None:
    """A study that does not exist: the error lists the ones that do; nothing is written anywhere."""
    url, db = storage
    before = _snapshot(db)
    target = tmp_path / "out"
    extra = {"report": ["-o", str(target / "r.html")], "export": ["-o", str(target)]}.get(command, [])
    if command == "report":
        target.mkdir()
    out, _ = _cli(command, "nope", "--storage", url, *extra)
    _one_line_error(out, "no study named 'nope'", f"existing studies: {STUDY}")
    assert not target.exists() or list(target.iterdir()) == []
    assert _snapshot(db) == before


OBJECTIVE_FILES = {
    "syntax.py": "def objective(params, ctx):\n    return (\n",
    "raises.py": "raise RuntimeError('cannot load the data\\nsecond line of the message')\n",
    "exits.py": "import sys\nsys.exit(0)\n",
}


@pytest.mark.parametrize("objective,expected", [
    ("nosuchmodule:fn", ["cannot import nosuchmodule:fn", "No module named 'nosuchmodule'"]),
    ("tests.objectives:nosuchfn", ["has no function 'nosuchfn'"]),
    ("path/missing.py:fn", ["file path/missing.py not found"]),
    ("syntax.py:objective", ["raised SyntaxError", "syntax.py"]),
    ("raises.py:objective", ["raised RuntimeError: cannot load the data"]),
    ("exits.py:objective", ["raised SystemExit"]),
])
def test_objective_that_cannot_be_imported(objective: str, expected: list[str], storage: tuple[str, Path],
                                           tmp_path: Path) -> None:
    """`tuner run` refuses before touching the storage that holds the study of the same name."""
    url, db = storage
    before = _snapshot(db)
    for name, text in OBJECTIVE_FILES.items():
        (tmp_path / name).write_text(text)
    spec = tmp_path / "study.yaml"
    spec.write_text(SPEC.replace("tests.objectives:quadratic", objective))
    out, _ = _cli("run", str(spec), "--storage", url)
    line = _one_line_error(out, f"{spec}: objective: ", *expected)
    assert "second line" not in line  # a multi-line exception message is cut to its first line
    assert _snapshot(db) == before


# --------------------------------------------------------------------------- another application's database


APP_TABLES = "CREATE TABLE trials (id INTEGER PRIMARY KEY, patient TEXT); INSERT INTO trials (patient) VALUES ('p1');"


def _pg_tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return sorted(r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_of_another_application_is_refused_and_left_untouched(backend: str, spec_file: Path,
                                                                         tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    """A database whose `trials` table is an application's own: `tuner run` used to add Optuna's
    other tables, a study and a lease to a SQLite file (and switch it to WAL), retry "no such
    column: trials.trial_id" for two minutes as a lost database and print that message nested in
    itself; readers then failed with SQLAlchemy's traceback. Now every command refuses it in
    one line, at once, on SQLite and PostgreSQL alike, and writes nothing."""
    if backend == "sqlite":
        db = tmp_path / "app.db"
        with closing(sqlite3.connect(db)) as conn:
            conn.executescript(APP_TABLES)
        url = f"sqlite:///{db}"
        before: Any = db.read_bytes()
    else:
        import psycopg

        url = request.getfixturevalue("postgres_url")
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute(APP_TABLES.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY"))
        before = _pg_tables(url)
    for args in (["run", str(spec_file)], ["ls"], ["show", STUDY]):
        out, seconds = _cli(*args, "--storage", url)
        _one_line_error(out, "belongs to another application", "table trials has no column trial_id",
                        "a database of its own")
        assert seconds < 30
    if backend == "sqlite":
        assert db.read_bytes() == before and sorted(p.name for p in tmp_path.glob("app.db*")) == ["app.db"]
    else:
        assert _pg_tables(url) == before == ["trials"]


def test_readers_say_a_database_error_in_one_line_naming_the_storage(storage: tuple[str, Path]) -> None:
    """A tuner database whose tables lost a column (edited by hand, half-migrated) opens, then
    fails every read: each reader said so with SQLAlchemy's traceback, exit 1."""
    url, db = storage
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript("DROP INDEX ix_tuner_trials_study_state; ALTER TABLE trials DROP COLUMN datetime_complete;")
    for args in (["ls"], ["show", STUDY], ["best", STUDY], ["trial", STUDY, "0"], ["rm", STUDY]):
        out, _ = _cli(*args, "--storage", url)
        _one_line_error(out, f"storage {url}: no such column: trials.datetime_complete", "tuner (Optuna) database")
