"""The fused op's convolutions against F.conv2d: values, gradients, double backward, jvp."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from nas_lightning.ops.fused_conv import conv2d
from nas_lightning.ops.fused_layout import cat_params
from nas_lightning.ops.fused_repeat import depthwise_repeated

TOL = dict(rtol=1e-10, atol=1e-10)
CASES = [  # (kernel, stride, dilation, size): plain, strided, dilated, taps-sized, phased, odd
    (3, 1, 1, 8),
    (5, 2, 1, 8),
    (5, 1, 2, 8),
    (3, 1, 2, 4),
    (5, 1, 1, 4),
    (3, 2, 1, 7),
    (5, 1, 1, 1),
]


def _inputs(k, size, out_channels, C=3, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(2, C, size, size, dtype=torch.float64).to(memory_format=torch.channels_last)
    w = torch.randn(out_channels, 1, k, k, dtype=torch.float64)
    return x.requires_grad_(), w.requires_grad_()


def _check(fused, native, x, w):
    """Value, gradients, the HVP of a double backward and reverse-over-forward all agree."""
    torch.testing.assert_close(fused(x, w), native(x, w), **TOL)
    results = []
    for fn in (fused, native):
        y = fn(x, w)
        g = torch.autograd.grad((y * y.detach().sin()).sum(), [x, w], create_graph=True)
        torch.manual_seed(1)
        dot = sum((gi * torch.randn(gi.shape, dtype=gi.dtype)).sum() for gi in g)
        hvp = torch.autograd.grad(dot, [x, w])
        with fwAD.dual_level():
            torch.manual_seed(2)
            t = fwAD.unpack_dual(fn(x, fwAD.make_dual(w, torch.randn_like(w)))).tangent
        results.append((*g, *hvp, t, *torch.autograd.grad((t * t).sum(), [x])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def _pad(k, size, d):
    """The "same" padding, cropped where taps can only read padding (as the fused op does)."""
    return d * min(k // 2, (size - 1) // d)


def _crop(w, k, size, d):
    r = min(k // 2, (size - 1) // d)
    c = k // 2
    return w[..., c - r : c + r + 1, c - r : c + r + 1]


@pytest.mark.parametrize("k, stride, d, size", CASES)
@pytest.mark.parametrize("m", [1, 3])
def test_depthwise_conv_with_multiplier(k, stride, d, size, m, one_thread):
    x, w = _inputs(k, size, 3 * m)
    p = _pad(k, size, d)

    def fused(x, w):
        return conv2d(x, _crop(w, k, size, d), stride, (p, p), 3, d)

    def native(x, w):
        return F.conv2d(x, _crop(w, k, size, d), None, stride, p, d, 3)

    _check(fused, native, x, w)


@pytest.mark.parametrize("k, stride, d, size", CASES)
def test_repeated_depthwise_is_per_branch_depthwise(k, stride, d, size, one_thread):
    x, w = _inputs(k, size, 3 * 4)  # 4 branches of 3 channels
    p = _pad(k, size, d)

    def fused(x, w):
        return depthwise_repeated(x, _crop(w, k, size, d), stride, (p, p), d)

    def native(x, w):
        return F.conv2d(x.repeat(1, 4, 1, 1), _crop(w, k, size, d), None, stride, p, d, 12)

    _check(fused, native, x, w)


def test_grouped_pointwise(one_thread):
    torch.manual_seed(0)
    x = torch.randn(2, 12, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    _check(
        lambda x, w: conv2d(x, w, 1, (0, 0), 4), lambda x, w: F.conv2d(x, w, None, 1, 0, 1, 4), x, w
    )


def test_cat_params_gives_each_parameter_a_dense_gradient_and_pads():
    ws = [torch.randn(4, 1, 3, 3, requires_grad=True) for _ in range(3)]
    out = cat_params(ws, pad=1)
    assert out.shape == (12, 1, 5, 5) and out[..., 0, :].abs().sum() == 0
    weights = torch.arange(out.numel()).view_as(out).float()
    (out * weights).sum().backward()
    for i, w in enumerate(ws):
        torch.testing.assert_close(w.grad, weights[4 * i : 4 * (i + 1), :, 1:4, 1:4])
        assert w.grad.is_contiguous()  # AccumulateGrad keeps it without a copy
    with fwAD.dual_level():  # forward mode: the tangents are concatenated (and padded) alike
        duals = [fwAD.make_dual(w.detach(), torch.ones_like(w)) for w in ws]
        tangent = fwAD.unpack_dual(cat_params(duals, pad=1)).tangent
    assert tangent.sum() == 3 * 4 * 9 and tangent[..., 0, :].abs().sum() == 0


def test_generic_paths_run_plain_conv2d_under_bf16_autocast(one_thread):
    """Off CPU (forced here by ``generic_paths``) every depthwise conv is plain ``F.conv2d``:
    native backward, autocast's own casts (bf16 output, fp32 gradients for fp32 leaves)."""
    from nas_lightning.ops.darts_ops import DilatedDepthwiseConv2d
    from nas_lightning.ops.depthwise import depthwise_same, generic_paths

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 5, 5, requires_grad=True)
    dil = DilatedDepthwiseConv2d(3, 3, 1)
    convs = {
        "depthwise_same": (lambda: depthwise_same(x, w, 2), F.conv2d(x, w, None, 2, 2, 1, 3)),
        "dilated": (lambda: dil(x), F.conv2d(x, dil.weight, None, 1, 2, 2, 3)),
        "grouped": (lambda: conv2d(x, w, 1, (2, 2), 3), F.conv2d(x, w, None, 1, 2, 1, 3)),
        "repeated": (
            lambda: depthwise_repeated(x, torch.cat([w, w]), 1, (2, 2)),
            F.conv2d(x.repeat(1, 2, 1, 1), torch.cat([w, w]), None, 1, 2, 1, 6),
        ),
    }
    for name, (ours, ref) in convs.items():
        with generic_paths(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = ours()
        assert y.dtype == torch.bfloat16, name
        assert y.grad_fn.name() == "ConvolutionBackward0", name  # no custom Function
        torch.testing.assert_close(y.float(), ref, rtol=0, atol=0.05 * ref.abs().max().item())
        gx, gw = torch.autograd.grad(
            y.float().square().sum(), (x, w if name != "dilated" else dil.weight)
        )
        assert gx.dtype == gw.dtype == torch.float32, name
    with generic_paths():
        assert depthwise_same(x, w).grad_fn.name() == "ConvolutionBackward0"
    assert depthwise_same(x, w).grad_fn.name() != "ConvolutionBackward0"  # the CPU path
