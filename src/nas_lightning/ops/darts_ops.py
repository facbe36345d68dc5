"""The eight DARTS candidate ops (Liu et al. 2019) and the cell pre-processing layers.

``affine=False`` is the search-time setting of the DARTS code: BatchNorm without affine
parameters, and pooling followed by a non-affine BatchNorm so its scale matches the convs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas_lightning.ops.depthwise import DepthwiseConv2d, cpu_paths, depthwise_same
from nas_lightning.ops.desc import NO_COST, OpCost, OpDesc, area, dense_conv_cost, depthwise_cost
from nas_lightning.ops.registry import register_op


def _relu_unless(preact: bool) -> list[nn.Module]:
    return [] if preact else [nn.ReLU(inplace=False)]


class _Op(nn.Sequential):
    """A Sequential carrying the supernet flags (see ``registry``)."""

    def __init__(self, *layers: nn.Module, expects_preact: bool = False, shareable: bool = False):
        super().__init__(*layers)
        self.expects_preact = expects_preact
        self.shareable = shareable


def relu_conv_bn(
    C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True
) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C_in, C_out, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(C_out, affine=affine),
    )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1×1 convs (ceil(H/2) for any H)."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True, preact: bool = False):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.Identity() if preact else nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)
        self.expects_preact = preact
        self.shareable = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def sep_conv(C: int, kernel: int, stride: int, affine: bool, preact: bool) -> _Op:
    return _Op(
        *_relu_unless(preact),
        DepthwiseConv2d(C, kernel, stride),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
        nn.ReLU(inplace=True),
        DepthwiseConv2d(C, kernel, 1),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
        expects_preact=preact,
    )


class DilatedDepthwiseConv2d(nn.Conv2d):
    """Depthwise k×k conv with dilation 2 and "same" padding, computed without dilation (on
    CPU; elsewhere the plain dilated ``F.conv2d``, see ``depthwise.cpu_paths``).

    A dilation-2 conv is four ordinary convs on the four polyphase sub-images (even/odd rows ×
    even/odd columns); with stride 2 only the even sub-image is read. The maths and parameters
    are those of ``nn.Conv2d(C, C, k, stride, 2*(k//2), dilation=2, groups=C)``, but CPU backends
    run undilated depthwise kernels several times faster (backward especially).
    """

    def __init__(self, C: int, kernel: int, stride: int):
        super().__init__(C, C, kernel, stride, 2 * (kernel // 2), dilation=2, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not cpu_paths(x):  # cuDNN's dilated depthwise conv is fast
            return F.conv2d(x, self.weight, None, self.stride, self.padding, 2, self.groups)
        if self.stride[0] == 2:
            return depthwise_same(x[:, :, ::2, ::2], self.weight)
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            x = F.pad(x, (0, W % 2, 0, H % 2))
        h, w = x.shape[2] // 2, x.shape[3] // 2
        nhwc = x.permute(0, 2, 3, 1)  # free for channels_last inputs
        sub = nhwc.reshape(B, h, 2, w, 2, C).permute(2, 4, 0, 1, 3, 5).reshape(4 * B, h, w, C)
        y = depthwise_same(_as_format(sub.permute(0, 3, 1, 2), x), self.weight)
        y = y.permute(0, 2, 3, 1).reshape(2, 2, B, h, w, C).permute(2, 3, 0, 4, 1, 5)
        y = _as_format(y.reshape(B, 2 * h, 2 * w, C).permute(0, 3, 1, 2), x)
        return y[:, :, :H, :W] if (H % 2 or W % 2) else y


def _as_format(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Keep the memory format of ``like`` (a channels_last input stays channels_last)."""
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def dil_conv(C: int, kernel: int, stride: int, affine: bool, preact: bool) -> _Op:
    return _Op(
        *_relu_unless(preact),
        DilatedDepthwiseConv2d(C, kernel, stride),
        nn.Conv2d(C, C, 1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
        expects_preact=preact,
    )


def _pool(pool: nn.Module, C: int, affine: bool) -> _Op:
    # Non-affine BN after pooling only at search time, as in the DARTS MixedOp.
    layers = [pool] if affine else [pool, nn.BatchNorm2d(C, affine=False)]
    return _Op(*layers, shareable=True)


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the output shape (the supernet never evaluates it)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self.shareable = True
        self.expects_preact = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


# ---------------------------------------------------------------- costs (for latency models)
def _sep_cost(k: int):
    def cost(d: OpDesc) -> OpCost:
        C, a, b = d.in_channels, d.in_size, d.out_size
        half = depthwise_cost(C, k, a, b) + dense_conv_cost(C, C, 1, b, b)
        return half + depthwise_cost(C, k, b, b) + dense_conv_cost(C, C, 1, b, b)

    return cost


def _dil_cost(k: int):
    def cost(d: OpDesc) -> OpCost:
        C, a, b = d.in_channels, d.in_size, d.out_size
        return depthwise_cost(C, k, a, b) + dense_conv_cost(C, C, 1, b, b)

    return cost


def _pool_cost(d: OpDesc) -> OpCost:
    C = d.in_channels
    return OpCost(0, 0, 0, C * area(d.in_size) + C * area(d.out_size), 1)


def _skip_cost(d: OpDesc) -> OpCost:
    if d.stride == 1:
        return NO_COST
    C, b = d.in_channels, d.out_size  # FactorizedReduce: two strided 1x1 convs to C/2 each
    return OpCost(area(b) * C * C, 0, C * C + 2 * C, C * area(d.in_size) + C * area(b), 2)


# ---------------------------------------------------------------- the registered ops
@register_op("none", roles=["cell", "rnn"], zero=True)  # rnn: ops/rnn_ops.py
def _none(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return Zero(d.stride)


@register_op("max_pool_3x3", cost=_pool_cost, kernel=3)
def _max_pool(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return _pool(nn.MaxPool2d(3, stride=d.stride, padding=1), d.in_channels, affine)


@register_op("avg_pool_3x3", cost=_pool_cost, kernel=3)
def _avg_pool(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    pool = nn.AvgPool2d(3, stride=d.stride, padding=1, count_include_pad=False)
    return _pool(pool, d.in_channels, affine)


@register_op("skip_connect", cost=_skip_cost)
def _skip(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    if d.stride == 1:
        return _Op(nn.Identity(), shareable=True)
    return FactorizedReduce(d.in_channels, d.in_channels, affine=affine, preact=preact)


@register_op("sep_conv_3x3", cost=_sep_cost(3), kernel=3)
def _sep3(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return sep_conv(d.in_channels, 3, d.stride, affine, preact)


@register_op("sep_conv_5x5", cost=_sep_cost(5), kernel=5)
def _sep5(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return sep_conv(d.in_channels, 5, d.stride, affine, preact)


@register_op("dil_conv_3x3", cost=_dil_cost(3), kernel=3)
def _dil3(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return dil_conv(d.in_channels, 3, d.stride, affine, preact)


@register_op("dil_conv_5x5", cost=_dil_cost(5), kernel=5)
def _dil5(d: OpDesc, affine: bool, preact: bool) -> nn.Module:
    return dil_conv(d.in_channels, 5, d.stride, affine, preact)
