"""MobileNetV2 inverted-residual blocks (MBConv) and the op descriptions latency models use.

An :class:`OpDesc` is the hardware-relevant identity of one op instance: op type, input and
output feature-map shape, kernel, stride and expansion ratio. Latency lookup tables are keyed
by it and latency predictors use its fields as features, so it lives beside the ops it
describes (knowing nothing about spaces or algorithms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

MBCONV_CHOICES = [(k, e) for k in (3, 5, 7) for e in (3, 6)]  # (kernel, expand)


@dataclass(frozen=True)
class OpDesc:
    """One op instance. ``op`` is ``mbconv``, ``zero`` (skip the block), ``conv`` (conv-BN-ReLU6),
    ``pool_linear`` (global pool + classifier). ``expand`` is 1 for non-MBConv ops."""

    op: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel: int = 1
    stride: int = 1
    expand: int = 1

    def key(self) -> str:
        """Stable string key for lookup tables."""
        return (
            f"{self.op}:in{self.in_channels}x{self.in_size[0]}x{self.in_size[1]}"
            f":out{self.out_channels}x{self.out_size[0]}x{self.out_size[1]}"
            f":k{self.kernel}:s{self.stride}:e{self.expand}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_size"], d["out_size"] = list(self.in_size), list(self.out_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpDesc:
        return cls(**{**d, "in_size": tuple(d["in_size"]), "out_size": tuple(d["out_size"])})


def conv_bn_act(C_in: int, C_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(C_out),
        nn.ReLU6(inplace=True),
    )


class MBConv(nn.Module):
    """1×1 expand (skipped for expand=1) → k×k depthwise (stride) → 1×1 linear projection.

    The residual connection is *not* inside: the searchable block adds it, so that the ``zero``
    candidate (skip the block) is exactly the identity residual.
    """

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        if kernel % 2 == 0 or stride not in (1, 2) or expand < 1:
            raise ValueError(f"invalid MBConv(kernel={kernel}, stride={stride}, expand={expand})")
        hidden = C_in * expand
        layers: list[nn.Module] = [] if expand == 1 else [conv_bn_act(C_in, hidden, 1, 1)]
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            nn.Conv2d(hidden, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out),
        ]
        self.body = nn.Sequential(*layers)
        self.kernel, self.stride, self.expand = kernel, stride, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ZeroBlock(nn.Module):
    """The ``zero`` candidate: contributes nothing (the block's residual carries the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def module_from_desc(desc: OpDesc, num_classes: int = 10) -> nn.Module:
    """A standalone module for one op description (used to profile it on real hardware)."""
    if desc.op == "mbconv":
        return MBConv(desc.in_channels, desc.out_channels, desc.kernel, desc.stride, desc.expand)
    if desc.op == "zero":
        return ZeroBlock()
    if desc.op == "conv":
        return conv_bn_act(desc.in_channels, desc.out_channels, desc.kernel, desc.stride)
    if desc.op == "pool_linear":
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(desc.in_channels, desc.out_channels)
        )
    raise ValueError(f"unknown op type {desc.op!r}; valid: mbconv, zero, conv, pool_linear")
