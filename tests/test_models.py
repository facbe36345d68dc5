"""The derived networks: DARTS evaluation network from a hand-written genotype, MobileNet path."""

import pytest
import torch
from mobilenet_tiny import TINY
from torch import nn

from nas_lightning.genotype import BlockGenotype, CellGenotype
from nas_lightning.models import (
    AuxiliaryHead,
    DartsNetwork,
    build_network,
    count_macs,
    count_params,
)
from nas_lightning.spaces import MobileNetSearchSpace

# DARTS_V2 of the paper's code (normal: sep convs, skips, a dil conv; reduce: max pools, skips)
DARTS_V2 = CellGenotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def test_darts_v2_on_cifar_matches_the_paper_size():
    net = DartsNetwork(DARTS_V2, 3, 10, init_channels=36, layers=20)
    # the paper reports 3.3 M parameters for DARTS (second order) on CIFAR-10
    assert count_params(net) == pytest.approx(3.35e6, rel=0.01)
    assert count_params(net, exclude=()) > count_params(net)  # the auxiliary head is left out
    assert 5.0e8 < count_macs(net, (3, 32, 32)) < 5.6e8


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_shapes_cells_and_aux_head_adapt_to_the_input(one_thread, shape):
    net = DartsNetwork(DARTS_V2, shape[0], 7, init_channels=8, layers=6)
    assert [c.reduction for c in net.cells] == [False, False, True, False, True, False]
    assert net.aux_after == 4
    net.train()
    logits, aux = net.forward_with_aux(torch.randn(4, *shape))
    assert logits.shape == (4, 7) and aux.shape == (4, 7)
    # channels double at each reduction; each cell outputs 4 nodes × C
    assert net.classifier.in_features == 4 * 8 * 4
    net.eval()
    assert net(torch.randn(2, *shape)).shape == (2, 7)


def test_aux_head_runs_only_in_training(one_thread):
    net = DartsNetwork(DARTS_V2, 1, 10, init_channels=4, layers=3)
    calls = []
    net.auxiliary_head.register_forward_hook(lambda *_: calls.append(1))
    net.eval()
    logits, aux = net.forward_with_aux(torch.randn(2, 1, 8, 8))
    assert aux is None and not calls
    net.train()
    _, aux = net.forward_with_aux(torch.randn(2, 1, 8, 8))
    assert aux is not None and len(calls) == 1
    assert DartsNetwork(DARTS_V2, 1, 10, 4, 3, auxiliary=False).auxiliary_head is None


def test_aux_head_uses_the_papers_pool_on_8x8_maps():
    head = AuxiliaryHead(6, 10)
    pooled = []
    head.pool.register_forward_hook(lambda m, i, o: pooled.append(tuple(o.shape[-2:])))
    head(torch.randn(2, 6, 8, 8))
    head(torch.randn(2, 6, 2, 2))  # digits: too small for the 5×5 pool, skipped
    assert pooled == [(2, 2)]


def test_drop_path_only_in_training_and_never_on_identity(one_thread):
    torch.manual_seed(0)
    net = DartsNetwork(DARTS_V2, 1, 10, init_channels=4, layers=3)
    normal = net.cells[0]
    # stride-1 skips are not dropped; everything else is
    names = [op for pairs in normal.nodes for op, _ in pairs]
    assert normal.droppable == [n != "skip_connect" for n in names]
    reduce = net.cells[1]  # its skip on input 2 keeps stride 1, max pools on inputs 0, 1 reduce
    assert reduce.droppable == [True, True, False, True, True, False, False, True]
    x = torch.randn(8, 1, 8, 8)
    net.drop_path_prob = 0.5
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)  # eval: deterministic, no drop-path
    net.train()
    s0 = s1 = net.stem(x)
    with torch.no_grad():
        outs = [normal(s0, s1, 0.5) for _ in range(2)]
        kept = normal(s0, s1, 0.0), normal(s0, s1, 0.0)
    assert not torch.equal(outs[0], outs[1])  # random masks differ between calls
    assert torch.allclose(kept[0], kept[1])  # without drop-path training mode is deterministic


def test_drop_path_zeroes_whole_samples_and_rescales():
    from nas_lightning.models import drop_path

    torch.manual_seed(1)
    x = torch.ones(1000, 2, 3, 3)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    assert torch.allclose(per_sample.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert ((per_sample == 0).all(1) | (per_sample > 0).all(1)).all()
    assert 0.2 < (per_sample[:, 0] == 0).float().mean() < 0.3
    assert torch.equal(drop_path(x, 0.0), x)


@pytest.mark.parametrize(
    "gene, match",
    [
        ([("none", 0), ("sep_conv_3x3", 1)] * 4, "op 'none' is not allowed"),
        ([("sep_conv_3x3", 0), ("sep_conv_3x3", 2)] + [("skip_connect", 0)] * 6, "input 2"),
        ([("sep_conv_3x3", 0)] * 3, "3 \\(op, input\\) pairs"),
        ([("conv_9x9", 0), ("sep_conv_3x3", 1)] * 4, "unknown op 'conv_9x9'"),
    ],
)
def test_bad_genotypes_are_named(gene, match):
    g = CellGenotype(gene, [2, 3, 4, 5], DARTS_V2.reduce, [2, 3, 4, 5])
    with pytest.raises(ValueError, match=match):
        DartsNetwork(g, 1, 10, 4, 3)


def test_counters_on_known_layers():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.Flatten(), nn.Linear(8 * 16, 5))
    assert count_params(net) == 3 * 8 * 9 + 8 + 8 * 16 * 5 + 5
    assert count_macs(net, (3, 4, 4)) == 8 * 16 * 3 * 9 + 8 * 16 * 5
    dw = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
    assert count_macs(dw, (4, 8, 8)) == 4 * 16 * 9


def tiny_block_genotype(space: MobileNetSearchSpace, shift: int = 1) -> BlockGenotype:
    """A BlockGenotype of ``space`` picking candidate ``(i + shift) % n`` at block ``i``."""
    names = space.op_names_per_block()
    return BlockGenotype(
        blocks=[n[(i + shift) % len(n)] for i, n in enumerate(names)],
        labels=space.block_labels(),
        space=dict(space.config),
    )


def test_build_network_dispatches_on_the_genotype(one_thread):
    darts = build_network(DARTS_V2, 1, 10, (8, 8), init_channels=4, layers=3, auxiliary=False)
    assert isinstance(darts, DartsNetwork) and darts.auxiliary_head is None
    space = MobileNetSearchSpace(**TINY)
    genotype = tiny_block_genotype(space)
    net = build_network(genotype, in_channels=1, num_classes=3, input_size=(8, 8))
    reference = space.single_path(genotype)
    # same architecture, fresh weights
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in reference.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    assert shapes == [p.shape for p in reference.parameters()]
    assert any(
        not torch.equal(a, b) for a, b in zip(net.parameters(), reference.parameters(), strict=True)
    )
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="valid: CellGenotype"):
        build_network("not a genotype")
