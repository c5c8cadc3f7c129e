"""The resnet task: the network, training from scratch, and fine-tuning from a checkpoint."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tuner.exceptions import SpaceError, SpecError
from tuner.tasks import _training
from tuner.tasks._training import TrainConfig, make_optimizer, make_scheduler
from tuner.tasks._vision_models import BasicBlock, build_resnet
from tuner.tasks.resnet import ResNetTask, load_checkpoint

ARCH = {"n_stages": 3, "blocks": 1, "width": 16}
PRE_ARGS = {"classes": [0, 1, 2, 3, 4]}
FT_ARGS = {"classes": [5, 6, 7, 8, 9], "split": [0.05, 0.35, 0.6]}  # 45 images to train on


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet trained on the digits 0-4 (its best.pt, as a trial saves it)."""
    from tests.tasks.conftest import FakeContext

    ctx = FakeContext(tmp_path_factory.mktemp("pretrain"), seed=0)
    final = ResNetTask(PRE_ARGS).run({**ARCH, "epochs": 5, "lr": 3e-3, "batch_size": 32}, ctx)
    assert final["val_accuracy"] > 0.95
    return ctx.trial_dir / "best.pt"


# ---- the network ----------------------------------------------------------------------------------


def test_build_resnet_stages_blocks_and_widths() -> None:
    model = build_resnet((1, 28, 28), 7, {"n_stages": 3, "blocks": [2, 1, 3], "width": 8, "dropout": 0.1})
    assert [len(stage) for stage in model.stages] == [2, 1, 3]
    assert [stage[0].conv1.out_channels for stage in model.stages] == [8, 16, 32]
    assert [stage[0].conv1.stride for stage in model.stages] == [(1, 1), (2, 2), (2, 2)]
    assert isinstance(model.stages[1][0].shortcut, nn.Sequential)  # projection where the shape changes
    assert isinstance(model.stages[0][1].shortcut, nn.Identity)
    assert model.head.in_features == 32 and model.head.out_features == 7
    assert model(torch.zeros(2, 784)).shape == (2, 7)
    assert build_resnet((3, 8, 8), 2, {"n_stages": 4})(torch.zeros(2, 192)).shape == (2, 2)  # 8 -> 4 -> 2 -> 1
    assert sum(isinstance(m, BasicBlock) for m in build_resnet((1, 8, 8), 2, {}).modules()) == 3  # defaults


@pytest.mark.parametrize("params, key", [
    ({"n_stages": 0}, "n_stages"),
    ({"n_stages": 2, "blocks": [1]}, "blocks"),
    ({"blocks": 0}, "blocks"),
    ({"width": 0}, "width"),
    ({"dropout": -0.1}, "dropout"),
])
def test_build_resnet_rejects_bad_params(params: dict[str, Any], key: str) -> None:
    with pytest.raises(SpaceError) as info:
        build_resnet((1, 8, 8), 10, params)
    assert info.value.path == key


def test_freeze_stops_gradients_and_batch_norm_statistics() -> None:
    torch.manual_seed(0)
    model = build_resnet((1, 8, 8), 3, {"n_stages": 2, "width": 4})
    model.freeze(1)
    model.train()
    assert not model.stem.training and not model.stages[0].training and model.stages[1].training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(8, 64)).sum().backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(("stem.", "stages.0."))
        assert (p.grad is None) == frozen, name
        assert p.requires_grad != frozen
    after = model.state_dict()
    for key in before:
        if key.startswith(("stem.", "stages.0.")):
            assert torch.equal(before[key], after[key]), key  # running stats too
    assert not torch.equal(before["stages.1.0.bn1.running_mean"], after["stages.1.0.bn1.running_mean"])
    model.freeze(0)
    assert all(p.requires_grad for p in model.parameters()) and model.stem.training
    with pytest.raises(SpaceError) as info:
        model.freeze(3)
    assert info.value.path == "freeze_stages"


def test_reset_head() -> None:
    model = build_resnet((1, 8, 8), 5, {"n_stages": 1, "width": 4})
    old = model.head
    model.reset_head(5, "keep")
    assert model.head is old
    model.reset_head(3, "zeros")
    assert model.head.out_features == 3 and not model.head.weight.any() and not model.head.bias.any()
    model.reset_head(4, "random")
    assert model.head.out_features == 4 and model.head.weight.abs().sum() > 0
    with pytest.raises(SpaceError, match="the pretrained head has 4 classes, the data 6"):
        model.reset_head(6, "keep")


# ---- training from scratch ---------------------------------------------------------------------------


def test_resnet_learns_digits(make_ctx) -> None:
    ctx = make_ctx()
    final = ResNetTask({"max_samples": 600}).run(
        {**ARCH, "epochs": 6, "lr": 1e-2, "batch_size": 32, "augment": "light"}, ctx)
    assert final["val_accuracy"] > 0.8
    assert len(ctx.reports) == 6 and ctx.series("train_loss")[-1] < ctx.series("train_loss")[0]
    assert "pretrained" not in ctx.attrs


def test_bf16_and_onecycle_with_two_learning_rates(make_ctx) -> None:
    final = ResNetTask({"max_samples": 300}).run(
        {**ARCH, "epochs": 4, "lr": 0.1, "optimizer": "sgd", "schedule": "onecycle", "precision": "bf16",
         "backbone_lr_frac": 0.3, "batch_size": 16}, make_ctx())
    assert final["val_accuracy"] > 0.5


# ---- fine-tuning ---------------------------------------------------------------------------------


def test_fine_tuning_beats_training_from_scratch_on_a_small_budget(pretrained: Path, make_ctx) -> None:
    budget = {**ARCH, "epochs": 2, "lr": 1e-2, "batch_size": 16}
    scratch, tuned = ResNetTask(FT_ARGS), ResNetTask({**FT_ARGS, "pretrained": str(pretrained)})
    assert len(tuned.load_data().train) <= 50
    gains = []
    for seed in (0, 1, 2):
        a = scratch.run(budget, make_ctx(seed=seed))["test_accuracy"]
        b = tuned.run(budget, make_ctx(seed=seed))["test_accuracy"]
        gains.append(b - a)
    assert min(gains) > 0, gains
    assert np.mean(gains) >= 0.08, gains


def test_fine_tuning_rebuilds_the_architecture_and_replaces_the_head(pretrained: Path, make_ctx) -> None:
    ctx = make_ctx()
    # The trial's own architecture params are ignored: the checkpoint's params rebuild the network.
    ResNetTask({**FT_ARGS, "classes": [5, 6, 7], "pretrained": str(pretrained)}).run(
        {"n_stages": 1, "width": 64, "epochs": 1, "lr": 1e-3, "head_init": "zeros"}, ctx)
    assert ctx.attrs["pretrained"] == {"checkpoint": str(pretrained), "n_stages": 3, "blocks": [1, 1, 1], "width": 16}
    saved = torch.load(ctx.trial_dir / "best.pt", weights_only=True)
    assert saved["state_dict"]["head.weight"].shape == (3, 64)
    assert saved["pretrained_from"] == str(pretrained)


def test_head_init_zeros_from_scratch_starts_with_a_zero_head(make_ctx) -> None:
    """The fine-tuning params "work from scratch too", but head_init did nothing without `pretrained`."""
    ctx = make_ctx()
    ResNetTask(dict(PRE_ARGS, max_samples=200)).run({"n_stages": 1, "width": 8, "epochs": 1, "lr": 0.0,
                                                     "head_init": "zeros"}, ctx)
    saved = torch.load(ctx.trial_dir / "best.pt", weights_only=True)["state_dict"]
    assert float(saved["head.weight"].abs().sum()) == 0.0 and float(saved["head.bias"].abs().sum()) == 0.0


def test_freeze_stages_keeps_pretrained_weights_unchanged(pretrained: Path, make_ctx) -> None:
    ctx = make_ctx()
    ResNetTask({**FT_ARGS, "pretrained": str(pretrained)}).run(
        {"epochs": 2, "lr": 1e-2, "freeze_stages": 2, "batch_size": 16}, ctx)
    before = torch.load(pretrained, weights_only=True)["state_dict"]
    after = torch.load(ctx.trial_dir / "best.pt", weights_only=True)["state_dict"]
    for key, value in before.items():
        if key.startswith(("stem.", "stages.0.", "stages.1.")):
            assert torch.equal(value, after[key]), key  # weights and BatchNorm statistics
    assert not torch.equal(before["stages.2.0.conv1.weight"], after["stages.2.0.conv1.weight"])
    assert after["head.weight"].shape == (5, 64)


def test_backbone_lr_fraction_makes_two_param_groups(pretrained: Path, make_ctx, monkeypatch) -> None:
    made: list[torch.optim.Optimizer] = []
    real = _training.make_optimizer

    def spy(model: nn.Module, cfg: TrainConfig, groups: Any = None) -> torch.optim.Optimizer:
        made.append(real(model, cfg, groups))
        made[-1].model = model  # type: ignore[attr-defined]
        return made[-1]

    monkeypatch.setattr(_training, "make_optimizer", spy)
    task = ResNetTask({**FT_ARGS, "pretrained": str(pretrained)})
    task.run({"epochs": 1, "lr": 0.02, "backbone_lr_frac": 0.1, "freeze_stages": 1}, make_ctx())
    head_group, backbone_group = made[-1].param_groups
    model = made[-1].model  # type: ignore[attr-defined]
    assert head_group["lr"] == pytest.approx(0.02) and backbone_group["lr"] == pytest.approx(0.002)
    assert {id(p) for p in head_group["params"]} == {id(p) for p in model.head.parameters()}
    trainable_backbone = {id(p) for p in model.backbone_parameters() if p.requires_grad}
    assert {id(p) for p in backbone_group["params"]} == trainable_backbone
    assert not any(id(p) in trainable_backbone for p in model.stem.parameters())  # frozen: not in the optimizer

    task.run({"epochs": 1, "lr": 0.02, "backbone_lr_frac": 0.0}, make_ctx())  # 0: the backbone is frozen
    assert len(made[-1].param_groups) == 1 and len(made[-1].param_groups[0]["params"]) == 2
    task.run({"epochs": 1, "lr": 0.02}, make_ctx())  # default 1.0: one group, as for any model
    assert len(made[-1].param_groups) == 1 and made[-1].param_groups[0]["lr"] == pytest.approx(0.02)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step"])
def test_schedules_keep_the_lr_ratio_of_the_groups(schedule: str) -> None:
    model = build_resnet((1, 8, 8), 3, {"n_stages": 1, "width": 4})
    cfg = TrainConfig.from_params({"lr": 0.1, "schedule": schedule, "warmup_frac": 0.1, "epochs": 4,
                                   "step_epochs": 1})
    optimizer = make_optimizer(model, cfg, [(model.head_parameters(), 1.0), (model.backbone_parameters(), 0.25)])
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=5)
    assert scheduler is not None
    for _ in range(17):
        optimizer.step()
        scheduler.step()
        head, backbone = (g["lr"] for g in optimizer.param_groups)
        assert backbone == pytest.approx(0.25 * head)


# ---- checkpoints ----------------------------------------------------------------------------------


def test_plain_state_dicts_rebuild_from_their_shapes(pretrained: Path, tmp_path: Path, make_ctx) -> None:
    state = build_resnet((1, 8, 8), 4, {"n_stages": 2, "blocks": [1, 3], "width": 8}).state_dict()
    torch.save(state, tmp_path / "plain.pt")
    ctx = make_ctx()
    task = ResNetTask({**FT_ARGS, "pretrained": str(tmp_path / "plain.pt")})
    task.run({"n_stages": 3, "width": 64, "epochs": 1, "lr": 1e-2}, ctx)  # the trial's architecture is ignored
    assert ctx.attrs["pretrained"] == {"checkpoint": str(tmp_path / "plain.pt"), "n_stages": 2, "blocks": [1, 3],
                                       "width": 8}
    saved = torch.load(ctx.trial_dir / "best.pt", weights_only=True)
    assert saved["params"]["blocks"] == [1, 3] and saved["params"]["width"] == 8  # it describes its network
    again = make_ctx()  # so a fine-tuned network can be fine-tuned again
    ResNetTask({**FT_ARGS, "pretrained": str(ctx.trial_dir / "best.pt")}).run({"epochs": 1}, again)
    assert again.attrs["pretrained"]["blocks"] == [1, 3]
    mlp_state = nn.Sequential(nn.Linear(64, 10)).state_dict()
    torch.save(mlp_state, tmp_path / "mlp.pt")
    with pytest.raises(SpecError, match="not a tuner ResNet's state dict"):
        ResNetTask({**FT_ARGS, "pretrained": str(tmp_path / "mlp.pt")}).run({"epochs": 1}, make_ctx())
    ckpt = torch.load(pretrained, weights_only=True)
    torch.save({**ckpt, "params": {**ckpt["params"], "width": 8}}, tmp_path / "lying.pt")
    with pytest.raises(SpecError) as info:
        ResNetTask({**FT_ARGS, "pretrained": str(tmp_path / "lying.pt")}).run({"epochs": 1}, make_ctx())
    assert info.value.path == "task_args.pretrained" and "do not fit a ResNet" in str(info.value)


def test_checkpoint_of_another_task_or_other_channels_is_refused(pretrained: Path, tmp_path: Path,
                                                                  make_ctx) -> None:
    ckpt = torch.load(pretrained, weights_only=True)
    torch.save({**ckpt, "task": "cnn"}, tmp_path / "cnn.pt")
    with pytest.raises(SpecError, match="written by task 'cnn'"):
        ResNetTask({**FT_ARGS, "pretrained": str(tmp_path / "cnn.pt")}).run({"epochs": 1}, make_ctx())
    rgb = build_resnet((3, 8, 8), 5, ARCH).state_dict()
    torch.save(rgb, tmp_path / "rgb.pt")
    with pytest.raises(SpecError, match="3-channel images, the data have 1 channels"):
        ResNetTask({**FT_ARGS, "pretrained": str(tmp_path / "rgb.pt")}).run({**ARCH, "epochs": 1}, make_ctx())


def test_missing_or_corrupt_checkpoints_are_spec_errors_at_validation(pretrained: Path, tmp_path: Path) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text("task: resnet\n")
    cases = {"missing.pt": None, "empty.pt": b"", "text.pt": b"hello, not a checkpoint",
             "truncated.pt": pretrained.read_bytes()[:2000]}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(SpecError) as info:
            ResNetTask({"pretrained": name}, source=str(spec))
        assert info.value.path == "task_args.pretrained", name
        assert ("not found" if content is None else "is not a torch checkpoint") in str(info.value)
    (tmp_path / "ok.pt").write_bytes(pretrained.read_bytes())
    task = ResNetTask({"pretrained": "ok.pt"}, source=str(spec))  # relative to the spec file
    assert task.args["pretrained"] == str((tmp_path / "ok.pt").resolve())


@pytest.mark.parametrize("value, key, words", [
    ({"study": ""}, "task_args.pretrained.study", "expected a study name"),
    ({"study": "x", "storge": "y"}, "task_args.pretrained.storge", "unknown key"),
    ({"study": "x", "storage": 3}, "task_args.pretrained.storage", "expected a storage URL"),
    (42, "task_args.pretrained", "expected a checkpoint path or {study: NAME}"),
])
def test_bad_pretrained_values(value: Any, key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        ResNetTask({"pretrained": value}, source="s.yaml")
    assert info.value.path == key and words in str(info.value)


class _Evil:
    def __reduce__(self) -> Any:
        return (print, ("this must never run",))


def test_unloadable_checkpoints_fail_the_trial_clearly(tmp_path: Path, make_ctx) -> None:
    torch.save({"state_dict": {"w": _Evil()}}, tmp_path / "evil.pt")  # needs code to unpickle: refused
    with pytest.raises(SpecError) as info:
        load_checkpoint(tmp_path / "evil.pt", source="s.yaml")
    assert info.value.path == "task_args.pretrained" and "cannot load checkpoint" in str(info.value)
    assert "holds Python objects" in str(info.value) and "weights_only` set to `False`" not in str(info.value)
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)  # torch's message would advise weights_only=False
    with pytest.raises(SpecError) as info:
        load_checkpoint(tmp_path / "noise.pt", source="s.yaml")
    assert "False" not in str(info.value) and str(info.value).count("\n") == 0
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(SpecError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "list.pt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    task = ResNetTask({"pretrained": str(tmp_path / "legacy.pt")})  # looks like a torch file: passes validation
    with pytest.raises(SpecError, match="cannot (load checkpoint|fine-tune)|not a state dict"):
        task.run({"epochs": 1}, make_ctx())


# ---- a study's best trial as the checkpoint ----------------------------------------------------------


def _storage_with_study(pretrained: Path, tmp_path: Path) -> Any:
    import optuna

    from tuner.engine._attrs import WORKER

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="pre", storage=storage, direction="maximize")
    for value, folder in ((0.5, tmp_path / "worse"), (0.9, pretrained.parent)):
        trial = study.ask()
        storage.set_trial_system_attr(trial._trial_id, WORKER, {"trial_dir": str(folder)})
        study.tell(trial, value)
    optuna.create_study(study_name="empty", storage=storage)
    return storage


def test_pretrained_study_reference_uses_the_best_trials_checkpoint(pretrained: Path, tmp_path: Path,
                                                                   make_ctx) -> None:
    storage = _storage_with_study(pretrained, tmp_path)
    ctx = make_ctx()
    ctx.storage = storage  # the engine's TrialContext exposes the running study's storage
    task = ResNetTask({**FT_ARGS, "pretrained": {"study": "pre"}})
    assert task.checkpoint_path(ctx) == pretrained
    task.run({"epochs": 1, "lr": 1e-2}, ctx)
    assert ctx.attrs["pretrained"]["checkpoint"] == str(pretrained)
    for name, words in (("nope", "no study 'nope' in the storage"), ("empty", "has no complete trial yet")):
        with pytest.raises(SpecError) as info:
            ResNetTask({**FT_ARGS, "pretrained": {"study": name}}).run({"epochs": 1}, ctx)
        assert info.value.path == "task_args.pretrained.study" and words in str(info.value)
    with pytest.raises(SpecError, match="no storage to look study 'pre' up in"):
        ResNetTask({**FT_ARGS, "pretrained": {"study": "pre"}}).run({"epochs": 1}, make_ctx())


def _sqlite_with_pretraining(tmp_path: Path) -> str:
    """A real SQLite storage holding study ``pre`` (one complete trial, whose folder holds best.pt) and ``empty``."""
    import optuna

    from tuner.engine._attrs import WORKER
    from tuner.storage import open_storage

    url = f"sqlite:///{tmp_path / 'pre.db'}"
    storage = open_storage(url)
    study = optuna.create_study(study_name="pre", storage=storage, direction="maximize")
    trial = study.ask()
    (tmp_path / "trial_0").mkdir()
    (tmp_path / "trial_0" / "best.pt").write_bytes(b"PK")  # looked up, not loaded, before the trials
    storage.set_trial_system_attr(trial._trial_id, WORKER, {"trial_dir": str(tmp_path / "trial_0")})
    study.tell(trial, 0.9)
    optuna.create_study(study_name="empty", storage=storage)
    return url


def test_a_pretrained_study_the_storage_lacks_is_refused_before_any_trial(tmp_path: Path) -> None:
    """``pretrained: {study: nosuch}`` passed tuner validate and failed every trial of the run."""
    url = _sqlite_with_pretraining(tmp_path)
    ResNetTask({**FT_ARGS, "pretrained": {"study": "pre"}}).check_storage(url)
    for name, words in (("nosuch", f"no study 'nosuch' in the storage {url}; run the pretraining study first"),
                        ("empty", "study 'empty' has no complete trial yet")):
        with pytest.raises(SpecError) as info:
            ResNetTask({**FT_ARGS, "pretrained": {"study": name}}, source="f.yaml").check_storage(url)
        assert info.value.path == "task_args.pretrained.study" and words in str(info.value), info.value
    missing = tmp_path / "none.db"
    with pytest.raises(SpecError, match=f"no study 'pre': there is no storage at {missing}"):
        ResNetTask({**FT_ARGS, "pretrained": {"study": "pre"}}).check_storage(f"sqlite:///{missing}")
    assert not missing.exists()  # read-only: nothing is created
    # pretrained.storage, when given, is where the study is looked up
    ResNetTask({**FT_ARGS, "pretrained": {"study": "pre", "storage": url}}).check_storage(f"sqlite:///{missing}")
    ResNetTask(FT_ARGS).check_storage(f"sqlite:///{missing}")  # from scratch: nothing to look up


@pytest.mark.parametrize("command", ["validate", "run"])
def test_tuner_validate_and_run_refuse_a_missing_pretrained_study_in_one_line(tmp_path: Path, command: str) -> None:
    from click.testing import CliRunner

    from tuner.cli import main

    url = _sqlite_with_pretraining(tmp_path)
    before = (tmp_path / "pre.db").read_bytes()
    spec = tmp_path / "ft.yaml"
    spec.write_text((Path(__file__).parents[2] / "studies" / "resnet_finetune.yaml").read_text()
                    .replace("search_space: ../search_spaces/", "search_space: ")
                    .replace("{study: resnet_pretrain}", "{study: nosuch}"))
    out = CliRunner().invoke(main, [command, str(spec), "--storage", url, "--set", "n_trials=1"])
    assert out.exit_code == 2 and len(out.output.splitlines()) == 1, out.output
    assert f"{spec}: task_args.pretrained.study: no study 'nosuch' in the storage {url}" in out.output
    assert (tmp_path / "pre.db").read_bytes() == before
    fresh = tmp_path / "fresh.db"
    out = CliRunner().invoke(main, [command, str(spec), "--storage", f"sqlite:///{fresh}"])
    assert out.exit_code == 2 and f"no study 'nosuch': there is no storage at {fresh}" in out.output, out.output
    assert not fresh.exists()
    if command == "validate":
        spec.with_name("ok.yaml").write_text(spec.read_text().replace("{study: nosuch}", "{study: pre}"))
        ok = CliRunner().invoke(main, [command, str(spec.with_name("ok.yaml")), "--storage", url])
        assert ok.exit_code == 0 and "ok: study 'resnet_finetune'" in ok.output, ok.output


def test_a_relative_pretrained_storage_is_read_from_the_spec_folder_then_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trials run in Ray workers with another working directory: a relative SQLite path must
    reach them absolute, found where the user meant it (the spec's folder first, as for the spec's
    own storage and the checkpoint path)."""
    specs, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    specs.mkdir()
    elsewhere.mkdir()
    spec = specs / "ft.yaml"
    spec.write_text("task: resnet\n")
    monkeypatch.chdir(elsewhere)

    def storage_of(url: str) -> str:
        return ResNetTask({"pretrained": {"study": "pre", "storage": url}}, source=str(spec)).args["pretrained"]["storage"]

    # Neither folder holds the file: the spec's folder is named (the lookup then says which file has no study).
    assert storage_of("sqlite:///pre.db") == f"sqlite:///{specs / 'pre.db'}"
    (elsewhere / "pre.db").write_bytes(b"")
    assert storage_of("sqlite:///pre.db") == f"sqlite:///{elsewhere / 'pre.db'}"  # only the working directory has it
    (specs / "pre.db").write_bytes(b"")
    assert storage_of("sqlite:///pre.db?timeout=5") == f"sqlite:///{specs / 'pre.db'}?timeout=5"  # the spec's folder first
    assert storage_of(f"sqlite:///{elsewhere / 'pre.db'}") == f"sqlite:///{elsewhere / 'pre.db'}"  # absolute: as written
    assert storage_of("postgresql://u@h/db") == "postgresql://u@h/db"
