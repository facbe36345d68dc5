"""load_genotype validates: the bad field, its value, the valid choices, the file and line."""

import copy
import json
import random
import re

import pytest

from nas_lightning.evaluate.sampling import random_block_genotype, random_cell_genotype
from nas_lightning.genotype import (
    BlockGenotype,
    CellGenotype,
    genotype_from_dict,
    load_genotype,
    save_genotype,
)
from nas_lightning.genotype_checks import GenotypeError, json_lines
from nas_lightning.spaces import DARTS_OPS, MobileNetSearchSpace
from tests.mobilenet_tiny import TINY

ALL_OPS = "max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3"
DARTS_V2 = {  # the paper's CIFAR-10 cell (quark0/darts genotypes.py)
    "type": "darts_cnn",
    "normal": [
        ["sep_conv_3x3", 0],
        ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 0],
        ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 1],
        ["skip_connect", 0],
        ["skip_connect", 0],
        ["dil_conv_3x3", 2],
    ],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [
        ["max_pool_3x3", 0],
        ["max_pool_3x3", 1],
        ["skip_connect", 2],
        ["max_pool_3x3", 1],
        ["max_pool_3x3", 0],
        ["skip_connect", 2],
        ["skip_connect", 2],
        ["max_pool_3x3", 1],
    ],
    "reduce_concat": [2, 3, 4, 5],
}


def _set(key, i, j, value):
    return lambda d: (
        d[key][i].__setitem__(j, value) if j is not None else d[key].__setitem__(i, value)
    )


# (mutation of DARTS_V2, the bad token as written in the file, expected message after "file:line: ")
CASES = {
    "unknown_op": (
        _set("normal", 3, 0, "conv_9x9"),
        '"conv_9x9"',
        f"normal[3]: op 'conv_9x9' is unknown; valid ops: {ALL_OPS}, dil_conv_5x5",
    ),
    "zero_op": (
        _set("reduce", 5, 0, "none"),
        '"none"',
        "reduce[5]: op 'none' cannot be chosen (a cell never picks zero); valid ops: max_pool_3x3",
    ),
    "input_7": (
        _set("normal", 3, 1, 7),
        "7",
        "normal[3]: input 7 is out of range for node 1 (entries 2..3); valid inputs: 0..2 (0, 1:",
    ),
    "input_-1": (
        _set("normal", 0, 1, -1),
        "-1",
        "normal[0]: input -1 is out of range for node 0 (entries 0..1); valid inputs: 0..1",
    ),
    "input_1.7": (_set("normal", 3, 1, 1.7), "1.7", "normal[3]: input 1.7 is not an integer"),
    "input_bool": (_set("normal", 3, 1, True), "true", "normal[3]: input true is not an integer"),
    "odd_edge_count": (
        lambda d: d["normal"].pop(),
        '"normal"',
        "normal: 7 entries for 4 nodes; a cell needs k × nodes entries, 4 (k=1) or 8 (k=2)",
    ),
    "concat_99": (
        _set("normal_concat", 3, None, 99),
        "99",
        "normal_concat[3]: 99 would be node 97, but normal has 8 entries; valid: 2..5 (4 nodes",
    ),
    "concat_repeated": (
        _set("reduce_concat", 3, None, 3),
        None,
        "reduce_concat[3]: 3 is repeated; valid: distinct states ≥ 2",
    ),
    "concat_input": (
        _set("normal_concat", 0, None, 1),
        None,
        "normal_concat[0]: 1 is an input, not a node; valid: distinct states ≥ 2",
    ),
    "unknown_type": (
        lambda d: d.__setitem__("type", "rnn_cell"),
        '"rnn_cell"',
        "type: unknown genotype type 'rnn_cell'; "
        "valid types: ['darts_cnn', 'darts_rnn', 'proxyless']",
    ),
    "unknown_field": (
        lambda d: d.__setitem__("normal_concatt", [2]),
        '"normal_concatt"',
        "normal_concatt: unknown field 'normal_concatt'; valid fields: type, normal, normal_",
    ),
    "not_a_pair": (
        _set("normal", 2, None, ["sep_conv_3x3"]),
        None,
        'normal[2]: ["sep_conv_3x3"] is not an [op, input] pair',
    ),
}


def _line_of(text: str, token: str) -> int:
    """The line holding ``token`` as a whole JSON value: found independently of json_lines."""
    (i,) = [
        n
        for n, line in enumerate(text.splitlines(), 1)
        if re.search(rf"(^|\s){re.escape(token)}(,|:|$)", line.strip())
    ]
    return i


@pytest.mark.parametrize("name", list(CASES))
def test_bad_entry_names_file_line_field_value_and_choices(tmp_path, name):
    mutate, token, expected = CASES[name]
    d = copy.deepcopy(DARTS_V2)
    mutate(d)
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(d, indent=2))
    with pytest.raises(GenotypeError) as err:
        load_genotype(path)
    msg = str(err.value)
    line = _line_of(path.read_text(), token) if token else int(msg.split(":")[1])
    assert msg.startswith(f"{path}:{line}: {expected}"), msg
    assert "\n" not in msg
    # one-line JSON: line 1; a dict from code: no file
    path.write_text(json.dumps(d))
    assert str(pytest.raises(GenotypeError, load_genotype, path).value).startswith(f"{path}:1: ")
    with pytest.raises(ValueError, match=f"^genotype: {re.escape(expected)}"):
        genotype_from_dict(d)


def test_line_numbers_follow_the_json_text():
    text = '{"a": [1,\n  {"b": "x]\\"}", "c": [true,\n null]}],\n "d": -1.5e3}'
    lines = json_lines(text)
    assert lines[("a",)] == 1 and lines[("a", 0)] == 1 and lines[("a", 1, "b")] == 2
    assert lines[("a", 1, "c", 0)] == 2 and lines[("a", 1, "c", 1)] == 3 and lines[("d",)] == 4


def test_valid_genotypes_load(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(DARTS_V2))
    g = load_genotype(path)
    assert isinstance(g, CellGenotype) and g.normal[7] == ("dil_conv_3x3", 2)
    g = random_cell_genotype(DARTS_OPS, nodes=3, k=1, rng=random.Random(0))  # one input each
    save_genotype(g, path)
    assert load_genotype(path) == g == load_genotype(path, nodes=3, k=1)


def test_space_rules_as_arguments(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(DARTS_V2, indent=2))
    with pytest.raises(GenotypeError, match=r":5: normal\[0\]: op 'sep_conv_3x3' is not in the "):
        load_genotype(path, ops=["none", "skip_connect", "max_pool_3x3", "dil_conv_3x3"])
    with pytest.raises(GenotypeError, match=r":3: normal: 8 entries for 3 nodes; .* 6 \(k=2\)"):
        load_genotype(path, nodes=3)
    with pytest.raises(GenotypeError, match=r"normal: 8 entries for 4 nodes; .*, 4 \(k=1\)$"):
        load_genotype(path, k=1)
    d = copy.deepcopy(DARTS_V2)
    d["normal_concat"][3] = 6  # implies 5 nodes (8 entries: no k fits); with nodes=4 out of range
    with pytest.raises(GenotypeError, match=r"normal: 8 entries for 5 nodes"):
        load_genotype(_write(path, d))
    with pytest.raises(
        GenotypeError, match=r"normal_concat\[3\]: 6 is out of range; valid: 2\.\.5$"
    ):
        load_genotype(path, nodes=4)
    path.write_text(json.dumps(DARTS_V2, indent=2))
    assert (
        load_genotype(
            path,
            ops=["zero", "sep_conv_3x3", "skip_connect", "dil_conv_3x3", "max_pool_3x3"],
            nodes=4,
            k=2,
        ).reduce[0][0]
        == "max_pool_3x3"
    )


def test_block_genotypes(tmp_path):
    space = MobileNetSearchSpace(**TINY)  # 4 blocks: s0b0 (stride 2), s0b1, s1b0 (stride 2), s1b1
    path = tmp_path / "g.json"
    g = random_block_genotype(space.config, random.Random(0))
    save_genotype(g, path)
    assert isinstance(load_genotype(path, ops=space.op_names_per_block()), BlockGenotype)
    d = g.to_dict()
    d["blocks"][2] = "mbconv_k9_e6"
    path.write_text(json.dumps(d, indent=2))
    with pytest.raises(GenotypeError) as err:
        load_genotype(path)
    line = _line_of(path.read_text(), '"mbconv_k9_e6"')
    assert str(err.value) == (
        f"{path}:{line}: blocks[2]: block s1b0: op "
        "'mbconv_k9_e6' is not a candidate; valid ops: mbconv_k3_e3, mbconv_k3_e6, "
        "mbconv_k5_e3, mbconv_k5_e6, mbconv_k7_e3, mbconv_k7_e6, zero"
    )
    d["blocks"][2] = "zero"  # the space dict allows zero; the built space knows s1b0 changes shape
    assert load_genotype(_write(path, d)).blocks[2] == "zero"
    with pytest.raises(GenotypeError, match=r"blocks\[2\]: block s1b0: op 'zero' is not a cand"):
        load_genotype(path, ops=space.op_names_per_block())
    with pytest.raises(GenotypeError, match=r"blocks: 4 blocks, but the space has 3 searchable"):
        load_genotype(path, ops=space.op_names_per_block()[:3])
    d["labels"] = d["labels"][:3]
    with pytest.raises(GenotypeError, match=r"labels: 3 labels for 4 blocks; one per block"):
        load_genotype(_write(path, d))


def _write(path, d):
    path.write_text(json.dumps(d, indent=2))
    return path
