"""Trial workers start in Ray's prestarted processes; a GPU study's have their imports done.

The runs are in fresh interpreters: only a run that starts Ray itself changes Tune's actors
and Ray's workers (``tuner.engine._prestart``), and the test session's Ray is up already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.engine import _prestart, _worker

ROOT = Path(__file__).resolve().parents[2]

_RUN = """
import json, sys
import tuner
from tests import objectives
from tuner.engine import _attrs
spec = {"name": "pre", "search_space": {"params": {"x": {"float": [-1.0, 1.0]}}}, "metric": "value",
        "n_trials": 4, "concurrency": 2, "pruner": "none", "seed": 0, "resources": json.loads(sys.argv[2])}
study = tuner.run(spec, objectives.worker_state, storage=sys.argv[1], num_cpus=2, num_gpus=float(sys.argv[3]))
rows = []
for t in study.trials:
    timing = t.system_attrs[_attrs.TIMING]
    rows.append({"created": t.datetime_start.timestamp(), "process_started": timing["process_started"],
                 "process_trial": timing["process_trial"], "warnings": [k for k in {**t.system_attrs, **t.user_attrs} if "artifact_warning" in k],
                 **t.system_attrs[_attrs.METRICS]})
print(json.dumps(rows))
"""


def _run(tmp_path: Path, resources: dict[str, float], num_gpus: float = 0, **env: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", _RUN, f"sqlite:///{tmp_path / 'tuner.db'}", json.dumps(resources),
                          str(num_gpus)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                             "PYTHONPATH")])), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rows) == 4
    return rows


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
    rows = _run(tmp_path, {"cpus": 1})
    assert _prestarted(rows), rows
    assert not any(r["had_dynamo"] for r in rows)  # a CPU study preloads nothing


def test_a_gpu_studys_workers_import_torch_before_their_first_trial(tmp_path: Path) -> None:
    # Declared GPUs (none here): Ray's placement is real, the devices are not.
    rows = _run(tmp_path, {"cpus": 1, "gpus": 0.5}, num_gpus=1)
    assert all(r["had_dynamo"] and r["had_ray_tune"] for r in rows), rows
    assert _prestarted(rows), rows
    assert not any(r["warnings"] for r in rows)  # no CUDA context before placement
    # torch sized its thread pool at the preload, before Ray could set the trial's share (1 CPU):
    # the driver put OMP_NUM_THREADS in Ray's environment first (this machine has 2 cores).
    assert {r["torch_threads"] for r in rows} == {1.0}, rows


def test_tuner_preload_0_turns_the_imports_off(tmp_path: Path) -> None:
    rows = _run(tmp_path, {"cpus": 1, "gpus": 0.5}, num_gpus=1, TUNER_PRELOAD="0")
    assert not any(r["had_dynamo"] for r in rows)


def test_only_gpu_studies_preload_and_only_installed_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_prestart.PRELOAD_ENV, raising=False)
    assert _prestart.preload_modules(0, 2, 2) == []
    assert _prestart.preload_modules(0.25, 2, 2) == list(_prestart.GPU_PRELOAD)
    assert _prestart.preload_modules(0.125, 8, 16) == list(_prestart.GPU_PRELOAD)
    # one trial at a time on 64 CPUs: 63 idle workers would hold torch for nothing
    assert _prestart.preload_modules(1, 1, 64) == []
    for off in ("0", "false", "Off"):
        monkeypatch.setenv(_prestart.PRELOAD_ENV, off)
        assert _prestart.preload_modules(1, 2, 2) == []
    assert _prestart.ray_system_config([]) == {}
    assert _prestart.ray_system_config(["torch"]) == {"preload_python_modules": ["torch"]}


def test_installed_means_found_in_site_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the GPU machine puts the checkout there
    assert _prestart._installed("torch._dynamo")
    assert not _prestart._installed("json")  # the standard library: not what a preload needs
    assert not _prestart._installed("tuner_has_no_such_module")
    # tests/ is found through the current directory, which a prestarted worker does not have
    assert not _prestart._installed("tests.objectives")


def test_a_module_on_pythonpath_counts_as_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lent GPU machine brings Ray and Optuna in a folder on PYTHONPATH, which workers inherit.
    (tmp_path / "tuner_preload_probe").mkdir()
    (tmp_path / "tuner_preload_probe" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert not _prestart._installed("tuner_preload_probe")  # only on this program's sys.path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["relative/dir", str(tmp_path)]))
    assert _prestart._installed("tuner_preload_probe")


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
    with _prestart.thread_count_for_workers(2.5):
        assert os.environ["OMP_NUM_THREADS"] == "2"
    assert "OMP_NUM_THREADS" not in os.environ
    with _prestart.thread_count_for_workers(0.25):
        assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # the user's choice stands
    with _prestart.thread_count_for_workers(1):
        assert os.environ["OMP_NUM_THREADS"] == "6"
    assert os.environ["OMP_NUM_THREADS"] == "6"


def test_a_cuda_context_before_the_first_trial_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
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
