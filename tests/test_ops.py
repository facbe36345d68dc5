"""The op registry and every registered op."""

import pytest
import torch

from nas_lightning.ops import ZERO, available_ops, build_op, canonical_name, validate_ops
from nas_lightning.spaces import DARTS_OPS

OPS = available_ops("cell")


def test_registry_holds_the_darts_ops_as_cell_ops():
    assert set(DARTS_OPS) <= set(OPS)
    assert {"mbconv", "zero"} <= set(available_ops("block"))
    assert not {"mbconv", "conv", "pool_linear"} & set(OPS)  # not shape-keeping C -> C ops


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("size", [8, 7])
def test_op_shape(name, stride, affine, size):
    op = build_op(name, 6, stride, affine=affine)
    y = op(torch.randn(2, 6, size, size))
    expected = size if stride == 1 else (size + 1) // 2
    assert y.shape == (2, 6, expected, expected)


@pytest.mark.parametrize("name", [n for n in OPS if n != ZERO])
@pytest.mark.parametrize("stride", [1, 2])
def test_op_gets_gradients(name, stride):
    op = build_op(name, 4, stride, affine=True)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    op(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in op.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_preact_op_equals_op_after_relu(name, stride):
    torch.manual_seed(0)
    full = build_op(name, 4, stride, affine=False)
    pre = build_op(name, 4, stride, affine=False, preact=True)
    src = list(full.state_dict().values())  # same tensors, keys shifted by the dropped ReLU
    pre.load_state_dict(dict(zip(pre.state_dict(), src, strict=True)))
    x = torch.randn(3, 4, 8, 8)
    got = pre(torch.relu(x)) if pre.expects_preact else pre(x)
    torch.testing.assert_close(got, full(x))


def test_zero_alias_and_unknown_op_error():
    assert canonical_name("zero") == ZERO
    with pytest.raises(ValueError, match="'conv_9x9'.*valid ops are: none, max_pool_3x3"):
        build_op("conv_9x9", 4)


@pytest.mark.parametrize(
    "ops, match",
    [([], "empty"), (["none"], "no op besides"), (["skip_connect", "skip_connect"], "duplicate")],
)
def test_validate_ops_rejects(ops, match):
    with pytest.raises(ValueError, match=match):
        validate_ops(ops)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_polyphase_dilated_conv_equals_dilated_conv(kernel, stride, size, channels_last):
    from nas_lightning.ops.darts_ops import DilatedDepthwiseConv2d

    conv = DilatedDepthwiseConv2d(4, kernel, stride).double()
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ref = torch.nn.functional.conv2d(x, conv.weight, None, stride, 2 * (kernel // 2), 2, 4)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [x, conv.weight], g)
    want = torch.autograd.grad(ref, [x, conv.weight], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 3), (4, 4), (8, 8)])
def test_depthwise_same_matches_conv2d_with_double_backward(kernel, stride, size):
    from nas_lightning.ops.depthwise import depthwise_same

    torch.manual_seed(0)
    x = torch.randn(3, 4, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv2d(x, w, None, stride, kernel // 2, 1, 4)
    out = depthwise_same(x, w, stride)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [x, w], g, create_graph=True)
    want = torch.autograd.grad(ref, [x, w], g, create_graph=True)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    v = [torch.randn_like(t) for t in got]  # second derivatives (exact HVP relies on them)
    dot_got = sum((a * b).sum() for a, b in zip(got, v, strict=True))
    dot_want = sum((a * b).sum() for a, b in zip(want, v, strict=True))
    for a, b in zip(
        torch.autograd.grad(dot_got, [x, w], allow_unused=True, materialize_grads=True),
        torch.autograd.grad(dot_want, [x, w], allow_unused=True, materialize_grads=True),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
