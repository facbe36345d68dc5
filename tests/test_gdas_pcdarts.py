"""GDAS (Gumbel hard sampling, straight-through α gradient) and PC-DARTS (partial channels, edge
normalisation) as mixing strategies on the DARTS cell space."""

import pytest
import torch
import torch.nn.functional as F
from searchkit import SGD, mixed, tiny_cnn

from nas_lightning.algos import DartsSearch, GdasSearch, PcDartsSearch
from nas_lightning.algos.mixing import GumbelMixing, PartialChannelMixing, SoftmaxMixing
from nas_lightning.algos.mixing.gumbel import gumbel_like
from nas_lightning.algos.mixing.partial import channel_shuffle
from nas_lightning.spaces.choices import OpChoice

pytestmark = pytest.mark.usefixtures("one_thread")


def _count_runs(space):
    """Record, per choice-point instance, which candidates ran."""
    runs: dict[int, list[int]] = {}
    original = OpChoice.run

    def run(self, k, x, cache=None):
        runs.setdefault(id(self), []).append(k)
        return original(self, k, x, cache)

    return runs, run


def test_gdas_runs_exactly_the_sampled_op_on_every_edge(monkeypatch):
    torch.manual_seed(0)
    space, mixing = mixed(tiny_cnn(), GumbelMixing(tau=1.0))
    mixing.generator = torch.Generator().manual_seed(3)
    runs, run = _count_runs(space)
    monkeypatch.setattr(OpChoice, "run", run)
    space.train()
    space(torch.randn(2, 1, 8, 8)).sum().backward()  # α-step-like forward (Hard plans)
    sample = mixing.last_sample
    for cp in space.choice_points():
        assert runs[id(cp)] == [sample[cp.key]], cp.key  # one op, the sampled one
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in mixing.arch_parameters())


def test_gdas_alpha_gradient_is_the_straight_through_formula():
    """L = ⟨out, c⟩ with out = h_i · o_i(x), h = onehot − sg(y) + y, y = softmax((α + g) / τ):
    ∂L/∂α_j = ⟨c, o_i(x)⟩ · y_i (δ_ij − y_j) / τ."""
    torch.manual_seed(0)
    space, mixing = mixed(tiny_cnn(layers=1, nodes=1), GumbelMixing(init_std=1.0, tau=0.7))
    cell = space.cells[0]
    edge = cell.edges()[0]  # reduce_e0: input 0 → node 0
    x = torch.randn(2, 8, 8, 8)  # one reduction cell: 2 × init_channels
    c = torch.randn(2, 8, 4, 4)
    mixing.generator = torch.Generator().manual_seed(5)
    logits, gen = mixing.logits("reduce"), torch.Generator().manual_seed(5)
    gumbel_like(mixing.logits("normal"), gen)  # groups draw their noise in order
    noise = gumbel_like(logits, gen)
    y = F.softmax((logits.detach() + noise) / 0.7, -1)[0]
    mixing.begin_forward(training=True)
    plan = mixing.plan(edge.key)
    assert plan.index == int(y.argmax())
    out = edge(x)
    (grad,) = torch.autograd.grad((out * c).sum(), mixing.alpha["reduce"])
    with torch.no_grad():
        inner = (c * edge.run(plan.index, x)).sum()
    i = plan.index
    want = inner * y[i] * (F.one_hot(torch.tensor(i), len(y)).float() - y) / 0.7
    torch.testing.assert_close(grad[0], want, rtol=1e-5, atol=1e-7)
    assert not grad[1:].any()  # other edges did not run in this forward
    torch.testing.assert_close(out, edge.run(i, x))  # forward value: exactly the sampled op


def test_gdas_tau_anneals_linearly_and_eval_runs_argmax():
    algo = GdasSearch(tiny_cnn(), SGD, SGD, tau_max=10.0, tau_min=0.1)
    assert [algo.tau_at(e, 5) for e in (0, 2, 4)] == pytest.approx([10.0, 5.05, 0.1])
    algo.eval()
    algo.mixing.begin_forward(training=False)
    argmax = {k: int(p.argmax()) for k, p in algo.mixing.probs().items()}
    assert all(algo.mixing.plan(k) == v for k, v in argmax.items())
    with pytest.raises(ValueError, match="tau_min"):
        GdasSearch(tiny_cnn(), SGD, SGD, tau_max=0.1, tau_min=1.0)


def test_pcdarts_k1_without_edge_normalisation_is_darts_first_order():
    torch.manual_seed(0)
    pc = PcDartsSearch(tiny_cnn(), SGD, SGD, k=1, edge_normalization=False).double()
    torch.manual_seed(0)
    darts = DartsSearch(tiny_cnn(), SGD, SGD).double()
    darts.load_state_dict(pc.state_dict())
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (4,))
    for module in (pc, darts):
        module.train()
    out_pc, out_d = pc(x), darts(x)
    torch.testing.assert_close(out_pc, out_d, rtol=1e-6, atol=1e-6)
    g_pc = torch.autograd.grad(F.cross_entropy(out_pc, y), pc.arch_parameters())
    g_d = torch.autograd.grad(F.cross_entropy(out_d, y), darts.arch_parameters())
    for a, b in zip(g_pc, g_d, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_pcdarts_equal_beta_scales_each_node_by_its_fan_in():
    """softmax over equal β weighs a node's n inputs by 1/n: with K=1 and β frozen equal, a
    cell's first node is DARTS's first node / 2 (exactly why PC-DARTS ≠ DARTS at K=1)."""
    torch.manual_seed(0)
    space, pc = mixed(tiny_cnn(layers=1, nodes=1).double(), PartialChannelMixing(k=1))
    pc.double()
    with torch.no_grad():
        for b in pc.beta.values():
            b.zero_()
    s = torch.randn(2, 12, 8, 8, dtype=torch.float64)
    cell = space.cells[0]
    pc.begin_forward(training=True)
    out_pc = cell(s, s)
    _, soft = mixed(space, SoftmaxMixing())
    soft.double().load_state_dict({k: v for k, v in pc.state_dict().items() if "beta" not in k})
    soft.begin_forward(training=True)
    torch.testing.assert_close(out_pc, cell(s, s) / 2)


def test_pcdarts_partial_channels_and_shuffle():
    torch.manual_seed(0)
    space, pc = mixed(tiny_cnn(init_channels=8), PartialChannelMixing(k=4))
    edge = space.cells[0].edges()[0]  # a normal cell: 8 channels
    assert edge.channels == 2  # 8 channels / k=4 through the mixed op
    conv = edge.ops["sep_conv_3x3"][0].weight
    assert conv.shape[0] == 2
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="k=3 must divide"):
        mixed(tiny_cnn(init_channels=8), PartialChannelMixing(k=3))


def test_pcdarts_beta_enters_the_derivation():
    """Node 0 (inputs 0, 1) keeps both; node 1 (inputs 0, 1, 2) keeps 2 of 3. α prefers inputs 0
    and 1 of node 1, β prefers input 2 strongly: the PC-DARTS genotype takes input 2."""
    space = tiny_cnn(nodes=2)
    probs = {d.key: torch.full((8,), 0.01) for d in space.decisions()}
    for e, w in ((2, 0.9), (3, 0.8), (4, 0.5)):  # node 1's edges 0→3, 1→3, 2→3
        probs[f"normal_e{e}"][4] = w  # sep_conv_3x3
    darts = space.derive(probs)
    assert sorted(j for _, j in darts.normal[2:]) == [0, 1]
    weights = {ic.key: torch.ones(ic.n_inputs) for ic in space.node_choices()}
    weights["normal_n1"] = torch.tensor([0.1, 0.1, 0.8])
    pc = space.derive(probs, weights)
    assert sorted(j for _, j in pc.normal[2:]) == [0, 2]  # 0.9·0.1 > 0.8·0.1, 0.5·0.8 wins
