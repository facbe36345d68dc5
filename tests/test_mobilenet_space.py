"""The ProxylessNAS MobileNet search space: layout, plans, export, latency specs, derived nets."""

import json

import pytest
import torch
import torch.nn.functional as F
from mobilenet_tiny import TINY
from searchkit import mixed, with_plans

from nas_lightning.algos import hypergrad
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.callbacks import probs_figure
from nas_lightning.genotype import BlockGenotype, genotype_from_dict
from nas_lightning.ops import describe
from nas_lightning.spaces import MobileNetSearchSpace
from nas_lightning.spaces.block import SearchBlock
from nas_lightning.spaces.plans import GatePlan

MBCONV = [f"mbconv_k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6)]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> MobileNetSearchSpace:
    torch.manual_seed(0)
    return MobileNetSearchSpace(**{**TINY, **kw})


def test_layout_candidates_and_alpha():
    space, mixing = mixed(tiny(), SoftmaxMixing(init_std=0.0))
    assert space.block_labels() == ["s0b0", "s0b1", "s1b0", "s1b1"]
    names = space.op_names_per_block()
    # stride-2 blocks change shape: no zero; the others keep it: 6 MBConv + zero
    assert names == [MBCONV, MBCONV + ["zero"], MBCONV, MBCONV + ["zero"]]
    assert [len(p) for p in mixing.probs().values()] == [6, 7, 6, 7]
    (alpha,) = mixing.arch_parameters()  # one group, rows padded to 7 (padding masked)
    assert alpha.shape == (4, 7) and not alpha.any()
    assert mixing.probs()["s0b0"].sum() == pytest.approx(1.0)
    arch = {id(a) for a in mixing.arch_parameters()}
    assert not arch & {id(p) for p in space.weight_parameters()}


def test_generic_size_knobs():
    """debug=tiny sets init_channels (stem width, scales the net) and layers (block cap)."""
    space = MobileNetSearchSpace(
        in_channels=1, num_classes=10, input_size=(8, 8), init_channels=4, layers=3
    )
    assert space.stem[0].out_channels == 4 and len(space.blocks) == 3
    assert space.layout.width_mult == pytest.approx(4 / 32)
    space, _ = mixed(space)
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(strides=[2, 3]), r"space.strides has 3; valid choices: 1, 2"),
        (dict(depths=[2]), r"one entry per stage"),
        (dict(num_classes=1), r"space.num_classes=1 .* >= 2"),
        (dict(input_size=(8,)), r"space.input_size=\(8,\) .* \(H, W\)"),
        (dict(kernels=[4]), r"space.kernels has 4; valid choices: 1, 3, 5, 7, 9"),
        (dict(stem_stride=3), r"space.stem_stride=3 .* valid choices: 1, 2"),
        (dict(widths=[]), r"space.widths=\[\] .* non-empty"),
        (dict(allow_zero="yes"), r"space.allow_zero='yes'"),
    ],
)
def test_invalid_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_plans_single_path_mix_and_zero_identity():
    space, mixing = mixed(tiny().eval())
    x = torch.randn(2, 1, 8, 8)
    assert space(x).shape == (2, 3)
    with mixing.using(dict(zip(space.block_labels(), [0, 6, 5, 3], strict=True))):
        assert space(x).shape == (2, 3)
    block = space.blocks[1]
    h = torch.randn(2, 8, 4, 4)
    assert torch.equal(with_plans(block, {"s0b1": block.zero_index})(h), h)  # skip the block
    one_hot = [0.0] * 7
    one_hot[2] = 1.0
    assert torch.equal(with_plans(block, {"s0b1": one_hot})(h), with_plans(block, {"s0b1": 2})(h))
    with pytest.raises(ValueError, match="path 9 invalid; valid: 0..6"):
        with_plans(block, {"s0b1": 9})(h)


def test_default_forward_is_differentiable_mix():
    """With softmax mixing every block's α gets a gradient (DARTS on this space)."""
    space, mixing = mixed(tiny())
    batch = (torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,)))
    (grad,), _ = hypergrad.first_order_grad(space, mixing.arch_parameters(), batch, F.cross_entropy)
    assert all(row.abs().sum() > 0 for row in grad)


def _block(C, stride, choices, zero=True):
    descs = [describe("mbconv", C, C, (4, 4), stride, kernel=k, expand=e) for k, e in choices]
    descs += [describe("zero", C, C, (4, 4), stride)] if zero else []
    return SearchBlock("b", "b", descs)


def test_gate_plan_output_is_active_path():
    torch.manual_seed(0)
    block = _block(8, 1, [(3, 3), (5, 6)]).eval()
    h = torch.randn(2, 8, 4, 4)
    gates = torch.tensor([0.0, 1.0, 0.0], requires_grad=True)
    out = with_plans(block, {"b": GatePlan(gates, active=1, others=(0, 2))})(h)
    assert torch.allclose(out, with_plans(block, {"b": 1})(h))


def test_export_genotype_roundtrip_and_single_path():
    space, mixing = mixed(tiny(), SoftmaxMixing(init_std=1.0))
    g = space.derive(mixing.probs())
    assert isinstance(g, BlockGenotype) and g.labels == space.block_labels()
    argmax = [int(p.argmax()) for p in mixing.probs().values()]
    assert g.blocks == [n[c] for n, c in zip(space.op_names_per_block(), argmax, strict=True)]
    d = json.loads(json.dumps(g.to_dict()))
    g2 = genotype_from_dict(d)
    assert g2.to_dict() == g.to_dict() and g2.ops() == g.blocks
    assert str(g).startswith("BlockGenotype(s0b0=")
    space.eval()
    x = torch.randn(3, 1, 8, 8)
    net = space.single_path(g).eval()
    with mixing.using(dict(zip(space.block_labels(), space.to_choice(g), strict=True))):
        assert torch.equal(net(x), space(x))
    rebuilt = MobileNetSearchSpace(**g.space).single_path(g)  # fresh weights, same architecture
    assert rebuilt(x).shape == (3, 3)
    with pytest.raises(ValueError, match=r"block s0b0: op 'zero' invalid"):
        space.to_choice(["zero"] * 4)


def test_single_path_drops_zero_blocks_and_copies_weights():
    space = tiny()
    net = space.single_path([0, 6, 1, 6])
    assert len(net.blocks) == 2
    w_net = net.blocks[0].op.body[0][0].weight
    w_sup = space.blocks[0].candidate(0).body[0][0].weight
    assert torch.equal(w_net, w_sup) and w_net.data_ptr() != w_sup.data_ptr()


def test_export_probs_share_columns():
    space, mixing = mixed(tiny(), SoftmaxMixing(init_std=0.0))
    table = space.export_probs(mixing.probs())["blocks"]
    assert list(table) == space.block_labels()
    assert all(list(row) == MBCONV + ["zero"] for row in table.values())
    assert table["s0b0"]["zero"] == 0.0 and table["s0b1"]["zero"] == pytest.approx(1 / 7)
    assert all(sum(row.values()) == pytest.approx(1.0) for row in table.values())
    probs_figure("blocks", table)  # the heatmap callback's figure builds for this space


def test_latency_specs_match_real_feature_maps():
    space, mixing = mixed(tiny())
    specs = {k: inst for k, (inst,) in space.latency_specs().items()}  # one block per key
    assert list(specs) == space.block_labels()
    assert [len(v) for v in specs.values()] == [len(p) for p in mixing.probs().values()]
    seen = {}
    hooks = [
        b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, (i[0].shape, o.shape)))
        for k, b in zip(space.block_labels(), space.blocks, strict=True)
    ]
    with mixing.using(dict.fromkeys(space.block_labels(), 0)):
        space(torch.randn(1, 1, 8, 8))
    for h in hooks:
        h.remove()
    for label, descs in specs.items():
        (_, c_in, *hw_in), (_, c_out, *hw_out) = seen[label]
        for d, (k, e) in zip(descs[:6], [(k, e) for k in (3, 5, 7) for e in (3, 6)], strict=True):
            assert (d.op, d.kernel, d.expand) == ("mbconv", k, e)
            assert (d.in_channels, d.out_channels) == (c_in, c_out)
            assert (list(d.in_size), list(d.out_size)) == (hw_in, hw_out)
    assert specs["s0b0"][0].stride == 2 and specs["s0b1"][-1].op == "zero"
    fixed = space.fixed_specs()
    assert [d.op for d in fixed] == ["conv", "mbconv", "conv", "pool_linear"]
    assert fixed[-1].out_channels == 3 and fixed[-2].in_size == (2, 2)
    with pytest.raises(ValueError, match="input_size is unknown"):
        tiny(input_size=None).latency_specs()


def test_sample_choice_uniform_and_reproducible():
    space = tiny()
    a = space.sample_choice(torch.Generator().manual_seed(3))
    b = space.sample_choice(torch.Generator().manual_seed(3))
    assert a == b and all(
        0 <= c < len(blk.op_names) for c, blk in zip(a, space.blocks, strict=True)
    )
    counts = torch.zeros(7)
    gen = torch.Generator().manual_seed(0)
    for _ in range(700):
        counts[space.sample_choice(gen)[1]] += 1
    assert counts.min() > 60  # every candidate of a 7-way block is drawn (~100 each)
