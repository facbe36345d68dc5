"""The DARTS recurrent cell space: its ops, model, stateful forward and k=1 derivation."""

import json

import pytest
import torch
from searchkit import mixed, with_plans

from nas_lightning.algos.mixing import GumbelMixing, PartialChannelMixing, SoftmaxMixing
from nas_lightning.algos.mixing.binary import BinaryGateMixing
from nas_lightning.genotype import RecurrentGenotype, load_genotype, save_genotype
from nas_lightning.ops.rnn_ops import build_rnn_op, validate_rnn_ops
from nas_lightning.spaces import RNNSearchSpace
from nas_lightning.spaces.choices import OpChoice
from nas_lightning.spaces.rnn import derive_recurrent
from nas_lightning.spaces.streams import Stream, Streamed

OPS = ["none", "tanh", "relu", "sigmoid", "identity"]
ACTS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda h: h}


def tiny_rnn(**kw) -> RNNSearchSpace:
    """20 words, 6 hidden units, 3 nodes, no dropout (deterministic) unless asked."""
    args = dict(vocab_size=20, nhid=6, nodes=3, dropout=0, dropouth=0, dropoutx=0, dropouti=0)
    return RNNSearchSpace(**{**args, **kw})


@pytest.mark.parametrize("name", list(ACTS))
def test_every_recurrent_op_is_the_highway_activation(name):
    torch.manual_seed(0)
    s, c, h = torch.randn(3, 4, 5, dtype=torch.float64).unbind(0)
    x = torch.stack([s, torch.sigmoid(c), h]).requires_grad_()
    out = build_rnn_op(name, 5)(x)
    assert out.shape == (4, 5)
    expected = s + torch.sigmoid(c) * (ACTS[name](h) - s)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert all(g.abs().sum() > 0 for g in grad)  # s, the gate and h all get a gradient
    assert torch.autograd.gradcheck(build_rnn_op(name, 5), (x,))
    assert not list(build_rnn_op(name, 5).parameters())  # the projection belongs to the cell


def test_zero_op_is_never_run_and_op_lists_are_checked():
    cp = OpChoice("e", "recurrent", "0→1", OPS, {n: build_rnn_op(n, 5) for n in OPS[1:]})
    assert cp.run(0, torch.randn(3, 2, 5)) is None
    assert validate_rnn_ops(["zero", "tanh"]) == ["none", "tanh"]
    with pytest.raises(ValueError, match="'sep_conv_3x3'.*valid ops are: none, tanh, relu"):
        validate_rnn_ops(["none", "sep_conv_3x3"])
    with pytest.raises(ValueError, match="no op besides 'none'"):
        validate_rnn_ops(["none"])


def test_model_shapes_tied_weights_and_decisions():
    space, mixing = mixed(tiny_rnn())
    tokens = torch.randint(0, 20, (7, 3))
    stream = Stream()
    logits = space(Streamed(tokens, stream))
    assert logits.shape == (7, 3, 20) and stream.last.shape == (3, 6)
    assert space.decoder.weight is space.encoder.weight
    names = [n for n, _ in space.named_weight_parameters()]
    assert "decoder.weight" not in names and len(names) == len(set(names))
    labels = [d.label for d in space.decisions()]
    assert labels == ["0→1", "0→2", "1→2", "0→3", "1→3", "2→3"]
    assert [(n.n_inputs, n.n_chosen) for n in space.node_choices()] == [(1, 1), (2, 1), (3, 1)]
    assert len(mixing.arch_parameters()) == 1 and mixing.arch_parameters()[0].shape == (6, 5)
    table = space.export_probs(mixing.probs())["recurrent"]
    assert list(table) == labels and sorted(table["0→1"]) == sorted(OPS)


def test_the_carried_state_continues_the_sequence():
    """Two windows with the state carried give the logits of one forward over both."""
    torch.manual_seed(0)
    space, _ = mixed(tiny_rnn().eval())
    tokens = torch.randint(0, 20, (10, 3))
    whole = space(tokens)
    stream = Stream()
    first = space(Streamed(tokens[:4], stream))
    assert stream.last is not None and not stream.last.requires_grad
    stream.advance()
    second = space(Streamed(tokens[4:], stream))
    torch.testing.assert_close(torch.cat([first, second]), whole)
    assert not torch.allclose(second, space(tokens[4:]))  # a fresh state differs


def test_variational_dropout_masks_are_fixed_over_time():
    space = tiny_rnn(dropout=0.5).train()
    out = space._locked(torch.ones(6, 4, 8), 0.5)
    assert torch.equal(out, out[:1].expand_as(out)) and (out == 0).any() and (out == 2).any()
    assert torch.equal(space.eval()._locked(torch.ones(6, 4, 8), 0.5), torch.ones(6, 4, 8))


def test_generic_size_knobs_and_bad_arguments():
    space = tiny_rnn(init_channels=4, layers=2)
    assert space.nhid == 4 and space.nodes == 2 and space.encoder.weight.shape == (20, 4)
    with pytest.raises(ValueError, match="space.emsize=8 != space.nhid=6.*tied"):
        tiny_rnn(emsize=8)
    with pytest.raises(ValueError, match=r"space.dropouth=1.0 .* \[0, 1\)"):
        tiny_rnn(dropouth=1.0)
    with pytest.raises(ValueError, match="space.nodes=0 .* >= 1"):
        tiny_rnn(nodes=0)


def test_k1_derivation_on_a_hand_built_alpha():
    """Three nodes: rows 0→1 | 0→2, 1→2 | 0→3, 1→3, 2→3; columns none, tanh, relu, sig, id."""
    p = torch.full((6, 5), 0.01)
    p[0, 0], p[0, 3] = 0.9, 0.05  # 0→1: none dominates; the best other op is sigmoid
    p[1, 2] = 0.4  # 0→2: relu 0.4
    p[2, 0], p[2, 4] = 0.95, 0.3  # 1→2: none 0.95, identity 0.3: loses to 0→2's relu 0.4
    p[3, 1] = p[4, 1] = 0.5  # 0→3 and 1→3 tie at tanh 0.5: the lower input wins
    p[5, 4] = 0.45  # 2→3: identity 0.45
    gene = derive_recurrent(p, OPS, nodes=3)
    assert gene == [("sigmoid", 0), ("relu", 0), ("tanh", 0)]
    space = tiny_rnn()
    genotype = space.derive({f"recurrent_e{e}": p[e] for e in range(6)})
    assert genotype == RecurrentGenotype(gene, [1, 2, 3])
    with pytest.raises(ValueError, match=r"probs of shape \(5, 5\); expected \(6, 5\)"):
        derive_recurrent(p[:5], OPS, nodes=3)


def test_random_alpha_gives_valid_genotypes_and_json_round_trips(tmp_path):
    space = tiny_rnn(nodes=5)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        probs = {d.key: torch.rand(5, generator=g).softmax(0) for d in space.decisions()}
        genotype = space.derive(probs)
        assert [i <= node for node, (_, i) in enumerate(genotype.recurrent)] == [True] * 5
        assert "none" not in genotype.ops() and genotype.concat == [1, 2, 3, 4, 5]
    save_genotype(genotype, tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text())["type"] == "darts_rnn"
    assert load_genotype(tmp_path / "g.json") == genotype
    with pytest.raises(ValueError, match="not a DARTS recurrent genotype"):
        RecurrentGenotype.from_dict({"type": "darts_rnn", "recurrent": [["tanh"]]})


@pytest.mark.parametrize(
    "mixing",
    [SoftmaxMixing(), GumbelMixing(tau=1.0), BinaryGateMixing("binary"), BinaryGateMixing("full")],
    ids=["softmax", "gumbel", "binary", "full"],
)
def test_every_mixing_strategy_trains_the_space(mixing):
    torch.manual_seed(0)
    space, mixing = mixed(tiny_rnn(dropout=0.3, dropouth=0.2), mixing)
    tokens = torch.randint(0, 20, (5, 4))
    logits = space.train()(tokens)
    grads = torch.autograd.grad(logits.logsumexp(-1).mean(), space.weight_parameters()[:2])
    assert logits.shape == (5, 4, 20) and all(g.abs().sum() > 0 for g in grads)
    assert space.eval()(tokens).isfinite().all()


def test_partial_channels_are_refused_in_one_line():
    with pytest.raises(ValueError, match="cannot search RNNSearchSpace: a recurrent cell") as e:
        mixed(tiny_rnn(), PartialChannelMixing())
    assert "\n" not in str(e.value)


def test_nodes_whose_every_edge_is_zero_give_zeros():
    space = with_plans(tiny_rnn().eval(), {f"recurrent_e{e}": 0 for e in range(6)})
    logits = space.forward(torch.randint(0, 20, (4, 2)))
    torch.testing.assert_close(logits, space.decoder.bias.expand(4, 2, 20))
