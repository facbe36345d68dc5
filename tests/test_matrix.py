"""Every algorithm on every space, end to end: each pair searches (α moves, genotype.json is
written and valid for its space) or is refused with a one-line reason."""

import json

import pytest
import torch

from nas_lightning.genotype import genotype_from_dict
from nas_lightning.run import build

ALGOS = ["darts", "darts_2nd", "proxyless", "gdas", "pcdarts"]
SPACES = ["cnn", "mobilenet", "rnn"]
REFUSED = {
    ("pcdarts", "mobilenet"): "PC-DARTS partial-channel mixing cannot search MobileNetSearchSpace: "
    "partial channel connections and edge normalisation need cell edges",
    ("pcdarts", "rnn"): "PC-DARTS partial-channel mixing cannot search RNNSearchSpace: "
    "a recurrent cell's edges are gated activations",
}
TINY = [
    "debug=tiny",
    "logger=none",
    "callbacks=none",
    "+callbacks.genotype_writer._target_=nas_lightning.callbacks.GenotypeWriter",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_on_space(compose_cfg, tmp_path, one_thread, algo, space):
    cfg = compose_cfg(f"algo={algo}", f"space={space}", *TINY)
    if (algo, space) in REFUSED:
        with pytest.raises(Exception, match=REFUSED[algo, space]) as err:
            build(cfg)
        assert "\n" not in str(err.value.__cause__ or err.value).strip()  # one line
        return
    torch.manual_seed(0)
    datamodule, module, trainer = build(cfg)
    before = [a.detach().clone() for a in module.arch_parameters()]
    trainer.fit(module, datamodule=datamodule)
    moved = [
        not torch.equal(b, a.detach())
        for b, a in zip(before, module.arch_parameters(), strict=True)
    ]
    assert all(moved), moved
    written = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert written == module.export().to_dict()
    genotype = genotype_from_dict(written)
    if space == "cnn":
        assert len(genotype.normal) == 2 * module.space.nodes
        assert "none" not in genotype.ops()
    elif space == "rnn":
        assert len(genotype.recurrent) == module.space.nodes and "none" not in genotype.ops()
    else:
        names = module.space.op_names_per_block()
        assert all(op in n for op, n in zip(genotype.blocks, names, strict=True))


@pytest.mark.parametrize("algo", ["darts_2nd", "gdas", "pcdarts", "proxyless"])
def test_load_from_checkpoint_rebuilds_the_module_without_hydra(compose_cfg, tmp_path, algo):
    """``<Algo>.load_from_checkpoint(path)``: space, mixing, α, weights and options restored."""
    cfg = compose_cfg(
        f"algo={algo}",
        *TINY,
        "+callbacks.last._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.last.dirpath={tmp_path}/ckpt",
        "+callbacks.last.filename=last",
    )
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    loaded = type(module).load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert type(loaded.mixing) is type(module.mixing)
    assert loaded.export().to_dict() == module.export().to_dict()
    for (name, a), (_, b) in zip(
        module.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all()), name
    assert loaded.hparams == module.hparams
