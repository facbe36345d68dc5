"""``M`` depthwise convs of the same input as one conv: the fused op's first depthwise layer.

Every sep/dil op of every edge leaving one state starts with its own depthwise conv of the same
(ReLU'd) state; :func:`depthwise_repeated` runs them all as one, with a backward that stays
cheap on CPU (see ``ops/fused_conv.py`` for the pieces it is built from).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.ops.depthwise import cpu_paths
from nas_lightning.ops.fused_conv import Pad, _input_grad, _weight_grad, _WeightGrad


def depthwise_repeated(
    x: Tensor, w: Tensor, stride: int = 1, padding: Pad = (0, 0), dilation: int = 1
) -> Tensor:
    """``conv2d(x.repeat(1, M, 1, 1), w, groups=M·C)``: ``M`` branches, each its own depthwise
    kernels ``w[m·C:(m+1)·C]`` on the same ``x``; the output is branch-major.

    Forward is oneDNN's fast plain depthwise kernel on the repeated input (faster than its
    channel-multiplier kernel, which would also leave the branches interleaved); only ``x`` is
    saved. Backward: the input gradient is the flipped-kernel conv summed over branches, the
    weight gradient oneDNN's channel-multiplier one (the plain kernel's is several times
    slower), on a branch-interleaved copy of the gradient. Off CPU: the plain repeated conv.
    """
    if not cpu_paths(x):
        return _repeated_forward(x, w, (stride, tuple(padding), dilation))
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return depthwise_repeated(x.to(dtype), w.to(dtype), stride, padding, dilation)
    conf = (stride, tuple(padding), dilation)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _Repeated.apply(x, w, conf)
    return _repeated_forward(x, w, conf)


def _repeat(x: Tensor, M: int) -> Tensor:
    """``x.repeat(1, M, 1, 1)`` keeping channels_last inputs channels_last."""
    if x.stride(1) < x.stride(3) and x.shape[1] > 1:
        return x.permute(0, 2, 3, 1).repeat(1, 1, 1, M).permute(0, 3, 1, 2)
    return x.repeat(1, M, 1, 1)


def _repeated_forward(x: Tensor, w: Tensor, conf) -> Tensor:
    stride, padding, dilation = conf
    xr = _repeat(x, w.shape[0] // x.shape[1])
    return F.conv2d(xr, w, None, stride, padding, dilation, w.shape[0])


def _interleave(t: Tensor, M: int) -> Tensor:
    """Branch-major channels ``(m, c)`` → channel-major ``(c, m)`` (a copy, same layout)."""
    if t.stride(1) < t.stride(3) and t.shape[1] > 1:  # channels_last
        B, MC, H, W = t.shape
        u = t.permute(0, 2, 3, 1).unflatten(3, (M, -1)).transpose(3, 4)
        return u.reshape(B, H, W, MC).permute(0, 3, 1, 2)
    return t.unflatten(1, (M, -1)).transpose(1, 2).flatten(1, 2)


class _Repeated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, conf) -> Tensor:
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, w)  # x: for ∇w only
        ctx.save_for_forward(x, w)
        ctx.conf, ctx.x_shape = conf, x.shape
        return _repeated_forward(x, w, conf)

    @staticmethod
    def jvp(ctx, x_t: Tensor | None, w_t: Tensor | None, _conf) -> Tensor:
        x, w = ctx.saved_tensors
        s, p, d = ctx.conf
        out = None if x_t is None else depthwise_repeated(x_t, w, s, p, d)
        if w_t is not None:
            t = depthwise_repeated(x, w_t, s, p, d)
            out = t if out is None else out + t
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        s, p, d = ctx.conf
        B, C, H, W = ctx.x_shape
        M = w.shape[0] // C
        gx = gw = None
        if ctx.needs_input_grad[0]:  # per branch (a plain depthwise conv), then Σ branches
            gr = _input_grad(g, w, (B, M * C, H, W), (s, p, M * C, d))
            gx = gr.unflatten(1, (M, C)).sum(1)
        if ctx.needs_input_grad[1]:
            conf = (s, p, C, d)  # as one channel-multiplier conv: weights channel-major
            shape = (M * C, *w.shape[1:])
            if torch.is_grad_enabled():
                gw = _WeightGrad.apply(_interleave(g, M), x, shape, conf)
            else:
                gw = _weight_grad(_interleave(g, M), x, shape, conf)
            gw = gw.unflatten(0, (C, M)).transpose(0, 1).flatten(0, 1)  # back to branch-major
        return gx, gw, None
