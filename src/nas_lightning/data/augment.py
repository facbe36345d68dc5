"""Tensor augmentations that pickle (for DataLoader workers): cutout and a chain of transforms."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class Cutout:
    """Zero a ``length``×``length`` square at a uniformly random centre (DeVries & Taylor 2017).

    As in the DARTS code the square is clipped at the borders and applied after normalisation,
    so the erased pixels hold the dataset mean. ``length=0`` is the identity.
    """

    def __init__(self, length: int):
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"cutout length must be an integer >= 0 (0 = off), got {length!r}")
        self.length = length

    def __call__(self, x: Tensor) -> Tensor:
        if self.length == 0:
            return x
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        y0, y1 = max(cy - half, 0), min(cy + half + self.length % 2, h)
        x0, x1 = max(cx - half, 0), min(cx + half + self.length % 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = 0
        return out


class Chain:
    """Apply transforms in order (``None`` entries skipped); picklable, unlike a lambda."""

    def __init__(self, *transforms: Callable[[Tensor], Tensor] | None):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x
