"""The DARTS cell search space: mixing, parameter split, shapes and bad input."""

import pytest
import torch
import torch.nn.functional as F
from searchkit import mixed, tiny_cnn

from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.spaces.cell import SearchCell
from nas_lightning.spaces.choices import ChoiceGroup, OpChoice

tiny = tiny_cnn


def test_mixed_edge_is_softmax_weighted_sum_including_zero():
    torch.manual_seed(0)
    cell = SearchCell(["none", "skip_connect"], 1, 4, 4, 4, reduction=False, reduction_prev=False)
    mixing = SoftmaxMixing(init_std=1.0)
    cell.decisions = lambda: [cp.decision() for cp in cell.edges()]  # a cell as a tiny space
    cell.node_choices = lambda: list(cell.node_inputs)
    mixing.install(cell)
    s0, s1 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    out = cell(s0, s1)
    w = F.softmax(mixing.alpha["normal"], -1)
    expected = w[0, 1] * cell.pre0(s0) + w[1, 1] * cell.pre1(s1)
    torch.testing.assert_close(out, expected)
    assert (w[:, 1] < 1).all()  # the zero op took its share of the softmax


def test_edges_are_choice_points_grouped_by_source_state():
    cell = SearchCell(
        ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3"],
        4,
        8,
        8,
        4,
        reduction=False,
        reduction_prev=False,
    )
    groups = [m for m in cell.modules() if isinstance(m, ChoiceGroup)]
    # 2 inputs + 3 intermediate states feed later nodes; the last node feeds nothing
    assert [len(g.points) for g in groups] == [4, 4, 3, 2, 1]
    # weightless ops once per state: 5 states x 3 (max, avg, identity); one sep_conv per edge
    assert sum(len(g.shared) for g in groups) == 15
    edges = cell.edges()
    assert [e.key for e in edges] == [f"normal_e{i}" for i in range(14)]
    assert [e.label for e in edges][:3] == ["0→2", "1→2", "0→3"]
    assert sum(len(e.ops) for e in edges) == 14
    assert all(isinstance(e, OpChoice) for e in edges)


def test_cells_of_one_type_share_decisions_but_not_weights():
    space = tiny(layers=5)
    keys = [cp.key for cp in space.choice_points()]
    assert len(keys) == 5 * 14 and len(set(keys)) == 28
    normal = [c for c in space.cells if not c.reduction]
    w0 = normal[0].edges()[0].ops["sep_conv_3x3"][1].weight
    w1 = normal[1].edges()[0].ops["sep_conv_3x3"][1].weight
    assert w0 is not w1


@pytest.mark.parametrize("channels_last", [False, True])
def test_float_and_tensor_mixing_paths_agree(channels_last):
    torch.manual_seed(0)
    space, _ = mixed(tiny(channels_last=channels_last).eval(), SoftmaxMixing(init_std=1.0))
    x = torch.randn(2, 1, 8, 8)
    with_graph = space(x)  # α requires grad: tensor weights
    with torch.no_grad():
        floats = space(x)  # python-float weights
    torch.testing.assert_close(with_graph.detach(), floats)


def test_space_holds_only_weights_and_the_algorithm_holds_alpha():
    space, mixing = mixed(tiny())
    arch = {id(p) for p in mixing.arch_parameters()}
    weights = {id(p) for p in space.weight_parameters()}
    assert arch and weights and not arch & weights
    assert weights == {id(p) for p in space.parameters()}
    assert mixing.alpha["normal"].shape == (14, 8) and mixing.alpha["reduce"].shape == (14, 8)


def test_unbound_space_fails_loudly():
    with pytest.raises(RuntimeError, match="no mixing strategy"):
        tiny()(torch.randn(2, 1, 8, 8))


def test_reduction_positions_and_output():
    space, _ = mixed(tiny(layers=8))
    assert [i for i, c in enumerate(space.cells) if c.reduction] == [2, 5]
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("layers", [1, 2])
def test_few_layers_have_no_normal_cell_and_still_backprop(layers):
    space, mixing = mixed(tiny(layers=layers))
    assert not space.has_normal_cell()
    assert {d.group for d in space.decisions()} == {"normal", "reduce"}  # genotype needs both
    loss = space(torch.randn(2, 1, 8, 8)).sum()
    normal, reduce = torch.autograd.grad(
        loss, [mixing.alpha["normal"], mixing.alpha["reduce"]], allow_unused=True
    )
    assert normal is None and reduce is not None


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
    space, mixing = mixed(tiny(ops=["zero", "skip_connect", "sep_conv_3x3"]))
    assert space.op_names == ["none", "skip_connect", "sep_conv_3x3"]
    assert mixing.alpha["reduce"].shape == (14, 3)
    assert space(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_export_probs_rows_and_columns():
    space, mixing = mixed(tiny())
    probs = space.export_probs(mixing.probs())
    assert set(probs) == {"normal", "reduce"}
    assert list(probs["normal"])[:3] == ["0→2", "1→2", "0→3"]
    for row in probs["reduce"].values():
        assert abs(sum(row.values()) - 1) < 1e-6


@pytest.mark.parametrize("setting, nhwc", [("auto", True), (True, True), (False, False)])
def test_channels_last_auto_is_on_for_cpu(setting, nhwc):
    space, _ = mixed(tiny(channels_last=setting))
    seen = []
    space.cells[0].register_forward_hook(
        lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last))
    )
    space(torch.randn(2, 1, 8, 8))
    assert seen == [nhwc]


def test_channels_last_rule_per_device_and_bad_value():
    from nas_lightning.devices import use_channels_last

    assert use_channels_last("auto", "cpu") and not use_channels_last("auto", "cuda")
    assert use_channels_last(True, "cuda") and not use_channels_last(False, "cpu")
    with pytest.raises(ValueError, match="channels_last='yes' is invalid; valid choices: auto"):
        tiny(channels_last="yes")
