"""Depthwise "same" convolutions that stay fast on the tiny feature maps of deep cells.

Exact rewrites of ``conv2d(x, w, stride, padding=k//2, groups=C)``:
- taps further than ``H - 1`` (or ``W - 1``) from the centre only ever read zero padding, so the
  kernel is cropped (a 5×5 kernel on a 2×2 map is a 3×3 one; on 1×1 it is a per-channel scale);
- oneDNN's depthwise *weight* gradient is pathologically slow on small maps (2 ms for a 4×4 map
  whose forward takes 0.1 ms), so there the weight gradient is summed over the k² taps instead;
- under ``create_graph`` (the exact DARTS Hessian-vector product) the backward is built from a
  transposed conv and tap sums: PyTorch's own double backward of a grouped conv loops over the
  groups, i.e. one tiny conv per channel, which made the exact HVP several times slower.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP = 16  # H*W at or below which the weight gradient is summed over taps


def depthwise_same(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``conv2d(x, weight, stride, padding=k//2, groups=C)`` for an odd square kernel."""
    k = weight.shape[-1]
    rh, rw = min(k // 2, x.shape[2] - 1), min(k // 2, x.shape[3] - 1)
    c = k // 2
    if (rh, rw) != (c, c):
        weight = weight[:, :, c - rh : c + rh + 1, c - rw : c + rw + 1]
    if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad):
        return _Depthwise.apply(x, weight, stride)
    return F.conv2d(x, weight, None, stride, (rh, rw), 1, x.shape[1])


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


def _aten_grad(grad, x, weight, stride: int, pad, want_input: bool) -> torch.Tensor:
    """One of oneDNN's two depthwise gradients (input or weight), without computing the other."""
    mask = [want_input, not want_input, False]
    out = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride] * 2, list(pad), [1, 1], False, [0, 0], x.shape[1], mask
    )
    return out[0] if want_input else out[1]


class _Depthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        pad = (weight.shape[2] // 2, weight.shape[3] // 2)
        return F.conv2d(x, weight, None, stride, pad, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, kh, kw = ctx.stride, weight.shape[2], weight.shape[3]
        pad, C = (kh // 2, kw // 2), x.shape[1]
        double = torch.is_grad_enabled()  # create_graph: keep the backward differentiable
        small = x.shape[2] * x.shape[3] <= SMALL_MAP
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            if double:
                out_pad = [
                    x.shape[i] - ((grad.shape[i] - 1) * s - 2 * pad[i - 2] + k)
                    for i, k in ((2, kh), (3, kw))
                ]
                grad_x = F.conv_transpose2d(grad, weight, None, s, pad, out_pad, C)
            else:
                grad_x = _aten_grad(grad, x, weight, s, pad, want_input=True)
        if ctx.needs_input_grad[1]:
            if small:
                grad_w = _weight_grad_by_taps(x, grad, kh, kw, s)
            else:
                grad_w = _aten_grad(grad, x, weight, s, pad, want_input=False)
        return grad_x, grad_w, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, k//2, groups=C, bias=False)`` computed by :func:`depthwise_same`
    (same parameters and state dict)."""

    def __init__(self, C: int, kernel: int, stride: int = 1):
        super().__init__(C, C, kernel, stride, kernel // 2, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_same(x, self.weight, self.stride[0])
