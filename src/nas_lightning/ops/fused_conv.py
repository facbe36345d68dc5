"""Grouped convolutions for the fused mixed op, with a backward that stays cheap everywhere.

:func:`conv2d` is exactly ``F.conv2d(x, w, None, stride, padding, 1, groups)``. What differs is
the backward, chosen per case (all exact):

- the input gradient of a depthwise conv (``groups == C_in``, a channel multiplier ``m``
  allowed) at stride 1 is a depthwise conv of the gradient with the flipped kernel, summed over
  the ``m`` branches of each channel: oneDNN's own backward-data kernel is 5-15× slower than
  its forward once ``m > 1`` (the fused op runs all edges' first depthwise convs as one conv
  with a multiplier, since they read the same input);
- the weight gradient of an ``m = 1`` depthwise conv on maps of at most ``SMALL_MAP`` pixels is
  summed over taps (oneDNN's is pathologically slow there, see ``ops/depthwise.py``);
- under ``create_graph`` (the exact DARTS HVP differentiates the step twice) the backward is
  built from ops whose *own* backward is one kernel: a (transposed) conv for the input gradient
  and :class:`_WeightGrad` for the weight gradient. PyTorch's double backward of a grouped conv
  runs one convolution per group instead;
- forward-mode AD goes through ``jvp`` (the conv is bilinear: ``conv(ẋ, w) + conv(x, ẇ)``), built
  from the same Functions, so reverse-over-forward (∇α of a tangent) stays fast too.

Under autocast, ``x`` and ``w`` are cast to the autocast dtype *before* the Function, as autocast
would cast them for ``conv2d``; inside, every tensor then shares one dtype, and the casts'
backward returns each gradient in its input's dtype (an fp32 weight gets an fp32 gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.ops.depthwise import SMALL_MAP, _weight_grad_by_taps, cpu_paths

Pad = tuple[int, int]
PHASED_MAP = 64  # H*W at or below which a dilation-2 weight gradient runs on polyphases


def conv2d(
    x: Tensor, w: Tensor, stride: int = 1, padding: Pad = (0, 0), groups: int = 1, dilation: int = 1
) -> Tensor:
    """``F.conv2d(x, w, None, stride, padding, dilation, groups)``, backward as described above
    (on CPU; elsewhere plain ``F.conv2d``, see ``depthwise.cpu_paths``)."""
    if not cpu_paths(x):
        return F.conv2d(x, w, None, stride, padding, dilation, groups)
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return conv2d(x.to(dtype), w.to(dtype), stride, padding, groups, dilation)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
        return _Conv.apply(x, w, stride, tuple(padding), groups, dilation)
    return _forward(x, w, (stride, tuple(padding), groups, dilation))


def _is_depthwise(x_channels: int, w: Tensor, groups: int) -> bool:
    return groups == x_channels and w.shape[1] == 1


def _forward(x: Tensor, w: Tensor, conf) -> Tensor:
    stride, padding, groups, dilation = conf
    return F.conv2d(x, w, None, stride, padding, dilation, groups)


def _polyphase(t: Tensor) -> Tensor:
    """``[B, C, 2h, 2w]`` → ``[4B, C, h, w]``: the (row, column) phase sub-images."""
    B, C, H, W = t.shape
    sub = t.unflatten(2, (H // 2, 2)).unflatten(4, (W // 2, 2))  # b c h p w q
    return sub.permute(3, 5, 0, 1, 2, 4).reshape(4 * B, C, H // 2, W // 2)


def _same(w: Tensor, padding: Pad, dilation: int) -> bool:
    return all(2 * p == dilation * (k - 1) for p, k in zip(padding, w.shape[2:], strict=True))


def _input_grad(g: Tensor, w: Tensor, x_shape, conf) -> Tensor:
    """∂⟨conv(x, w), g⟩/∂x from differentiable convs (one kernel each when differentiated)."""
    stride, padding, groups, dilation = conf
    C = x_shape[1]
    if stride == 1 and _is_depthwise(C, w, groups) and _same(w, padding, dilation):
        # per branch with the flipped kernel, then the sum over each channel's branches
        gx = conv2d(g, w.flip(-2, -1), 1, padding, w.shape[0], dilation)
        m = w.shape[0] // C
        return gx if m == 1 else gx.unflatten(1, (C, m)).sum(2)
    out_pad = [
        x_shape[i]
        - ((g.shape[i] - 1) * stride - 2 * padding[i - 2] + dilation * (w.shape[i] - 1) + 1)
        for i in (2, 3)
    ]
    return F.conv_transpose2d(g, w, None, stride, padding, out_pad, groups, dilation)


def _weight_grad_path(x: Tensor, w_shape, conf) -> str:
    """``taps`` (m = 1 depthwise on a tiny map: oneDNN's is pathologically slow), ``phases``
    (dilation 2 on a small map: oneDNN's is ~10× slower than undilated; a dilation-2 conv is
    an undilated one on each polyphase sub-image) or ``aten``."""
    stride, padding, groups, dilation = conf
    H, W = x.shape[2], x.shape[3]
    same = (w_shape[2] // 2 * dilation, w_shape[3] // 2 * dilation) == tuple(padding)
    if H * W <= SMALL_MAP and same and dilation == 1 and w_shape[0] == x.shape[1] == groups:
        return "taps"
    if dilation == 2 and stride == 1 and same and H * W <= PHASED_MAP and H % 2 == W % 2 == 0:
        return "phases"
    return "aten"


def _weight_grad(g: Tensor, x: Tensor, w_shape, conf) -> Tensor:
    """∂⟨conv(x, w), g⟩/∂w (not differentiable itself: see :class:`_WeightGrad`)."""
    stride, padding, groups, dilation = conf
    path = _weight_grad_path(x, w_shape, conf)
    if path == "taps":
        return _weight_grad_by_taps(x, g, w_shape[2], w_shape[3], stride)
    if path == "phases":
        pad = [p // 2 for p in padding]
        g, x, dilation, padding = _polyphase(g), _polyphase(x), 1, pad
    return torch.ops.aten.convolution_backward(
        g,
        x,
        g.new_empty(w_shape),
        None,
        [stride] * 2,
        list(padding),
        [dilation] * 2,
        False,
        [0, 0],
        groups,
        [False, True, False],
    )[1]


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, stride: int, padding: Pad, groups: int, dilation: int):
        # x is needed only for the weight gradient (α-steps and the dual pass need none)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, w)
        ctx.save_for_forward(x, w)
        ctx.conf, ctx.x_meta = (stride, padding, groups, dilation), (x.shape, x.stride())
        return _forward(x, w, ctx.conf)

    @staticmethod
    def jvp(ctx, x_t: Tensor | None, w_t: Tensor | None, *_) -> Tensor:
        x, w = ctx.saved_tensors
        out = None if x_t is None else conv2d(x_t, w, *ctx.conf)
        if w_t is not None:
            out = conv2d(x, w_t, *ctx.conf) if out is None else out + conv2d(x, w_t, *ctx.conf)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w = ctx.saved_tensors
        conf, shape = ctx.conf, ctx.x_meta[0]
        s, p, G, d = conf
        need_x, need_w = ctx.needs_input_grad[:2]
        gx = gw = None
        if torch.is_grad_enabled():  # create_graph: every piece differentiable, none loops
            if need_x:
                gx = _input_grad(g, w, shape, conf)
            if need_w:
                gw = _WeightGrad.apply(g, x, tuple(w.shape), conf)
            return gx, gw, None, None, None, None
        flip = need_x and s == 1 and _is_depthwise(shape[1], w, G) and _same(w, p, d)
        taps = need_w and _weight_grad_path(x, w.shape, conf) != "aten"
        mask = [need_x and not flip, need_w and not taps, False]
        if any(mask):  # without x (not saved): a stand-in of its shape and layout
            like = x if x is not None else g.new_empty_strided(*ctx.x_meta)
            gx, gw, _ = torch.ops.aten.convolution_backward(
                g, like, w, None, [s, s], list(p), [d, d], False, [0, 0], G, mask
            )
        if flip:
            gx = _input_grad(g, w, shape, conf)
        if taps:
            gw = _weight_grad(g, x, w.shape, conf)
        return gx, gw, None, None, None, None


class _WeightGrad(torch.autograd.Function):
    """The weight gradient as a function of (grad, input), with a one-kernel backward each."""

    @staticmethod
    def forward(ctx, g: Tensor, x: Tensor, w_shape, conf):
        ctx.save_for_backward(g, x)
        ctx.save_for_forward(g, x)
        ctx.w_shape, ctx.conf = w_shape, conf
        return _weight_grad(g, x, w_shape, conf)

    @staticmethod
    def jvp(ctx, g_t: Tensor | None, x_t: Tensor | None, *_) -> Tensor:
        g, x = ctx.saved_tensors
        out = None if g_t is None else _WeightGrad.apply(g_t, x, ctx.w_shape, ctx.conf)
        if x_t is not None:
            t = _WeightGrad.apply(g, x_t, ctx.w_shape, ctx.conf)
            out = t if out is None else out + t
        return out

    @staticmethod
    def backward(ctx, v: Tensor):
        g, x = ctx.saved_tensors
        s, p, G, d = ctx.conf
        gg = conv2d(x, v, s, p, G, d) if ctx.needs_input_grad[0] else None
        gx = _input_grad(g, v, x.shape, ctx.conf) if ctx.needs_input_grad[1] else None
        return gg, gx, None, None
