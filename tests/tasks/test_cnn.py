"""The image tasks' shared parts and the cnn task: models, augmentation, task_args, training knobs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tuner.exceptions import SpaceError, SpecError
from tuner.tasks import Task, get_task
from tuner.tasks._augment import AUGMENT_PRESETS, ImageAugment, augment_from_params
from tuner.tasks._vision_models import build_cnn
from tuner.tasks.cnn import CNNTask, ImageClassifierTask

SMALL = {"max_samples": 300}
FAST = {"epochs": 2, "lr": 3e-3, "n_conv": 1, "channels": 8, "head_width": 16, "batch_size": 32}
TIMING = {"epoch_time_s", "train_time_s"}


def _strip(final: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in final.items() if k not in TIMING}


# ---- registry and the task contract (both image tasks) ---------------------------------------------


def test_looking_up_the_image_tasks_does_not_import_torch() -> None:
    code = ("import sys; from tuner.tasks import get_task\n"
            "for name in ('cnn', 'resnet'):\n"
            "    t = get_task(name)({'classes': [1, 2]}); assert 'val_accuracy' in t.metric_names()\n"
            "bad = [m for m in ('torch', 'sklearn', 'ray', 'optuna') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_task_contract(name: str, make_ctx) -> None:
    cls = get_task(name)
    assert issubclass(cls, ImageClassifierTask) and issubclass(cls, Task) and cls.name == name
    task = cls()
    assert cls.default_metric in task.metric_names()
    task = cls(SMALL)
    ctx = make_ctx()
    params = {**FAST, "n_stages": 1, "width": 4} if name == "resnet" else FAST
    final = task.run(params, ctx)
    assert set(final) <= set(task.metric_names())
    assert [s for s, _ in ctx.reports] == [1, 2]  # per-epoch metrics through the context
    assert all(set(m) <= set(task.metric_names()) and "val_accuracy" in m for _, m in ctx.reports)
    assert math.isfinite(final["test_accuracy"]) and final["n_params"] > 0
    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=True)
    assert ckpt["task"] == name and ckpt["task_args"]["max_samples"] == 300
    assert ckpt["data"]["input_shape"] == [1, 8, 8]
    assert len(ctx.attrs["confusion_matrix"]) == 10


# ---- the cnn task ---------------------------------------------------------------------------------


def test_cnn_learns_digits(make_ctx) -> None:
    ctx = make_ctx()
    final = CNNTask({"max_samples": 900}).run(
        {"epochs": 6, "lr": 3e-3, "n_conv": 2, "channels": [16, 32], "head_width": 64, "batch_size": 32}, ctx)
    assert final["val_accuracy"] >= 0.9 and final["test_accuracy"] >= 0.88
    assert ctx.series("train_loss")[-1] < ctx.series("train_loss")[0]


@pytest.mark.parametrize("options", [
    {"precision": "bf16"},
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "schedule": "onecycle"},
    {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine", "warmup_frac": 0.2, "grad_clip": 1.0,
     "label_smoothing": 0.1, "l1": 1e-5, "dropout": 0.2},
    {"schedule": "step", "step_gamma": 0.5, "step_epochs": 3, "pool": "avg", "kernel": 5, "activation": "gelu",
     "n_conv": 2, "channels": [16, 32], "global_pool": True, "head_width": 0, "epochs": 8},
    {"batch_norm": False, "activation": "silu", "pool": "none"},
    {"augment": "strong", "convs_per_block": 2},
])
def test_shared_training_knobs_work_with_the_cnn(make_ctx, options: dict[str, Any]) -> None:
    ctx = make_ctx()
    final = CNNTask(SMALL).run({**FAST, "epochs": 4, "lr": 1e-2, "channels": 16, "head_width": 32, **options}, ctx)
    assert final["val_accuracy"] > 0.5  # chance is 0.1
    assert all(math.isfinite(v) for v in final.values())


def test_early_stopping_and_pruning(make_ctx) -> None:
    ctx = make_ctx(metric="val_loss", direction="minimize")
    CNNTask(SMALL).run({**FAST, "epochs": 30, "lr": 0.3, "optimizer": "sgd", "early_stopping_patience": 2}, ctx)
    assert len(ctx.reports) < 30
    from tuner.exceptions import TrialPruned

    pruned = make_ctx(prune_at=2)
    with pytest.raises(TrialPruned):
        CNNTask(SMALL).run({**FAST, "epochs": 5}, pruned)
    assert len(pruned.reports) == 2


def test_same_seed_same_result_with_augmentation_and_dropout(make_ctx) -> None:
    params = {**FAST, "augment": "strong", "dropout": 0.2}
    runs = [_strip(CNNTask(SMALL).run(params, make_ctx(seed=s))) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    plain = _strip(CNNTask(SMALL).run({**FAST, "dropout": 0.2}, make_ctx(seed=3)))
    assert plain != runs[0]  # augmentation changed what was learned


@pytest.mark.parametrize("args, key, words", [
    ({"datset": "digits"}, "task_args.datset", "did you mean 'dataset'?"),
    ({"label": "y"}, "task_args.label", "unknown key"),
    ({"dataset": "data/fashion-mnist"}, "task_args.dataset", "data folder 'data/fashion-mnist' not found"),
    ({"dataset": "t.csv"}, "task_args.dataset", "CSV file, which holds no image shape"),
    ({"classes": [3]}, "task_args.classes", "expected a list of classes"),
    ({"classes": [1, 1]}, "task_args.classes", "classes repeat"),
    ({"classes": [1, 10]}, "task_args.classes", "class 10 is not in digits"),
    ({"classes": [1.5, 2]}, "task_args.classes", "a class must be a name or an integer"),
    ({"normalize": "zscore"}, "task_args.normalize", "unknown normalisation 'zscore'"),
    ({"flip": "yes"}, "task_args.flip", "expected true or false"),
    ({"max_samples": 5}, "task_args.max_samples", "expected an integer >= 10"),
    ({"split": [0.5, 0.5]}, "task_args.split", "expected a list of 3 fractions"),
    ({"split_seed": 1.5}, "task_args.split_seed", "expected an integer"),
])
def test_bad_task_args_raise_spec_errors_at_the_key(tmp_path: Path, args: dict[str, Any], key: str,
                                                     words: str) -> None:
    (tmp_path / "t.csv").write_text("a,label\n1,0\n2,1\n")
    spec = tmp_path / "study.yaml"
    spec.write_text("task: cnn\n")
    for cls in (CNNTask, get_task("resnet")):
        with pytest.raises(SpecError) as info:
            cls(args, source=str(spec))
        assert info.value.path == key, str(info.value)
        assert words in str(info.value)
        assert str(info.value).startswith(f"{spec}: {key}: ")


# ---- build_cnn ------------------------------------------------------------------------------------


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_build_cnn_from_params() -> None:
    model = build_cnn((1, 28, 28), 10, {"n_conv": 3, "channels": [8, 16, 32, 64], "convs_per_block": 2,
                                        "kernel": 5, "pool": "avg", "head_width": 20, "dropout": 0.3})
    assert [(c.in_channels, c.out_channels) for c in _convs(model)] == [(1, 8), (8, 8), (8, 16), (16, 16), (16, 32),
                                                                          (32, 32)]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in _convs(model))
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 3  # 28 -> 14 -> 7 -> 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32 * 3 * 3, 20), (20, 10)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert model(torch.zeros(4, 784)).shape == (4, 10)


def test_build_cnn_stops_pooling_at_one_pixel_and_global_pool() -> None:
    model = build_cnn((1, 8, 8), 10, {"n_conv": 4, "channels": 4, "pool": "max", "head_width": 0})
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert model(torch.zeros(2, 64)).shape == (2, 10)
    gp = build_cnn((3, 16, 16), 5, {"n_conv": 1, "channels": 6, "pool": "none", "global_pool": True, "head_width": 0})
    assert [m.in_features for m in gp.modules() if isinstance(m, nn.Linear)] == [6]
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in gp.modules())
    assert gp(torch.zeros(2, 3 * 16 * 16)).shape == (2, 5)
    no_bn = build_cnn((1, 8, 8), 3, {"batch_norm": False})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_bn.modules()) and _convs(no_bn)[0].bias is not None


@pytest.mark.parametrize("params, key", [
    ({"n_conv": 0}, "n_conv"),
    ({"n_conv": 3, "channels": [8, 8]}, "channels"),
    ({"channels": 0}, "channels"),
    ({"kernel": 4}, "kernel"),
    ({"pool": "min"}, "pool"),
    ({"batch_norm": "yes"}, "batch_norm"),
    ({"activation": "swish"}, "activation"),
    ({"head_width": -1}, "head_width"),
    ({"dropout": 1.0}, "dropout"),
    ({"convs_per_block": 0}, "convs_per_block"),
])
def test_build_cnn_rejects_bad_params(params: dict[str, Any], key: str) -> None:
    with pytest.raises(SpaceError) as info:
        build_cnn((1, 8, 8), 10, params)
    assert info.value.path == key


# ---- augmentation -------------------------------------------------------------------------------


def _images(n: int = 16, shape: tuple[int, int, int] = (1, 8, 8)) -> torch.Tensor:
    return torch.randn(n, int(np.prod(shape)), generator=torch.Generator().manual_seed(0))


def test_augmentation_changes_batches_and_is_seeded() -> None:
    x = _images()
    a, b, c = (ImageAugment((1, 8, 8), shift=1, rotate=10, scale=0.1, seed=s) for s in (1, 1, 2))
    out_a, out_b, out_c = a(x), b(x), c(x)
    assert out_a.shape == x.shape and out_a.dtype == x.dtype
    assert not torch.equal(out_a, x)
    assert torch.equal(out_a, out_b)  # same seed, same transforms
    assert not torch.equal(out_a, out_c)
    assert not torch.equal(a(x), out_a)  # the next batch draws new transforms
    assert torch.equal(x, _images())  # the input is left alone


def test_shift_is_pad_and_crop_with_border_pixels() -> None:
    x = torch.arange(2 * 25, dtype=torch.float32).reshape(2, 1, 5, 5)
    aug = ImageAugment((1, 5, 5), shift=2, seed=0)
    g = torch.Generator().manual_seed(0)
    dx = torch.randint(-2, 3, (2,), generator=g)
    dy = torch.randint(-2, 3, (2,), generator=g)
    out = aug(x)
    for i in range(2):
        rows = (torch.arange(5) - dy[i]).clamp(0, 4)
        cols = (torch.arange(5) - dx[i]).clamp(0, 4)
        expected = x[i, 0][rows][:, cols]  # shifted by (dx, dy), the edge repeated into the gap
        torch.testing.assert_close(out[i, 0], expected, atol=1e-4, rtol=0)


def test_flip_only_when_allowed() -> None:
    x = _images(64)
    assert augment_from_params({"augment": "light", "aug_shift": 0, "aug_rotate": 0}, (1, 8, 8), flip=False) is None
    flipper = augment_from_params({"augment": "light", "aug_shift": 0, "aug_rotate": 0}, (1, 8, 8), flip=True, seed=0)
    assert flipper is not None and flipper.flip
    out = flipper(x).reshape(64, 1, 8, 8)
    images = x.reshape(64, 1, 8, 8)
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and 10 < sum(mirrored) < 54


def test_augment_params_presets_and_overrides() -> None:
    assert augment_from_params({}, (1, 8, 8)) is None
    assert augment_from_params({"augment": "none"}, (1, 28, 28)) is None
    light = augment_from_params({"augment": "light"}, (1, 28, 28))
    assert (light.shift, light.rotate, light.scale) == (2, 10.0, 0.0)
    strong = augment_from_params({"augment": "strong"}, (1, 8, 8))
    assert (strong.shift, strong.rotate, strong.scale) == (1, 15.0, 0.1)
    custom = augment_from_params({"augment": "none", "aug_shift": 3}, (1, 28, 28))
    assert (custom.shift, custom.rotate) == (3, 0.0)
    assert set(AUGMENT_PRESETS) == {"none", "light", "strong"}
    for params, key in (({"augment": "heavy"}, "augment"), ({"aug_shift": -1}, "aug_shift"),
                        ({"aug_rotate": 200}, "aug_rotate"), ({"aug_scale": 1.0}, "aug_scale")):
        with pytest.raises(SpaceError) as info:
            augment_from_params(params, (1, 8, 8))
        assert info.value.path == key


class _Spy(nn.Module):
    """Wraps a model and records what it is fed in training and in evaluation mode."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].append(x.detach().clone())
        return self.inner(x)


def test_augmentation_applies_to_training_batches_only(make_ctx) -> None:
    spies: list[_Spy] = []

    class SpyCNN(CNNTask):
        def build_model(self, data, params):  # type: ignore[no-untyped-def]
            spies.append(_Spy(super().build_model(data, params)))
            return spies[-1]

    task = SpyCNN(SMALL)
    data = task.load_data()
    task.run({**FAST, "epochs": 1, "augment": "light"}, make_ctx())
    seen_train = torch.cat(spies[0].seen[True])
    train_rows = {row.numpy().tobytes() for row in torch.tensor(data.train.X)}
    changed = sum(row.numpy().tobytes() not in train_rows for row in seen_train)
    assert len(seen_train) == len(data.train) and changed > 0.8 * len(seen_train)
    seen_eval = torch.cat(spies[0].seen[False])  # validation, then test: exactly the data
    torch.testing.assert_close(seen_eval, torch.cat([torch.tensor(data.val.X), torch.tensor(data.test.X)]),
                               rtol=0, atol=0)


def test_augmenter_uses_the_trials_seed(make_ctx) -> None:
    task = CNNTask(SMALL)
    data = task.load_data()
    a = task.make_augment(data, {"augment": "light"}, make_ctx(seed=5))
    b = task.make_augment(data, {"augment": "light"}, make_ctx(seed=5))
    c = task.make_augment(data, {"augment": "light"}, make_ctx(seed=6))
    x = torch.tensor(data.train.X[:32])
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), c(x))
    assert isinstance(a, ImageAugment) and not a.flip  # digits: flip is off by default
    assert CNNTask({**SMALL, "flip": True}).make_augment(data, {"augment": "light"}, make_ctx()).flip


def _write_images(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, X=rng.integers(0, 255, (60, 8, 8), dtype=np.uint8), y=np.arange(60) % 3)


def test_load_data_is_read_once_per_process_and_again_when_the_file_changes(tmp_path: Path) -> None:
    """A worker's later trials reuse the split data; a rewritten file is read again."""
    data_file = tmp_path / "images.npz"
    _write_images(data_file, seed=0)
    task = get_task("cnn")({"dataset": str(data_file)}, source="test")
    first = task.load_data()
    assert get_task("cnn")({"dataset": str(data_file)}, source="test").load_data() is first
    # Shared between trials, so nobody may change it in place.
    assert not first.train.X.flags.writeable and not first.test.y.flags.writeable
    with pytest.raises(ValueError):
        first.train.X[0, 0] = 1.0
    # Other arguments are another entry.
    other_split = get_task("cnn")({"dataset": str(data_file), "split_seed": 1}, source="test").load_data()
    assert other_split is not first

    _write_images(data_file, seed=1)
    os.utime(data_file, ns=(10**18, 10**18))  # a new mtime even on coarse file systems
    again = task.load_data()
    assert again is not first
    assert not np.array_equal(again.train.X, first.train.X) or not np.array_equal(again.val.X, first.val.X)


def test_training_copies_shared_data_instead_of_aliasing_it() -> None:
    from tuner.tasks._training import _tensor

    shared = np.arange(6, dtype=np.float32)
    shared.setflags(write=False)
    t = _tensor(shared, torch.device("cpu"))
    t[0] = 100.0
    assert shared[0] == 0.0
    own = np.arange(6, dtype=np.float32)
    assert _tensor(own, torch.device("cpu")).data_ptr() == own.ctypes.data  # writable: no copy
