"""Image augmentation written with torch ops, applied to the training batches of the image tasks.

One random affine transform per image (shift, rotation, zoom) done with ``affine_grid`` +
``grid_sample`` (border pixels are repeated, so a shifted digit is padded with background,
exactly like pad-and-crop), plus an optional horizontal flip. Randomness comes from the
augmenter's own seeded generator (drawn on the CPU, so runs on a GPU match runs on a CPU);
the validation and test data are never augmented (the training loop calls it on training
batches only).

Parameters (search-space names)::

    name        meaning                                                   default
    augment     preset: none | light | strong                             none
    aug_shift   largest shift in pixels (each axis, uniform integer)      preset
    aug_rotate  largest rotation in degrees (uniform in [-r, r])          preset
    aug_scale   largest zoom in or out, a fraction (uniform in [1-s, 1+s]) preset

Presets (the shift scales with the image: a fraction of its side, rounded, at least 1 pixel)::

    none    shift 0                 rotate 0     scale 0
    light   shift 8% of the side    rotate 10    scale 0      (8x8: 1 px, 28x28: 2 px)
    strong  shift 12.5% of the side rotate 15    scale 0.1    (8x8: 1 px, 28x28: 4 px)

``aug_*`` override the preset's values (so ``augment: none`` with ``aug_shift: 2`` shifts only).
Horizontal flips (probability 0.5) happen when augmentation is on and the data set allows them:
``task_args.flip: true`` (off by default: a flipped digit is another symbol).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch.nn import functional as F

from tuner.tasks._param_checks import is_int as _is_int
from tuner.tasks._param_checks import is_number as _is_number
from tuner.tasks._param_checks import param_error as _error

__all__ = ["AUGMENT_PRESETS", "ImageAugment", "augment_from_params"]

#: ``(shift as a fraction of the image side, rotation in degrees, zoom fraction)`` per preset.
AUGMENT_PRESETS: dict[str, tuple[float, float, float]] = {
    "none": (0.0, 0.0, 0.0),
    "light": (0.08, 10.0, 0.0),
    "strong": (0.125, 15.0, 0.1),
}


class ImageAugment:
    """A seeded random transform of image batches, ``(N, C*H*W)`` or ``(N, C, H, W)`` -> same shape."""

    def __init__(self, input_shape: Sequence[int], *, shift: int = 0, rotate: float = 0.0, scale: float = 0.0,
                 flip: bool = False, seed: int = 0) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"augmentation needs images (C, H, W), got input shape {tuple(input_shape)}")
        self.shape = tuple(int(d) for d in input_shape)
        self.shift = int(shift)
        self.rotate = float(rotate)
        self.scale = float(scale)
        self.flip = bool(flip)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.scale or self.flip)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or len(x) == 0:
            return x
        c, h, w = self.shape
        n = len(x)
        images = x.reshape(n, c, h, w)
        g = self.generator
        if self.flip:
            mirrored = (torch.rand(n, generator=g) < 0.5).to(x.device)
            images = torch.where(mirrored.view(n, 1, 1, 1), images.flip(-1), images)
        if self.shift or self.rotate or self.scale:
            dx = torch.randint(-self.shift, self.shift + 1, (n,), generator=g).double()
            dy = torch.randint(-self.shift, self.shift + 1, (n,), generator=g).double()
            angle = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(self.rotate)
            zoom = 1 + (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * self.scale
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            # Output pixel (u, v) in [-1, 1] coordinates samples the input at theta @ (u, v, 1):
            # a rotation and zoom in pixel space, then a shift of whole pixels (2/side per pixel).
            theta = torch.stack([
                torch.stack([cos, -sin * h / w, -2 * dx / w], dim=1),
                torch.stack([sin * w / h, cos, -2 * dy / h], dim=1),
            ], dim=1).to(device=x.device, dtype=images.dtype if images.is_floating_point() else torch.float32)
            grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return images.reshape(x.shape)

    def __repr__(self) -> str:
        return (f"ImageAugment(shape={self.shape}, shift={self.shift}, rotate={self.rotate:g}, "
                f"scale={self.scale:g}, flip={self.flip})")


def augment_from_params(params: Mapping[str, Any], input_shape: Sequence[int], *, flip: bool = False,
                        seed: int = 0) -> ImageAugment | None:
    """The augmenter a trial's ``params`` ask for (see the module docstring), or None when it is off."""
    preset = params.get("augment") or "none"
    if preset is False:
        preset = "none"
    if preset is True:
        preset = "light"
    if preset not in AUGMENT_PRESETS:
        raise _error("augment", preset, f"one of {', '.join(AUGMENT_PRESETS)}")
    shift_frac, rotate, scale = AUGMENT_PRESETS[preset]
    side = min(input_shape[-2:]) if len(input_shape) == 3 else 0
    shift = max(1, round(shift_frac * side)) if shift_frac else 0
    if params.get("aug_shift") is not None:
        shift = params["aug_shift"]
        if not _is_int(shift) or shift < 0:
            raise _error("aug_shift", shift, "an integer >= 0 (pixels)")
    if params.get("aug_rotate") is not None:
        rotate = params["aug_rotate"]
        if not _is_number(rotate) or not 0 <= rotate <= 180:
            raise _error("aug_rotate", rotate, "a number of degrees in [0, 180]")
    if params.get("aug_scale") is not None:
        scale = params["aug_scale"]
        if not _is_number(scale) or not 0 <= scale < 1:
            raise _error("aug_scale", scale, "a number in [0, 1)")
    if not (shift or rotate or scale or (flip and preset != "none")):
        return None
    if len(input_shape) != 3:
        raise _error("augment", preset, f"none: the data are not images (input shape {tuple(input_shape)})")
    return ImageAugment(input_shape, shift=shift, rotate=rotate, scale=scale, flip=flip, seed=seed)
