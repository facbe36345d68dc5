"""Collapse diagnostics: skip count, entropy, genotype flips, and the dominant α-Hessian
eigenvalue (against the explicit Hessian's eigvalsh)."""

import csv
import json
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from torch.func import functional_call

from nas_lightning.algos import DartsSearch
from nas_lightning.algos.hessian import dominant_eigenvalue
from nas_lightning.callbacks import CollapseDiagnostics, HessianEigenvalue, count_flips
from nas_lightning.genotype import BlockGenotype, CellGenotype, genotype_from_dict
from nas_lightning.run import build
from nas_lightning.spaces import CNNSearchSpace

OPS = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]


def tiny_darts(seed: int = 0):
    """A float64 DARTS model (3 cells, 2 nodes, 4 ops: 2 × 5 × 4 = 40 α) with spread-out α."""
    torch.manual_seed(seed)
    space = CNNSearchSpace(1, 3, init_channels=4, layers=3, nodes=2, ops=OPS)
    model = DartsSearch(space, partial(torch.optim.SGD, lr=0.1), partial(torch.optim.Adam, lr=0.1))
    model = model.to(torch.float64)
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_()
    return model, model.arch_parameters()


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (8,), generator=g)


def _val_loss(model, arch):
    """L_val(α) in training mode on private BatchNorm buffers, written independently here."""
    x, y = _batch()
    names = {id(p): n for n, p in model.named_parameters()}
    keys = [names[id(a)] for a in arch]

    def loss(alphas):
        state = {n: b.clone() for n, b in model.named_buffers()}
        state.update(zip(keys, alphas, strict=True))
        return torch.nn.functional.cross_entropy(functional_call(model, state, (x,)), y)

    return loss


def _explicit_dominant(loss, arch) -> float:
    sizes = [a.numel() for a in arch]

    def flat(v):
        return loss([p.reshape(a.shape) for p, a in zip(v.split(sizes), arch, strict=True)])

    h = torch.autograd.functional.hessian(flat, torch.cat([a.detach().reshape(-1) for a in arch]))
    assert torch.allclose(h, h.T, atol=1e-10)
    eig = torch.linalg.eigvalsh(h)
    return float(eig[eig.abs().argmax()])


def test_power_iteration_matches_eigvalsh_of_the_explicit_hessian(one_thread):
    model, arch = tiny_darts()
    loss = _val_loss(model, arch)
    expected = _explicit_dominant(loss, arch)
    g = torch.Generator().manual_seed(0)
    value, iters = dominant_eigenvalue(loss, arch, iters=2000, tol=1e-12, generator=g)
    assert iters < 2000  # converged
    assert abs(value - expected) <= 1e-6 * abs(expected), (value, expected)
    # the defaults (tol 1e-3, 50 products) stop at 42 here, 1.2 % off: the top two
    # eigenvalues are close, so the error is larger than tol
    rough, n = dominant_eigenvalue(loss, arch, generator=torch.Generator().manual_seed(0))
    assert n < 50 and abs(rough - expected) <= 0.02 * abs(expected)


def test_hessian_callback_logs_the_eigenvalue_and_changes_nothing(one_thread):
    model, arch = tiny_darts()
    expected = _explicit_dominant(_val_loss(model, arch), arch)
    cb = HessianEigenvalue(every_n_epochs=2, iters=2000, tol=1e-12)
    logged = {}
    model.log = lambda key, value: logged.__setitem__(key, value)
    cb.on_validation_batch_end(None, model, None, _batch(), 0)
    cb.on_validation_batch_end(None, model, None, _batch(seed=5), 1)  # the first batch is kept
    before = {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}
    cb.on_train_epoch_end(SimpleNamespace(current_epoch=0), model)
    assert logged == {}  # epochs 2, 4, …
    cb.on_train_epoch_end(SimpleNamespace(current_epoch=1), model)
    assert abs(logged["arch/hessian_eig"] - expected) <= 1e-6 * abs(expected)
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert all(torch.equal(before[n], after[n]) for n in before)  # α, w, BN statistics: bit for bit
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training


def test_hessian_callback_off_by_default_and_validated():
    cb = HessianEigenvalue()
    cb.on_validation_batch_end(None, None, None, _batch(), 0)
    assert cb.batch is None  # nothing kept when off
    cb.on_train_epoch_end(SimpleNamespace(current_epoch=0), None)  # no measurement, no log
    with pytest.raises(ValueError, match=r"every_n_epochs=0 is invalid; .*null to switch it off"):
        HessianEigenvalue(every_n_epochs=0)


def _cell(normal, reduce):
    return CellGenotype(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])


N0 = [("sep_conv_3x3", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_3x3", 2)]
N0 += [("max_pool_3x3", 1), ("sep_conv_3x3", 3), ("skip_connect", 4), ("sep_conv_3x3", 0)]
R0 = [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
SEQUENCE = [  # (genotype, skip connections, flips since the previous epoch)
    (_cell(N0, R0), 3, 0),
    # node 0's two inputs swap order (no flip); node 1 of the reduce cell: input 1 → 2 (1 flip)
    (_cell([N0[1], N0[0], *N0[2:]], R0[:2] + [R0[2], ("max_pool_3x3", 2)] + R0[4:]), 3, 1),
    # normal node 3: skip_connect → sep_conv_3x3 (1); reduce node 0 both ops → skip (2)
    (
        _cell(
            [N0[1], N0[0], *N0[2:6], ("sep_conv_3x3", 4), N0[7]],
            [("skip_connect", 0), ("skip_connect", 1), R0[2], ("max_pool_3x3", 2), *R0[4:]],
        ),
        4,
        3,
    ),
]


def test_collapse_diagnostics_on_a_hand_made_genotype_sequence():
    cb, logged = CollapseDiagnostics(), []
    for epoch, (genotype, _, _) in enumerate(SEQUENCE):
        module = SimpleNamespace(
            export=lambda g=genotype: g,
            arch_entropy=lambda e=epoch: torch.tensor(2.0 - 0.5 * e),
            log=lambda key, value: logged.append((key, value)),
        )
        cb.on_train_epoch_end(None, module)
    expected = []
    for epoch, (_, skips, flips) in enumerate(SEQUENCE):
        expected += [("arch/skip_count", skips), ("arch/entropy", 2.0 - 0.5 * epoch)]
        expected += [("arch/flips", flips)]
    assert logged == expected

    resumed = CollapseDiagnostics(skip_count=False, entropy=False)  # flips continue on resume
    resumed.load_state_dict(cb.state_dict())
    algo = SimpleNamespace(export=lambda: SEQUENCE[0][0], diagnostics=lambda: {"arch/zero": 2})
    # back from epoch 2 to epoch 0's genotype: undoes both earlier changes (1 + 3 choices); the
    # algorithm logs its own diagnostics() (BilevelSearch.on_train_epoch_end), so they are not
    # logged here twice
    assert resumed.metrics(algo) == {"arch/flips": 4.0}
    assert CollapseDiagnostics(entropy=False, flips=False).metrics(algo) == {"arch/zero": 2.0}


def test_block_flips_and_unequal_lengths():
    a = BlockGenotype(["mbconv_k3_e3", "zero", "mbconv_k5_e6"])
    b = BlockGenotype(["mbconv_k3_e3", "mbconv_k7_e6", "zero"])
    assert count_flips(a.decisions(), b.decisions()) == 2
    assert count_flips([("x",)], [("x",), ("y",)]) == 1


def test_default_callbacks_log_flips_once_and_the_hessian_when_asked(compose_cfg, one_thread):
    cfg = compose_cfg(
        "debug=tiny",
        "trainer.max_epochs=2",
        "~callbacks.rich_progress_bar",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.hessian_eig.every_n_epochs=1",
        "callbacks.hessian_eig.iters=3",
        "algo.arch_optimizer.lr=0.3",  # let the genotype move
    )
    dm, algo, trainer = build(cfg)
    calls = []
    orig_log = algo.log

    def spy(key, *args, **kwargs):
        calls.append((algo.current_epoch, key))
        return orig_log(key, *args, **kwargs)

    algo.log = spy
    trainer.fit(algo, datamodule=dm)
    epoch_end = [c for c in calls if c[1].startswith("arch/") and c[1] != "arch/val_loss"]
    assert sorted(epoch_end) == sorted(set(epoch_end))  # no key twice in one epoch
    keys = {k for _, k in epoch_end}
    assert keys == {"arch/entropy", "arch/skip_count", "arch/flips", "arch/hessian_eig"}
    out = cfg.paths.output_dir
    with open(f"{out}/csv/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["arch/flips"]]
    with open(f"{out}/genotypes.jsonl") as f:
        g0, g1 = (genotype_from_dict(json.loads(line)["genotype"]) for line in f)
    flips = [float(r["arch/flips"]) for r in rows]
    assert flips == [0.0, count_flips(g0.decisions(), g1.decisions())]
    assert all(torch.isfinite(torch.tensor(float(r["arch/hessian_eig"]))) for r in rows)
