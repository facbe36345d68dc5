"""Callbacks read any space through export()/export_probs()."""

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
from searchkit import SGD, tiny_cnn

from nas_lightning.algos import DartsSearch
from nas_lightning.callbacks import AlphaHeatmap, GenotypeWriter, probs_figure


def test_heatmap_figure_rows_columns_and_values():
    table = DartsSearch(tiny_cnn(nodes=2), SGD, SGD).export_probs()["normal"]
    fig = probs_figure("t", table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0→2", "1→2", "0→3", "1→3", "2→3"]
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["none", "max_pool_3x3"]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 5 * 8 and texts[0] == f"{table['0→2']['none']:.3f}"
    plt.close(fig)


def _trainer(tmp_path, epoch):
    return SimpleNamespace(
        current_epoch=epoch,
        global_step=10 * epoch,
        max_epochs=3,
        should_stop=False,
        sanity_checking=False,
        is_global_zero=True,
        default_root_dir=str(tmp_path),
        loggers=[],
    )


def test_callbacks_write_history_latest_genotype_and_pngs(tmp_path):
    module = DartsSearch(tiny_cnn(), SGD, SGD)
    writer, heatmap = GenotypeWriter(), AlphaHeatmap(every_n_epochs=2)
    for epoch in range(3):
        with __import__("torch").no_grad():  # make the genotype change between epochs
            module.mixing.alpha["normal"][epoch, 4] += 5.0
        writer.on_train_epoch_end(_trainer(tmp_path, epoch), module)
        heatmap.on_train_epoch_end(_trainer(tmp_path, epoch), module)
    lines = [json.loads(x) for x in (tmp_path / "genotypes.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    assert json.loads((tmp_path / "genotype.json").read_text()) == lines[-1]["genotype"]
    assert lines[-1]["genotype"] == module.export().to_dict()
    # every 2nd epoch plus the last one
    pngs = sorted(p.name for p in (tmp_path / "heatmaps").glob("*.png"))
    assert pngs == [
        "epoch_001_normal.png",
        "epoch_001_reduce.png",
        "epoch_002_normal.png",
        "epoch_002_reduce.png",
    ]


def tiny_darts():
    """A tiny DARTS search module (read through export / export_probs) and its α
    ``[normal, reduce]``."""
    from functools import partial

    import torch

    from nas_lightning.algos import DartsSearch
    from nas_lightning.spaces import CNNSearchSpace

    sgd = partial(torch.optim.SGD, lr=0.1)
    module = DartsSearch(CNNSearchSpace(1, 10, 4, 3), sgd, sgd)
    return module, module.arch_parameters()


def test_heatmap_scale_is_anchored_at_uniform_and_title_prints_the_spread():
    from matplotlib.colors import TwoSlopeNorm

    from nas_lightning.genotype_views import picks

    module, _ = tiny_darts()
    table = module.export_probs()["normal"]
    fig = probs_figure("t", table, picks(module.export())["normal"])
    ax = fig.axes[0]
    norm = ax.images[0].norm
    assert isinstance(norm, TwoSlopeNorm)
    assert (norm.vmin, norm.vcenter, norm.vmax) == (0.0, 1 / 8, 1.0)
    values = [p for row in table.values() for p in row.values()]
    lo, hi = min(values), max(values)
    assert hi - lo < 0.01  # near-uniform α ...
    assert f"spread {lo:.4f}–{hi:.4f}" in ax.get_title()
    assert "uniform 1/8 = 0.1250" in ax.get_title()
    # ... maps to the pale middle of the colour scale, not to its ends
    assert all(0.45 < float(norm(v)) < 0.55 for v in values)
    plt.close(fig)


def test_heatmap_outlines_exactly_the_derived_genotype(tmp_path, monkeypatch):
    import nas_lightning.callbacks.heatmap as heatmap

    module, (alpha_normal, alpha_reduce) = tiny_darts()
    with __import__("torch").no_grad():
        alpha_normal[0, 4] += 3.0  # edge 0→2 strongly prefers sep_conv_3x3
        alpha_reduce[7, 2] += 3.0  # edge 2→4 (row 7) prefers avg_pool_3x3
    genotype = module.export()
    drawn = {}

    def spy(title, table, picked=()):
        fig = probs_figure(title, table, picked)
        ax = fig.axes[0]
        rows = [t.get_text() for t in ax.get_yticklabels()]
        cols = [t.get_text() for t in ax.get_xticklabels()]
        boxes = {
            (rows[round(p.get_y() + 0.5)], cols[round(p.get_x() + 0.5)])
            for p in ax.patches
            if (p.get_gid() or "").startswith("pick:")
        }
        drawn[title.split()[1]] = boxes
        return fig

    monkeypatch.setattr(heatmap, "probs_figure", spy)
    AlphaHeatmap().on_train_epoch_end(_trainer(tmp_path, 2), module)
    gene = {"normal": genotype.normal, "reduce": genotype.reduce}
    for group, pairs in gene.items():
        expect = {(f"{j}→{i // 2 + 2}", op) for i, (op, j) in enumerate(pairs)}
        assert drawn[group] == expect and len(expect) == 8
    assert ("0→2", "sep_conv_3x3") in drawn["normal"]
    assert ("2→4", "avg_pool_3x3") in drawn["reduce"]
