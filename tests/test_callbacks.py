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
