"""ProxylessNAS: binary paths, BinaryConnect and two-path updates, expected latency, REINFORCE,
sparse w-steps, and a Hydra-composed Lightning fit."""

import copy
import json
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from mobilenet_tiny import TINY
from searchkit import with_plans

from nas_lightning.algos import ProxylessSearch
from nas_lightning.algos import gates as G
from nas_lightning.algos import reinforce as R
from nas_lightning.data import SyntheticDataModule
from nas_lightning.genotype import genotype_from_dict
from nas_lightning.latency import expected_latency
from nas_lightning.ops import describe
from nas_lightning.run import build
from nas_lightning.spaces import MobileNetSearchSpace
from nas_lightning.spaces.block import SearchBlock
from nas_lightning.spaces.plans import GatePlan

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeLatency:
    """ms per op: MBConv cost grows with kernel and expansion; zero is free."""

    def op_latency_ms(self, desc):
        if desc.op == "mbconv":
            return 1.0 + 0.1 * desc.kernel * desc.expand
        return {"zero": 0.0, "conv": 0.5, "pool_linear": 0.25}[desc.op]


def make_algo(latency=None, arch_opt=None, **kw):
    torch.manual_seed(0)
    space = MobileNetSearchSpace(**TINY)
    algo = ProxylessSearch(
        space,
        weight_optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3),
        arch_optimizer=arch_opt or partial(torch.optim.Adam, lr=0.1, betas=(0.0, 0.999)),
        latency=latency,
        **kw,
    )
    algo.generator = torch.Generator().manual_seed(1)
    algo.manual_backward = lambda loss: loss.backward()  # no Trainer in unit tests
    algo.log = lambda *a, **k: None
    return algo


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_binary_w_step_runs_one_path_per_block():
    algo = make_algo()
    calls = {}
    for b, block in enumerate(algo.space.blocks):
        for j in range(len(block.op_names)):
            if j != block.zero_index:
                block.candidate(j).register_forward_hook(
                    lambda *_, k=(b, j): calls.__setitem__(k, calls.get(k, 0) + 1)
                )
    algo.train()
    algo.weight_step(batch())
    choice = list(algo.last_choice.values())
    expected = {(b, j): 1 for b, j in enumerate(choice) if j != algo.space.blocks[b].zero_index}
    assert calls == expected


def test_binaryconnect_formula():
    torch.manual_seed(0)
    alpha, gate_grad = torch.randn(5), torch.randn(5)
    for involved in ([0, 1, 2, 3, 4], [3, 1]):
        p = torch.zeros(5)
        p[involved] = F.softmax(alpha[involved], 0)
        want = torch.zeros(5)
        for i in involved:
            for j in involved:
                want[i] += gate_grad[j] * p[j] * (float(i == j) - p[i])
        assert torch.allclose(G.binaryconnect_grad(gate_grad, alpha, involved), want, atol=1e-7)


def test_gate_gradient_is_inner_product_with_each_path():
    """L = ⟨out, c⟩ gives ∂L/∂g_j = ⟨c, o_j(x)⟩ for the active and the gradient-only paths."""
    torch.manual_seed(0)
    descs = [describe("mbconv", 4, 4, (5, 5), 1, kernel=k, expand=e) for k, e in [(3, 3), (5, 3)]]
    descs += [describe("mbconv", 4, 4, (5, 5), 1, kernel=3, expand=6)]
    block = SearchBlock("b", "b", [*descs, describe("zero", 4, 4, (5, 5))]).double()
    x, c = torch.randn(2, 4, 5, 5).double(), torch.randn(2, 4, 5, 5).double()
    gates = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    out = with_plans(block, {"b": GatePlan(gates, active=2, others=(0, 3))})(x)  # 3: zero
    (grad,) = torch.autograd.grad((out * c).sum(), gates)
    with torch.no_grad():
        o = [block.candidate(j)(x) for j in range(3)]
    want = [(c * o[0]).sum(), 0.0, (c * o[2]).sum(), 0.0]  # path 1 not involved
    assert torch.allclose(grad, torch.tensor(want, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(out, x + o[2], atol=1e-12)  # forward value: the active path only


@pytest.mark.parametrize("latency", [None, FakeLatency()])
def test_two_path_update_keeps_other_probabilities(latency):
    # Adam with momentum and weight decay would move every α: the rescale must undo that.
    opt = partial(torch.optim.Adam, lr=0.3, betas=(0.9, 0.999), weight_decay=0.1)
    algo = make_algo(latency=latency, arch_opt=opt)
    with torch.no_grad():
        for a in algo.arch_parameters():
            a.normal_(0, 0.5)
    arch_opt = opt(params=algo.arch_parameters())
    alphas = algo.alpha_rows()
    for step in range(3):
        old = {k: a.detach().clone() for k, a in alphas.items()}
        arch_opt.zero_grad()
        algo.arch_step(batch(seed=step), batch(seed=10 + step))
        arch_opt.step()
        algo.on_arch_step_end()
        for key, a in alphas.items():
            a0, inv = old[key], algo.last_involved[key]
            assert len(inv) == 2
            rest = [i for i in range(a.numel()) if i not in inv]
            assert torch.equal(a.detach()[rest], a0[rest])
            assert not torch.equal(a.detach()[inv], a0[inv])
            p, p0 = F.softmax(a.detach(), 0), F.softmax(a0, 0)
            assert torch.allclose(p[rest], p0[rest], atol=1e-6, rtol=0)


def test_expected_latency_and_its_gradient():
    torch.manual_seed(0)
    alphas = [torch.randn(n, dtype=torch.float64, requires_grad=True) for n in (6, 7, 3)]
    tables = [torch.rand(a.numel(), dtype=torch.float64) * 5 for a in alphas]
    probs = [F.softmax(a, 0) for a in alphas]
    keys = ["a", "b", "c"]
    lat = expected_latency(
        dict(zip(keys, probs, strict=True)), (dict(zip(keys, tables, strict=True)), 1.5)
    )
    want = 1.5 + sum(float((p * t).sum().detach()) for p, t in zip(probs, tables, strict=True))
    assert float(lat.detach()) == pytest.approx(want, abs=1e-12)
    grads = torch.autograd.grad(lat, alphas)
    for g, p, t in zip(grads, probs, tables, strict=True):
        block_e = (p * t).sum()
        assert torch.allclose(g, p * (t - block_e), atol=1e-12)


def test_algorithm_prices_the_space_with_the_latency_model():
    algo = make_algo(latency=FakeLatency())
    with torch.no_grad():
        algo.arch_parameters()[0].normal_()
    specs, fixed = algo.space.latency_specs(), algo.space.fixed_specs()
    lat = FakeLatency()
    want = sum(lat.op_latency_ms(d) for d in fixed)
    probs = algo.mixing.probs()
    for key, (descs,) in specs.items():
        want += sum(float(p) * lat.op_latency_ms(d) for p, d in zip(probs[key], descs, strict=True))
    assert algo.expected_latency_ms() == pytest.approx(want, rel=1e-6)
    assert make_algo().expected_latency_ms() is None  # no model: the term is off


def test_reinforce_moves_alpha_to_rewarded_path():
    alpha = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([alpha], lr=0.5)
    gen, baseline = torch.Generator().manual_seed(0), float("nan")
    for _ in range(150):
        choice = int(torch.multinomial(F.softmax(alpha.detach(), 0), 1, generator=gen))
        advantage, baseline = R.update_baseline(baseline, float(choice == 2), 0.9)
        (alpha.grad,) = R.reinforce_grads([alpha], [choice], advantage)
        opt.step()
    assert F.softmax(alpha.detach(), 0)[2] > 0.9


def test_reinforce_step_in_the_algorithm():
    algo = make_algo(latency=FakeLatency(), estimator="reinforce", target_ms=10.0)
    for step in range(3):
        algo.arch_step(batch(), batch(seed=step + 1))
    assert not torch.isnan(algo.reward_baseline)
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in algo.arch_parameters())


@pytest.mark.parametrize("mode", ["darts", "full"])
def test_mix_modes_alpha_step_and_all_paths_in_w_step(mode):
    algo = make_algo(latency=FakeLatency(), mode=mode, latency_loss="multiplicative", target_ms=5.0)
    algo.train()
    algo.arch_step(batch(), batch(seed=1))
    assert all(row.abs().sum() > 0 for row in algo.arch_parameters()[0].grad)
    algo.weight_step(batch())
    for block in algo.space.blocks:  # every MBConv path trained
        assert all(block.candidate(j).body[0][0].weight.grad is not None for j in range(6))


def test_binary_w_step_changes_only_sampled_weights(tmp_path):
    torch.manual_seed(0)
    space = MobileNetSearchSpace(**TINY)
    algo = ProxylessSearch(
        space,
        weight_optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3),
        arch_optimizer=partial(torch.optim.Adam, lr=0.1),
        warmup_epochs=1,  # w-steps only
    )
    before = copy.deepcopy(space.state_dict())
    dm = SyntheticDataModule(num_samples=32, shape=(1, 8, 8), num_classes=3, batch_size=8)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(algo, datamodule=dm)
    after = space.state_dict()
    choice = list(algo.last_choice.values())
    for b, (block, j) in enumerate(zip(space.blocks, choice, strict=True)):
        for k, name in enumerate(block.op_names):
            prefix = f"blocks.{b}.choice.ops.{name}."
            keys = [n for n in after if n.startswith(prefix)]
            same = all(torch.equal(after[n], before[n]) for n in keys)
            assert same == (k != j or j == block.zero_index), (b, k, j)
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])


def test_invalid_options_are_named():
    with pytest.raises(
        ValueError, match=r"algo.mode='bogus' .* valid choices: binary, darts, full"
    ):
        make_algo(mode="bogus")
    with pytest.raises(ValueError, match=r"algo.estimator='ppo' .* gradient, reinforce"):
        make_algo(estimator="ppo")
    with pytest.raises(ValueError, match=r"algo.binary_mode='three' .* two, full"):
        make_algo(binary_mode="three")
    with pytest.raises(ValueError, match=r"algo.latency_loss='log' .* additive, multiplicative"):
        make_algo(latency_loss="log")
    with pytest.raises(ValueError, match=r"multiplicative needs algo.target_ms > 1"):
        make_algo(latency=FakeLatency(), latency_loss="multiplicative")


def test_hydra_fit_one_epoch(tmp_path):
    overrides = [
        "algo=proxyless",
        "space=mobilenet",
        "debug=tiny",
        "logger=none",
        "~callbacks.rich_progress_bar",
        "~callbacks.model_checkpoint",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path}",
    ]
    with initialize_config_module(config_module="nas_lightning.conf", version_base=None):
        cfg = compose(config_name="search", overrides=overrides)
    pl.seed_everything(0)
    datamodule, algo, trainer = build(cfg)
    assert isinstance(algo, ProxylessSearch) and algo.mode == "binary"
    before = {k: a.detach().clone() for k, a in algo.alpha_rows().items()}
    trainer.fit(algo, datamodule=datamodule)
    moved = [not torch.equal(a.detach(), before[k]) for k, a in algo.alpha_rows().items()]
    assert all(moved)  # every block had two α updated per step
    g = genotype_from_dict(json.loads((tmp_path / "genotype.json").read_text()))
    assert g.to_dict() == algo.export().to_dict() and len(g.blocks) == 3  # layers=3
    space = MobileNetSearchSpace(**g.space)
    assert all(op in names for op, names in zip(g.blocks, space.op_names_per_block(), strict=True))
    assert space.single_path(g)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert (tmp_path / "heatmaps" / "epoch_000_blocks.png").exists()
    assert {"arch/val_loss", "val/acc", "arch/zero_blocks"} <= set(trainer.callback_metrics)


def _search_alpha(algo, steps=8):
    opt = torch.optim.Adam(algo.arch_parameters(), lr=0.05, betas=(0.0, 0.999))
    for step in range(steps):
        opt.zero_grad()
        algo.arch_step(batch(seed=step), batch(seed=100 + step))
        opt.step()
        algo.on_arch_step_end()
    return algo.expected_latency_ms()


def test_latency_constraint_keeps_expected_latency_under_target():
    """A hard target T between the fastest and the uniform net: the penalty alone (small λ2)
    leaves E[lat] above T; the constraint (dual ascent + projection) ends at or below T."""
    uniform = make_algo(latency=FakeLatency()).expected_latency_ms()
    fastest = make_algo(latency=FakeLatency())
    tables = fastest.latency_tables()
    low = tables[1] + sum(float(t.min()) for t in tables[0].values())
    target = low + 0.3 * (uniform - low)
    penalty = make_algo(latency=FakeLatency(), latency_weight=0.01, target_ms=target)
    assert _search_alpha(penalty) > target
    hard = make_algo(latency=FakeLatency(), latency_loss="constraint", target_ms=target)
    assert _search_alpha(hard) <= target + 1e-6
    assert float(hard.lagrange_multiplier) >= 0
    with pytest.raises(ValueError, match=r"target_ms=0.5 is unreachable: the fastest network"):
        make_algo(latency=FakeLatency(), latency_loss="constraint", target_ms=0.5).setup("fit")
    with pytest.raises(ValueError, match="constraint needs a latency model"):
        make_algo(latency_loss="constraint", target_ms=3.0)
