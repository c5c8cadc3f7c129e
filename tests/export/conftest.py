"""The tiny studies the export tests read, trained once per test run (real Ray, SQLite).

Every tiny study costs seconds of training plus a Ray worker's start, and each module used to
train its own (the quickstart three times, each module under its own Ray). ``tiny_studies``
trains them all once, under one Ray that it stops again, into one SQLite file and artifacts
folder; xdist workers share that folder (the first to need it trains it, a file lock makes the
other wait and reuse it). Tests never write to it: a module works on its own copy of the SQLite
file (``copy_storage``), whose trials point at the shared checkpoints, which exports only read.
So exports recorded in a study, or studies a test adds, stay in that module's copy.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tuner
from tests import objectives
from tests.conftest import ROOT, start_test_ray
from tuner.engine._ray_stop import shutdown_local_ray

STUDIES = ROOT / "studies"
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

# study name -> (study file in studies/, the overrides that make it tiny)
TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "quickstart": ("quickstart", {"task_args.max_samples": 400, "search_space": {
        "include": ["../search_spaces/mlp.yaml"], "params": {"epochs": 3, "n_layers": 1, "width": {"int": [16, 32], "per": "n_layers"}}}}),
    "diabetes_mlp": ("diabetes_mlp", {"search_space": {
        "include": ["../search_spaces/mlp_regression.yaml"], "params": {"epochs": 3, "early_stopping_patience": 0}}}),
    "digits_cnn": ("digits_cnn", {"task_args.max_samples": 300, "search_space": {
        "include": ["cnn.yaml"], "params": {"epochs": 2, "n_conv": 1, "channels": {"int": [4, 8], "per": "n_conv"},
                                           "convs_per_block": 1, "head_width": 16, "batch_size": 64}}}),
    "resnet_pretrain": ("resnet_pretrain", {"task_args.max_samples": 300, "search_space": {
        "include": ["resnet.yaml"], "params": {"epochs": 2, "n_stages": 2, "width": 8, "blocks": 1, "batch_size": 64}}}),
    "sklearn_gbm": ("sklearn_gbm", {"task_args.max_samples": 300, "task_args.cv": 3, "search_space": {
        "include": ["../search_spaces/sklearn_gbm.yaml"], "params": {"max_iter": 10}}}),
    "text_finetune": ("text_finetune", {"task_args.max_samples": 200, "search_space": {
        "include": ["text.yaml"], "params": {"epochs": 1, "freeze_layers": 5, "max_length": 16, "precision": "fp32"}}}),
}
# The text model's study and exports take minutes on 2 CPUs: it is trained only when a slow test
# asks (tests/export/test_export.py, ``-m slow``), not in ``tiny_studies``.
SLOW_STUDIES = {"text_finetune"}


def run_tiny(url: str, folder: Path, name: str) -> None:
    """Run the tiny version of built-in study ``name`` (2 trials, one at a time) into ``url``."""
    study, overrides = TINY[name]
    tuner.run(STUDIES / f"{study}.yaml", storage=url, overrides={
        "n_trials": 2, "concurrency": 1, "pruner": "none", "artifacts_dir": str(folder / "runs"), **overrides})


@dataclass(frozen=True)
class TinyStudies:
    """A folder with ``tuner.db`` (read only: copy it with ``copy_storage``), ``runs/`` and ``iris.csv``.

    Its studies: every ``TINY`` study but the slow ones; ``own_objective`` (a Python objective,
    no checkpoint); ``iris_csv`` (a scikit-learn classifier trained on ``iris.csv``, which has a
    header and a string ``label`` column); ``diabetes_big`` (the tiny diabetes MLP, one trial, on
    ``diabetes_big.csv``: the diabetes targets times 10,000, around 1.5e6, where float32 outputs
    differ between runtimes by a tenth or more).
    """

    folder: Path

    @property
    def iris_csv(self) -> Path:
        return self.folder / "iris.csv"


def _build(folder: Path) -> None:
    """Train the tiny studies into ``folder``, under one local Ray started (and stopped) here."""
    import ray
    from sklearn.datasets import load_diabetes, load_iris

    url = f"sqlite:///{folder / 'tuner.db'}"
    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(IRIS_FEATURES, axis=1)
    frame["label"] = [str(iris.target_names[i]) for i in iris.target]
    frame.to_csv(folder / "iris.csv", index=False)
    diabetes = load_diabetes(as_frame=True)
    big = diabetes.data.assign(label=diabetes.target * 10_000)
    big.to_csv(folder / "diabetes_big.csv", index=False)
    started = not ray.is_initialized()  # as the module fixture ray_cluster starts it
    if started:
        start_test_ray(num_cpus=2)
    try:
        for name in TINY:
            if name not in SLOW_STUDIES:
                run_tiny(url, folder, name)
        tuner.run({"name": "own_objective", "search_space": {"params": {"x": {"float": [0, 1]}}}, "n_trials": 2,
                   "concurrency": 1, "seed": 0}, objectives.quadratic, storage=url)
        tuner.run({"name": "iris_csv", "task": "sklearn", "n_trials": 2, "concurrency": 1, "pruner": "none", "seed": 0,
                   "artifacts_dir": str(folder / "runs"),
                   "task_args": {"estimator": "sklearn.linear_model.LogisticRegression",
                                 "dataset": str(folder / "iris.csv"), "cv": 3},
                   "search_space": {"params": {"C": {"float": [0.5, 5], "log": True}, "max_iter": 500}}}, storage=url)
        tuner.run(STUDIES / "diabetes_mlp.yaml", storage=url, overrides={
            **TINY["diabetes_mlp"][1], "name": "diabetes_big", "n_trials": 1, "concurrency": 1, "pruner": "none",
            "artifacts_dir": str(folder / "runs"), "task_args.dataset": str(folder / "diabetes_big.csv")})
    finally:
        if started:
            shutdown_local_ray()
        from tuner import storage as _storage

        # this process's connections to the file: from now on it is only read (copied)
        for key in [k for k in _storage._CACHE if str(folder / "tuner.db") in k[0]]:
            _storage._CACHE.pop(key).engine.dispose()


@pytest.fixture(scope="session")
def tiny_studies(tmp_path_factory: pytest.TempPathFactory) -> TinyStudies:
    """The tiny studies, trained by the first test process of this run that asks for them.

    Under xdist the workers share the run's temporary root (the parent of each worker's own);
    the first worker trains while holding a lock, the others wait for it and reuse its folder.
    A build that failed leaves no ``done`` mark: the next asker trains again from scratch.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / "export-tiny-studies"
    with open(root / "export-tiny-studies.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (folder / "done").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                _build(folder)
                (folder / "done").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return TinyStudies(folder)


def copy_storage(tiny: TinyStudies, folder: Path) -> str:
    """A storage URL for a copy of the tiny studies' SQLite file in ``folder``, the caller's to change.

    SQLite's backup API copies what is still in the write-ahead log too. The trials' checkpoints
    stay where they are (shared): exporting reads them and writes only to its output folder.
    """
    target = folder / "tuner.db"
    with closing(sqlite3.connect(tiny.folder / "tuner.db")) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``tuner ARGS`` run by click's test runner in this process, shaped like a subprocess's result.

    The same command code as ``python -m tuner.cli ARGS`` without the 2-3 s of imports a new
    interpreter pays. For runs that succeed, where the test is about what the command reads and
    prints: an unexpected exception propagates (the test fails with its traceback). That an error
    is one line on stderr with exit code 2 and no traceback is the real process's behaviour, so
    the error checks run ``python -m tuner.cli`` in a subprocess.
    """
    from click.testing import CliRunner

    from tuner.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(["tuner", *args], result.exit_code, result.stdout, result.stderr)
