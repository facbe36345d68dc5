"""The virtual step of second-order DARTS is the step torch.optim.SGD really takes."""

from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_hypergrad import batch, tiny_darts

from nas_lightning.algos import DartsSearch, hypergrad
from nas_lightning.algos.virtual_sgd import VirtualSGD

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {
    "nesterov": dict(lr=0.05, momentum=0.9, weight_decay=3e-4, nesterov=True),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3),
    "maximize": dict(lr=0.05, momentum=0.9, weight_decay=3e-4, maximize=True),
    "plain": dict(lr=0.05),
}


def virtual_then_real(opt_kw: dict, first_step: bool, monkeypatch, xi=None, groups=False):
    """w' of ``hvp="full"`` (captured from its virtual step) and the weights after the real
    ``optimizer.step()`` on the same train gradient."""
    space, arch = tiny_darts()
    named = dict(space.named_weight_parameters())
    params = list(named.values())
    if groups:  # two param groups with their own options
        half = len(params) // 2
        opt = torch.optim.SGD(
            [{"params": params[:half]}, {"params": params[half:], "lr": 0.2}], **opt_kw
        )
    else:
        opt = torch.optim.SGD(params, **opt_kw)
    if not first_step:  # momentum buffers exist
        F.cross_entropy(space(batch(9)[0]), batch(9)[1]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    seen = {}
    step = VirtualSGD.step
    monkeypatch.setattr(VirtualSGD, "step", lambda s, n, w, g: seen.setdefault(n, step(s, n, w, g)))
    train, val = batch(1), batch(2)
    hypergrad.unrolled_grad(
        space, arch, named, train, val, F.cross_entropy, xi=xi, hvp="full", optimizer=opt
    )
    grads = torch.autograd.grad(F.cross_entropy(space(train[0]), train[1]), params)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()
    return {n: w.detach() for n, w in seen.items()}, named


@pytest.mark.parametrize("first_step", [False, True], ids=["with_buffer", "first_step"])
@pytest.mark.parametrize("case", CASES)
def test_virtual_step_equals_real_sgd_step(case, first_step, monkeypatch):
    virtual, real = virtual_then_real(CASES[case], first_step, monkeypatch)
    assert virtual.keys() == real.keys()
    for n, p in real.items():
        assert torch.allclose(virtual[n], p.detach(), rtol=0, atol=1e-12), n


def test_virtual_step_follows_each_param_group(monkeypatch):
    virtual, real = virtual_then_real(CASES["nesterov"], False, monkeypatch, groups=True)
    for n, p in real.items():
        assert torch.allclose(virtual[n], p.detach(), rtol=0, atol=1e-12), n


def test_xi_replaces_the_learning_rate():
    space, _ = tiny_darts()
    named = dict(space.named_weight_parameters())
    opt = torch.optim.SGD(named.values(), lr=0.05, momentum=0.9, nesterov=True)
    n, w = next(iter(named.items()))
    g = torch.randn_like(w)
    step = VirtualSGD(named, opt, xi=0.5).step(n, w, g)
    assert torch.allclose(step, w.detach() - 0.5 * (1 + 0.9) * g, rtol=0, atol=1e-12)
    assert VirtualSGD(named, opt, xi=0.5).gain(n) == pytest.approx(0.5 * 1.9)


@pytest.mark.parametrize("opt", [torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop])
def test_optimiser_it_cannot_mirror_is_refused_by_name(opt):
    space, arch = tiny_darts()
    named = dict(space.named_weight_parameters())
    name = opt.__name__
    with pytest.raises(ValueError, match=rf"{name} is not supported \(valid: torch.optim.SGD\)"):
        hypergrad.unrolled_grad(
            space, arch, named, batch(1), batch(2), F.cross_entropy, optimizer=opt(named.values())
        )


def test_darts_refuses_an_adam_weight_optimiser_before_training():
    space, _ = tiny_darts()
    algo = DartsSearch(space, partial(torch.optim.Adam, lr=1e-3), torch.optim.Adam, order=2)
    adam = torch.optim.Adam(space.weight_parameters())
    algo.optimizers = lambda use_pl_optimizer=True: [SimpleNamespace(optimizer=adam)]
    with pytest.raises(ValueError, match="algo.order=2 mirrors.*Adam is not supported.*order=1"):
        algo.on_train_start()
    algo.order = 1
    algo.on_train_start()  # first order needs no mirror


@pytest.mark.parametrize("first_step", [False, True], ids=["with_buffer", "first_step"])
@pytest.mark.parametrize("case", CASES)
def test_foreach_steps_equal_the_per_weight_step(case, first_step):
    """``steps`` (foreach kernels, what the detached-w' modes use) is ``step`` weight by weight,
    across two param groups with their own options."""
    space, _ = tiny_darts()
    named = dict(space.named_weight_parameters())
    params = list(named.values())
    half = len(params) // 2
    groups = [{"params": params[:half]}, {"params": params[half:], "lr": 0.2}]
    opt = torch.optim.SGD(groups, **CASES[case])
    if not first_step:
        F.cross_entropy(space(batch(9)[0]), batch(9)[1]).backward()
        opt.step()
    grads = [torch.randn_like(p) for p in params]
    sgd = VirtualSGD(named, opt)
    got = sgd.steps(list(named), params, grads)
    for (n, p), g, w in zip(named.items(), grads, got, strict=True):
        assert not w.requires_grad
        torch.testing.assert_close(w, sgd.step(n, p, g).detach(), rtol=1e-6, atol=1e-7)
