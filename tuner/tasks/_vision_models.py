"""Image models built from a trial's parameters: a plain CNN and a small ResNet.

Both take flat inputs ``(N, C*H*W)`` (how :class:`~tuner.data.Splits` stores images) and
unflatten them to ``input_shape`` first, so the shared training loop, evaluation and export
treat them like any other model.

CNN parameters (:func:`build_cnn`)::

    n_conv           conv blocks                                               2
    channels         output channels per block: a list (one per block) or int  32
    convs_per_block  conv layers in each block                                 1
    kernel           kernel size (odd)                                         3
    pool             max | avg | none: 2x2 pooling after each block (skipped    max
                     once the feature map is 1 pixel wide)
    batch_norm       BatchNorm2d after each conv                               true
    activation       relu | gelu | tanh | silu                                 relu
    global_pool      average the last feature map to 1x1 before the head       false
    head_width       hidden units of the head (0: linear classifier)            128
    dropout          dropout before each Linear of the head                    0

ResNet parameters (:func:`build_resnet`; basic blocks of two 3x3 convs with an identity or
1x1-conv shortcut, as in He et al. 2016, with a 3x3 stem and no max-pool for small images)::

    n_stages         stages; each after the first halves the map and doubles the width   3
    blocks           basic blocks per stage: a list (one per stage) or int               1
    width            channels of the stem and the first stage                            16
    dropout          dropout before the linear head                                      0
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from tuner.tasks._param_checks import param_error as _error
from tuner.tasks._model_params import HEAD_INITS, POOLS, cnn_settings, resnet_settings
from tuner.tasks._models import ACTIVATIONS

__all__ = ["build_cnn", "build_resnet", "ResNet", "BasicBlock", "RESNET_ARCH_KEYS", "POOLS", "HEAD_INITS"]

#: The parameters that define a ResNet's weights' shapes (rebuilt from a checkpoint when fine-tuning).
RESNET_ARCH_KEYS = ("n_stages", "blocks", "width")


# ---- CNN --------------------------------------------------------------------------------------


def build_cnn(input_shape: Sequence[int], n_classes: int, params: Mapping[str, Any]) -> nn.Module:
    """``[conv -> (BN) -> act] * convs_per_block -> pool`` per block, then a (hidden) linear head."""
    channels_in, height, width_px = _image_shape(input_shape)
    settings = cnn_settings(params)
    channels, convs_per_block, kernel, pool = (settings["channels"], settings["convs_per_block"], settings["kernel"],
                                               settings["pool"])
    batch_norm, activation, global_pool = settings["batch_norm"], settings["activation"], settings["global_pool"]
    head_width, dropout = settings["head_width"], settings["dropout"]

    layers: OrderedDict[str, nn.Module] = OrderedDict(unflatten=nn.Unflatten(1, (channels_in, height, width_px)))
    c_in = channels_in
    for b, c_out in enumerate(channels, start=1):
        block: list[nn.Module] = []
        for _ in range(convs_per_block):
            block.append(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm))
            if batch_norm:
                block.append(nn.BatchNorm2d(c_out))
            block.append(ACTIVATIONS[activation]())
            c_in = c_out
        if pool != "none" and min(height, width_px) >= 2:
            block.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            height, width_px = height // 2, width_px // 2
        layers[f"block{b}"] = nn.Sequential(*block)
    if global_pool:
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        height = width_px = 1
    layers["flatten"] = nn.Flatten()
    features = c_in * height * width_px
    head: list[nn.Module] = []
    if head_width:
        if dropout:
            head.append(nn.Dropout(dropout))
        head += [nn.Linear(features, head_width), ACTIVATIONS[activation]()]
        features = head_width
    if dropout:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(features, n_classes))
    layers["head"] = nn.Sequential(*head)
    return nn.Sequential(layers)


# ---- ResNet -----------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``; the shortcut projects when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, ``len(stages)`` stages of basic blocks, global average pooling, linear ``head``.

    :meth:`freeze` stops training the stem and the first stages (their BatchNorm statistics
    too); :meth:`backbone_parameters` and :meth:`head_parameters` split the weights for
    per-group learning rates; :meth:`reset_head` gives it a new classifier.
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, *, blocks: Sequence[int], width: int = 16,
                 dropout: float = 0.0) -> None:
        super().__init__()
        channels, height, width_px = _image_shape(input_shape)
        self.unflatten = nn.Unflatten(1, (channels, height, width_px))
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c_in, size = width, min(height, width_px)
        for i, n_blocks in enumerate(blocks):
            c_out = width * 2 ** i
            stride = 2 if i > 0 and size >= 2 else 1
            size = (size + 1) // 2 if stride == 2 else size
            stage = [BasicBlock(c_in, c_out, stride)] + [BasicBlock(c_out, c_out) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(c_in, n_classes)
        self.frozen_stages = 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.modules():  # start each residual branch near identity (zero-init the last BN)
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(self.unflatten(x)))
        return self.head(self.dropout(torch.flatten(self.pool(x), 1)))

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the first ``frozen_stages`` stages (none when nothing is frozen)."""
        if self.frozen_stages == 0:
            return []
        return [self.stem, *list(self.stages)[:self.frozen_stages]]

    def freeze(self, n_stages: int) -> None:
        """Freeze the stem and the first ``n_stages`` stages (0: train everything)."""
        if not 0 <= n_stages <= self.n_stages:
            raise _error("freeze_stages", n_stages, f"an integer in [0, {self.n_stages}] (the network's n_stages)")
        self.frozen_stages = n_stages
        frozen = {id(p) for m in self.frozen_modules() for p in m.parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) not in frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        for m in self.frozen_modules():  # frozen BatchNorm keeps its running statistics
            m.eval()
        return self

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        head = {id(p) for p in self.head.parameters()}
        return (p for p in self.parameters() if id(p) not in head)

    def reset_head(self, n_classes: int, init: str = "random") -> None:
        """A new linear head for ``n_classes``: PyTorch's init, zeros, or ``keep`` the current one (same size only)."""
        if init not in HEAD_INITS:
            raise _error("head_init", init, f"one of {', '.join(HEAD_INITS)}")
        if init == "keep":
            if self.head.out_features != n_classes:
                raise _error("head_init", init, f"random or zeros: the pretrained head has {self.head.out_features} "
                             f"classes, the data {n_classes}")
            return
        self.head = nn.Linear(self.head.in_features, n_classes)
        if init == "zeros":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)


def resnet_arch(params: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture a trial's params describe: ``{n_stages, blocks (list), width}``, checked."""
    return {k: v for k, v in resnet_settings(params).items() if k in RESNET_ARCH_KEYS}


def build_resnet(input_shape: Sequence[int], n_classes: int, params: Mapping[str, Any]) -> ResNet:
    """A :class:`ResNet` for ``input_shape`` (C, H, W) from ``n_stages``, ``blocks``, ``width``, ``dropout``."""
    settings = resnet_settings(params)
    return ResNet(input_shape, n_classes, blocks=settings["blocks"], width=settings["width"], dropout=settings["dropout"])


# ---- helpers (the parameters are checked in tuner/tasks/_model_params.py) -------------------


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"image models need inputs of shape (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(d) for d in input_shape)
    return c, h, w
