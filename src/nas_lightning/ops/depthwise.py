"""Depthwise "same" convolutions that stay fast on the tiny feature maps of deep cells.

Exact rewrites of ``conv2d(x, w, stride, padding=k//2, groups=C)``:
- taps further than ``H - 1`` (or ``W - 1``) from the centre only ever read zero padding, so the
  kernel is cropped (a 5×5 kernel on a 2×2 map is a 3×3 one; on 1×1 it is a per-channel scale);
- oneDNN's depthwise *weight* gradient is pathologically slow on small maps (2 ms for a 4×4 map
  whose forward takes 0.1 ms), so there the weight gradient is summed over the k² taps instead;
- under ``create_graph`` (the exact DARTS Hessian-vector product) the backward is built from a
  transposed conv and tap sums: PyTorch's own double backward of a grouped conv loops over the
  groups, i.e. one tiny conv per channel, which made the exact HVP several times slower.

These paths are CPU-specific (:func:`cpu_paths`): on other devices (CUDA: cuDNN) the plain
``F.conv2d`` runs, with its native backward, double backward and forward-mode formula;
:func:`generic_paths` forces that path on CPU (tests of its dtype handling under autocast).

Under autocast, ``x`` and ``weight`` are cast to the autocast dtype *before* the custom Function,
as autocast would cast them for ``conv2d``: autocast is off inside ``backward``, so every tensor
there must already share one dtype; the casts' own backward returns each gradient in its input's
dtype (an fp32 weight gets an fp32 gradient). Forward-mode AD (the exact DARTS HVP) goes through
:meth:`_Depthwise.jvp`, the conv being bilinear: ``conv(ẋ, w) + conv(x, ẇ)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP = 16  # H*W at or below which the weight gradient is summed over taps
_GENERIC = [False]  # set by generic_paths()


def cpu_paths(x: torch.Tensor) -> bool:
    """Whether the CPU-specific kernels run for ``x``: on CPU only, where they are faster."""
    return x.device.type == "cpu" and not _GENERIC[0]


@contextmanager
def generic_paths() -> Iterator[None]:
    """Run the device-generic path (plain ``F.conv2d``, what CUDA runs) on CPU too."""
    old, _GENERIC[0] = _GENERIC[0], True
    try:
        yield
    finally:
        _GENERIC[0] = old


def depthwise_same(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``conv2d(x, weight, stride, padding=k//2, groups=C)`` for an odd square kernel."""
    if not cpu_paths(x):
        pad = (weight.shape[2] // 2, weight.shape[3] // 2)
        return F.conv2d(x, weight, None, stride, pad, 1, x.shape[1])
    k = weight.shape[-1]
    rh, rw = min(k // 2, x.shape[2] - 1), min(k // 2, x.shape[3] - 1)
    c = k // 2
    if (rh, rw) != (c, c):
        weight = weight[:, :, c - rh : c + rh + 1, c - rw : c + rw + 1]
    if not (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad)):
        return F.conv2d(x, weight, None, stride, (rh, rw), 1, x.shape[1])
    return apply_as_conv(_Depthwise, x, weight, stride)


def apply_as_conv(fn: type[torch.autograd.Function], *args):
    """``fn.apply(*args)`` for a conv-like Function, with its tensors cast as autocast casts
    ``conv2d``'s: autocast is off in ``backward``, so its tensors must share one dtype there."""
    device = args[0].device.type
    if not torch.is_autocast_enabled(device):
        return fn.apply(*args)
    dtype = torch.get_autocast_dtype(device)
    with torch.autocast(device, enabled=False):
        return fn.apply(*(a.to(dtype) if torch.is_tensor(a) else a for a in args))


def _weight_grad_by_taps(x: torch.Tensor, grad: torch.Tensor, kh: int, kw: int, stride: int):
    # one fused multiply-reduce per tap on strided views: faster than im2col or stacking here
    rh, rw = kh // 2, kw // 2
    xp = F.pad(x, (rw, rw, rh, rh))
    hs, ws = (grad.shape[2] - 1) * stride + 1, (grad.shape[3] - 1) * stride + 1
    taps = [
        (xp[:, :, i : i + hs : stride, j : j + ws : stride] * grad).sum((0, 2, 3))
        for i in range(kh)
        for j in range(kw)
    ]
    return torch.stack(taps, 1).view(x.shape[1], 1, kh, kw)


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def conv_input_grad(grad, like: torch.Tensor, weight, stride, padding, dilation, groups: int):
    """The input gradient of ``conv2d`` alone. ``like`` only gives the input's shape and memory
    format (oneDNN picks its layout from it): an uninitialised stand-in when the input was not
    saved, so a conv whose weight is not differentiated need not keep its input."""
    mask = [True, False, False]
    args = (_pair(stride), _pair(padding), _pair(dilation), False, [0, 0], groups, mask)
    return torch.ops.aten.convolution_backward(grad, like, weight, None, *args)[0]


def _aten_weight_grad(grad, x, weight, stride: int, pad) -> torch.Tensor:
    """oneDNN's depthwise weight gradient, without computing the input gradient."""
    mask = [False, True, False]
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride] * 2, list(pad), [1, 1], False, [0, 0], x.shape[1], mask
    )[1]


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    pad = (weight.shape[2] // 2, weight.shape[3] // 2)
    return F.conv2d(x, weight, None, stride, pad, 1, x.shape[1])


class _Depthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        # x is needed only for the weight gradient (an α-step's frozen weights need none)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        ctx.save_for_forward(x, weight)
        ctx.stride, ctx.x_meta = stride, (x.shape, x.stride())
        return _conv(x, weight, stride)

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor | None, w_t: torch.Tensor | None, _stride) -> torch.Tensor:
        # bilinear; through this Function again, so that reverse mode over the tangent (the
        # exact DARTS HVP) saves no more than the forward does
        x, weight = ctx.saved_tensors
        out = None if x_t is None else _Depthwise.apply(x_t, weight, ctx.stride)
        if w_t is not None:
            xw = _Depthwise.apply(x, w_t, ctx.stride)
            out = xw if out is None else out + xw
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        (shape, strides), s = ctx.x_meta, ctx.stride
        kh, kw = weight.shape[2], weight.shape[3]
        pad, C = (kh // 2, kw // 2), shape[1]
        double = torch.is_grad_enabled()  # create_graph: keep the backward differentiable
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if double:
                out_pad = [
                    shape[i] - ((grad.shape[i] - 1) * s - 2 * pad[i - 2] + k)
                    for i, k in ((2, kh), (3, kw))
                ]
                grad_x = F.conv_transpose2d(grad, weight, None, s, pad, out_pad, C)
            else:
                like = x if x is not None else grad.new_empty_strided(shape, strides)
                grad_x = conv_input_grad(grad, like, weight, s, pad, 1, C)
        if ctx.needs_input_grad[1]:
            if shape[2] * shape[3] <= SMALL_MAP:
                grad_w = _weight_grad_by_taps(x, grad, kh, kw, s)
            else:
                grad_w = _aten_weight_grad(grad, x, weight, s, pad)
        return grad_x, grad_w, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, k//2, groups=C, bias=False)`` computed by :func:`depthwise_same`
    (same parameters and state dict)."""

    def __init__(self, C: int, kernel: int, stride: int = 1):
        super().__init__(C, C, kernel, stride, kernel // 2, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_same(x, self.weight, self.stride[0])
