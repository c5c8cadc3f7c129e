"""The shipped image studies: they validate, and each runs end to end through ``tuner.run`` on a tiny budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import tuner
from tests.conftest import ROOT
from tests.data.test_idx import fake_mnist
from tuner.engine import _attrs

STUDIES = ROOT / "studies"


@pytest.mark.parametrize("name", ["digits_cnn", "resnet_pretrain", "resnet_finetune"])
def test_the_studies_validate(name: str) -> None:
    spec = tuner.validate(STUDIES / f"{name}.yaml")
    assert spec.name == name and spec.task in ("cnn", "resnet")


@pytest.mark.skipif((ROOT / "data" / "fashion-mnist").is_dir(), reason="the Fashion-MNIST files are present here")
def test_fashion_without_its_files_says_what_to_download() -> None:
    run = subprocess.run([sys.executable, "-m", "tuner.cli", "validate", "studies/fashion_cnn.yaml"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: studies/fashion_cnn.yaml: task_args.dataset: data folder "
                               "'../data/fashion-mnist' not found")
    assert "train-images-idx3-ubyte.gz" in lines[0] and f"into {ROOT / 'data' / 'fashion-mnist'}" in lines[0]


# ---- end to end, tiny budgets ------------------------------------------------------------------------

TINY_CNN = {"include": ["cnn.yaml"], "params": {"epochs": 2, "n_conv": 1, "channels": {"int": [4, 8], "per": "n_conv"},
                                                 "convs_per_block": 1, "head_width": 16, "batch_size": 64}}


def _run(name: str, storage: str, tmp_path: Path, overrides: dict[str, Any]) -> Any:
    # One trial at a time: a second fresh worker process would cost more than the trial itself.
    return tuner.run(STUDIES / f"{name}.yaml", storage=storage, overrides={
        "n_trials": 2, "concurrency": 1, "artifacts_dir": str(tmp_path / "runs"), **overrides})


def _check_trials(study: Any, epochs: int) -> list[Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials), \
        [(t.state, t.system_attrs.get(_attrs.ERROR)) for t in trials]
    for t in trials:
        curve = t.system_attrs[_attrs.CURVE]
        assert [point["step"] for point in curve] == list(range(1, epochs + 1))  # a learning curve per epoch
        assert all("val_accuracy" in point and "train_loss" in point for point in curve)
        metrics = t.system_attrs[_attrs.METRICS]
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["val_accuracy"] == t.value
        assert Path(t.system_attrs[_attrs.WORKER]["trial_dir"], "best.pt").is_file()
    return trials


@pytest.mark.usefixtures("ray_cluster")
def test_digits_cnn_runs(tmp_path: Path, sqlite_url: str) -> None:
    study = _run("digits_cnn", sqlite_url, tmp_path, {"task_args.max_samples": 300, "search_space": TINY_CNN})
    _check_trials(study, epochs=2)


@pytest.mark.usefixtures("ray_cluster")
def test_fashion_cnn_runs_on_idx_files(tmp_path: Path, sqlite_url: str) -> None:
    folder = fake_mnist(tmp_path / "fashion-mnist", n_train=200, n_test=50, size=28)
    study = _run("fashion_cnn", sqlite_url, tmp_path, {"task_args.dataset": str(folder), "search_space": TINY_CNN})
    trials = _check_trials(study, epochs=2)
    per_class = trials[0].system_attrs[_attrs.ATTR_PREFIX + "per_class"]
    assert "Ankle boot" in per_class and sum(c["support"] for c in per_class.values()) == 50  # the t10k files


@pytest.mark.usefixtures("ray_cluster")
def test_resnet_pretrain_then_finetune_from_the_best_trial(tmp_path: Path, sqlite_url: str) -> None:
    tiny = {"epochs": 2, "n_stages": 2, "width": 8, "blocks": 1, "batch_size": 64}
    pre = _run("resnet_pretrain", sqlite_url, tmp_path,
               {"task_args.max_samples": 300, "search_space": {"include": ["resnet.yaml"], "params": tiny}})
    _check_trials(pre, epochs=2)
    best_dir = pre.best_trial.system_attrs[_attrs.WORKER]["trial_dir"]
    ft = _run("resnet_finetune", sqlite_url, tmp_path,
              {"search_space": {"include": ["finetune.yaml"], "params": {"epochs": 2, "batch_size": 16}}})
    trials = _check_trials(ft, epochs=2)
    for t in trials:  # both started from the pretraining study's best checkpoint
        assert t.system_attrs[_attrs.ATTR_PREFIX + "pretrained"]["checkpoint"] == str(Path(best_dir) / "best.pt")
        assert t.system_attrs[_attrs.ATTR_PREFIX + "pretrained"]["n_stages"] == 2
