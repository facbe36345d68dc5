"""ops/depthwise.py: every gradient path under autocast (dtypes and values), and forward-mode AD.

The CPU search on small maps takes the tap-sum path, and CUDA the generic one, so each path is
forced here directly, under CPU autocast to bfloat16.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

from nas_lightning.ops import depthwise
from nas_lightning.ops.depthwise import depthwise_same

pytestmark = pytest.mark.usefixtures("one_thread")

# bfloat16 keeps 8 significant bits (unit roundoff 2^-8 ≈ 3.9e-3). Inputs and output are each
# rounded once and oneDNN accumulates in fp32, so the relative error of a whole output or
# gradient is a few units of roundoff: 2e-2 leaves room, and a wrong path (a dtype mix-up
# or a missing term) is off by O(1).
BF16_TOL = 2e-2
PATHS = {  # name: (map size, stride); maps of at most SMALL_MAP pixels take the tap-sum path
    "small_map": (4, 1),
    "small_map_stride2": (4, 2),
    "generic": (8, 1),
    "generic_stride2": (8, 2),
}


def rel(a, b) -> float:
    return ((a.float() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("create_graph", [False, True], ids=["backward", "create_graph"])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_runs_under_bf16_autocast(path, create_graph):
    size, stride = PATHS[path]
    assert (size * size <= depthwise.SMALL_MAP) == path.startswith("small")
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    w = torch.randn(3, 1, 5, 5, requires_grad=True)
    ref = depthwise_same(x, w, stride)
    r = torch.randn_like(ref)
    ref_gx, ref_gw = torch.autograd.grad((ref * r).sum(), (x, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = depthwise_same(x, w, stride)
    gx, gw = torch.autograd.grad((y.float() * r).sum(), (x, w), create_graph=create_graph)
    assert y.dtype == torch.bfloat16 and gx.dtype == x.dtype and gw.dtype == w.dtype
    assert rel(y, ref) < BF16_TOL
    assert rel(gx, ref_gx) < BF16_TOL and rel(gw, ref_gw) < BF16_TOL
    if create_graph:  # the backward itself is differentiable, back into fp32
        (h,) = torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), x)
        assert h.dtype == x.dtype and h.abs().sum() > 0


def test_autocast_casts_like_conv2d():
    """Autocast runs the depthwise conv in bf16 exactly as it would run ``F.conv2d``."""
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(3, 1, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, plain = depthwise_same(x, w), F.conv2d(x, w, None, 1, 1, 1, 3)
    assert ours.dtype == plain.dtype == torch.bfloat16
    assert torch.allclose(ours.float(), plain.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("path", PATHS)
def test_forward_mode_tangent_and_its_reverse_match_conv2d(path):
    """``jvp`` (conv(ẋ, w) + conv(x, ẇ)) and reverse mode through it, against ``F.conv2d``."""
    size, stride = PATHS[path]
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    xt, wt = torch.randn_like(x), torch.randn_like(w)
    out = {}
    for name, conv in (
        ("ours", lambda a, b: depthwise_same(a, b, stride)),
        ("torch", lambda a, b: F.conv2d(a, b, None, stride, 1, 1, 3)),
    ):
        with fwAD.dual_level():
            y = conv(fwAD.make_dual(x * x, xt), fwAD.make_dual(w * w, wt))
            tangent = fwAD.unpack_dual(y).tangent
        grads = torch.autograd.grad((tangent * tangent).sum(), (x, w))
        out[name] = (tangent, *grads)
    for ours, ref in zip(out["ours"], out["torch"], strict=True):
        assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_alpha_pass_does_not_save_the_input():
    """With the weight constant (an α-step), only the weight is saved for backward."""
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 3, 3)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.shape) or t, lambda t: t
    ):
        y = depthwise_same(x, w)
    assert saved == [w.shape]
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(gx, torch.autograd.grad(F.conv2d(x, w, None, 1, 1, 1, 3).sum(), x)[0])
