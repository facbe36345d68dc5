"""Search vs random: the constrained random sampler, the summary and the evaluate run."""

import json
import random
from collections import Counter

import pytest
from mobilenet_tiny import TINY
from test_models import DARTS_V2, tiny_block_genotype
from test_retrain import TINY_RETRAIN

from nas_lightning.evaluate.report import summarise
from nas_lightning.evaluate.sampling import random_cell_genotype, sample_like
from nas_lightning.genotype import BlockGenotype, CellGenotype, save_genotype
from nas_lightning.spaces import DARTS_OPS, MobileNetSearchSpace


@pytest.mark.parametrize("nodes, k", [(4, 2), (3, 1), (5, 2)])
def test_random_cell_genotypes_honour_the_derivation_constraints(nodes, k):
    rng = random.Random(0)
    ops_seen, inputs_seen = Counter(), Counter()
    for _ in range(500):
        g = random_cell_genotype(DARTS_OPS, nodes, k, rng)
        assert g.normal_concat == g.reduce_concat == list(range(2, 2 + nodes))
        for gene in (g.normal, g.reduce):
            assert len(gene) == k * nodes
            for i in range(nodes):
                pairs = gene[i * k : (i + 1) * k]
                inputs = [j for _, j in pairs]
                assert len(set(inputs)) == k  # distinct predecessors
                assert all(0 <= j < i + 2 for j in inputs)  # earlier states only
                ops_seen.update(op for op, _ in pairs)
                inputs_seen.update((i, j) for j in inputs)
    assert "none" not in ops_seen
    assert set(ops_seen) == set(DARTS_OPS) - {"none"}  # every other op is reachable
    assert set(inputs_seen) == {(i, j) for i in range(nodes) for j in range(i + 2)}
    counts = list(ops_seen.values())
    assert max(counts) < 1.3 * min(counts)  # uniform over the 7 ops


def test_random_block_genotypes_pick_one_candidate_per_block(one_thread):
    space = MobileNetSearchSpace(**TINY)
    candidates = space.op_names_per_block()
    searched = tiny_block_genotype(space)
    samples = sample_like(searched, 200, seed=3)
    seen = [set() for _ in candidates]
    for g in samples:
        assert isinstance(g, BlockGenotype) and g.labels == searched.labels
        assert g.space == searched.space and len(g.blocks) == len(candidates)
        for s, op, valid in zip(seen, g.blocks, candidates, strict=True):
            assert op in valid
            s.add(op)
    assert seen == [set(c) for c in candidates]  # zero only where the block offers it
    assert [g.blocks for g in sample_like(searched, 5, 3)] == [g.blocks for g in samples[:5]]


def test_sample_like_follows_the_searched_shape_and_refuses_another_k():
    one_input = CellGenotype(DARTS_V2.normal[::2], [2, 3, 4, 5], DARTS_V2.reduce[::2], [2, 3, 4, 5])
    samples = sample_like(one_input, 3, seed=0, ops=DARTS_OPS)
    assert all(len(g.normal) == 4 and len(g.reduce) == 4 for g in samples)
    with pytest.raises(ValueError, match="keeps 1 inputs per node but space.k=2"):
        sample_like(one_input, 3, seed=0, ops=DARTS_OPS, k=2)


def test_summary_mean_std_and_rank():
    rows = [
        {"name": "searched_0", "kind": "searched", "test_acc": 0.90},
        {"name": "random_00", "kind": "random", "test_acc": 0.95},
        {"name": "random_01", "kind": "random", "test_acc": 0.85},
        {"name": "random_02", "kind": "random", "test_acc": 0.80},
    ]
    for r in rows:
        r.update(seed=1, params_M=0.1, macs_M=1.0, latency_ms=1.0)
    rows.append({**rows[0], "seed": 2, "test_acc": 0.96})  # searched: mean 0.93 over seeds
    s = summarise(rows)
    assert s["random"]["n"] == 3 and s["random"]["mean"] == pytest.approx(0.8667, abs=1e-4)
    assert s["random"]["std"] == pytest.approx(0.0764, abs=1e-4)
    (searched,) = s["searched"]
    assert searched["test_acc"] == pytest.approx(0.93) and searched["seeds"] == 2
    assert (searched["rank"], searched["of"]) == (2, 4)


def test_evaluate_retrains_searched_and_random_under_one_protocol(compose_cfg, tmp_path):
    from nas_lightning.evaluate.__main__ import evaluate

    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    cfg = compose_cfg(
        *TINY_RETRAIN,
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks=none",
        f"genotype={tmp_path}",
        "n_random=2",
        "seeds=[3]",
        config_name="evaluate",
    )
    assert cfg.retrain.export_onnx is False and cfg.task == "retrain"
    out = tmp_path / "eval"
    summary = evaluate(cfg, out)
    assert [g["name"] for g in summary["searched"]] == ["searched_0"]
    assert summary["random"]["n"] == 2 and summary["searched"][0]["of"] == 3
    lines = (out / "runs.csv").read_text().splitlines()
    assert lines[0] == "name,kind,seed,test_acc,params_M,macs_M,latency_ms,dir" and len(lines) == 4
    assert json.loads((out / "summary.json").read_text())["random"] == summary["random"]
    assert (out / "strip.png").read_bytes()[:4] == b"\x89PNG"
    assert "searched_0" in (out / "summary.txt").read_text()
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*_seed3/result.json"))]
    assert len(results) == 3 and all(r["seed"] == 3 and r["epochs"] == 1 for r in results)
    genotypes = [r["genotype"] for r in results]
    assert DARTS_V2.to_dict() in genotypes and len({json.dumps(g) for g in genotypes}) == 3


def test_evaluate_without_a_genotype_says_what_to_add(compose_cfg, tmp_path):
    from nas_lightning.evaluate.__main__ import evaluate

    cfg = compose_cfg(*TINY_RETRAIN, config_name="evaluate")
    with pytest.raises(ValueError, match="no searched genotype: add genotype=<genotype.json"):
        evaluate(cfg, tmp_path)
