"""The fused mixed op against the op-by-op execution of the same choice points (float64, 1e-10).

One :class:`ChoiceGroup` (the edges leaving one state) is run twice from independent copies:
``execute_group(..., fused=True)`` (``ops/mixed_edges.py``) and ``fused=False`` (each candidate
of each point on its own, ``spaces/plans.py``). Outputs, gradients of the state, of α and of
every weight, and the BatchNorm buffers must agree.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from nas_lightning.algos.dual_forward import dual_forward
from nas_lightning.ops import build_op
from nas_lightning.ops.depthwise import generic_paths
from nas_lightning.ops.fused_plan import fused_plan
from nas_lightning.spaces.choices import ChoiceGroup, OpChoice
from nas_lightning.spaces.plans import execute_group

pytestmark = pytest.mark.usefixtures("one_thread")

ALL = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"]
ALL += ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
SUBSETS = {
    "all": ALL,
    "no_none": ["dil_conv_5x5", "skip_connect", "sep_conv_3x3", "avg_pool_3x3"],
    "no_convs": ["max_pool_3x3", "none", "skip_connect", "avg_pool_3x3"],
}
TOL = dict(rtol=1e-10, atol=1e-10)


def group(ops, stride=1, E=3, affine=False, seed=0) -> ChoiceGroup:
    """``E`` edges on one 4-channel state, float64, spread weights and BN statistics."""
    torch.manual_seed(seed)
    probe = {n: build_op(n, 4, stride, affine=affine, preact=True) for n in ops if n != "none"}
    shared = [n for n, m in probe.items() if m.shareable]
    points = [
        OpChoice(
            f"e{e}",
            "normal",
            str(e),
            ops,
            {
                n: build_op(n, 4, stride, affine=affine, preact=True)
                for n in probe
                if n not in shared
            },
            shared=shared,
            stride=stride,
        )
        for e in range(E)
    ]
    g = ChoiceGroup(points, {n: probe[n] for n in shared}).double()
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.5)
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return g


def state(cl=False, seed=1, size=8):
    torch.manual_seed(seed)
    h = torch.randn(2, 4, size, size, dtype=torch.float64)
    return (h.contiguous(memory_format=torch.channels_last) if cl else h).requires_grad_()


def alpha(E, n, seed=2):
    torch.manual_seed(seed)
    return torch.randn(E, n, dtype=torch.float64).softmax(-1).requires_grad_()


def run(g, h, w, fused):
    plans = list(w.unbind(0)) if torch.is_tensor(w) else w
    return execute_group(g, plans, h, fused)


def assert_close(a, b):
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, **TOL)


@pytest.mark.parametrize("subset", [*SUBSETS, "all_generic"])
@pytest.mark.parametrize("stride", [1, 2], ids=["normal", "reduction"])
@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_fused_equals_op_by_op(subset, stride, cl, train):
    """``all_generic``: the device-generic convs (what CUDA runs), forced on CPU."""
    with generic_paths() if subset.endswith("generic") else nullcontext():
        _fused_equals_op_by_op(SUBSETS[subset.split("_generic")[0]], stride, cl, train)


def _fused_equals_op_by_op(
    ops, stride, cl, train
):  # skip_connect: identity (shared) at stride 1, FactorizedReduce at 2
    g = group(ops, stride).train(train)
    g2 = copy.deepcopy(g)
    assert fused_plan(ops, [[p.ops for p in g.points]], [dict(g.shared)]) is not None
    h, w = state(cl), alpha(3, len(ops))
    ref, got = run(g, h, w, False), run(g2, h, w, True)
    assert_close(got, ref)
    cot = [torch.randn_like(o) for o in ref]
    g_ref = torch.autograd.grad(ref, [h, w, *g.parameters()], cot)
    g_got = torch.autograd.grad(got, [h, w, *g2.parameters()], cot)
    assert_close(g_got, g_ref)
    assert_close(list(g2.buffers()), list(g.buffers()))  # running statistics moved alike
    counted = [b.item() for b in g2.buffers() if b.dtype == torch.long]
    assert counted and all(c == (1 if train else 0) for c in counted)


@pytest.mark.parametrize("stride", [1, 2], ids=["normal", "reduction"])
def test_float_weights_and_affine_batchnorm(stride):
    """α frozen (plain floats, no α graph) and affine BatchNorms (γ, β per op) fuse exactly."""
    g = group(ALL, stride, affine=True)
    g2 = copy.deepcopy(g)
    h = state(True)
    w = alpha(3, len(ALL)).detach().tolist()
    ref, got = run(g, h, w, False), run(g2, h, w, True)
    assert_close(got, ref)
    cot = [torch.randn_like(o) for o in ref]
    assert_close(
        torch.autograd.grad(got, [h, *g2.parameters()], cot),
        torch.autograd.grad(ref, [h, *g.parameters()], cot),
    )


@pytest.mark.parametrize("track", [True, False])
def test_frozen_running_stats_are_honoured(track):
    """``track_running_stats=False`` in train mode (an α-step, ``running_stats_frozen``):
    batch statistics and no buffer moves, as ``nn.BatchNorm2d`` does."""
    g = group(ALL)
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = track
    g2 = copy.deepcopy(g)
    before = [b.clone() for b in g2.buffers()]
    h, w = state(), alpha(3, len(ALL))
    assert_close(run(g2, h, w, True), run(g, h, w, False))
    moved = any(not torch.equal(a, b) for a, b in zip(before, g2.buffers(), strict=True))
    assert moved == track
    assert_close(list(g2.buffers()), list(g.buffers()))


@pytest.mark.parametrize("stride", [1, 2], ids=["normal", "reduction"])
def test_double_backward_matches(stride):
    """∇(α, h) of ⟨∇w L, v⟩ through create_graph (the ``double_backward`` HVP) agrees."""
    g = group(ALL, stride)
    g2 = copy.deepcopy(g)
    h, w = state(True), alpha(3, len(ALL))
    results = []
    for grp, fused in ((g, False), (g2, True)):
        loss = sum((o.square() * (i + 1)).sum() for i, o in enumerate(run(grp, h, w, fused)))
        grads = torch.autograd.grad(loss, list(grp.parameters()), create_graph=True)
        torch.manual_seed(5)
        dot = sum((gi * torch.randn(gi.shape, dtype=gi.dtype)).sum() for gi in grads)
        results.append(torch.autograd.grad(dot, [w, h]))
    assert_close(results[1], results[0])


@pytest.mark.parametrize("generic", [False, True], ids=["cpu_paths", "generic_paths"])
@pytest.mark.parametrize("stride", [1, 2], ids=["normal", "reduction"])
def test_forward_mode_and_reverse_over_forward_match(stride, generic):
    """A dual-number forward along a weight direction (the exact HVP's), then ∇(α, h) of the
    tangent, against the op-by-op ⟨∇w L, v⟩ and its double backward."""
    with generic_paths() if generic else nullcontext():
        _forward_mode_matches(stride)


def _forward_mode_matches(stride):
    g = group(ALL, stride)
    g2 = copy.deepcopy(g)
    h, w = state(), alpha(3, len(ALL))
    torch.manual_seed(7)
    v = [torch.randn_like(p) for p in g.parameters()]

    def loss(outs):
        return sum((o * (i + 1)).sum() for i, o in enumerate(outs))

    grads = torch.autograd.grad(loss(run(g, h, w, False)), list(g.parameters()), create_graph=True)
    want = sum((gi * vi).sum() for gi, vi in zip(grads, v, strict=True))
    with fwAD.dual_level(), dual_forward():  # as the exact HVP runs it
        named = list(g2.named_parameters())
        duals = {
            f"g.{n}": fwAD.make_dual(p.detach(), vi) for (n, p), vi in zip(named, v, strict=True)
        }
        outs = torch.func.functional_call(_Run(g2, w), duals, (h,))
        got = fwAD.unpack_dual(loss(outs)).tangent
    torch.testing.assert_close(got, want, **TOL)
    assert_close(torch.autograd.grad(got, [w, h]), torch.autograd.grad(want, [w, h]))


class _Run(nn.Module):
    def __init__(self, g: ChoiceGroup, w: torch.Tensor):
        super().__init__()
        self.g, self.w = g, w

    def forward(self, h):
        return run(self.g, h, self.w, True)


def test_single_paths_and_mixed_bn_modes_run_op_by_op():
    """Only mixes fuse: an int plan (GDAS, binary gates) and BatchNorms in different modes
    (no single ``batch_norm`` call) run point by point, with the same result."""
    g, h = group(ALL).eval(), state()
    outs = execute_group(g, [4, 5, 0], h, fused=True)
    assert outs[2] is None  # the zero op
    torch.testing.assert_close(outs[0], g.points[0].run(4, h), **TOL)
    g.train()
    next(m for m in g.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    assert fused_plan(ALL, [[p.ops for p in g.points]], [dict(g.shared)]) is None
    g2 = copy.deepcopy(g)
    w = alpha(3, len(ALL))
    assert_close(run(g2, h, w, True), run(g, h, w, False))
