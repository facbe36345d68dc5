"""Genotype derivation (DARTS rules) and its JSON form."""

import random

import pytest
import torch

from nas_lightning.evaluate.sampling import random_cell_genotype
from nas_lightning.genotype import CellGenotype, derive_cell, load_genotype, save_genotype
from nas_lightning.spaces import DARTS_OPS, CNNSearchSpace

OPS = DARTS_OPS  # none, max, avg, skip, sep3, sep5, dil3, dil5


def test_hand_built_alpha_example():
    """Two nodes. Node 0 (inputs 0, 1); node 1 (inputs 0, 1, 2)."""
    p = torch.full((5, 8), 0.01)
    p[0, 0] = 0.9  # 0→2: zero dominates, best non-zero is sep3 (0.3)
    p[0, 4] = 0.3
    p[1, 3] = 0.2  # 1→2: skip 0.2
    p[2, 7] = 0.5  # 0→3: dil5 0.5
    p[3, 0] = 0.99  # 1→3: only zero is strong: best non-zero 0.01, dropped
    p[4, 1] = 0.6  # 2→3: max pool 0.6
    gene = derive_cell(p, OPS, nodes=2, k=2)
    assert gene == [
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("max_pool_3x3", 2),
        ("dil_conv_5x5", 0),
    ]


def test_random_alpha_gives_valid_genotype():
    torch.manual_seed(0)
    space = CNNSearchSpace(1, 10, 4, 3, nodes=4)
    for _ in range(20):
        g = space.derive({d.key: torch.randn(8).mul(3).softmax(0) for d in space.decisions()})
        for gene in (g.normal, g.reduce):
            assert len(gene) == 8
            for i in range(4):
                (op_a, in_a), (op_b, in_b) = gene[2 * i], gene[2 * i + 1]
                assert in_a != in_b and max(in_a, in_b) < i + 2
                assert "none" not in (op_a, op_b)
        assert g.normal_concat == [2, 3, 4, 5]


def test_k_one_keeps_one_input_per_node():
    gene = derive_cell(torch.rand(14, 8), OPS, nodes=4, k=1)
    assert len(gene) == 4


def test_k_larger_than_candidates_is_rejected():
    with pytest.raises(ValueError, match="k=3.*choose k in"):
        derive_cell(torch.rand(14, 8), OPS, nodes=4, k=3)


def test_json_round_trip(tmp_path):
    g = random_cell_genotype(DARTS_OPS, 4, 2, random.Random(0))
    save_genotype(g, tmp_path / "g.json")
    back = load_genotype(tmp_path / "g.json")
    assert isinstance(back, CellGenotype) and back == g


def test_unknown_genotype_type(tmp_path):
    (tmp_path / "g.json").write_text('{"type": "rnn_cell"}')
    with pytest.raises(ValueError, match="'rnn_cell'.*darts_cnn"):
        load_genotype(tmp_path / "g.json")
