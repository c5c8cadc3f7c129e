"""`tuner export --retrain` of a trial that fine-tuned from a study's best checkpoint
(`pretrained: {study: NAME}`, the two-run workflow of studies/resnet_*.yaml): it retrains from the
checkpoint the trial used, which its best.pt records (no Ray: the tasks run in-process)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from tests.tasks.conftest import FakeContext
from tuner.engine._attrs import WORKER
from tuner.exceptions import UserInputError
from tuner.export._export import _retrain
from tuner.export._trained import load_trained
from tuner.tasks.resnet import ResNetTask

_ARCH = {"n_stages": 2, "blocks": 1, "width": 8, "batch_size": 64, "lr": 3e-3}
_FT_ARGS = {"classes": [5, 6, 7, 8, 9], "split": [0.3, 0.3, 0.4]}


def _study_with_best(storage: Any, folders: list[tuple[float, Path]]) -> None:
    study = optuna.create_study(study_name="pre", storage=storage, direction="maximize", load_if_exists=True)
    for value, folder in folders:
        trial = study.ask()
        storage.set_trial_system_attr(trial._trial_id, WORKER, {"trial_dir": str(folder)})
        study.tell(trial, value)


def test_retrain_fine_tunes_again_from_the_checkpoint_the_trial_used(tmp_path: Path) -> None:
    pre = FakeContext(tmp_path / "pre0", seed=0)
    ResNetTask({"classes": [0, 1, 2, 3, 4]}).run({**_ARCH, "epochs": 1}, pre)
    storage = optuna.storages.InMemoryStorage()
    _study_with_best(storage, [(0.9, pre.trial_dir)])
    ft = FakeContext(tmp_path / "ft0", seed=0)
    ft.storage = storage  # type: ignore[attr-defined]  # the engine's context gives the running study's storage
    ResNetTask({**_FT_ARGS, "pretrained": {"study": "pre"}}).run({"epochs": 2, "lr": 1e-2, "batch_size": 64}, ft)
    used = pre.trial_dir / "best.pt"
    assert ft.attrs["pretrained"]["checkpoint"] == str(used)

    # The pretraining study has a new best since: the retrain still starts from the weights the trial used.
    other = tmp_path / "pre1"
    other.mkdir()
    shutil.copy(used, other / "best.pt")
    _study_with_best(storage, [(0.99, other)])
    trained = load_trained(ft.trial_dir / "best.pt")
    new, info = _retrain(trained, 0, tmp_path / "work")  # was: "no storage to look study 'pre' up in"
    assert info["epochs"] >= 1 and 0.0 <= info["test_accuracy"] <= 1.0
    assert torch.load(tmp_path / "work" / "best.pt", weights_only=True)["pretrained_from"] == str(used)
    assert new.data["class_names"] == trained.data["class_names"]

    used.unlink()
    with pytest.raises(UserInputError, match=rf"^--retrain: trial 0 fine-tuned from {used}, which is no longer "
                                             r"there; put it back, or export the trial without --retrain$"):
        _retrain(load_trained(ft.trial_dir / "best.pt"), 0, tmp_path / "work2")


def test_the_model_card_hides_a_password_in_the_task_args(tmp_path: Path) -> None:
    # A `pretrained: {study:, storage: URL}` with a password went into the card shared with the model.
    from tuner.export._export import _card

    pre = FakeContext(tmp_path / "pre0", seed=0)
    ResNetTask({"classes": [0, 1, 2, 3, 4]}).run({**_ARCH, "epochs": 1}, pre)
    trained = load_trained(pre.trial_dir / "best.pt")
    trained.task_args = {**trained.task_args, "pretrained": {
        "study": "pre", "storage": "postgresql+psycopg://tuner:S3cretPw@db.example:5432/hpo"}}
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    card = _card(trained, study, 0, {}, {}, {}, None, pre.trial_dir / "best.pt")
    assert "S3cretPw" not in repr(card)
    assert card["data"]["task_args"]["pretrained"]["storage"] == "postgresql+psycopg://tuner:***@db.example:5432/hpo"
