"""The DARTS cell search space: mixing, parameter split, shapes and bad input."""

import pytest
import torch
import torch.nn.functional as F

from nas_lightning.spaces import CNNSearchSpace
from nas_lightning.spaces.cell import SearchCell


def tiny(**kw) -> CNNSearchSpace:
    args = dict(in_channels=1, num_classes=10, init_channels=4, layers=3)
    return CNNSearchSpace(**{**args, **kw})


def test_mixed_edge_is_softmax_weighted_sum_including_zero():
    torch.manual_seed(0)
    cell = SearchCell(["none", "skip_connect"], 1, 4, 4, 4, reduction=False, reduction_prev=False)
    alpha = torch.randn(2, 2, requires_grad=True)
    s0, s1 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    out = cell(s0, s1, F.softmax(alpha, -1))
    w = F.softmax(alpha, -1)
    expected = w[0, 1] * cell.pre0(s0) + w[1, 1] * cell.pre1(s1)
    torch.testing.assert_close(out, expected)
    assert (w[:, 1] < 1).all()  # the zero op took its share of the softmax


def test_weightless_ops_are_shared_per_state():
    cell = SearchCell(
        ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3"],
        4,
        8,
        8,
        4,
        reduction=False,
        reduction_prev=False,
    )
    # 2 inputs + 3 intermediate states feed later nodes: 5 states x 3 weightless ops
    assert len(cell.shared) == 15
    assert sum(len(e) for e in cell.edges) == 14  # one sep_conv per edge


@pytest.mark.parametrize("channels_last", [False, True])
def test_float_and_tensor_mixing_paths_agree(channels_last):
    torch.manual_seed(0)
    space = tiny(channels_last=channels_last).eval()
    with torch.no_grad():
        for a in space.arch_parameters():
            a.normal_()
    x = torch.randn(2, 1, 8, 8)
    with_graph = space(x)  # α requires grad: tensor weights
    with torch.no_grad():
        floats = space(x)  # python-float weights
    torch.testing.assert_close(with_graph.detach(), floats)


def test_parameter_split_is_a_partition():
    space = tiny()
    arch = {id(p) for p in space.arch_parameters()}
    weights = {id(p) for p in space.weight_parameters()}
    assert arch and weights and not arch & weights
    assert arch | weights == {id(p) for p in space.parameters()}
    assert space.alpha_normal.shape == (14, 8)


def test_reduction_positions_and_output():
    space = tiny(layers=8)
    assert [i for i, c in enumerate(space.cells) if c.reduction] == [2, 5]
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("layers", [1, 2])
def test_few_layers_have_no_normal_cell_and_still_backprop(layers):
    space = tiny(layers=layers)
    assert not space.has_normal_cell()
    loss = space(torch.randn(2, 1, 8, 8)).sum()
    grads = torch.autograd.grad(loss, space.arch_parameters(), allow_unused=True)
    assert grads[0] is None and grads[1] is not None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"nodes": 0}, r"space.nodes=0 .*>= 1"),
        ({"layers": 0}, r"space.layers=0"),
        ({"ops": ["sep_conv_3x3", "conv_7x7"]}, r"'conv_7x7'.*valid ops are"),
        ({"k": 3}, r"space.k=3.*valid choices: 1, 2"),
        ({"init_channels": 5}, r"init_channels=5 must be even"),
    ],
)
def test_bad_input_names_the_value(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_ops_subset_changes_alpha_width():
    space = tiny(ops=["zero", "skip_connect", "sep_conv_3x3"])
    assert space.op_names == ["none", "skip_connect", "sep_conv_3x3"]
    assert space.alpha_reduce.shape == (14, 3)
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_export_probs_rows_and_columns():
    probs = tiny().export_probs()
    assert set(probs) == {"normal", "reduce"}
    assert list(probs["normal"])[:3] == ["0→2", "1→2", "0→3"]
    for row in probs["reduce"].values():
        assert abs(sum(row.values()) - 1) < 1e-6
