"""Second-order DARTS hypergradients against the full unrolled autograd reference; the memory of
the exact HVP; α-steps (DARTS and ProxylessNAS) that leave BatchNorm running statistics alone."""

import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from mobilenet_tiny import TINY
from searchkit import mixed

from nas_lightning.algos import DartsSearch, ProxylessSearch, hypergrad
from nas_lightning.algos.dual_forward import dual_forward
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.ops.bn import running_stats_frozen
from nas_lightning.spaces import CNNSearchSpace, MobileNetSearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from saved_bytes import SavedBytes  # noqa: E402  (bench/ is not a package)

pytestmark = pytest.mark.usefixtures("one_thread")
SGD = dict(lr=0.05, momentum=0.9, weight_decay=3e-4)


def tiny_darts(seed: int = 0, dtype: torch.dtype = torch.float64):
    """A 3-cell DARTS supernet with spread α: (model, arch parameters)."""
    torch.manual_seed(seed)
    space = CNNSearchSpace(in_channels=2, num_classes=3, init_channels=4, layers=3, nodes=2)
    space, mixing = mixed(space.to(dtype), SoftmaxMixing(init_std=1e-3))
    mixing.to(dtype)
    space.arch_parameters = mixing.arch_parameters  # α lives in the algorithm's mixing
    with torch.no_grad():  # spread α so the softmax is not uniform
        for a in space.arch_parameters():
            a.normal_(0, 0.5)
    return space, space.arch_parameters()


def batch(seed: int, dtype: torch.dtype = torch.float64, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 8, 8, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def sgd_with_buffers(space, **kw):
    """A weight optimiser that has taken one step (so momentum buffers exist)."""
    opt = torch.optim.SGD(space.weight_parameters(), **kw)
    x, y = batch(9, next(space.parameters()).dtype)
    F.cross_entropy(space(x), y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def hypergrads(hvp: str, sgd=SGD, **kw) -> torch.Tensor:
    space, arch = tiny_darts()
    opt = sgd_with_buffers(space, **sgd)
    named = dict(space.named_weight_parameters())
    grads, _ = hypergrad.unrolled_grad(
        space, arch, named, batch(1), batch(2), F.cross_entropy, hvp=hvp, optimizer=opt, **kw
    )
    return torch.cat([g.flatten() for g in grads])


def rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


NESTEROV = dict(lr=0.05, momentum=0.9, weight_decay=3e-4, nesterov=True)
DAMPENED = dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3, maximize=True)


@pytest.mark.parametrize("sgd", [SGD, NESTEROV, DAMPENED], ids=["sgd", "nesterov", "dampened"])
@pytest.mark.parametrize("hvp", ["exact", "double_backward"])
def test_exact_hvp_matches_full_unrolled(hvp, sgd):
    full = hypergrads("full", sgd)
    assert full.norm() > 0
    assert rel(hypergrads(hvp, sgd), full) < 1e-10


def test_finite_difference_small_eps_matches_full():
    assert (
        rel(hypergrads("finite_difference", NESTEROV, fd_r=1e-6), hypergrads("full", NESTEROV))
        < 1e-4
    )


def test_second_order_term_matters():
    """The unrolled hypergradient differs from the first-order one (the H·v term is not tiny)."""
    space, arch = tiny_darts()
    first, _ = hypergrad.first_order_grad(space, arch, batch(2), F.cross_entropy)
    assert rel(hypergrads("full"), torch.cat([g.flatten() for g in first])) > 1e-3


def test_finite_difference_default_eps_is_papers(monkeypatch):
    seen = []
    orig = hypergrad._hvp_finite_difference

    def spy(model, arch, weights, batch, loss_fn, u, r):
        seen.append(r)
        return orig(model, arch, weights, batch, loss_fn, u, r)

    monkeypatch.setattr(hypergrad, "_hvp_finite_difference", spy)
    hypergrads("finite_difference")
    assert seen == [0.01]


def test_unknown_hvp_mode_is_named():
    space, arch = tiny_darts()
    named = dict(space.named_weight_parameters())
    with pytest.raises(ValueError, match="'bogus'.*exact, finite_difference, full, double_back"):
        hypergrad.unrolled_grad(
            space, arch, named, batch(1), batch(2), F.cross_entropy, xi=0.1, hvp="bogus"
        )


def peak_saved_mb(hvp: str) -> float:
    """Peak bytes held by autograd graphs over one hypergradient (distinct storages)."""
    space, arch = tiny_darts(dtype=torch.float32)
    named = dict(space.named_weight_parameters())
    opt = sgd_with_buffers(space, **SGD)
    train, val = batch(1, torch.float32, 16), batch(2, torch.float32, 16)
    meter = SavedBytes()
    with meter.hooked():
        hypergrad.unrolled_grad(
            space, arch, named, train, val, F.cross_entropy, hvp=hvp, optimizer=opt
        )
    return meter.report()["saved_mb"]


def test_exact_hvp_never_holds_train_and_val_graphs_at_once():
    fd, exact, old = (peak_saved_mb(m) for m in ("finite_difference", "exact", "double_backward"))
    assert exact <= 1.5 * fd
    assert old > 2 * fd  # the meter sees the kept create_graph graph of double_backward


def _norm(z, dims, w=None, b=None):
    """A normalisation from elementary ops (torch's own is not exact under nested AD)."""
    zc = z - z.mean(dims, keepdim=True)
    y = zc * torch.rsqrt((zc * zc).mean(dims, keepdim=True) + 1e-5)
    return y if w is None else y * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


@pytest.mark.parametrize(
    "name", ["batch_norm", "batch_norm_affine", "layer_norm", "conv_bias", "relu_", "mul"]
)
def test_dual_forward_reverse_over_forward_is_exact(name):
    """∇x of the tangent from :func:`dual_forward` equals the double-backward reference."""
    torch.manual_seed(0)
    x0, t = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.randn(4, 3, 5, 5).double()
    w, b, k = torch.randn(3).double(), torch.randn(3).double(), torch.randn(3, 3, 3, 3).double()
    bn, x = (0, 2, 3), x0.clone().requires_grad_()
    fns = {  # (the function, an elementary reference)
        "batch_norm": (
            lambda z: F.batch_norm(z, None, None, training=True),
            lambda z: _norm(z, bn),
        ),
        "batch_norm_affine": (
            lambda z: F.batch_norm(z, None, None, w, b, training=True),
            lambda z: _norm(z, bn, w, b),
        ),
        "layer_norm": (lambda z: F.layer_norm(z, z.shape[1:]), lambda z: _norm(z, (1, 2, 3))),
        "conv_bias": (
            lambda z: F.batch_norm(F.conv2d(z, k, b, padding=1), None, None, training=True),
            lambda z: _norm(F.conv2d(z, k, b, padding=1), bn),
        ),
        "relu_": (
            lambda z: F.relu(F.batch_norm(z, None, None, training=True), inplace=True),
            lambda z: F.relu(_norm(z, bn)),
        ),
        "mul": (lambda z: z * (x * x).mean(),) * 2,  # dual × non-dual that depends on x
    }
    f, ref = fns[name]
    r = torch.randn_like(ref(x0))
    (jv,) = torch.autograd.functional.jvp(ref, x, t, create_graph=True)[1:]
    want = torch.autograd.grad((jv * r).sum(), x)[0]
    with fwAD.dual_level(), dual_forward():
        tangent = fwAD.unpack_dual(f(fwAD.make_dual(x * 1, t))).tangent
    got = torch.autograd.grad((tangent * r).sum(), x)[0]
    assert rel(got, want) < 1e-12


# ------------------------------------------------------------- BatchNorm running statistics


def buffers(module):
    return {n: b.clone() for n, b in module.named_buffers()}


def assert_same(before, module):
    for n, b in module.named_buffers():
        assert torch.equal(b, before[n]), n


def assert_moved(before, module):
    moved = [n for n, b in module.named_buffers() if not torch.equal(b, before[n])]
    assert any(n.endswith("running_mean") for n in moved)
    assert any(n.endswith("num_batches_tracked") for n in moved)


def no_trainer(algo, weight_opt):
    """Stand-ins for the few Lightning services the steps call."""
    algo.optimizers = lambda use_pl_optimizer=True: [SimpleNamespace(optimizer=weight_opt)]
    algo.manual_backward = lambda loss: loss.backward()
    algo.log = lambda *a, **k: None
    return algo


@pytest.mark.parametrize("order, hvp", [(1, "exact"), *((2, m) for m in hypergrad.HVP_MODES)])
def test_darts_alpha_step_leaves_running_stats_and_w_step_moves_them(order, hvp):
    space, _ = tiny_darts(dtype=torch.float32)
    algo = DartsSearch(
        space, partial(torch.optim.SGD, **SGD), torch.optim.Adam, order=order, hvp=hvp
    )
    no_trainer(algo, sgd_with_buffers(space, **SGD)).train()
    (train, val), before = (batch(1, torch.float32), batch(2, torch.float32)), buffers(space)
    algo.arch_step(train, val)
    assert all(a.grad is not None for a in algo.arch_parameters())
    assert_same(before, space)
    algo.weight_step(train)
    assert_moved(before, space)


@pytest.mark.parametrize(
    "mode, binary_mode, estimator",
    [
        ("binary", "two", "gradient"),
        ("binary", "full", "gradient"),
        ("darts", "two", "gradient"),
        ("full", "two", "gradient"),
        ("binary", "two", "reinforce"),
        ("darts", "two", "reinforce"),
    ],
)
def test_proxyless_alpha_step_leaves_running_stats(mode, binary_mode, estimator):
    torch.manual_seed(0)
    space = MobileNetSearchSpace(**TINY)
    kw = dict(mode=mode, binary_mode=binary_mode, estimator=estimator)
    algo = ProxylessSearch(space, partial(torch.optim.SGD, lr=0.1), torch.optim.Adam, **kw)
    algo.generator = torch.Generator().manual_seed(1)
    no_trainer(algo, torch.optim.SGD(space.weight_parameters(), lr=0.1)).train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
    before = buffers(space)
    algo.arch_step((x, y), (x, y))
    assert all(a.grad is not None for a in algo.arch_parameters())  # the α-step ran
    assert_same(before, space)
    algo.weight_step((x, y))
    assert_moved(before, space)


def test_running_stats_frozen_uses_batch_statistics_and_restores_flags():
    bn, off = torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3, track_running_stats=False)
    model = torch.nn.Sequential(bn, off).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    with running_stats_frozen(model):
        frozen_out = model(x)
    assert torch.equal(bn.running_mean, torch.zeros(3)) and int(bn.num_batches_tracked) == 0
    assert bn.track_running_stats and not off.track_running_stats
    assert torch.allclose(frozen_out, model(x))  # the same batch-statistics output
    assert int(bn.num_batches_tracked) == 1
