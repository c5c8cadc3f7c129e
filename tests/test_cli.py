"""The command line: every command, --json, and one-line errors with exit code 2 for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tuner
from tests import objectives
from tests.conftest import ROOT
from tuner.cli import main

GOOD = """\
name: clidemo
objective: tests.objectives:quadratic
search_space:
  params:
    x: {float: [-5, 5]}
    y: {float: [-3, 3]}
n_trials: 4
concurrency: 2
pruner: none
seed: 0
"""


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin",
                                            "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def ran_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One study run through the real CLI (its own Ray), shared by the read-only command tests."""
    folder = tmp_path_factory.mktemp("cli")
    spec = folder / "demo.yaml"
    spec.write_text(GOOD)
    url = f"sqlite:///{folder / 'cli.db'}"
    out = _cli("run", str(spec), "--storage", url, "--num-cpus", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "done: study 'clidemo' has 4/4 finished trials" in out.stderr
    return spec, url


def test_ls_show_best_text_and_json(ran_study: tuple[Path, str]) -> None:
    _, url = ran_study
    runner = CliRunner()
    ls = runner.invoke(main, ["ls", "--storage", url])
    assert ls.exit_code == 0 and "clidemo" in ls.output and "finished" in ls.output
    ls_json = json.loads(runner.invoke(main, ["ls", "--storage", url, "--json"]).output)
    assert ls_json[0]["name"] == "clidemo" and ls_json[0]["counts"] == {"COMPLETE": 4}
    show = json.loads(runner.invoke(main, ["show", "clidemo", "--storage", url, "--json", "--top", "2"]).output)
    assert show["counts"] == {"COMPLETE": 4} and len(show["top"]) == 2
    assert show["top"][0]["values"][0] <= show["top"][1]["values"][0]  # minimize: best first
    assert show["spec"]["n_trials"] == 4
    for top in (str(2**63), "99999999999999999999"):  # more than SQL binds (OverflowError): all of them
        every = runner.invoke(main, ["show", "clidemo", "--storage", url, "--json", "--top", top])
        assert every.exit_code == 0 and len(json.loads(every.output)["top"]) == 4, every.output
    best = json.loads(runner.invoke(main, ["best", "clidemo", "--storage", url, "--json"]).output)
    assert best["values"][0] == pytest.approx(objectives.quadratic(best["params"], None))
    assert best["values"][0] == show["top"][0]["values"][0]
    assert best["objectives"] == ["value"] and best["directions"] == ["minimize"]
    text = runner.invoke(main, ["best", "clidemo", "--storage", url])
    assert text.exit_code == 0 and text.output.startswith(f"trial {best['number']}: value {best['values'][0]:.6g}\n")
    assert "  x: " in text.output


def test_show_lists_the_latest_runs_and_how_each_ended(tmp_path: Path) -> None:
    """Every run's entry in the run log, as `tuner show` prints the last five: a run killed (logged
    by the next), one ended by an error, a run that found the trials a dead one left."""
    import datetime as dt

    import optuna

    from tuner.engine._study import record_run

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="r", storage=url)
    study._storage.set_study_system_attr(study._study_id, "tuner:spec", {"n_trials": 10})
    t0 = dt.datetime(2026, 12, 7, 9, 0, 0).timestamp()
    base = {"host": "node-1", "complete": 3, "pruned": 1, "failed": 0, "stopped_unfinished": 0, "recovered": 0}
    record_run(study, {**base, "started": t0 - 100, "ended": t0 - 90, "pid": 10, "end": "done"})
    record_run(study, {**base, "started": t0, "ended": t0 + 61.5, "pid": 11, "end": "interrupted", "stopped_unfinished": 2})
    record_run(study, {"started": t0 + 100, "ended": None, "last_heard": t0 + 130, "host": "node-2", "pid": 12,
                       "end": "lost", "complete": None, "pruned": None, "failed": None, "stopped_unfinished": 1})
    record_run(study, {**base, "started": t0 + 200, "ended": t0 + 203, "pid": 13, "end": "error", "complete": 0,
                       "pruned": 0, "recovered": 1, "error": "StorageError: the database did not answer"})
    record_run(study, {**base, "started": t0 + 300, "ended": t0 + 310, "pid": 14, "end": "max_failures", "failed": 3})
    record_run(study, {**base, "started": t0 + 400, "ended": t0 + 410, "pid": 15, "end": "stop_requested"})
    out = CliRunner().invoke(main, ["show", "r", "--storage", url])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("study r (stopped): no trials")
    assert lines[-6:] == [
        "runs: 6, the last 5:",
        "  2026-12-07 09:00:00     61.5s  interrupted: 3 complete, 1 pruned, 0 failed, 2 stopped unfinished (pid 11 on node-1)",
        "  2026-12-07 09:01:40         ?  lost (killed, crashed, or cut off from the storage): last heard 2026-12-07 09:02:10; the next run marked "
        "the 1 trial it left running FAIL (pid 12 on node-2)",
        "  2026-12-07 09:03:20      3.0s  ended by an error (StorageError: the database did not answer): 0 complete, "
        "0 pruned, 0 failed; marked FAIL the 1 trial an earlier run left running (pid 13 on node-1)",
        "  2026-12-07 09:05:00     10.0s  stopped: too many failures: 3 complete, 1 pruned, 3 failed (pid 14 on node-1)",
        "  2026-12-07 09:06:40     10.0s  stopped by `tuner stop`: 3 complete, 1 pruned, 0 failed (pid 15 on node-1)"]
    shown = json.loads(CliRunner().invoke(main, ["show", "r", "--storage", url, "--json"]).output)
    assert [r["end"] for r in shown["runs"]] == ["done", "interrupted", "lost", "error", "max_failures", "stop_requested"]
    assert shown["state"] == "stopped"


def test_ls_show_best_name_the_objectives_and_give_a_pareto_front_as_one(tmp_path: Path) -> None:
    """Several objectives: `best` printed bare value lists, `show` headed the front `top N` with its
    columns pushed out of line, and `ls` gave the first objective's best without saying so."""
    import optuna

    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(study_name="mo", storage=url, directions=["maximize", "minimize"])
    study.set_metric_names(["acc", "size"])
    for x, values in ((0.1, [0.9, 100.0]), (0.2, [0.8, 200.0]), (0.3, [0.95, 3000.0]), (0.4, [0.5, 10.0])):
        study.enqueue_trial({"x": x})
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, values)  # trial 1 is dominated by trial 0; the others form the front
    runner = CliRunner()
    listing = runner.invoke(main, ["ls", "--storage", url]).output.splitlines()
    assert listing[0].split()[-4:] == ["best", "metric", "last", "activity"]
    assert listing[1].split()[:11] == ["mo", "finished", "4", "0", "0", "0", "0", "0.95", "acc", "(max)", "+1"]
    best = runner.invoke(main, ["best", "mo", "--storage", url])
    heads = [line for line in best.output.splitlines() if not line.startswith(" ")]
    assert heads == ["pareto front of 3 trials (maximize acc, minimize size):", "trial 0: acc 0.9, size 100",
                     "trial 2: acc 0.95, size 3000", "trial 3: acc 0.5, size 10"], best.output
    shown = runner.invoke(main, ["show", "mo", "--storage", url, "--top", "2"]).output.splitlines()
    assert shown[0] == "study mo (finished): complete 4; acc (maximize), size (minimize)"
    assert shown[1] == "pareto front: 2 of 3:"
    header, rows = shown[2], shown[3:5]
    assert [row.index("]") for row in rows] == [header.index("value") + len("value") - 1] * 2  # right-aligned
    full = runner.invoke(main, ["show", "mo", "--storage", url]).output.splitlines()
    assert full[1] == "pareto front: all 3:" and len(full) == 6


def test_ls_show_and_best_name_a_metric_the_spec_names_and_optuna_does_not_alike(tmp_path: Path) -> None:
    """A plain Optuna study an older tuner adopted keeps no metric names of Optuna's: `tuner ls`
    said `loss (min)` from the stored spec while `show` and `best` said `value (minimize)`."""
    import optuna

    from tuner.engine import _attrs

    url = f"sqlite:///{tmp_path / 'adopted.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="adopted", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, {"metrics": ["loss"], "n_trials": 2})
    runner = CliRunner()
    assert "loss (min)" in runner.invoke(main, ["ls", "--storage", url]).output.splitlines()[1]
    assert runner.invoke(main, ["show", "adopted", "--storage", url]).output.splitlines()[0] == \
        "study adopted (finished): complete 2; loss (minimize)"
    assert runner.invoke(main, ["best", "adopted", "--storage", url]).output.startswith(
        f"trial {study.best_trial.number}: loss ")


def test_rerun_of_finished_study_does_nothing(ran_study: tuple[Path, str]) -> None:
    spec, url = ran_study
    out = _cli("run", str(spec), "--storage", url, "--quiet")
    assert out.returncode == 0
    assert "4/4 finished" in out.stdout and "this run: 0 complete" in out.stdout
    assert len(tuner.load_study("clidemo", url).get_trials()) == 4


def test_validate_ok_and_json(tmp_path: Path) -> None:
    spec = tmp_path / "v.yaml"
    spec.write_text(GOOD)
    runner = CliRunner()
    out = runner.invoke(main, ["validate", str(spec)])
    assert out.exit_code == 0 and "ok: study 'clidemo'" in out.output and "2 parameters" in out.output
    data = json.loads(runner.invoke(main, ["validate", str(spec), "--json", "--n-trials", "9"]).output)
    assert data["n_trials"] == 9 and data["search_space"]["params"]["x"]


@pytest.mark.parametrize("mutation,expected", [
    (("n_trials: 4", "n_trials: -1"), "n_trials: -1 is out of range"),
    (("n_trials: 4", "n_trials: many"), "n_trials: expected an integer"),
    (("pruner: none", "pruner: sometimes"), "pruner: unknown pruner 'sometimes'"),
    (("seed: 0", "seed: 0\nsampler: annealing"), "sampler: unknown sampler 'annealing'"),
    (("seed: 0", "seed: 0\nsampler: {name: tpe, args: {n_startup: 3}}"), "sampler.args.n_startup: tpe takes no argument"),
    (("seed: 0", "seed: 0\nsampler: {name: tpe, args: {alternate: often}}"),
     "sampler.args.alternate: tpe expects an integer or null, got 'often'"),
    (("seed: 0", "seed: 0\nsampler: {name: tpe, args: {alternate: 1}}"), "alternate must be an integer of at least 2"),
    (("seed: 0", "seed: 0\nsampler: {name: tpe, args: {n_ei_candidates: 0}}"),
     "n_ei_candidates must be an integer of at least 1"),
    (("x: {float: [-5, 5]}", "x: {float: [5, -5]}"), "search_space: params.x.float: low 5.0 > high -5.0"),
    (("name: clidemo", "name: 'bad name!'"), "name: invalid study name"),
    (("name: clidemo", "nmae: clidemo"), "nmae: unknown key; did you mean 'name'?"),
    (("concurrency: 2", "concurrency: 2\nresources: {gpus: 1.5}"), "resources.gpus"),
    (("concurrency: 2", "concurrency: 2\ntimeout: soon"), "timeout: invalid duration"),
])
def test_bad_specs_exit_2_with_one_line(tmp_path: Path, mutation: tuple[str, str], expected: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(GOOD.replace(*mutation))
    out = CliRunner().invoke(main, ["validate", str(spec)])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: "), out.output
    assert expected in lines[0]
    assert "Traceback" not in out.output


def test_run_with_bad_spec_touches_nothing(ran_study: tuple[Path, str], tmp_path: Path) -> None:
    _, url = ran_study
    db = Path(url[len("sqlite:///"):])
    before = db.stat().st_mtime_ns
    spec = tmp_path / "bad.yaml"
    spec.write_text(GOOD.replace("n_trials: 4", "n_trials: zero"))
    out = _cli("run", str(spec), "--storage", url)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "n_trials" in out.stderr
    assert db.stat().st_mtime_ns == before


@pytest.mark.parametrize("args,expected", [
    (["show", "nope"], "no study named 'nope'"),
    (["best", "nope"], "no study named 'nope'"),
    (["run", "missing.yaml"], "missing.yaml: <file>: no such spec file"),
    (["validate", "missing.yaml"], "no such spec file"),
])
def test_user_mistakes_exit_2(ran_study: tuple[Path, str], args: list[str], expected: str) -> None:
    _, url = ran_study
    extra = ["--storage", url] if args[0] in ("show", "best") else []
    out = _cli(*args, *extra)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and expected in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("args,expected", [
    (["run", "studies/quickstart.yaml", "--num-cpus", "abc"],
     "error: tuner run: Invalid value for '--num-cpus': 'abc' is not a valid float."),
    (["run", "studies/quickstart.yaml", "--bogus"], "error: tuner run: No such option '--bogus'."),
    (["run"], "error: tuner run: Missing argument 'SPEC'."),
    (["nosuch"], "error: tuner: No such command 'nosuch'."),
    (["ls", "--storage"], "error: tuner ls: Option '--storage' requires an argument."),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], expected: str) -> None:
    # Click's own usage errors come in tuner's one-line shape too, naming the command and its --help.
    out = CliRunner().invoke(main, args, prog_name="tuner")
    assert out.exit_code == 2, out.output
    assert out.output.startswith(expected)
    assert out.output.count("\n") == 1 and "--help" in out.output
    assert "Usage:" not in out.output


@pytest.mark.parametrize("args", [["--num-cpus", "-1"], ["--num-cpus", "nan"], ["--num-cpus", "inf"],
                                  ["--num-cpus", "1.5"], ["--num-gpus", "-1"], ["--num-gpus", "nan"]])
def test_a_ray_size_ray_cannot_start_with_is_one_line_before_anything_starts(tmp_path: Path, args: list[str]) -> None:
    # Ray's start raised a ValueError from deep inside ray.init (a 58-line traceback, exit 1).
    spec = tmp_path / "s.yaml"
    spec.write_text(GOOD)
    db = tmp_path / "t.db"
    out = CliRunner().invoke(main, ["run", str(spec), "--storage", f"sqlite:///{db}", *args], prog_name="tuner")
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(f"error: {args[0]} {args[1]}: the local Ray instance declares a whole number of "), \
        out.output
    assert not db.exists()


@pytest.mark.parametrize("flag", ["name=", "n_trials= "])
def test_an_empty_set_value_is_refused_not_dropped(flag: str) -> None:
    # None is how an override says "not given", so `--set name=` used to leave the name as it was.
    out = CliRunner().invoke(main, ["validate", "studies/quickstart.yaml", "--set", flag], prog_name="tuner")
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(f"error: --set {flag!r}: the value is empty")


def test_set_null_sets_the_key_to_null_as_the_spec_file_would(tmp_path: Path) -> None:
    """`--set KEY=null` is the spec's `KEY: null`: the default where null means it, a one-line
    error naming the key where null is not allowed (it used to be refused, or dropped before that)."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nobjective: tests.objectives:quadratic\nsearch_space: {params: {x: {float: [-1, 1]}}}\n"
                    "n_trials: 3\ntrial_timeout: 30\n")

    def validated(*sets: str) -> Any:
        args = ["validate", str(spec), "--json"] + [a for s in sets for a in ("--set", s)]
        return CliRunner().invoke(main, args, prog_name="tuner")

    assert json.loads(validated().output)["trial_timeout"] == 30
    for null in ("null", "~", "Null"):
        out = validated(f"trial_timeout={null}")
        assert out.exit_code == 0 and json.loads(out.output)["trial_timeout"] is None, out.output
    out = validated("name=null")
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "name" in out.output, out.output
    out = validated("n_trials=null")
    assert out.exit_code == 2 and out.output.count("\n") == 1 and "n_trials" in out.output, out.output
    resnet = CliRunner().invoke(main, ["validate", "studies/resnet_finetune.yaml", "--json", "--set",
                                       "task_args.pretrained=null"], prog_name="tuner")
    assert resnet.exit_code == 0 and json.loads(resnet.output)["task_args"]["pretrained"] is None, resnet.output


def test_bare_tuner_prints_the_help() -> None:
    out = CliRunner().invoke(main, [], prog_name="tuner")
    assert "Usage: tuner [OPTIONS] COMMAND" in out.output and "run" in out.output


def test_python_dash_m_tuner_is_the_tuner_command(tmp_path: Path) -> None:
    # For a venv used without activating it: `python -m tuner` said "No module named tuner.__main__".
    out = subprocess.run([sys.executable, "-m", "tuner", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("Usage: tuner [OPTIONS] COMMAND"), out.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "tuner", "ls", "--storage", f"sqlite:///{tmp_path / 'none.db'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: no storage at")


def test_objective_that_cannot_be_imported_is_refused_before_running(tmp_path: Path) -> None:
    spec = tmp_path / "imp.yaml"
    spec.write_text(GOOD.replace("tests.objectives:quadratic", "no_such_module_xyz:f"))
    url = f"sqlite:///{tmp_path / 'i.db'}"
    out = _cli("run", str(spec), "--storage", url)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "objective: cannot import no_such_module_xyz:f: No module named 'no_such_module_xyz'" in out.stderr
    assert out.stderr.count("\n") == 1
    assert not (tmp_path / "i.db").exists()
    spec.write_text(GOOD.replace("tests.objectives:quadratic", "tests.objectives:no_such_fn"))
    out = _cli("validate", str(spec))
    assert out.returncode == 2 and "has no function 'no_such_fn'" in out.stderr


def test_ls_on_empty_or_missing_storage(tmp_path: Path) -> None:
    out = _cli("ls", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert out.returncode == 2 and "no storage at" in out.stderr


@pytest.mark.parametrize("command", ["ls", "show", "trial", "best", "watch", "stop", "rm", "report", "export",
                                     "dashboard"])
def test_only_run_says_its_storage_defaults_to_the_specs(command: str) -> None:
    # These commands take no spec: "the spec's storage:" sent users looking for a study in the wrong file.
    text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
    assert "--storage TEXT Storage URL (default: $TUNER_STORAGE, or sqlite:///tuner.db in the working directory)" in text
    assert "spec's storage" not in text
    assert "the spec's storage:" in " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())


def test_help_lists_commands() -> None:
    out = CliRunner().invoke(main, ["--help"])
    for cmd in ("run", "validate", "ls", "show", "best"):
        assert cmd in out.output


def test_the_max_failures_help_says_what_the_run_does() -> None:
    # It said "Stop after this many failed trials", but max_failures=1 lets two fail (the run stops past it).
    out = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert "Stop a run once more than this many of its trials failed (0: at the first failure)." in out.output


def _served_studies(port: int) -> list[str] | None:
    """The names /api/studies lists once the dashboard on ``port`` answers (None if it never does in 20 s)."""
    import time
    import urllib.request

    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as res:
                return [s["name"] for s in json.loads(res.read())["studies"]]
        except OSError:
            time.sleep(0.2)
    return None


def test_dashboard_serves_the_storage_and_refuses_bad_input(ran_study: tuple[Path, str], tmp_path: Path) -> None:
    """`tuner dashboard` as a user starts it: a real process on a free port, then its user errors (exit 2)."""
    import socket

    _folder, url = ran_study
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--storage", url, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _served_studies(port) == ["clidemo"]
        busy = _cli("dashboard", "--storage", url, "--port", str(port))  # the port is taken now
        assert busy.returncode == 2 and busy.stderr.strip() == \
            f"error: cannot listen on 127.0.0.1:{port}: Address already in use; pass another --port or --host"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "tuner dashboard on http://127.0.0.1:" in proc.stderr.read()
    missing = _cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr


def test_dashboard_on_port_0_serves_on_the_free_port_it_prints(ran_study: tuple[Path, str]) -> None:
    # It printed http://127.0.0.1:0/ and listened on a port nobody was told.
    import re

    _folder, url = ran_study
    proc = subprocess.Popen([sys.executable, "-m", "tuner.cli", "dashboard", "--storage", url, "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.match(r"tuner dashboard on http://127\.0\.0\.1:(\d+)/ over ", line)
        assert found and int(found.group(1)) > 0, line
        assert _served_studies(int(found.group(1))) == ["clidemo"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ls_and_the_dashboard_give_a_study_the_same_state(tmp_path: Path) -> None:
    # `tuner ls` and the dashboard used to judge states apart: a study stopped by its failures was
    # "stopped" in one and "failed" in the other, a plain Optuna study "stopped" and "finished".
    import optuna

    from tuner.dashboard._queries import DashboardData
    from tuner.engine import _attrs
    from tuner.storage import open_storage

    url = f"sqlite:///{tmp_path / 'states.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plain = optuna.create_study(study_name="plain", storage=url)
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    failed = optuna.create_study(study_name="failed", storage=url)
    failed._storage.set_study_system_attr(failed._study_id, _attrs.SPEC, {"n_trials": 10, "max_failures": 1})
    for _ in range(2):
        failed.tell(failed.ask(), state=optuna.trial.TrialState.FAIL)
    short = optuna.create_study(study_name="short", storage=url)
    short._storage.set_study_system_attr(short._study_id, _attrs.SPEC, {"n_trials": 10})
    short.tell(short.ask(), 1.0)
    done = optuna.create_study(study_name="done", storage=url)
    done._storage.set_study_system_attr(done._study_id, _attrs.SPEC, {"n_trials": 1})
    done.tell(done.ask(), 1.0)

    expected = {"plain": "finished", "failed": "failed", "short": "stopped", "done": "finished"}
    listed = json.loads(CliRunner().invoke(main, ["ls", "--storage", url, "--json"]).output)
    assert {s["name"]: s["state"] for s in listed} == expected
    text = CliRunner().invoke(main, ["ls", "--storage", url]).output
    assert {line.split()[0]: line.split()[1] for line in text.splitlines()[1:]} == expected
    dashboard = DashboardData(open_storage(url, readonly=True)).studies()
    assert {s["name"]: s["state"] for s in dashboard} == expected


def test_a_database_password_is_never_stored_nor_shown(tmp_path: Path, postgres_url: str) -> None:
    """A password in `storage:` (or --storage) was stored with the spec, so the dashboard served it
    (no token by default), the report and `tuner show --json` showed it, `tuner run --json` printed it."""
    import optuna
    from fastapi.testclient import TestClient

    from tuner.dashboard import create_app
    from tuner.engine import _attrs

    url = postgres_url.replace("postgres@", "postgres:S3cretPw@", 1)  # trust auth: the password is not checked
    hidden = url.replace("S3cretPw", "***")
    spec = tmp_path / "pw.yaml"
    spec.write_text(GOOD.replace("n_trials: 4", "n_trials: 2") + f"storage: {url}\n")
    ran = _cli("run", str(spec), "--storage", url, "--num-cpus", "2", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "S3cretPw" not in ran.stdout + ran.stderr and json.loads(ran.stdout)["storage_url"] == hidden
    study = optuna.load_study(study_name="clidemo", storage=url)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert "S3cretPw" not in json.dumps(attrs) and attrs[_attrs.SPEC]["storage"] == hidden
    # A study run by an older tuner holds the URL as typed: whatever shows its spec hides the password.
    study._storage.set_study_system_attr(study._study_id, _attrs.SPEC, {**attrs[_attrs.SPEC], "storage": url})
    runner = CliRunner()
    shown = runner.invoke(main, ["show", "clidemo", "--storage", url, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["spec"]["storage"] == hidden, shown.output
    report = tmp_path / "report.html"
    assert runner.invoke(main, ["report", "clidemo", "--storage", url, "-o", str(report)]).exit_code == 0
    assert "S3cretPw" not in report.read_text() and "postgres:***@" in report.read_text()
    with TestClient(create_app(url)) as client:
        api, page = client.get("/api/studies/clidemo"), client.get("/studies/clidemo")
    assert api.json()["spec"]["storage"] == hidden and "S3cretPw" not in api.text + page.text
    # The stored spec still resumes the study (its storage is no part of what must match).
    more = _cli("run", str(spec), "--storage", url, "--num-cpus", "2", "--n-trials", "3", "--quiet")
    assert more.returncode == 0 and "3/3 finished" in more.stdout, more.stderr[-3000:]


PER_LAYER = """\
name: perlayer
objective: tests.objectives:quadratic
search_space:
  params:
    x: {float: [-5, 5]}
    n: {int: [1, 2]}
    w: {int: [1, 3], per: n}
n_trials: 3
concurrency: 1
pruner: none
seed: 0
"""


def test_show_prints_the_spec_and_the_names_the_objective_saw(tmp_path: Path) -> None:
    spec = tmp_path / "per.yaml"
    spec.write_text(PER_LAYER)
    url = f"sqlite:///{tmp_path / 'per.db'}"
    assert _cli("run", str(spec), "--storage", url, "--num-cpus", "1", "--quiet").returncode == 0
    out = CliRunner().invoke(main, ["show", "perlayer", "--storage", url]).output
    assert "spec: objective tests.objectives:quadratic, n trials 3, concurrency 1, sampler tpe, pruner none, seed 0" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and "=" in line]  # not the run's line
    assert len(rows) == 3 and "w.0" not in out and "w.1" not in out, out
    assert all("w=[" in row for row in rows if "n=2" in row) and any("n=2" in row for row in rows), out


def test_set_on_a_spec_whose_space_is_a_file_keeps_the_file() -> None:
    # `search_space: ../search_spaces/mlp.yaml` plus --set search_space.params.epochs=2 used to
    # replace the whole space by {epochs: 2}.
    out = CliRunner().invoke(main, ["validate", "studies/quickstart.yaml", "--set", "search_space.params.epochs=2",
                                    "--json"])
    resolved = json.loads(out.output)
    params = resolved["search_space"]["params"]
    assert params["epochs"] == {"value": 2} and {"lr", "optimizer", "n_layers", "width"} <= set(params), sorted(params)


def test_a_parameter_whose_value_is_none_is_printed_as_none_not_as_a_dash(tmp_path: Path) -> None:
    """`grad_clip: {choice: [null, 1.0]}`: None is a value; `-` is what show prints for a missing one."""
    import optuna

    url = f"sqlite:///{tmp_path / 'none.db'}"
    study = optuna.create_study(study_name="none", storage=url)
    clip = optuna.distributions.CategoricalDistribution([None, 1.0])
    study.add_trial(optuna.trial.create_trial(params={"clip": None}, distributions={"clip": clip}, value=1.0))
    runner = CliRunner()
    assert "  clip: None\n" in runner.invoke(main, ["best", "none", "--storage", url]).output
    assert "clip=None" in runner.invoke(main, ["show", "none", "--storage", url]).output


def _study_with_folders(tmp_path: Path, url: str | None = None) -> tuple[str, list[Path]]:
    """A study of three trials whose recorded folders are: tuner's own two, and one elsewhere."""
    import optuna

    from tuner.engine import _attrs

    url = url or f"sqlite:///{tmp_path / 'rm.db'}"
    study = optuna.create_study(study_name="gone", storage=url)
    runs = tmp_path / "runs" / "gone"
    folders = [runs / "trial_00000", runs / "trial_00001.1", tmp_path / "elsewhere"]
    for number, folder in enumerate(folders):
        folder.mkdir(parents=True)
        (folder / "best.pt").write_text("weights")
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.1 * number}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=float(number), system_attrs={_attrs.WORKER: {"trial_dir": str(folder)}}))
    optuna.create_study(study_name="other", storage=url)
    return url, folders


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rm_deletes_a_study_and_with_artifacts_only_the_folders_tuner_made_for_its_trials(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url, folders = _study_with_folders(tmp_path, None if backend == "sqlite" else request.getfixturevalue("postgres_url"))
    runner = CliRunner()
    refused = runner.invoke(main, ["rm", "gone", "--storage", url])  # not a terminal: no question, no deletion
    assert refused.exit_code == 2 and refused.output == (
        "error: tuner rm gone: this deletes 3 trials: 3 complete; pass --yes to delete without asking\n")
    done = runner.invoke(main, ["rm", "gone", "--storage", url, "--yes", "--artifacts"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        "deleted study 'gone' (3 trials: 3 complete)",
        f"removed 2 trial folder(s) in {folders[0].parent}",
        f"kept 1 folder(s) its trials recorded outside tuner's artifacts layout (in {tmp_path}): tuner removes "
        f"only folders it made"]
    assert not folders[0].exists() and not folders[1].exists() and not folders[0].parent.exists()
    assert (folders[2] / "best.pt").read_text() == "weights"  # not a folder tuner names: never removed
    listed = json.loads(runner.invoke(main, ["ls", "--storage", url, "--json"]).output)
    assert [s["name"] for s in listed] == ["other"]
    missing = runner.invoke(main, ["rm", "gone", "--storage", url, "--yes"])
    assert missing.exit_code == 2 and missing.output.startswith("error: no study named 'gone' in this storage")


def test_rm_asks_at_a_terminal_keeps_folders_by_default_and_refuses_a_running_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket
    import time

    import optuna

    from tuner import cli
    from tuner.engine import _attrs
    from tuner.engine._study import _proc_start_time

    url, folders = _study_with_folders(tmp_path)
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    runner = CliRunner()
    kept = runner.invoke(main, ["rm", "gone", "--storage", url], input="n\n")
    assert kept.exit_code == 1 and "delete study 'gone' (3 trials: 3 complete)? [y/N]" in kept.output
    assert "error: nothing deleted" in kept.output
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["gone", "other"]
    # a live run of the study (the test's parent process stands for its driver): refused, named, kept
    storage = optuna.storages.RDBStorage(url)
    driver = {"host": socket.gethostname(), "pid": os.getppid(), "proc_start": _proc_start_time(os.getppid()),
              "started": time.time(), "heartbeat": time.time()}
    storage.set_study_system_attr(storage.get_study_id_from_name("gone"), _attrs.DRIVER, driver)
    busy = runner.invoke(main, ["rm", "gone", "--storage", url, "--yes"])
    assert busy.exit_code == 2 and busy.output == (
        f"error: study 'gone' is being run right now by pid {os.getppid()} on {socket.gethostname()}; "
        f"wait for it to end, or stop it first (tuner stop gone)\n")
    storage.set_study_system_attr(storage.get_study_id_from_name("gone"), _attrs.DRIVER, None)  # the run ended
    done = runner.invoke(main, ["rm", "gone", "--storage", url], input="y\n")
    assert done.exit_code == 0 and "deleted study 'gone' (3 trials: 3 complete)" in done.output
    assert f"kept 2 trial folder(s) in {folders[0].parent}; --artifacts removes them" in done.output
    assert all((f / "best.pt").exists() for f in folders)


def test_stop_says_how_the_run_ended_and_names_a_run_that_started_meanwhile(tmp_path: Path) -> None:
    """`tuner stop` waits for the run it asked; it then says how that run ended (its entry in the
    run log) and, where another run took the study meanwhile (a scheduler's restart), that this
    one is still running. The runs are two live processes of this host holding the lease in turn."""
    import subprocess
    import threading
    import time

    import optuna

    from tuner.engine import _attrs
    from tuner.engine._study import _own_record, _proc_start_time, record_run

    url = f"sqlite:///{tmp_path / 'stop.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="st", storage=url)
    first, second = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    try:
        def lease(proc: subprocess.Popen[bytes], started: float) -> dict[str, Any]:
            return {**_own_record(), "pid": proc.pid, "proc_start": _proc_start_time(proc.pid), "started": started}

        a, b = lease(first, 100.0), lease(second, 200.0)
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, a)

        def first_stops_then_second_starts() -> None:
            time.sleep(1.0)
            record_run(study, {"started": 99.0, "ended": 150.0, "host": a["host"], "pid": a["pid"], "claimed": 100.0,
                               "end": "stop_requested", "complete": 3, "pruned": 1, "failed": 0,
                               "stopped_unfinished": 2})
            study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, b)

        threading.Thread(target=first_stops_then_second_starts).start()
        out = CliRunner().invoke(main, ["stop", "st", "--storage", url])
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[1:] == [
        "the run has stopped (stopped by `tuner stop`; this run: 3 complete, 1 pruned, 0 failed, 2 stopped unfinished); "
        "run its spec again to resume",
        f"another run holds study 'st' now (pid {second.pid} on {a['host']}); `tuner stop st` stops that one"]


@pytest.mark.parametrize("timeout", ["-1", "nan", "inf", "86401"])
def test_stop_refuses_a_bad_timeout_before_asking_the_run(tmp_path: Path, timeout: str) -> None:
    """`tuner stop --timeout -1` (or nan) used to send the request and then say the run 'has not
    stopped within -1s' (exit 1); the value is refused first, and the run is not asked."""
    import subprocess

    import optuna

    from tuner.engine import _attrs
    from tuner.engine._study import _own_record, _proc_start_time

    url = f"sqlite:///{tmp_path / 'stop.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="st", storage=url)
    running = subprocess.Popen(["sleep", "60"])
    try:
        study._storage.set_study_system_attr(study._study_id, _attrs.DRIVER, {
            **_own_record(), "pid": running.pid, "proc_start": _proc_start_time(running.pid), "started": 100.0})
        out = CliRunner().invoke(main, ["stop", "st", "--storage", url, "--timeout", timeout])
    finally:
        running.kill()
        running.wait()
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(f"error: --timeout {timeout}: the seconds to wait for the run to stop must be from "
                                 "0 to 86400 (a day)"), out.output
    assert _attrs.STOP not in study._storage.get_study_system_attrs(study._study_id)


def test_validate_refuses_a_storage_url_run_would_refuse_and_creates_nothing(tmp_path: Path) -> None:
    # `tuner validate` said ok to `storage: "sqlite:///x.db?timeout=30"` and `mongodb://...`, which
    # `tuner run` then refused.
    spec = tmp_path / "s.yaml"
    for url, said in (("sqlite:///x.db?timeout=30", "takes no options (timeout); drop the '?...' part"),
                      ("mongodb://h/db", "unsupported database 'mongodb'")):
        spec.write_text(GOOD + f'storage: "{url}"\n')
        out = CliRunner().invoke(main, ["validate", str(spec)])
        assert out.exit_code == 2 and out.output.startswith(f"error: {spec}: storage: URL ") and said in out.output
    spec.write_text(GOOD)
    out = CliRunner().invoke(main, ["validate", str(spec), "--storage", f"sqlite:///{tmp_path / 'y.db'}?mode=ro"])
    assert out.exit_code == 2 and "takes no options (mode)" in out.output
    assert not list(tmp_path.glob("*.db"))
