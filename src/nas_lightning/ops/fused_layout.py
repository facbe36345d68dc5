"""Tensor plumbing for the fused mixed op: stacked kernels, branch-major layouts, crops.

A fused tensor holds ``M`` branches of ``C`` channels as ``[B, M·C, H, W]``, branch-major along
channels (branch ``m`` is the channel block ``[m·C, (m+1)·C)``, what grouped convs and
per-channel BatchNorm need); it is channels_last when the input is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def channels_last(t: Tensor) -> bool:
    """Whether channels vary faster than columns in memory (channels_last, or a strided view
    of a packed output): then the fused op works channel-minor."""
    return t.dim() == 4 and t.shape[1] > 1 and t.stride(1) < t.stride(3)


class _Stack(torch.autograd.Function):
    """``pad(stack(tensors, dim))`` whose backward is one copy and one ``unbind``.

    Autograd's own backward runs one ``select`` per input, and the gradient views it hands out
    (strided by the stack, cropped by the pad) break the parameters' layout, so every
    ``AccumulateGrad`` then copies: three kernels per parameter per backward instead of none.
    """

    @staticmethod
    def forward(ctx, dim: int, pad: int, *tensors: Tensor) -> Tensor:
        ctx.dim, ctx.pad = dim, pad
        out = torch.stack(tensors, dim)
        return F.pad(out, [pad] * 4) if pad else out

    @staticmethod
    def jvp(ctx, _dim, _pad, *tangents: Tensor | None) -> Tensor:
        ref = next(t for t in tangents if t is not None)
        full = [torch.zeros_like(ref) if t is None else t for t in tangents]
        return _Stack.apply(ctx.dim, ctx.pad, *full)

    @staticmethod
    def backward(ctx, grad: Tensor):
        p = ctx.pad
        if p:
            grad = grad[..., p:-p, p:-p]
        if ctx.dim or p or not grad.is_contiguous():
            grad = grad.movedim(ctx.dim, 0).contiguous()
        return (None, None, *grad.unbind(0))


def stack(tensors: Sequence[Tensor], dim: int = 0, pad: int = 0) -> Tensor:
    """``torch.stack`` (then ``pad`` zeros around the last two dims), see :class:`_Stack`."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Stack.apply(dim, pad, *tensors)
    out = torch.stack(list(tensors), dim)
    return F.pad(out, [pad] * 4) if pad else out


def kernels(convs: Sequence[tuple[int, Sequence[Tensor]]]) -> Tensor:
    """Depthwise kernels ``[C, 1, k, k]`` of every branch stacked into ``[M, C, 1, K, K]``;
    smaller kernels are zero-padded to the largest ``K`` (the same conv: the extra taps
    multiply by zero)."""
    K = max(k for k, _ in convs)
    parts = [stack(ws, 0, (K - k) // 2) for k, ws in convs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def block_diagonal(w: Tensor, S: int) -> Tensor:
    """1×1 kernels ``[E·S, O, C, 1, 1]`` of branches ``(e, s)`` as one dense conv over
    :func:`join_sources` input where branch ``(e, s)`` reads only source ``s``."""
    if S == 1:
        return w.flatten(0, 1)
    n, out, C = w.shape[:3]
    eye = torch.eye(S, dtype=w.dtype, device=w.device)
    t = w.view(n // S, S, out, 1, C) * eye.view(1, S, 1, S, 1)
    return t.reshape(n * out, S * C, 1, 1)


def crop(w: Tensor, H: int, W: int, dilation: int = 1) -> tuple[Tensor, tuple[int, int]]:
    """Drop the taps of a "same" conv that can only read zero padding on an ``H×W`` map.
    Returns the kernel and its padding."""
    c = w.shape[-1] // 2
    rh, rw = min(c, (H - 1) // dilation), min(c, (W - 1) // dilation)
    if (rh, rw) != (c, c):
        w = w[..., c - rh : c + rh + 1, c - rw : c + rw + 1]
    return w, (dilation * rh, dilation * rw)


def join_sources(hs: Sequence[Tensor]) -> Tensor:
    """``S`` states ``[B, C, H, W]`` as one ``[B, S·C, H, W]`` (source-major channels)."""
    return hs[0] if len(hs) == 1 else torch.cat(list(hs), 1)


def rows(t: Tensor, C: int, cl: bool) -> Tensor:
    """``[B, J·C, H, W]`` (branch-major) as ``[N, C, J]`` (channels_last, a strided view) or
    ``[B, J, C·H·W]`` (NCHW)."""
    B, _, H, W = t.shape
    if cl:
        return t.permute(0, 2, 3, 1).reshape(B * H * W, -1, C).transpose(1, 2)
    return t.reshape(B, -1, C * H * W)
