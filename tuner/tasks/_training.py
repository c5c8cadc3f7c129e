"""The shared training loop of the torch tasks (classification and regression), readable top to bottom.

:func:`train_model` (also known by its first name, :func:`train_classifier`) does, in order:
read the training parameters; set up (threads, seed, data as tensors on the device, model,
optimizer, learning-rate schedule); loop over epochs (train on shuffled mini-batches, evaluate
on the validation part, report, keep the best weights, stop early); then test the best weights
and save them. There is no framework between the reader and PyTorch: the data sits in memory
as tensors and is shuffled with ``randperm`` (no DataLoader, no worker processes), so the loop
runs as fast as a hand-written one.

Training parameters (names shared with the search-space files; models read the others)::

    name                     meaning                                              default
    optimizer                sgd | adam | adamw                                   adam
    lr                       learning rate (the peak for onecycle)                1e-3
    momentum, nesterov       sgd only                                             0.9, false
    weight_decay             sgd/adam: L2 through the gradient; adamw: decoupled  0
    l1                       L1 penalty on weights (not biases) added to the loss 0
    label_smoothing          of the training loss (val/test losses are plain CE)  0
                             (classification only: ignored for regression)
    grad_clip                max gradient norm; 0 or null: off                    null
    schedule                 constant | step | cosine | onecycle                  constant
    warmup_frac              linear warm-up over this fraction of all steps       0
                             (onecycle: its rising phase, 0.3 when 0)
    step_gamma, step_epochs  step: lr *= step_gamma every step_epochs epochs      0.1, epochs // 3
    batch_size               samples per step                                     64
    epochs                   at most this many epochs                             20
    early_stopping_patience  stop after this many epochs without a better         5
                             monitored metric; 0 or null: off
    precision                fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler) fp32

The monitored metric (best weights, early stopping) is the study's ``ctx.metric`` when it is
reported every epoch, else ``val_loss`` (minimised). A parameter set to null takes its default.
An epoch whose training or validation loss is not finite ends the training (it diverged): the
best finite epoch is kept, or, without one, the trial is pruned; either way the trial attribute
``diverged_at_epoch`` says when.

Classification (``data.task_type == "classification"``): cross-entropy on the model's
``n_classes`` logits; every epoch reports ``train_loss``, ``val_loss``, ``val_accuracy``,
``val_f1``, ``val_precision``, ``val_recall`` (macro), ``lr`` and ``epoch_time_s``; the test
part's confusion matrix and per-class scores are stored as trial attributes.

Regression (``data.task_type == "regression"``, see :func:`tuner.data.make_regression_splits`):
the model has one output, trained with the mean squared error on the standardised target
(``train_loss``/``val_loss``/``test_loss`` are in those units); every epoch reports
``train_loss``, ``val_loss``, ``val_rmse``, ``val_mae``, ``val_r2``, ``lr`` and
``epoch_time_s``, with RMSE and MAE in the target's own units (predictions are turned back with
``data.y_mean``/``data.y_std``); the test part's residuals are summarised in the trial
attribute ``residuals_summary``. The final metrics are named as in
:data:`tuner.tasks._metrics.REGRESSION_FINAL_METRICS`.

When the study optimises ``latency_ms`` (e.g. ``metrics: [val_accuracy, latency_ms]``), the
final metrics add it: the median milliseconds of one forward pass of the best weights, in eval
mode, on a batch of up to 256 test samples (see :func:`measure_latency`).

Two optional hooks serve the image tasks: ``augment`` transforms each training mini-batch (never
the validation or test data), and ``param_groups`` splits the model's parameters into groups
with their own learning-rate multiplier (fine-tuning: a smaller lr for a pretrained backbone;
every schedule scales each group's lr the same way, and the reported ``lr`` is the first group's).

An engine trial (``ctx.resumable``) saves ``resume.pt`` between epochs (as often as 2% of its
training time pays for), and the rerun of an interrupted trial, into whose folder the engine
moved it, loads it, reports the epochs it had again and trains on from the next one
(:mod:`tuner.tasks._resume`).

Three more serve the text task: ``batches`` orders an epoch's training samples into mini-batches
(sentences of similar length together), ``eval_batch_size`` bounds evaluation batches (a
transformer's activations), and ``checkpoint_state`` saves only the weights training changed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tuner.data import Part, Splits
from tuner.exceptions import TrialPruned
from tuner.tasks._base import TrialContext, mark, save_torch_file, write_artifacts
from tuner.tasks._resume import ResumePoint
from tuner.tasks._train_config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig  # noqa: F401 - re-exported
from tuner.tasks._metrics import (EPOCH_METRICS, REGRESSION_EPOCH_METRICS, REGRESSION_SCORES, SCORES,
                                  confusion_matrix, per_class, regression_scores, scores)

__all__ = ["TrainConfig", "train_model", "train_classifier", "make_optimizer", "make_scheduler", "evaluate",
           "evaluate_regression", "measure_latency", "OPTIMIZERS", "SCHEDULES", "PRECISIONS"]

_EVAL_BATCH = 4096


def train_model(
    build_model: Callable[[], nn.Module],
    data: Splits,
    params: Mapping[str, Any],
    ctx: TrialContext,
    *,
    checkpoint_extra: Mapping[str, Any] | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    param_groups: Callable[[nn.Module], Sequence[tuple[Iterable[nn.Parameter], float]]] | None = None,
    batches: Callable[[int, int, torch.Generator], Iterable[torch.Tensor]] | None = None,
    eval_batch_size: int | None = None,
    checkpoint_state: Callable[[nn.Module, dict[str, torch.Tensor]], Mapping[str, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Train ``build_model()`` on ``data`` with ``params``; report every epoch to ``ctx``.

    ``data.task_type`` picks classification or regression (see the module docstring); a
    regression model must give one output per sample (shape ``(n, 1)`` or ``(n,)``).
    Returns the best epoch's metrics plus ``test_*`` metrics of the best weights, ``n_params``,
    ``best_epoch``, ``epochs_run`` and ``train_time_s``. The best weights are saved to
    ``ctx.trial_dir / "best.pt"`` with ``params``, ``epoch``, ``metrics`` and ``checkpoint_extra``.
    ``augment(xb) -> xb`` is applied to every training batch; ``param_groups(model)`` gives
    ``(parameters, lr multiplier)`` pairs for the optimizer (see :func:`make_optimizer`).
    ``batches(n_train, batch_size, generator)`` gives one epoch's mini-batches as index tensors
    (default: a random permutation cut into ``batch_size`` slices); ``eval_batch_size`` is the
    batch size of evaluation (default 4096); ``checkpoint_state(model, best_state)`` picks what
    of the best state dict is saved (default: all of it).
    """
    cfg = TrainConfig.from_params(params)
    regression = data.task_type == "regression"
    score_names = REGRESSION_SCORES if regression else SCORES

    # ---- setup ---------------------------------------------------------------------------
    if getattr(ctx, "num_threads", None):
        torch.set_num_threads(int(ctx.num_threads))
    device = torch.device(getattr(ctx, "device", None) or "cpu")
    torch.manual_seed(ctx.seed)  # model init and dropout
    shuffle_generator = torch.Generator().manual_seed(ctx.seed)  # batch order

    X_train, y_train = _tensors(data.train, device)
    X_val, y_val = _tensors(data.val, device)
    n_train = len(y_train)

    model = build_model().to(device)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = make_optimizer(model, cfg, groups=param_groups(model) if param_groups is not None else None)
    # Batch norm cannot train on a batch of one sample ("Expected more than 1 value per channel"):
    # a last batch of one joins the batch before it, in every epoch.
    join_single = batches is None and n_train % cfg.batch_size == 1 and n_train > 1 and _has_batch_norm(model)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size) - int(join_single)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    criterion = nn.MSELoss() if regression else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    autocast = _autocast(device, cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    l1_weights = [p for p in model.parameters() if p.requires_grad and p.dim() > 1] if cfg.l1 else []

    monitor, direction = _monitored_metric(ctx, REGRESSION_EPOCH_METRICS if regression else EPOCH_METRICS)
    best_score: float | None = None
    best_epoch, best_metrics, best_state = 0, {}, None
    start_time = time.perf_counter()
    mark(ctx, "training_started")

    # ---- a rerun of an interrupted trial goes on where it stopped (see tuner.tasks._resume) --
    resume = ResumePoint(ctx, lambda: {
        "params": params, "data": data.describe(), "rows": _rows_digest(data), "steps_per_epoch": steps_per_epoch,
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}})
    generators = {"shuffle": shuffle_generator,
                  **({"augment": augment.generator} if isinstance(getattr(augment, "generator", None),
                                                                  torch.Generator) else {})}
    saved_state = (lambda: checkpoint_state(model, model.state_dict())) if checkpoint_state else model.state_dict

    def report(step: int, metrics: dict[str, float]) -> None:
        try:
            ctx.report(step, metrics)
        except TrialPruned:  # pruned: nothing will resume it
            resume.discard()
            raise

    curve: list[tuple[int, dict[str, float]]] = []  # every epoch's reported metrics, for a rerun to report again
    time_before = 0.0  # training time of the epochs a rerun took over
    first_epoch = 1
    if (state := resume.load()) is not None:
        strict = checkpoint_state is None  # a saved subset (the text task's trained weights) fills in
        model.load_state_dict(state["model"], strict=strict)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_states(state["rng"], generators, device)
        best_score, best_epoch, best_metrics = state["best_score"], state["best_epoch"], state["best_metrics"]
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best_state.update({k: v.to(device) for k, v in (state["best_state"] or {}).items()})
        curve, time_before, first_epoch = list(state["curve"]), state["train_time_s"], state["epoch"] + 1
        ctx.set_attr("resumed_at_epoch", state["epoch"])
        for step, metrics in curve:  # the pruner sees the same values; it may stop the rerun here
            report(step, metrics)

    # ---- loop ----------------------------------------------------------------------------
    epoch = first_epoch - 1
    for epoch in range(first_epoch, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        if batches is None:
            order = torch.randperm(n_train, generator=shuffle_generator).to(device)
            X_epoch, y_epoch = X_train[order], y_train[order]
            epoch_batches: Iterable[Any] = _slices(n_train, cfg.batch_size, join_single)
        else:
            X_epoch, y_epoch = X_train, y_train
            epoch_batches = (idx.to(device) for idx in batches(n_train, cfg.batch_size, shuffle_generator))
        loss_sum = torch.zeros((), device=device)
        lr = optimizer.param_groups[0]["lr"]  # reported: the lr of the epoch's last step
        for index in epoch_batches:
            xb, yb = X_epoch[index], y_epoch[index]
            if augment is not None:
                xb = augment(xb)
            with autocast():
                out = model(xb)
                # regression: one output, (batch, 1) -> (batch,) like yb; the squared error in float32
                data_loss = criterion(out.float().reshape(len(yb)), yb) if regression else criterion(out, yb)
            loss = data_loss
            if l1_weights:
                loss = loss + cfg.l1 * sum(w.abs().sum() for w in l1_weights)

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            loss_sum += data_loss.detach() * len(yb)

        # ---- evaluate, report, keep the best ---------------------------------------------
        val_loss, val, _ = _evaluate_part(model, X_val, y_val, data, autocast, eval_batch_size or _EVAL_BATCH)
        metrics = {
            "train_loss": float(loss_sum) / n_train,
            "val_loss": val_loss,
            **{f"val_{name}": val[name] for name in score_names},
            "lr": float(lr),
            "epoch_time_s": time.perf_counter() - epoch_start,
        }
        curve.append((epoch, metrics))
        report(epoch, metrics)  # may raise TrialPruned: let it propagate
        if not math.isfinite(metrics["train_loss"]) or (len(y_val) and not math.isfinite(val_loss)):
            # Diverged (too high an lr, say): NaN weights never recover, so training on would only
            # spend the budget. Stop, as Lightning's EarlyStopping(check_finite=True) does: keep the
            # best finite epoch, or, if there is none, end the trial as pruned (the pruner has seen
            # the NaN, and TPE ranks the trial last at this step instead of ignoring a failure).
            ctx.set_attr("diverged_at_epoch", epoch)
            if best_state is None:
                resume.discard()
                raise TrialPruned(f"training diverged at epoch {epoch} (train_loss {metrics['train_loss']:.3g}, "
                                  f"val_loss {val_loss:.3g}); lower lr or set grad_clip")
            break

        score = metrics.get(monitor, math.nan)
        # ``ctx.keep_last`` (re-training on train+validation for export): no part is left to choose
        # an epoch on, so the last epoch's weights are kept.
        if getattr(ctx, "keep_last", False) or _improved(score, best_score, direction):
            best_score, best_epoch, best_metrics = score, epoch, metrics
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif cfg.early_stopping_patience and epoch - best_epoch >= cfg.early_stopping_patience:
            break
        if epoch == getattr(ctx, "stop_after_epoch", None):  # export --retrain: the trial's best epoch count
            break
        if epoch < cfg.epochs:
            resume.save(lambda: {
                "epoch": epoch, "model": _cpu(saved_state()), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(), "rng": _rng_states(generators, device),
                "best_score": best_score, "best_epoch": best_epoch, "best_metrics": best_metrics,
                # None: the best epoch is this one, whose weights are saved once, as "model"
                "best_state": None if best_epoch == epoch else _cpu(
                    checkpoint_state(model, best_state) if checkpoint_state else best_state),
                "curve": curve, "train_time_s": time_before + time.perf_counter() - start_time})
    resume.discard()
    train_time = time_before + time.perf_counter() - start_time
    mark(ctx, "training_ended")

    # ---- test the best weights and save them ------------------------------------------------
    assert best_state is not None  # at least one epoch ran; the first always counts as best
    model.load_state_dict(best_state)
    X_test, y_test = _tensors(data.test, device)
    test_loss, test, test_detail = _evaluate_part(model, X_test, y_test, data, autocast,
                                                  eval_batch_size or _EVAL_BATCH)
    if regression:
        if len(y_test):
            ctx.set_attr("residuals_summary", _residuals_summary(test_detail, _target(y_test, data)))
    else:
        ctx.set_attr("confusion_matrix", test_detail.tolist())
        ctx.set_attr("per_class", per_class(test_detail, data.class_names))

    final = {
        **best_metrics,
        "test_loss": test_loss,
        **{f"test_{name}": test[name] for name in score_names},
        "n_params": float(n_params),
        "best_epoch": float(best_epoch),
        "epochs_run": float(epoch),
        "train_time_s": train_time,
    }
    if _study_wants(ctx, "latency_ms"):
        final["latency_ms"] = measure_latency(model, X_test if len(X_test) else X_val, autocast)
    trial_dir = getattr(ctx, "trial_dir", None)
    if trial_dir is not None:
        checkpoint = {
            "state_dict": {k: v.cpu() for k, v in
                           (checkpoint_state(model, best_state) if checkpoint_state else best_state).items()},
            "params": {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()},
            "epoch": best_epoch,
            "metrics": final,
            "data": data.describe(),
            "torch_version": str(torch.__version__),
            **(checkpoint_extra or {}),
        }

        write_artifacts(ctx, "checkpoint best.pt", lambda: save_torch_file(trial_dir / "best.pt", checkpoint))
    return final


#: The loop's name before it learnt regression; both names stay.
train_classifier = train_model


# ---- pieces of the loop ------------------------------------------------------------------------


def make_optimizer(model: nn.Module, cfg: TrainConfig,
                   groups: Sequence[tuple[Iterable[nn.Parameter], float]] | None = None) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam (L2 ``weight_decay``) or AdamW (decoupled ``weight_decay``).

    ``groups``: ``(parameters, lr multiplier)`` pairs, one optimizer param group each with
    ``lr = cfg.lr * multiplier`` (parameters that do not require grad and empty groups are left
    out); by default every trainable parameter of ``model`` at ``cfg.lr``.
    """
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if groups is not None:
        params = [{"params": kept, "lr": cfg.lr * float(scale)} for group, scale in groups
                  if (kept := [p for p in group if p.requires_grad])]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov),
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _slices(n: int, batch_size: int, join_single: bool) -> list[slice]:
    """An epoch's batches of ``batch_size`` rows; with ``join_single``, a last batch of one row is
    given to the one before it (see where it is set)."""
    starts = list(range(0, n, batch_size))
    if join_single and len(starts) > 1:
        starts.pop()
    return [slice(s, e) for s, e in zip(starts, [*starts[1:], n])]


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule, or None for a constant lr without warm-up."""
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        # Momentum is left as the user set it (no momentum cycling).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=total_steps,
            pct_start=cfg.warmup_frac or 0.3, cycle_momentum=False)
    warmup_steps = round(cfg.warmup_frac * total_steps)
    if cfg.schedule == "constant" and warmup_steps == 0:
        return None
    step_epochs = cfg.step_epochs or max(1, cfg.epochs // 3)

    def factor(step: int) -> float:  # multiplier of cfg.lr for optimizer step `step` (from 0)
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if cfg.schedule == "step":
            return cfg.step_gamma ** ((step // steps_per_epoch) // step_epochs)
        if cfg.schedule == "cosine":
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, n_classes: int,
             autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
             batch_size: int = _EVAL_BATCH) -> tuple[float, np.ndarray]:
    """Mean cross-entropy (no label smoothing) and confusion matrix of ``model`` on ``(X, y)``."""
    if len(y) == 0:
        return math.nan, np.zeros((n_classes, n_classes), dtype=np.int64)
    loss_sum = torch.zeros((), device=X.device)
    predictions = []
    for yb, logits in _batched_outputs(model, X, y, autocast, batch_size):
        loss_sum += nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
        predictions.append(logits.argmax(dim=1))
    y_pred = torch.cat(predictions).cpu().numpy()
    return float(loss_sum) / len(y), confusion_matrix(y.cpu().numpy(), y_pred, n_classes)


def evaluate_regression(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                        autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                        batch_size: int = _EVAL_BATCH) -> tuple[float, np.ndarray]:
    """Mean squared error of ``model`` on ``(X, y)`` and its predictions ``(n,)`` (both in ``y``'s units)."""
    if len(y) == 0:
        return math.nan, np.zeros(0, dtype=np.float64)
    loss_sum = torch.zeros((), device=X.device)
    predictions = []
    for yb, out in _batched_outputs(model, X, y, autocast, batch_size):
        out = out.float().reshape(len(yb))
        loss_sum += nn.functional.mse_loss(out, yb.float(), reduction="sum")
        predictions.append(out)
    y_pred = torch.cat(predictions).cpu().numpy().astype(np.float64)
    return float(loss_sum) / len(y), y_pred


def _batched_outputs(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                     autocast: Callable[[], ContextManager[Any]], batch_size: int
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(targets, outputs)`` of ``model`` in eval mode, batch by batch, without gradients."""
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            with autocast():
                out = model(X[start:start + batch_size])
            yield y[start:start + batch_size], out


def measure_latency(model: nn.Module, X: torch.Tensor,
                    autocast: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                    batch_size: int = 256, repeats: int = 10) -> float:
    """Median milliseconds of one forward pass on ``X[:batch_size]`` in eval mode (after 3 warm-ups).

    Measured on the model's device with the trial's threads; CUDA work is synchronised.
    """
    model.eval()
    xb = X[:batch_size]
    sync = torch.cuda.synchronize if xb.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(3 + repeats):
            sync()
            start = time.perf_counter()
            with autocast():
                model(xb)
            sync()
            if i >= 3:
                times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _rng_states(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """Every random stream the loop draws from (dropout, batch order, augmentation), to resume from."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in generators.items()}}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: Mapping[str, Any], generators: Mapping[str, torch.Generator], device: torch.device
                    ) -> None:
    """Put every random stream back where a resume point left it: the rerun draws what the
    interrupted trial would have drawn next, not what its own seed gives."""
    torch.set_rng_state(states["torch"])
    for name, generator in generators.items():
        if name in states:
            generator.set_state(states[name])
    if device.type == "cuda" and "cuda" in states:  # a point saved on a CPU has no CUDA stream to restore
        torch.cuda.set_rng_state(states["cuda"], device)


def _rows_digest(data: Splits, most: int = 4096) -> str:
    """A digest of up to ``most`` evenly spaced rows of each part: a data file edited in place
    (same size, other rows) must not resume a state trained on the old one. Sampled, not whole,
    so that a 60,000-image set costs milliseconds per trial."""
    import hashlib

    digest = hashlib.sha256()
    for part in (data.train, data.val, data.test):
        rows = np.linspace(0, len(part.y) - 1, num=min(most, len(part.y)), dtype=np.int64) if len(part.y) else []
        digest.update(np.ascontiguousarray(part.X[rows]).tobytes())
        digest.update(np.ascontiguousarray(part.y[rows]).tobytes())
    return digest.hexdigest()


def _cpu(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as a resume point keeps it: on the CPU, so a rerun on another device loads it."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _study_wants(ctx: TrialContext, metric: str) -> bool:
    """Whether ``metric`` is one of the study's objectives."""
    metrics = getattr(ctx, "metrics", None) or (getattr(ctx, "metric", None),)
    return metric in metrics


def _tensors(part: Part, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return _tensor(part.X, device), _tensor(part.y, device)


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` on ``device``; a read-only array (data shared by a process's trials) is copied, never aliased."""
    if array.flags.writeable:
        return torch.from_numpy(array).to(device)
    return torch.tensor(array, device=device)


def _autocast(device: torch.device, precision: str) -> Callable[[], ContextManager[Any]]:
    """A factory of the mixed-precision context for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def _evaluate_part(model: nn.Module, X: torch.Tensor, y: torch.Tensor, data: Splits,
                   autocast: Callable[[], ContextManager[Any]], batch_size: int
                   ) -> tuple[float, dict[str, float], np.ndarray]:
    """``(loss, scores, detail)`` of one part: for classification the scores of :data:`SCORES` and
    the confusion matrix; for regression those of :data:`REGRESSION_SCORES` in the target's units
    and the predictions, also in the target's units."""
    if data.task_type != "regression":
        loss, cm = evaluate(model, X, y, data.n_classes, autocast, batch_size=batch_size)
        return loss, scores(cm), cm
    loss, y_pred = evaluate_regression(model, X, y, autocast, batch_size=batch_size)
    y_mean, y_std = _target_stats(data)
    y_pred = y_pred * y_std + y_mean
    return loss, regression_scores(_target(y, data), y_pred), y_pred


def _target_stats(data: Splits) -> tuple[float, float]:
    return (float(data.y_mean) if data.y_mean is not None else 0.0,
            float(data.y_std) if data.y_std is not None else 1.0)


def _target(y: torch.Tensor, data: Splits) -> np.ndarray:
    """A part's targets in their own units (float64)."""
    y_mean, y_std = _target_stats(data)
    return y.cpu().numpy().astype(np.float64) * y_std + y_mean


def _residuals_summary(y_pred: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """Quantiles of the test residuals ``prediction - target`` in the target's units (JSON-able)."""
    residuals = y_pred - y_true
    q05, q25, q50, q75, q95 = np.quantile(residuals, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"n": int(len(residuals)), "mean": float(residuals.mean()), "std": float(residuals.std()),
            "p05": float(q05), "p25": float(q25), "median": float(q50), "p75": float(q75), "p95": float(q95),
            "max_abs": float(np.abs(residuals).max())}


def _monitored_metric(ctx: TrialContext, epoch_metrics: Sequence[str] = EPOCH_METRICS) -> tuple[str, str]:
    """The study's metric if it is reported per epoch (one of ``epoch_metrics``: the classification or
    the regression ones), in the study's direction; else ``val_loss`` (minimised)."""
    metric = getattr(ctx, "metric", None)
    direction = getattr(ctx, "direction", None)
    if metric in epoch_metrics and direction in ("maximize", "minimize") and metric not in ("lr", "epoch_time_s"):
        return metric, direction
    return "val_loss", "minimize"


def _improved(score: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if direction == "maximize" else score < best
