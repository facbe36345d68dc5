"""MobileNetV2 inverted-residual blocks (MBConv) and the fixed layers of block spaces, registered
as ops: ``mbconv`` (block candidate, named ``mbconv_k{kernel}_e{expand}``), ``zero`` (skip the
block), ``conv`` (conv-BN-ReLU6) and ``pool_linear`` (global pool + classifier)."""

from __future__ import annotations

import torch
from torch import nn

from nas_lightning.ops.desc import NO_COST, OpCost, OpDesc, area
from nas_lightning.ops.registry import register_op


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


def _mbconv_cost(d: OpDesc) -> OpCost:
    c_in, c_out, k, e = d.in_channels, d.out_channels, d.kernel, d.expand
    a_in, a_out = area(d.in_size), area(d.out_size)
    hidden = c_in * e
    expand_macs = a_in * c_in * hidden if e != 1 else 0
    expand_params = c_in * hidden + 2 * hidden if e != 1 else 0
    return OpCost(
        dense_macs=expand_macs + a_out * hidden * c_out,
        depthwise_macs=a_out * hidden * k * k,
        params=expand_params + hidden * k * k + 2 * hidden + hidden * c_out + 2 * c_out,
        activations=c_in * a_in + (hidden * a_in if e != 1 else 0) + hidden * a_out + c_out * a_out,
        layers=3 if e != 1 else 2,
    )


def _conv_cost(d: OpDesc) -> OpCost:  # conv (no bias) → BN → ReLU6
    c_in, c_out, k = d.in_channels, d.out_channels, d.kernel
    return OpCost(
        area(d.out_size) * c_in * c_out * k * k,
        0,
        c_in * c_out * k * k + 2 * c_out,
        c_in * area(d.in_size) + c_out * area(d.out_size),
        1,
    )


def _pool_linear_cost(d: OpDesc) -> OpCost:  # global average pool → linear (with bias)
    c_in, c_out = d.in_channels, d.out_channels
    return OpCost(c_in * c_out, 0, c_in * c_out + c_out, c_in * area(d.in_size) + c_in + c_out, 2)


@register_op(
    "mbconv", cost=_mbconv_cost, label=lambda d: f"mbconv_k{d.kernel}_e{d.expand}", roles=["block"]
)
def _mbconv(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return MBConv(d.in_channels, d.out_channels, d.kernel, d.stride, d.expand)


@register_op("zero", cost=lambda d: NO_COST, roles=["block"], zero=True)
def _zero(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return ZeroBlock()


@register_op("conv", cost=_conv_cost, roles=["fixed"])
def _conv(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return conv_bn_act(d.in_channels, d.out_channels, d.kernel, d.stride)


@register_op("pool_linear", cost=_pool_linear_cost, roles=["fixed"])
def _pool_linear(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(d.in_channels, d.out_channels)
    )
