"""Second-order DARTS hypergradients against the full unrolled autograd reference."""

import pytest
import torch
import torch.nn.functional as F
from searchkit import mixed

from nas_lightning.algos import hypergrad
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.spaces import CNNSearchSpace


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    space = CNNSearchSpace(in_channels=2, num_classes=3, init_channels=4, layers=3, nodes=2)
    space, mixing = mixed(space.double(), SoftmaxMixing(init_std=1e-3))
    mixing.double()
    space.arch_parameters = mixing.arch_parameters  # α lives in the algorithm's mixing
    with torch.no_grad():  # spread α so the softmax is not uniform
        for a in space.arch_parameters():
            a.normal_(0, 0.5)
    named = dict(space.named_weight_parameters())
    bufs = {n: torch.randn_like(p) * 0.1 for n, p in named.items()}
    train = (torch.randn(6, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,)))
    val = (torch.randn(6, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,)))
    return space, named, bufs, train, val


def _grads(hvp: str, **kw):
    space, named, bufs, train, val = _setup()
    grads, _ = hypergrad.unrolled_grad(
        space,
        space.arch_parameters(),
        named,
        train,
        val,
        F.cross_entropy,
        xi=0.05,
        hvp=hvp,
        momentum_bufs=bufs,
        momentum=0.9,
        weight_decay=3e-4,
        **kw,
    )
    return torch.cat([g.flatten() for g in grads])


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_exact_hvp_matches_full_unrolled():
    full, exact = _grads("full"), _grads("exact")
    assert full.norm() > 0
    assert _rel(exact, full) < 1e-6


def test_finite_difference_small_eps_matches_full():
    full = _grads("full")
    fd = _grads("finite_difference", fd_r=1e-6)
    assert _rel(fd, full) < 1e-4


def test_second_order_term_matters():
    """The unrolled hypergradient differs from the first-order one (ξ·Hv is not negligible)."""
    space, named, bufs, train, val = _setup()
    first, _ = hypergrad.first_order_grad(space, space.arch_parameters(), val, F.cross_entropy)
    first = torch.cat([g.flatten() for g in first])
    assert _rel(_grads("full"), first) > 1e-3


def test_finite_difference_default_eps_is_papers(monkeypatch):
    seen = []
    orig = hypergrad._hvp_finite_difference

    def spy(model, arch, weights, batch, loss_fn, v, r):
        seen.append(r)
        return orig(model, arch, weights, batch, loss_fn, v, r)

    monkeypatch.setattr(hypergrad, "_hvp_finite_difference", spy)
    _grads("finite_difference")
    assert seen == [0.01]


def test_virtual_step_leaves_batchnorm_statistics_alone():
    space, named, bufs, train, val = _setup()
    before = {n: b.clone() for n, b in space.named_buffers()}
    hypergrad.unrolled_grad(
        space, space.arch_parameters(), named, train, val, F.cross_entropy, xi=0.05, hvp="exact"
    )
    for n, b in space.named_buffers():
        assert torch.equal(b, before[n]), n


def test_unknown_hvp_mode_is_named():
    space, named, bufs, train, val = _setup()
    with pytest.raises(ValueError, match="'bogus'.*exact, finite_difference, full"):
        hypergrad.unrolled_grad(
            space, space.arch_parameters(), named, train, val, F.cross_entropy, xi=0.1, hvp="bogus"
        )
