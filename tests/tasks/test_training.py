"""The shared training loop: every option runs and does what it says."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tuner.data import Splits, load_digits
from tuner.exceptions import SpaceError, TrialPruned
from tuner.tasks._metrics import EPOCH_METRICS, FINAL_METRICS
from tuner.tasks._models import build_mlp
from tuner.tasks._training import TrainConfig, evaluate, make_scheduler, train_classifier

SMALL = load_digits(max_samples=600)  # 420 train / 90 val / 90 test
TIMING = {"epoch_time_s", "train_time_s"}


def train(ctx: Any, params: dict[str, Any], data: Splits = SMALL) -> dict[str, float]:
    return train_classifier(lambda: build_mlp(data.n_features, data.n_classes, params), data, params, ctx)


def base(**overrides: Any) -> dict[str, Any]:
    return {"width": 64, "n_layers": 1, "lr": 0.01, "epochs": 3, "batch_size": 32, **overrides}


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_and_schedule_learns(make_ctx, optimizer: str, schedule: str) -> None:
    lr = 0.1 if optimizer == "sgd" else 0.01
    ctx = make_ctx()
    final = train(ctx, base(optimizer=optimizer, schedule=schedule, lr=lr, warmup_frac=0.1, weight_decay=1e-4))
    assert final["val_accuracy"] > 0.6  # chance is 0.1
    assert ctx.series("train_loss")[-1] < ctx.series("train_loss")[0]


@pytest.mark.parametrize("options", [
    {"precision": "bf16"},
    {"precision": "fp16"},
    {"grad_clip": 1.0},
    {"l1": 1e-4},
    {"label_smoothing": 0.1},
    {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"precision": "bf16", "grad_clip": 0.5, "l1": 1e-5, "label_smoothing": 0.1, "schedule": "cosine",
     "warmup_frac": 0.2, "optimizer": "adamw", "weight_decay": 0.01},
    {"precision": "fp16", "grad_clip": 0.5, "schedule": "onecycle", "optimizer": "sgd", "lr": 0.1},
    {"batch_norm": True, "dropout": 0.2, "activation": "gelu", "init": "he"},
])
def test_options_run_and_learn(make_ctx, options: dict[str, Any]) -> None:
    ctx = make_ctx()
    final = train(ctx, base(**options))
    assert final["val_accuracy"] > 0.6
    assert all(math.isfinite(v) for v in final.values())


def test_same_seed_same_metrics_and_other_seed_differs(make_ctx) -> None:
    params = base(dropout=0.1)
    runs = [train(make_ctx(seed=seed), params) for seed in (7, 7, 8)]
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in runs]
    assert strip[0] == strip[1]
    assert strip[0] != strip[2]


def test_same_seed_same_metrics_in_a_fresh_process(make_ctx) -> None:
    params = base(dropout=0.1, epochs=2)
    here = {k: v for k, v in train(make_ctx(seed=5), params).items() if k not in TIMING}
    code = (
        "import json, pathlib, sys, tempfile, torch\n"
        "sys.path.insert(0, 'tests/tasks')\n"
        "from conftest import FakeContext\n"
        "from test_training import train\n"
        f"final = train(FakeContext(pathlib.Path(tempfile.mkdtemp()), seed=5), {params!r})\n"
        "print(json.dumps(final))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=root, capture_output=True, text=True).stdout
    there = {k: v for k, v in json.loads(out.strip().splitlines()[-1]).items() if k not in TIMING}
    assert here == there


def test_none_means_default_or_off(make_ctx) -> None:
    cfg = TrainConfig.from_params({"lr": None, "momentum": None, "early_stopping_patience": None, "grad_clip": None})
    assert cfg.lr == 1e-3 and cfg.momentum == 0.9
    assert cfg.early_stopping_patience is None and cfg.grad_clip is None
    ctx = make_ctx()
    train(ctx, base(lr=0.0, epochs=5, early_stopping_patience=None))
    assert len(ctx.reports) == 5


def test_reports_every_epoch_from_one_and_returns_every_metric(make_ctx) -> None:
    ctx = make_ctx()
    final = train(ctx, base(early_stopping_patience=0))
    assert [step for step, _ in ctx.reports] == [1, 2, 3]
    assert all(set(m) == set(EPOCH_METRICS) for _, m in ctx.reports)
    assert set(final) == set(EPOCH_METRICS) | set(FINAL_METRICS)
    assert final["n_params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert final["epochs_run"] == 3


def test_early_stopping_when_metric_plateaus(make_ctx) -> None:
    ctx = make_ctx()
    final = train(ctx, base(lr=0.0, epochs=20, early_stopping_patience=3))
    assert len(ctx.reports) == 4  # epoch 1 is the best; 3 more without improvement
    assert final["best_epoch"] == 1 and final["epochs_run"] == 4
    ctx = make_ctx()
    train(ctx, base(lr=0.0, epochs=6, early_stopping_patience=0))  # 0 turns it off
    assert len(ctx.reports) == 6


def test_warmup_ramps_the_reported_lr(make_ctx) -> None:
    ctx = make_ctx()
    train(ctx, base(lr=0.01, epochs=6, warmup_frac=0.5, early_stopping_patience=0))
    lrs = ctx.series("lr")  # the lr of each epoch's last step: 14 steps/epoch, 42 warm-up steps
    assert lrs[:3] == pytest.approx([0.01 * 14 / 42, 0.01 * 28 / 42, 0.01])
    assert lrs[3:] == pytest.approx([0.01] * 3)


def _lrs(schedule: str, epochs: int = 4, steps_per_epoch: int = 10, **kw: Any) -> list[float]:
    cfg = TrainConfig.from_params({"schedule": schedule, "epochs": epochs, "lr": 1.0, **kw})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    lrs = []
    for _ in range(epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


def test_schedules_shape_the_lr() -> None:
    warm = _lrs("cosine", warmup_frac=0.25)
    assert warm[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up to the peak
    assert warm[10] == pytest.approx(1.0) and warm[-1] < 0.01  # then cosine down to ~0
    assert all(a >= b for a, b in zip(warm[10:], warm[11:]))
    step = _lrs("step", step_gamma=0.5, step_epochs=1)
    assert [step[i * 10] for i in range(4)] == pytest.approx([1.0, 0.5, 0.25, 0.125])
    assert _lrs("constant") == [1.0] * 40
    onecycle = _lrs("onecycle", warmup_frac=0.5)
    assert max(onecycle) == pytest.approx(1.0) and onecycle[0] < 0.1 and onecycle[-1] < 1e-3
    assert onecycle.index(max(onecycle)) in (19, 20)


def test_pruned_trial_stops_and_propagates(make_ctx) -> None:
    ctx = make_ctx(prune_at=2)
    with pytest.raises(TrialPruned):
        train(ctx, base(epochs=10))
    assert len(ctx.reports) == 2
    assert not (ctx.trial_dir / "best.pt").exists()


def test_a_training_that_diverges_at_once_is_pruned_after_one_epoch(make_ctx) -> None:
    ctx = make_ctx()
    with pytest.raises(TrialPruned, match="diverged at epoch 1"):
        train(ctx, base(optimizer="sgd", lr=1e3, epochs=6, early_stopping_patience=0))
    assert len(ctx.reports) == 1 and math.isnan(ctx.reports[0][1]["train_loss"])  # no epochs spent on NaN
    assert ctx.attrs["diverged_at_epoch"] == 1
    assert not (ctx.trial_dir / "best.pt").exists()


class _TurnsNaN(nn.Module):
    """An MLP whose outputs become NaN from its ``after``-th training forward pass on."""

    def __init__(self, inner: nn.Module, after: int) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return out * float("nan")
        return out


def test_a_training_that_diverges_later_stops_and_keeps_the_best_finite_epoch(make_ctx) -> None:
    params = base(epochs=6, lr=0.05, early_stopping_patience=0)
    batches_per_epoch = math.ceil(len(SMALL.train) / params["batch_size"])
    ctx = make_ctx()
    # NaN from the third epoch's first step: the weights are NaN after it, and so is every loss.
    model = _TurnsNaN(build_mlp(SMALL.n_features, SMALL.n_classes, params), after=2 * batches_per_epoch)
    final = train_classifier(lambda: model, SMALL, params, ctx)
    assert [step for step, _ in ctx.reports] == [1, 2, 3]  # stopped at the diverged epoch, not at 6
    assert ctx.attrs["diverged_at_epoch"] == 3 and final["epochs_run"] == 3
    accs = ctx.series("val_accuracy")[:2]
    assert final["best_epoch"] == accs.index(max(accs)) + 1 and final["val_accuracy"] == max(accs)
    assert all(math.isfinite(v) for v in final.values())
    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_best_checkpoint_holds_the_best_epoch(make_ctx) -> None:
    ctx = make_ctx()
    params = base(epochs=6, lr=0.05, early_stopping_patience=0)
    final = train(ctx, params)
    accs = ctx.series("val_accuracy")
    best_epoch = accs.index(max(accs)) + 1
    assert final["best_epoch"] == best_epoch
    assert final["val_accuracy"] == max(accs)

    ckpt = torch.load(ctx.trial_dir / "best.pt", weights_only=True)  # plain data only: safe to load
    assert ckpt["epoch"] == best_epoch and ckpt["params"] == params
    assert ckpt["metrics"]["test_accuracy"] == final["test_accuracy"]
    assert ckpt["data"]["class_names"] == list(SMALL.class_names) and len(ckpt["data"]["mean"]) == 64
    model = build_mlp(64, 10, params)
    model.load_state_dict(ckpt["state_dict"])
    _, cm = evaluate(model, torch.from_numpy(SMALL.val.X), torch.from_numpy(SMALL.val.y), 10)
    assert cm.trace() / cm.sum() == pytest.approx(max(accs))


def test_unreported_study_metric_falls_back_to_val_loss(make_ctx) -> None:
    ctx = make_ctx(metric="n_params", direction="minimize")
    final = train(ctx, base(epochs=5, lr=0.05, early_stopping_patience=0))
    losses = ctx.series("val_loss")
    assert final["best_epoch"] == losses.index(min(losses)) + 1


def test_confusion_matrix_and_per_class_attrs(make_ctx) -> None:
    ctx = make_ctx()
    final = train(ctx, base())
    cm = ctx.attrs["confusion_matrix"]
    assert len(cm) == 10 and all(len(row) == 10 for row in cm)
    assert sum(map(sum, cm)) == len(SMALL.test)
    assert sum(cm[i][i] for i in range(10)) / len(SMALL.test) == pytest.approx(final["test_accuracy"])
    per_class = ctx.attrs["per_class"]
    assert sorted(per_class) == [str(i) for i in range(10)]
    assert sum(c["support"] for c in per_class.values()) == len(SMALL.test)
    assert set(per_class["3"]) == {"precision", "recall", "f1", "support"}


def test_label_smoothing_raises_the_training_loss(make_ctx) -> None:
    plain = train(make_ctx(), base(early_stopping_patience=0))
    smooth = train(make_ctx(), base(label_smoothing=0.2, early_stopping_patience=0))
    assert smooth["train_loss"] > plain["train_loss"] + 0.1


def _weights_l1(ctx: Any) -> float:
    state = torch.load(ctx.trial_dir / "best.pt", weights_only=False)["state_dict"]
    return sum(float(v.abs().sum()) for k, v in state.items() if k.endswith("weight"))


def test_l1_shrinks_the_weights(make_ctx) -> None:
    plain, penalised = make_ctx(), make_ctx()
    train(plain, base(early_stopping_patience=0))
    train(penalised, base(l1=1e-3, early_stopping_patience=0))
    assert _weights_l1(penalised) < 0.7 * _weights_l1(plain)


def test_grad_clip_bounds_each_update(make_ctx) -> None:
    params = base(optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=1e-3, epochs=1)
    ctx = make_ctx(seed=3)
    train(ctx, params)
    torch.manual_seed(3)
    init = build_mlp(64, 10, params).state_dict()
    trained = torch.load(ctx.trial_dir / "best.pt", weights_only=False)["state_dict"]
    moved = math.sqrt(sum(float(((trained[k] - init[k]) ** 2).sum()) for k in init))
    steps = math.ceil(len(SMALL.train) / 32)
    assert 0 < moved <= steps * 1.0 * 1e-3 + 1e-6


@pytest.mark.parametrize("params, key", [
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"schedule": "linear"}, "schedule"),
    ({"precision": "fp8"}, "precision"),
    ({"lr": -1.0}, "lr"),
    ({"momentum": 1.5}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 2.5}, "epochs"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"warmup_frac": 1.0}, "warmup_frac"),
    ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "nesterov"),
    ({"activation": "relux"}, "activation"),
    ({"n_layers": 3, "width": [32, 32]}, "width"),
])
def test_invalid_params_name_the_parameter(make_ctx, params: dict[str, Any], key: str) -> None:
    with pytest.raises(SpaceError) as info:
        train(make_ctx(), base(**params))
    assert info.value.path == key
    assert str(info.value).startswith(f"params: {key}: invalid value")


def test_batch_norm_trains_when_the_last_batch_would_hold_one_sample(make_ctx) -> None:
    """420 training rows in batches of 419 left a batch of one, on which batch norm raised
    ("Expected more than 1 value per channel") in every trial that drew batch_norm: true."""
    from tuner.tasks._training import _slices

    metrics = train(make_ctx(), base(batch_norm=True, batch_size=419, epochs=2, schedule="step",
                                     early_stopping_patience=0))
    assert math.isfinite(metrics["train_loss"]) and metrics["epochs_run"] == 2.0
    assert _slices(420, 419, True) == [slice(0, 420)]  # the one row joins the batch before it: none is dropped
    assert _slices(420, 419, False) == [slice(0, 419), slice(419, 420)]
    assert _slices(421, 100, True) == [slice(0, 100), slice(100, 200), slice(200, 300), slice(300, 421)]
    assert _slices(1, 100, True) == [slice(0, 1)]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step"])
def test_a_run_stopped_after_an_epoch_keeps_the_schedule_of_its_whole_epochs(make_ctx, schedule: str) -> None:
    """`tuner export --retrain` trains for the trial's best epoch count: with `epochs` set to that
    count the schedule was laid out over the shorter run (cosine at zero by its end, a step
    schedule decayed 100-fold where the trial had not decayed yet)."""
    whole, stopped = make_ctx(), make_ctx()
    stopped.stop_after_epoch = 3
    params = base(optimizer="sgd", lr=0.1, epochs=9, schedule=schedule, early_stopping_patience=0)
    train(whole, params)
    final = train(stopped, params)
    assert stopped.series("lr") == whole.series("lr")[:3] and final["epochs_run"] == 3.0
