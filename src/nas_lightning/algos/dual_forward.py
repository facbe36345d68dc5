"""A forward pass on dual numbers that reverse mode can differentiate exactly and cheaply.

The exact DARTS HVP takes ``∇α`` (reverse mode) of a forward-mode directional derivative, with
the weights dual and constant (only α is differentiated). Inside :func:`dual_forward`:

- ``F.batch_norm`` in training mode: torch 2.13's forward-AD formula reads the saved mean and
  inverse std, outputs that reverse mode treats as constants, so ``∇α`` of its tangent is
  silently wrong (pytorch/pytorch#196699; ``F.layer_norm`` likewise). Here the tangent is
  written out from differentiable pieces (LayerNorm runs as elementary ops). Running
  statistics are never updated here (the α-step's rule, see ``ops.bn``). An in-place ReLU runs
  out of place, as the BatchNorm output it would overwrite is saved.
- ``F.conv2d`` with a constant weight saves only the weight (torch's saves its input too), and
  its tangent ``conv(ẋ, w) + conv(x, ẇ)`` is built from the same lean conv. So the dual pass
  saves about what the finite-difference pass saves.
- ``a * b`` with one dual operand (an op output times its softmax(α) weight): torch fills the
  missing tangent with a zero tensor that goes through Python reference kernels and a
  full-size product, 4-5× a plain product. Here the tangent is ``ȧ·b`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

from nas_lightning.ops.depthwise import apply_as_conv, conv_input_grad

_MUL = {torch.mul, Tensor.mul, Tensor.__mul__, Tensor.__rmul__}


def _dims(x: Tensor) -> tuple[list[int], list[int]]:
    return [0, *range(2, x.dim())], [1, -1] + [1] * (x.dim() - 2)


class _NormTrain(torch.autograd.Function):
    """Training-mode BatchNorm without affine, ``(y, s)`` with ``s = (σ² + ε)^-½``, both
    differentiable; it saves its output ``y``, which the tangent needs anyway, not ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, eps: float):
        y, _, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)
        s = invstd.view(_dims(x)[1])
        ctx.save_for_backward(y, s)
        return y, s

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Tensor | None, gs: Tensor | None):
        y, s = ctx.saved_tensors
        dims = _dims(y)[0]
        gx = torch.zeros_like(y)
        if gy is not None:  # BatchNorm's own backward, written with y
            gx = s * (gy - gy.mean(dims, keepdim=True) - y * (gy * y).mean(dims, keepdim=True))
        if gs is not None:  # ∂s/∂x = −s³(x − μ)/N = −s²·y/N
            gx = gx - (gs * s * s * (s.numel() / y.numel())) * y
        return gx, None


def _batch_norm(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    px, tx = fwAD.unpack_dual(x)
    if tx is None or not (training or running_mean is None):  # eval mode's formula is exact
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    # y = (x − μ)·s has the tangent ẏ = s·(ẋ − mean(ẋ) − y·mean(y·ẋ)), built here from
    # differentiable pieces; running statistics are untouched.
    dims, shape = _dims(x)
    y, s = _NormTrain.apply(px, eps)
    c = (y * tx).mean(dims, keepdim=True)
    ty = torch.addcmul(s * tx - s * tx.mean(dims, keepdim=True), y, s * c, value=-1)
    y = fwAD.make_dual(y, ty)
    if weight is not None:
        y = y * weight.view(shape)
    return y if bias is None else y + bias.view(shape)


class _LeanConv(torch.autograd.Function):
    """``F.conv2d`` whose weight is a constant of the reverse pass: it saves the weight, not
    the input (torch's convolution saves both whatever is differentiated)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.conf, ctx.x_meta = (stride, padding, dilation, groups), (x.shape, x.stride())
        ctx.save_for_backward(weight)
        ctx.save_for_forward(x, weight)
        out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.out_shape = out.shape
        return out

    @staticmethod
    def jvp(ctx, x_t, weight_t, bias_t, *_):
        x, weight = ctx.saved_tensors
        out = None if x_t is None else _LeanConv.apply(x_t, weight, None, *ctx.conf)
        if weight_t is not None:
            wt = _LeanConv.apply(x, weight_t, None, *ctx.conf)
            out = wt if out is None else out + wt
        if bias_t is not None:
            bt = bias_t.view(1, -1, 1, 1)
            out = bt.expand(ctx.out_shape) if out is None else out + bt
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        if isinstance(ctx.conf[1], str):  # "same"/"valid": the input gradient needs numbers
            raise NotImplementedError("string padding in the exact HVP's dual forward")
        gx = conv_input_grad(grad, grad.new_empty_strided(*ctx.x_meta), weight, *ctx.conf)
        return gx, None, grad.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None, *[None] * 4


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if weight.requires_grad or not (x.requires_grad or fwAD.unpack_dual(x).tangent is not None):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return apply_as_conv(_LeanConv, x, weight, bias, stride, padding, dilation, groups)


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = list(range(x.dim() - len(normalized_shape), x.dim()))
    xc = x - x.mean(dims, keepdim=True)
    y = xc * torch.rsqrt((xc * xc).mean(dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def _one_sided_mul(a: Tensor, b: Tensor) -> Tensor | None:
    pa, ta = fwAD.unpack_dual(a)
    pb, tb = fwAD.unpack_dual(b)
    if (ta is None) == (tb is None):
        return None
    return fwAD.make_dual(pa * pb, ta * pb if tb is None else pa * tb)


class _DualForward(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            return _batch_norm(*args, **kwargs)
        if func is F.layer_norm:
            return _layer_norm(*args, **kwargs)
        if func is F.conv2d and torch.is_grad_enabled():
            return _conv2d(*args, **kwargs)
        if func is F.relu and kwargs.get("inplace"):  # BatchNorm's saved output must survive
            return F.relu(args[0])
        if func in _MUL and len(args) == 2 and not kwargs and all(map(torch.is_tensor, args)):
            out = _one_sided_mul(*args)
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextmanager
def dual_forward() -> Iterator[None]:
    """Run a network's forward on dual numbers inside this block (see the module docstring)."""
    with _DualForward():
        yield
