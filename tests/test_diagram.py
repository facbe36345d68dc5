"""Genotype pictures and text: the cell diagram, the block strip, the callback, the show CLI."""

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.patches import FancyArrowPatch
from mobilenet_tiny import TINY
from test_cli import _run
from test_models import DARTS_V2, tiny_block_genotype

from nas_lightning.callbacks import CellDiagram
from nas_lightning.diagram import genotype_figure, write_diagram
from nas_lightning.genotype import save_genotype
from nas_lightning.genotype_show import main as show_main
from nas_lightning.genotype_views import describe, picks
from nas_lightning.spaces import MobileNetSearchSpace


def _texts(ax, prefix):
    return {
        t.get_gid()[len(prefix) :]: t.get_text()
        for t in ax.texts
        if (t.get_gid() or "").startswith(prefix)
    }


def test_cell_diagram_labels_nodes_and_edges():
    fig = genotype_figure(DARTS_V2)
    normal, reduce = fig.axes
    assert normal.get_title() == "normal cell" and reduce.get_title() == "reduce cell"
    for ax, gene in ((normal, DARTS_V2.normal), (reduce, DARTS_V2.reduce)):
        nodes = _texts(ax, "node:")
        assert set(nodes) == {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"}
        assert nodes["c_{k-2}"] == "$c_{k-2}$" and nodes["2"] == "2"
        edges = [
            (t.get_gid(), t.get_text()) for t in ax.texts if (t.get_gid() or "")[:5] == "edge:"
        ]
        expect = [(f"edge:{j}->{i // 2 + 2}", op) for i, (op, j) in enumerate(gene)]
        assert sorted(edges) == sorted(expect)
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        assert len(arrows) == len(gene) + 4  # one per chosen op, one per concatenated node
    plt.close(fig)


def test_diagram_png_is_written(tmp_path):
    path = write_diagram(DARTS_V2, tmp_path / "sub" / "cell.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_block_genotype_strip_and_text(one_thread):
    genotype = tiny_block_genotype(MobileNetSearchSpace(**TINY))
    genotype.blocks[1] = "zero"
    fig = genotype_figure(genotype)
    blocks = _texts(fig.axes[0], "block:")
    assert blocks == {
        lab: f"{lab}\n{op}" for lab, op in zip(genotype.labels, genotype.blocks, strict=True)
    }
    assert "1 skipped" in fig.axes[0].get_title()
    plt.close(fig)
    text = describe(genotype)
    assert "4 blocks, 1 skipped" in text and "s0b1  zero  (block skipped: identity)" in text
    assert picks(genotype) == {"blocks": set(zip(genotype.labels, genotype.blocks, strict=True))}


def test_describe_lists_nodes_inputs_and_ops():
    lines = describe(DARTS_V2).splitlines()
    assert lines[1] == "normal cell: c_{k} = concat(node 0, node 1, node 2, node 3)"
    assert lines[2] == "  node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})"
    assert lines[5] == "  node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)"
    assert lines[8] == "  node 1 = skip_connect(node 0) + max_pool_3x3(c_{k-1})"


def test_callback_writes_the_diagram_and_logs_it_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    trainer = SimpleNamespace(
        is_global_zero=True,
        default_root_dir=str(tmp_path),
        loggers=[logger],
        global_step=7,
        current_epoch=2,
    )
    callback = CellDiagram()
    callback.on_fit_end(trainer, SimpleNamespace(export=lambda: DARTS_V2))
    assert (tmp_path / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert events.Tags()["images"] == ["arch/genotype_diagram"]
    assert events.Images("arch/genotype_diagram")[0].step == 2


def test_show_prints_and_writes_the_diagram(tmp_path, capsys):
    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    assert show_main(["show", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)" in out
    assert f"diagram written to {tmp_path / 'genotype.png'}" in out
    assert (tmp_path / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="missing.json does not exist"):
        show_main(["show", str(tmp_path / "missing.json")])
    (tmp_path / "bad.json").write_text('{"type": "rnn"}')
    with pytest.raises(SystemExit, match="unknown genotype type 'rnn'"):
        show_main(["show", str(tmp_path / "bad.json")])


@pytest.mark.slow
def test_python_m_genotype_show(tmp_path):
    save_genotype(DARTS_V2, tmp_path / "genotype.json")
    proc = _run(["-m", "nas_lightning.genotype", "show", str(tmp_path / "genotype.json")], tmp_path)
    assert "node 0 = sep_conv_3x3(c_{k-2}) + sep_conv_3x3(c_{k-1})" in proc.stdout
    assert (tmp_path / "genotype.png").is_file()


def test_recurrent_genotype_diagram_text_and_heatmap_picks():
    from nas_lightning.genotype import RecurrentGenotype

    gene = [("tanh", 0), ("relu", 1), ("sigmoid", 1), ("identity", 0)]
    g = RecurrentGenotype(recurrent=gene, concat=[1, 2, 3, 4])
    (ax,) = genotype_figure(g).axes
    assert set(_texts(ax, "node:")) == {"x_{t}, h_{t-1}", "1", "2", "3", "4", "h_{t}"}
    assert _texts(ax, "edge:") == {f"{j}->{i + 1}": op for i, (op, j) in enumerate(gene)}
    text = describe(g).splitlines()
    assert text[0] == "DARTS recurrent cell genotype"
    assert text[-1] == "  state 4 = identity(state 0)"
    # heatmap rows of the recurrent group are labelled like spaces/rnn_cell.edge_label
    from nas_lightning.spaces.rnn_cell import edge_label

    assert picks(g) == {"recurrent": {(edge_label(i, j), op) for i, (op, j) in enumerate(gene)}}
    plt.close("all")
