"""A Ray worker that dies importing a preloaded module is named in the trials' errors and the run's.

The crash is a real one (a segfault, which no ``try`` in the preloader can catch), in real
processes: the preloader in a fresh interpreter, and a run of ``tuner.run`` in another.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tuner.engine import _preload_trace

ROOT = Path(__file__).resolve().parents[2]

#: Imported fine by the test (no trace folder in its environment); a segfault in a preloading worker.
_CRASHER = """
import ctypes, os
if os.environ.get("TUNER_PRELOAD_TRACE"):
    ctypes.string_at(0)
"""

_RUN = """
import json, sys
import tuner
from tests import objectives
from tuner.engine import _attrs, _preload_trace
from tuner.exceptions import TooManyFailuresError
opened = []  # the folders the run made for its workers' notes
_open = _preload_trace.open_folder
_preload_trace.open_folder = lambda: opened.append(_open()) or opened[-1]
spec = {"name": "crash", "search_space": {"params": {"x": {"float": [-1.0, 1.0]}}}, "metric": "value",
        "n_trials": 4, "concurrency": 2, "pruner": "none", "seed": 0, "max_failures": 1}
try:
    tuner.run(spec, getattr(objectives, sys.argv[2]), storage=sys.argv[1], num_cpus=2)
    message = None
except TooManyFailuresError as exc:
    message = str(exc)
import optuna
study = optuna.load_study(study_name="crash", storage=sys.argv[1])
errors = [t.system_attrs.get(_attrs.ERROR) for t in study.trials]
print(json.dumps({"message": message, "errors": errors, "opened": len(opened),
                  "left": [str(p) for p in opened if p.exists()] + [str(_preload_trace._folder or "")]}))
"""


@pytest.fixture
def folder() -> Path:
    path = _preload_trace.open_folder()
    yield path
    _preload_trace.close()
    assert not path.exists()


def _python(code: str, env: dict[str, str], extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), str(extra_path or ""), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": path, **env})


def test_a_note_left_by_a_process_that_is_gone_names_its_import(folder: Path) -> None:
    env = {_preload_trace.TRACE_ENV: str(folder)}
    died = _python("import os\nfrom tuner.engine._preload_trace import Note\nn = Note()\nn.importing('first')\n"
                   "n.importing('torch._dynamo')\nprint(os.getpid(), flush=True)\nos._exit(3)", env)
    assert died.returncode == 3, died.stderr
    finished = _python("from tuner.engine._preload_trace import Note\nn = Note()\nn.importing('optuna')\nn.done()", env)
    assert finished.returncode == 0, finished.stderr
    (folder / str(os.getpid())).write_text("json")  # a process still importing (this one) is no crash
    (folder / "4194303").write_text("")  # a note cut short before any name names nothing
    assert len(list(folder.iterdir())) == 3  # the finished process removed its note
    assert _preload_trace.claim() == ("torch._dynamo", int(died.stdout))
    assert _preload_trace.claim() is None  # one failed trial per note
    assert (folder / f"{died.stdout.strip()}.claimed").read_text() == "torch._dynamo"


def test_a_dead_process_its_parent_has_not_reaped_yet_counts_as_gone(folder: Path) -> None:
    # Ray's raylet reaps its workers; a trial's error can arrive before it did.
    code = "import os\nfrom tuner.engine._preload_trace import Note\nNote().importing('torch')\nos._exit(1)"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": path, _preload_trace.TRACE_ENV: str(folder)})
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        for _ in range(600):
            if stat.read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never exited")
        assert _preload_trace.claim() == ("torch", child.pid)
    finally:
        child.wait()


def _dies_importing(module: str, folder: Path) -> None:
    died = _python(f"from tuner.engine._preload_trace import Note\nNote().importing({module!r})\nimport os\nos._exit(1)",
                   {_preload_trace.TRACE_ENV: str(folder)})
    assert died.returncode == 1, died.stderr


def test_each_trial_its_worker_never_started_gets_one_note_with_the_fix_for_its_module(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from tuner.engine import _attrs
    from tuner.engine._progress import Progress
    from tuner.engine._tune_glue import Recorder

    _dies_importing("torch", folder)  # tuner's own choice for a GPU study, which the trials import too
    _dies_importing("tuner_probe_user", folder)  # the user's, from TUNER_PRELOAD
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    ids = [study._storage.create_new_trial(study._study_id) for _ in range(4)]
    study._storage.set_trial_system_attr(ids[1], _attrs.WORKER, {"pid": 1})  # its worker started it
    console = io.StringIO()
    state = SimpleNamespace(preload_crash=None, preloaded_by_tuner={"torch", "tuner.tasks"}, study=study,
                            running={f"t{i}": (trial_id, i) for i, trial_id in enumerate(ids)})
    recorder = Recorder(state, Progress(quiet=True, stream=console))  # type: ignore[arg-type]
    first = recorder._preload_crash(SimpleNamespace(trial_id="t0"))
    assert "died while preloading torch, before it ran a trial" in first
    assert "check that `python -c 'import torch'` works on this machine, or set TUNER_PRELOAD=0" in first
    assert state.preload_crash == first and console.getvalue() == f"warning: {first}\n"
    assert recorder._preload_crash(SimpleNamespace(trial_id="t1")) == ""  # died in its trial: not preloading
    second = recorder._preload_crash(SimpleNamespace(trial_id="t2"))
    assert "died while preloading tuner_probe_user" in second
    assert "drop tuner_probe_user from TUNER_PRELOAD, or set TUNER_PRELOAD=0" in second
    assert recorder._preload_crash(SimpleNamespace(trial_id="t3")) == ""  # no note left for it
    assert console.getvalue().count("warning:") == 1  # said once per run


def test_no_folder_no_crashes_and_notes_never_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _preload_trace.close()
    assert _preload_trace.claim() is None
    monkeypatch.setenv(_preload_trace.TRACE_ENV, str(tmp_path / "removed"))  # the driver shut down meanwhile
    note = _preload_trace.Note()
    note.importing("torch")
    note.done()
    monkeypatch.delenv(_preload_trace.TRACE_ENV)
    _preload_trace.Note().importing("torch")  # no folder given: nothing written
    assert list(tmp_path.iterdir()) == []


def test_the_preloader_leaves_a_note_only_where_its_process_crashed(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "tuner_probe_segfaults.py").write_text(_CRASHER)
    env = {_preload_trace.TRACE_ENV: str(folder)}
    fine = _python("import tuner.engine._preload as p; print(p.PRELOADED)",
                   {**env, "TUNER_WORKER_IMPORTS": "json,tuner.tasks"}, tmp_path)
    assert fine.returncode == 0 and "('json', 'tuner.tasks')" in fine.stdout, fine.stderr
    assert list(folder.iterdir()) == []
    crashed = _python("import tuner.engine._preload",
                      {**env, "TUNER_WORKER_IMPORTS": "json,tuner_probe_segfaults,optuna"}, tmp_path)
    assert crashed.returncode == -signal.SIGSEGV, crashed.stderr
    (note,) = folder.iterdir()
    assert _preload_trace.claim() == ("tuner_probe_segfaults", int(note.name))


def _run(tmp_path: Path, objective: str, preload: str, probe: Path | None = None) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", _RUN, f"sqlite:///{tmp_path / 'tuner.db'}", objective], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TUNER_PRELOAD": preload,
                              "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(probe or ""),
                                                                          os.environ.get("PYTHONPATH")]))})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout + out.stderr


def test_a_run_whose_workers_die_preloading_says_which_module(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "tuner_probe_segfaults.py").write_text(_CRASHER)
    result, output = _run(tmp_path, "worker_state", "tuner_probe_segfaults", probe)
    cause = "died while preloading tuner_probe_segfaults, before it ran a trial"
    assert result["message"] and cause in result["message"], result
    assert "drop tuner_probe_segfaults from TUNER_PRELOAD, or set TUNER_PRELOAD=0" in result["message"]
    died = [e for e in result["errors"] if e and e["type"] == "WorkerDied"]
    assert died and all(cause in e["message"] for e in died), result["errors"]
    assert "warning: Ray worker " in output
    assert result["opened"] == 1 and result["left"] == [""], result  # removed with the run's Ray


def test_a_trial_that_kills_its_own_worker_is_not_blamed_on_preloading(tmp_path: Path) -> None:
    result, output = _run(tmp_path, "kills_worker", "json")  # preloading on, and every import fine
    died = [e for e in result["errors"] if e and e["type"] == "WorkerDied"]
    assert len(died) == 1 and "preload" not in died[0]["message"], result["errors"]
    assert result["message"] is None and "preloading" not in output and result["opened"] == 1


def test_a_ray_that_fails_to_start_leaves_no_folder() -> None:
    code = ("from tuner.engine import _driver, _preload_trace\nopened = []\n_open = _preload_trace.open_folder\n"
            "_preload_trace.open_folder = lambda: opened.append(_open()) or opened[-1]\n"
            "try:\n    _driver._init_ray(None, -1, None, ['json'])\nexcept ValueError as exc:\n    print('refused')\n"
            "print(len(opened), [p.exists() for p in opened], _preload_trace._folder)")
    out = _python(code, {})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-3:] == ["refused", "1 [False] None", ""], out.stdout  # Ray refused -1 CPUs


def test_the_folder_reaches_rays_processes_only_while_ray_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.engine import _prestart

    monkeypatch.delenv(_preload_trace.TRACE_ENV, raising=False)
    with _prestart.worker_environment(["torch"], 1, tmp_path):
        assert os.environ[_preload_trace.TRACE_ENV] == str(tmp_path)
    assert _preload_trace.TRACE_ENV not in os.environ
    with _prestart.worker_environment(["torch"], 1):
        assert _preload_trace.TRACE_ENV not in os.environ
