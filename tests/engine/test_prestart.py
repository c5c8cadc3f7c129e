"""Trial workers start in Ray's prestarted processes; a GPU study's have their imports done.

The runs are in fresh interpreters: only a run that starts Ray itself changes Tune's actors
and Ray's workers (``tuner.engine._prestart``), and the test session's Ray is up already.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.engine import _prestart, _worker

ROOT = Path(__file__).resolve().parents[2]

_RUN = """
import json, os, sys
if os.environ.get("TEST_SYS_PATH"):  # a folder this program finds and Ray's new workers do not
    sys.path.insert(0, os.environ["TEST_SYS_PATH"])
import tuner
from tests import objectives
from tuner.engine import _attrs
spec = {"name": "pre", "search_space": {"params": {"x": {"float": [-1.0, 1.0]}}}, "metric": "value",
        "n_trials": 4, "concurrency": 2, "pruner": "none", "seed": 0, "resources": json.loads(sys.argv[2])}
study = tuner.run(spec, objectives.worker_state, storage=sys.argv[1], num_cpus=2, num_gpus=float(sys.argv[3]),
                  ray_address=os.environ.get("TEST_RAY_ADDRESS"))
rows = []
for t in study.trials:
    timing = t.system_attrs[_attrs.TIMING]
    rows.append({"created": t.datetime_start.timestamp(), "process_started": timing["process_started"],
                 "process_trial": timing["process_trial"], "preloaded": timing.get("preloaded"), "warnings": [k for k in {**t.system_attrs, **t.user_attrs} if "artifact_warning" in k],
                 **t.system_attrs[_attrs.METRICS]})
print(json.dumps(rows))
"""


def _run(tmp_path: Path, resources: dict[str, float], num_gpus: float = 0, pythonpath: tuple[Path, ...] = (),
         **env: str) -> list[dict]:
    return _run_with_output(tmp_path, resources, num_gpus, pythonpath, **env)[0]


def _run_with_output(tmp_path: Path, resources: dict[str, float], num_gpus: float = 0,
                     pythonpath: tuple[Path, ...] = (), **env: str) -> tuple[list[dict], str]:
    folders = [str(ROOT), *map(str, pythonpath), os.environ.get("PYTHONPATH")]
    out = subprocess.run([sys.executable, "-c", _RUN, f"sqlite:///{tmp_path / 'tuner.db'}", json.dumps(resources),
                          str(num_gpus)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, folders)), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rows) == 4
    return rows, out.stdout + out.stderr


def _prestarted(rows: list[dict]) -> bool:
    """Whether a worker process began before the run's first trial existed.

    Tune's own actors ask for environment variables, so Ray gives each a new process, started
    after its trial was created: none ever qualifies. With tuner's change the prestarted ones
    run the trials; on a loaded machine Ray may still start another before one has registered,
    hence "any", not "all".
    """
    first_created = min(r["created"] for r in rows)
    return any(r["process_started"] < first_created for r in rows if r["process_trial"] == 1)


def test_a_cpu_studys_trials_run_in_processes_ray_started_before_them(tmp_path: Path) -> None:
    # `local`, Ray's word for a new local instance, is a local start, not a cluster to join
    rows = _run(tmp_path, {"cpus": 1}, TEST_RAY_ADDRESS="local")
    assert _prestarted(rows), rows
    assert not any(r["had_dynamo"] for r in rows)  # a CPU study preloads nothing
    assert not any(r["preloaded"] for r in rows)


def test_a_gpu_studys_workers_import_torch_before_their_first_trial(tmp_path: Path) -> None:
    # Declared GPUs (none here): Ray's placement is real, the devices are not.
    rows = _run(tmp_path, {"cpus": 1, "gpus": 0.5}, num_gpus=1)
    assert all(r["had_dynamo"] and r["had_ray_tune"] for r in rows), rows
    # read back from each process's first trial: every Ray worker preloads, prestarted or not
    firsts = [r["preloaded"] for r in rows if r["process_trial"] == 1]
    assert firsts and all({"torch", "torch._dynamo", "tuner.engine._worker"} <= set(p or ()) for p in firsts), rows
    assert _prestarted(rows), rows
    assert not any(r["warnings"] for r in rows)  # no CUDA context before placement
    # torch sized its thread pool at the preload, before Ray could set the trial's share (1 CPU):
    # the driver put OMP_NUM_THREADS in Ray's environment first (this machine has 2 cores).
    assert {r["torch_threads"] for r in rows} == {1.0}, rows


def test_tuner_preload_0_turns_the_imports_off(tmp_path: Path) -> None:
    rows = _run(tmp_path, {"cpus": 1, "gpus": 0.5}, num_gpus=1, TUNER_PRELOAD="0")
    assert not any(r["had_dynamo"] for r in rows)
    assert not any(r["preloaded"] for r in rows)


def test_a_preloaded_module_that_raises_costs_a_line_not_the_workers(tmp_path: Path) -> None:
    # What Ray's own preloading cannot survive (it catches ImportError only): an import that
    # raises something else, as torch over a broken CUDA library would. The user names the module.
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "tuner_probe_broken.py").write_text("raise RuntimeError('no CUDA driver found')\n")
    (probe / "tuner_probe_fine.py").write_text("VALUE = 1\n")
    local = tmp_path / "local"  # on the driver's sys.path only: the user is told it cannot be preloaded
    local.mkdir()
    (local / "tuner_probe_local.py").write_text("VALUE = 2\n")
    # Without Ray's prestarted workers: the workers Ray starts for the trials preload as well.
    rows, output = _run_with_output(tmp_path, {"cpus": 1}, pythonpath=(probe,), TEST_SYS_PATH=str(local),
                                    TUNER_PRELOAD="tuner_probe_broken, tuner_probe_fine,tuner_probe_local",
                                    RAY_prestart_worker_first_driver="0")
    assert not _prestarted(rows), rows
    firsts = [r["preloaded"] for r in rows if r["process_trial"] == 1]
    assert firsts and all(p == ["tuner.engine._worker", "tuner.tasks", "tuner_probe_fine"] for p in firsts), rows
    assert "could not preload tuner_probe_broken (RuntimeError: no CUDA driver found)" in output
    assert "TUNER_PRELOAD: Ray's workers cannot import tuner_probe_local before" in output


def test_only_gpu_studies_preload_unless_the_user_names_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_prestart.PRELOAD_ENV, raising=False)
    monkeypatch.setattr(_prestart.os, "cpu_count", lambda: 64)
    gpu_default = [*_prestart.GPU_PRELOAD, *_prestart.TUNER_MODULES]
    assert _prestart.preload_modules(0, 2, 2) == []
    assert _prestart.preload_modules(0.25, 2, 2) == gpu_default
    assert _prestart.preload_modules(0.125, 8, 16) == gpu_default
    # one trial at a time on 64 CPUs: 63 idle workers would hold torch for nothing ...
    assert _prestart.preload_modules(1, 1, 64) == []
    assert _prestart.preload_modules(1, 1, None) == []  # None: this machine's CPUs
    # ... but Ray prestarts no more workers than the machine has logical CPUs, whatever it declares
    monkeypatch.setattr(_prestart.os, "cpu_count", lambda: 2)
    assert _prestart.preload_modules(1, 1, 64) == gpu_default
    for off in ("0", "false", "Off", "none", "disabled"):
        monkeypatch.setenv(_prestart.PRELOAD_ENV, off)
        assert _prestart.preload_modules(1, 2, 2) == []
    monkeypatch.setenv(_prestart.PRELOAD_ENV, " transformers,  my_pkg.train ,")
    assert _prestart.preload_modules(0, 2, 2) == [*_prestart.TUNER_MODULES, "transformers", "my_pkg.train"]
    assert _prestart.preload_modules(1, 2, 2) == [*gpu_default, "transformers", "my_pkg.train"]
    monkeypatch.setenv(_prestart.PRELOAD_ENV, "torch")  # named twice: imported once
    assert _prestart.preload_modules(1, 2, 2) == gpu_default
    monkeypatch.setattr(_prestart, "_installed", lambda name: False)  # workers could not import tuner's preloader
    assert _prestart.preload_modules(1, 2, 2) == []


def test_a_user_who_named_modules_hears_which_this_run_cannot_preload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tuner_probe_here_only.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # found by this program, not by a new Ray worker
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv(_prestart.PRELOAD_ENV, raising=False)
    assert _prestart.preload_warnings(["torch"], local_start=True) == []  # the default: nothing to say
    monkeypatch.setenv(_prestart.PRELOAD_ENV, "json,torch._dynamo")  # both found by any new process
    assert _prestart.preload_warnings(["json", "torch._dynamo"], local_start=True) == []
    monkeypatch.setenv(_prestart.PRELOAD_ENV, "transfromers,tuner_probe_here_only.sub,json")
    unknown, unseen = _prestart.preload_warnings(["json"], local_start=True)
    assert unknown.startswith("TUNER_PRELOAD: no module named transfromers here; check the name")
    assert unseen.startswith("TUNER_PRELOAD: Ray's workers cannot import tuner_probe_here_only.sub before")
    [joined] = _prestart.preload_warnings(["json"], local_start=False)
    assert "only a run that starts its own Ray preloads" in joined
    [no_tuner] = _prestart.preload_warnings([], local_start=True)
    assert "cannot import tuner itself" in no_tuner


def test_ray_preloads_tuners_preloader_with_the_list_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _prestart.ray_system_config([]) == {}
    assert _prestart.ray_system_config(["torch"]) == {"preload_python_modules": ["tuner.engine._preload"]}
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv(_prestart.WORKER_IMPORTS_ENV, "before")
    with _prestart.worker_environment(["torch", "optuna"], 2.5):
        assert os.environ[_prestart.WORKER_IMPORTS_ENV] == "torch,optuna"
        assert os.environ["OMP_NUM_THREADS"] == "2"
    assert os.environ[_prestart.WORKER_IMPORTS_ENV] == "before"
    assert "OMP_NUM_THREADS" not in os.environ


def test_the_preloader_imports_what_it_can_and_says_what_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.engine import _preload

    (tmp_path / "tuner_probe_raises.py").write_text("raise OSError('libcudart.so.13: cannot open shared object file')\n")
    (tmp_path / "tuner_probe_needs.py").write_text("import tuner_probe_dependency_is_missing\n")
    (tmp_path / "tuner_probe_exits.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = _preload.import_each(["json", "tuner_probe_raises", "tuner_has_no_such_module", "tuner_probe_needs",
                                     "json.tuner_no_such_submodule", "tuner_probe_exits", "email.message"])
    assert imported == ("json", "email.message")
    err = capsys.readouterr().err
    assert "could not preload tuner_probe_raises (OSError: libcudart.so.13" in err
    # an ImportError from inside a module that is there (torch without its libcudnn) is said, too
    assert "could not preload tuner_probe_needs (ModuleNotFoundError: No module named 'tuner_probe_dependency" in err
    assert "could not preload tuner_probe_exits (SystemExit: 3)" in err
    # not there at all: skipped quietly, the trial says why if it needs it
    assert "tuner_has_no_such_module" not in err and "tuner_no_such_submodule" not in err


def test_installed_means_found_in_site_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the GPU machine puts the checkout there
    assert _prestart._installed("torch._dynamo")
    assert _prestart._installed("json") and _prestart._installed("sys")  # the standard library, built-ins
    assert not _prestart._installed("tuner_has_no_such_module")
    # tests/ is found through the current directory, which a prestarted worker does not have
    assert not _prestart._installed("tests.objectives")


def test_a_module_an_editable_install_hook_finds_counts_as_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `pip install -e .` with setuptools: a .pth file installs, in every new process, an import
    # hook from a module named __editable___<project>_finder that maps the package to its checkout.
    (tmp_path / "tuner_editable_probe").mkdir()
    (tmp_path / "tuner_editable_probe" / "__init__.py").write_text("")
    monkeypatch.delenv("PYTHONPATH", raising=False)

    class _EditableFinder:
        @classmethod
        def find_spec(cls, fullname: str, path: object = None, target: object = None) -> object:
            if fullname != "tuner_editable_probe":
                return None
            return importlib.util.spec_from_file_location(
                fullname, tmp_path / fullname / "__init__.py", submodule_search_locations=[str(tmp_path / fullname)])

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, _EditableFinder])
    assert not _prestart._installed("tuner_editable_probe")  # found, but by a hook no new process has
    _EditableFinder.__module__ = "__editable___tuner_editable_probe_0_1_finder"
    assert _prestart._installed("tuner_editable_probe")


def test_a_module_on_pythonpath_counts_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lent GPU machine brings Ray and Optuna in a folder on PYTHONPATH, which workers inherit.
    (tmp_path / "tuner_preload_probe").mkdir()
    (tmp_path / "tuner_preload_probe" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert not _prestart._installed("tuner_preload_probe")  # only on this program's sys.path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["relative/dir", str(tmp_path)]))
    assert _prestart._installed("tuner_preload_probe")
    (tmp_path / "tuner_namespace_probe" / "part").mkdir(parents=True)  # a namespace package: no __init__.py
    assert _prestart._installed("tuner_namespace_probe.part")
    monkeypatch.delenv("PYTHONPATH")
    assert not _prestart._installed("tuner_namespace_probe.part")


def test_tunes_actor_environment_is_emptied_only_inside_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.execution import class_cache

    monkeypatch.setenv("PL_DISABLE_FORK", "1")  # as tuner.engine._tune_env sets it before Ray starts

    class Trainable:
        pass

    def runtime_env() -> dict[str, object]:
        return dict(class_cache._ActorClassCache().get(Trainable)._default_options["runtime_env"])

    tunes = runtime_env()  # Tune's own (plus any variable it copies): a new process per actor
    assert tunes["env_vars"]["PL_DISABLE_FORK"] == "1"
    with _prestart.tune_actors_in_prestarted_workers():
        assert runtime_env() == {}  # what Ray's prestarted workers have
    assert runtime_env() == tunes


def test_tunes_actor_environment_is_kept_when_the_workers_lack_one_of_its_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.execution import class_cache

    class Trainable:
        pass

    monkeypatch.setenv("PL_DISABLE_FORK", "0")  # not what Tune sets: the workers did not inherit it
    with _prestart.tune_actors_in_prestarted_workers():
        runtime_env = dict(class_cache._ActorClassCache().get(Trainable)._default_options["runtime_env"])
    assert runtime_env["env_vars"]["PL_DISABLE_FORK"] == "1"


def test_the_thread_count_is_set_for_rays_start_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with _prestart.worker_environment(["torch"], 2.5):
        assert os.environ["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in os.environ
    with _prestart.worker_environment(["torch"], 0.25):
        assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # the user's choice stands
    with _prestart.worker_environment(["torch"], 1):
        assert os.environ["OMP_NUM_THREADS"] == "6"
    assert os.environ["OMP_NUM_THREADS"] == "6"


def test_a_folder_a_pth_file_adds_counts_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Editable installs by other build tools (hatchling, flit, setuptools' compat mode) put the
    # project's folder on every process's sys.path with a line in a .pth file.
    site, project = tmp_path / "site-packages", tmp_path / "project"
    (project / "tuner_pth_probe").mkdir(parents=True)
    (project / "tuner_pth_probe" / "__init__.py").write_text("")
    site.mkdir()
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(_prestart, "_site_dirs", lambda: [site])
    assert not _prestart._installed("tuner_pth_probe")
    (site / "_tuner_pth_probe.pth").write_text(f"# a comment\nimport os\n{project}\n")
    assert _prestart._installed("tuner_pth_probe")
    monkeypatch.setenv(_prestart.PRELOAD_ENV, "tuner_pth_probe")
    assert _prestart.preload_warnings(["tuner_pth_probe"], local_start=True) == []


def test_a_cuda_context_before_the_first_trial_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    job = _worker.JobInfo(storage_url="", study_name="s", metrics=("v",), directions=("minimize",), pruner="none",
                          pruner_args={}, sampler="random", sampler_args={}, space=None, task=None, task_args={},
                          objective_ref=None, objective_blob=None, artifacts_dir="", source="", base_dir="",
                          driver_cwd="", driver_sys_path=[], cpus=1, gpus=0.5, seed=0, trial_timeout=None)
    monkeypatch.setattr(_worker, "_TRIALS_IN_PROCESS", 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    # What no CPU machine can make, faked: a CUDA context, and CUDA started with every GPU visible.
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _worker._cuda_before_placement(job) is None  # one device, the one Ray assigned
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert "CUDA_VISIBLE_DEVICES=1" in (_worker._cuda_before_placement(job) or "")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert "TUNER_PRELOAD=0" in (_worker._cuda_before_placement(job) or "")
    monkeypatch.setattr(_worker, "_TRIALS_IN_PROCESS", 2)  # later trials: the trial's own context
    assert _worker._cuda_before_placement(job) is None
    job.gpus = 0
    monkeypatch.setattr(_worker, "_TRIALS_IN_PROCESS", 1)
    assert _worker._cuda_before_placement(job) is None


def test_ray_address_local_means_a_local_start() -> None:
    from tuner.engine._driver import cluster_address


    assert cluster_address(None) is None
    assert cluster_address("local") is None and cluster_address(" Local ") is None and cluster_address("") is None
    assert cluster_address("auto") == "auto"
    assert cluster_address(" 10.0.0.1:6379 ") == "10.0.0.1:6379"
