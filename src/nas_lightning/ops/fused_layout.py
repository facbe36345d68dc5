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


class _Cat(torch.autograd.Function):
    """``pad(cat(tensors, 0))`` (zeros around the last two dims) whose backward is one crop and
    one ``split`` into contiguous per-parameter gradients.

    Autograd's own backward of ``stack``/``cat`` + ``pad`` runs a slice per input and a crop,
    and hands out strided gradient views that break the parameters' layout, so every
    ``AccumulateGrad`` then copies: several kernels per parameter per backward instead of none.
    """

    @staticmethod
    def forward(ctx, pad: int, *tensors: Tensor) -> Tensor:
        ctx.pad, ctx.sizes = pad, [t.shape[0] for t in tensors]
        out = torch.cat(tensors, 0)
        return F.pad(out, [pad] * 4) if pad else out

    @staticmethod
    def jvp(ctx, _pad, *tangents: Tensor | None) -> Tensor:
        ref = next(t for t in tangents if t is not None)
        full = [torch.zeros_like(ref) if t is None else t for t in tangents]
        return _Cat.apply(ctx.pad, *full)

    @staticmethod
    def backward(ctx, grad: Tensor):
        p = ctx.pad
        if p:  # a negative pad crops (one kernel, a contiguous result)
            grad = F.pad(grad, [-p] * 4)
        elif not grad.is_contiguous():
            grad = grad.contiguous()
        return (None, *grad.split(ctx.sizes, 0))


def cat_params(tensors: Sequence[Tensor], pad: int = 0) -> Tensor:
    """``torch.cat(tensors, 0)`` (then ``pad`` zeros around the last two dims): the per-op
    parameters of every branch as one kernel, see :class:`_Cat`."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Cat.apply(pad, *tensors)
    out = torch.cat(list(tensors), 0)
    return F.pad(out, [pad] * 4) if pad else out


def kernels(convs: Sequence[tuple[int, Sequence[Tensor]]]) -> Tensor:
    """Depthwise kernels ``[C, 1, k, k]`` of every branch as one ``[M·C, 1, K, K]``, branch-major;
    smaller kernels are zero-padded to the largest ``K`` (the same conv: the extra taps
    multiply by zero)."""
    K = max(k for k, _ in convs)
    parts = [cat_params(ws, (K - k) // 2) for k, ws in convs]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def block_diagonal(w: Tensor, S: int, out: int) -> Tensor:
    """1×1 kernels ``[E·S·O, C, 1, 1]`` of branches ``(e, s)`` (``O`` outputs each) as one
    dense conv over :func:`join_sources` input where branch ``(e, s)`` reads only source ``s``."""
    if S == 1:
        return w
    C = w.shape[1]
    n = w.shape[0] // out
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
