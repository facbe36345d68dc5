"""The fused mixed op in a whole supernet and its α-steps: fused == op by op (float64, 1e-10).

A tiny DARTS space (3 cells: one normal, two reduction) is copied; one copy's softmax mixing
runs every mix fused (``mixing.fused = True``), the other op by op (``False``). Logits, the
gradients of every weight and of α, BatchNorm buffers, and every α-gradient mode of
``algos/hypergrad.py`` (first order; second order exact by forward-mode AD, finite difference,
double backward, full unroll) must agree.
"""

from __future__ import annotations

import copy
import importlib.util
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from searchkit import mixed, tiny_cnn
from torch import nn

from nas_lightning.algos import hypergrad

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = dict(rtol=1e-10, atol=1e-10)


def twins(cl: bool = False, ops=None):
    """Two identical float64 supernets with spread α: fused and op by op."""
    torch.manual_seed(0)
    kw = {"channels_last": cl} | ({} if ops is None else {"ops": ops})
    space, mixing = mixed(tiny_cnn(**kw))
    space.double(), mixing.double()
    with torch.no_grad():
        for a in mixing.arch_parameters():
            a.normal_(0, 0.5)
    space2 = copy.deepcopy(space)
    mixing2 = space2.cells[0].sources[0].strategy
    mixing.fused, mixing2.fused = True, False
    assert mixing2 is not mixing and {c.reduction for c in space.cells} == {False, True}
    return (space, mixing), (space2, mixing2)


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.arange(4) % 10


def assert_close(a, b):
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, **TOL)


@pytest.mark.parametrize("cl", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_supernet_logits_and_gradients(cl, train):
    pair = twins(cl)
    assert list(pair[0][0].state_dict()) == list(pair[1][0].state_dict())
    x, y = batch(1)
    out = []
    for space, mixing in pair:
        space.train(train)
        logits = space(x)
        params = list(space.parameters()) + mixing.arch_parameters()
        out.append((logits, torch.autograd.grad(F.cross_entropy(logits, y), params)))
    assert_close([out[0][0]], [out[1][0]])
    assert_close(out[0][1], out[1][1])
    assert_close(list(pair[0][0].buffers()), list(pair[1][0].buffers()))


@pytest.mark.parametrize("mode", ["first_order", *hypergrad.HVP_MODES])
def test_every_alpha_gradient_mode(mode):
    """Each α-gradient (BN statistics frozen, real momentum buffers in the virtual step)."""
    grads = []
    for space, mixing in twins():
        named = dict(space.named_weight_parameters())
        opt = torch.optim.SGD(named.values(), lr=0.1, momentum=0.9, weight_decay=3e-4)
        F.cross_entropy(space(batch(3)[0]), batch(3)[1]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        arch = mixing.arch_parameters()
        before = [b.clone() for b in space.buffers()]
        if mode == "first_order":
            g, _ = hypergrad.first_order_grad(space, arch, batch(2), F.cross_entropy)
        else:
            g, _ = hypergrad.unrolled_grad(
                space, arch, named, batch(1), batch(2), F.cross_entropy, hvp=mode, optimizer=opt
            )
        assert all(torch.equal(a, b) for a, b in zip(before, space.buffers(), strict=True))
        grads.append(g)
    assert all(t is not None and t.abs().sum() > 0 for t in grads[0])
    assert_close(grads[0], grads[1])


def test_fused_step_dispatches_fewer_aten_calls():
    """The point of fusion: one α+w step of the fused supernet makes far fewer aten calls
    (``bench/aten_count.py``, a proxy for kernel launches) than op by op."""
    path = Path(__file__).parents[1] / "bench" / "aten_count.py"
    spec = importlib.util.spec_from_file_location("aten_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.randn(3, requires_grad=True)
    counter = module.count_aten(lambda: (x * 2).sum().backward())
    assert counter.counts["mul"] >= 2 and counter.counts["sum"] == 1
    counts = []
    for space, mixing in twins():
        step = partial(
            hypergrad.first_order_grad, space, mixing.arch_parameters(), batch(2), F.cross_entropy
        )
        step()
        counts.append(module.count_aten(step).total)
    assert counts[0] < 0.6 * counts[1], counts


@pytest.mark.parametrize("algo", ["darts", "gdas", "proxyless"])
def test_optimisers_use_foreach_kernels(compose_cfg, algo):
    """One kernel per update for all weights; the maths equal the per-weight loop."""
    cfg = compose_cfg(f"algo={algo}")
    for key in ("weight_optimizer", "arch_optimizer"):
        params = [nn.Parameter(torch.randn(3, 2)) for _ in range(3)]
        twins_ = [nn.Parameter(p.detach().clone()) for p in params]
        fast = instantiate(cfg.algo[key])(params=params)
        assert fast.defaults["foreach"] is True
        plain = type(fast)(twins_, **{k: v for k, v in fast.defaults.items() if k != "foreach"})
        for _ in range(3):
            for p, q in zip(params, twins_, strict=True):
                p.grad = torch.full_like(p, 0.3) + p.detach()
                q.grad = p.grad.clone()
            fast.step(), plain.step()
        for p, q in zip(params, twins_, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_bench_refuses_a_device_this_machine_lacks_in_one_line(monkeypatch):
    """``bench/darts_step.py --device cuda`` without CUDA: one line naming the fix."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    step_measure = importlib.import_module("step_measure")
    with pytest.raises(SystemExit, match=r"--device cuda: no CUDA device .*run with --device cpu"):
        step_measure.check_device("cuda")
    with pytest.raises(SystemExit, match=r"--device 'tpu' is invalid; valid choices: cpu, cuda"):
        step_measure.check_device("tpu")
    assert step_measure.check_device("cpu").type == "cpu" and "step_measure" in sys.modules
