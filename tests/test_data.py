"""Offline tests for the search datamodules (digits, synthetic; CIFAR-10 in test_cifar_data)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_lightning.data import CIFAR10DataModule, DigitsDataModule, SyntheticDataModule


def _first_batch(loader):
    batch, _, _ = next(iter(loader))
    return batch


BAD = [("train_portion", 0), ("train_portion", 1.5), ("batch_size", 0), ("num_classes", 1)]
BAD += [("shape", s) for s in [(3, 32), (3, 0, 32), (3, 32, 32, 1), "abc"]]


@pytest.mark.parametrize("key,value", BAD)
def test_invalid_arguments_name_the_value(key, value):
    with pytest.raises(ValueError, match=rf"{key}.*{re.escape(repr(value))}"):
        SyntheticDataModule(**{key: value})


def test_digits_shapes_and_splits():
    dm = DigitsDataModule(batch_size=32, seed=0)
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10  # known before setup
    dm.setup("fit")
    tr, va, te = dm.search_train, dm.search_val, dm.test_set
    assert len(te) == 360 and len(tr) + len(va) == 1797 - 360
    assert len(tr) == int(0.5 * (1797 - 360))
    assert set(tr.indices).isdisjoint(va.indices)
    # The held-out test images never appear in the search pool.
    search_orig = set(dm.pool_indices[tr.indices + va.indices].tolist())
    assert search_orig.isdisjoint(dm.test_indices.tolist())
    assert search_orig | set(dm.test_indices.tolist()) == set(range(1797))
    x, y = tr[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(te.tensors[1].tolist()) == set(range(10))  # stratified: all classes present
    pool_x = dm.search_train.dataset.tensors[0]
    assert abs(pool_x.mean().item()) < 1e-4 and abs(pool_x.std().item() - 1) < 1e-3


def test_digits_deterministic_for_seed():
    a, b, c = DigitsDataModule(seed=3), DigitsDataModule(seed=3), DigitsDataModule(seed=4)
    for dm in (a, b, c):
        dm.setup()
    assert a.search_train.indices == b.search_train.indices
    assert a.search_train.indices != c.search_train.indices
    # The test split is fixed by test_seed, independent of the search seed.
    assert np.array_equal(a.test_indices, c.test_indices)
    ba, bb = _first_batch(a.train_dataloader()), _first_batch(b.train_dataloader())
    assert torch.equal(ba["train"][0], bb["train"][0]) and torch.equal(ba["val"][1], bb["val"][1])


def test_digits_loaders():
    dm = DigitsDataModule(batch_size=32, eval_batch_size=100)
    loader = dm.train_dataloader()  # set up lazily
    batch = _first_batch(loader)
    assert set(batch) == {"train", "val"}
    for x, y in batch.values():
        assert x.shape == (32, 1, 8, 8) and y.shape == (32,) and y.dtype == torch.int64
    assert len(loader) == max(len(dm.search_train), len(dm.search_val)) // 32
    # Validation is ordered and clean: it reproduces search_val exactly.
    ys = torch.cat([y for _, y in dm.val_dataloader()])
    assert torch.equal(ys, torch.stack([dm.search_val[i][1] for i in range(len(dm.search_val))]))
    assert sum(len(y) for _, y in dm.test_dataloader()) == 360


def test_lightning_training_step_gets_dict_batches():
    import lightning.pytorch as pl

    seen = []

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(2 * 4 * 4, 3)

        def training_step(self, batch, batch_idx):
            seen.append(tuple(batch["train"][0].shape) + tuple(batch["val"][0].shape))
            x, y = batch["train"]
            return torch.nn.functional.cross_entropy(self.net(x.flatten(1)), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val/acc", (self.net(x.flatten(1)).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SyntheticDataModule(num_samples=64, shape=(2, 4, 4), num_classes=3, batch_size=8)
    off = ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary")
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=1, **dict.fromkeys(off, False))
    trainer.fit(Probe(), datamodule=dm)
    assert seen == [(8, 2, 4, 4, 8, 2, 4, 4)] * 4  # 32 samples per split / 8
    assert "val/acc" in trainer.callback_metrics


def test_synthetic_shape_determinism_and_learnability():
    kw = dict(num_samples=300, shape=(2, 5, 7), num_classes=3, seed=1)
    dm, dm2 = SyntheticDataModule(**kw), SyntheticDataModule(**kw)
    assert dm.input_shape == (2, 5, 7) and dm.num_classes == 3
    dm.setup()
    dm2.setup()
    x, y = dm.search_train[0]
    assert x.shape == (2, 5, 7) and y.dtype == torch.int64
    full_x, full_y = dm.search_train.dataset.tensors
    assert torch.equal(full_x, dm2.search_train.dataset.tensors[0])
    assert torch.bincount(full_y).tolist() == [100, 100, 100]
    # Nearest class mean, fitted on search-train, beats chance (1/3) by far on search-val.
    tx, ty = full_x[dm.search_train.indices].flatten(1), full_y[dm.search_train.indices]
    means = torch.stack([tx[ty == c].mean(0) for c in range(3)])
    vx, vy = next(iter(dm.val_dataloader()))
    acc = (torch.cdist(vx.flatten(1), means).argmin(1) == vy).float().mean().item()
    assert acc > 0.9


def test_synthetic_without_test_set():
    dm = SyntheticDataModule(num_samples=16, shape=(1, 2, 2), num_test_samples=0)
    with pytest.raises(RuntimeError, match="no test set"):
        dm.test_dataloader()


CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"


@pytest.mark.parametrize("name", ["digits", "cifar10", "synthetic"])
def test_dataset_configs_spell_out_constructor_defaults(tmp_path, name):
    import inspect

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    cls = {"digits": DigitsDataModule, "cifar10": CIFAR10DataModule}.get(name, SyntheticDataModule)
    params = inspect.signature(cls.__init__).parameters
    assert set(node) - {"_target_"} == set(params) - {"self"}
    values = OmegaConf.to_container(node, resolve=False)
    for key, p in params.items():
        if key == "seed":  # follows the run's global seed
            assert values[key] == "${seed}"
        elif key not in ("self", "data_dir"):
            default = list(p.default) if isinstance(p.default, tuple) else p.default
            assert values[key] == default, key
    cfg = OmegaConf.create({"seed": 0, "paths": {"data_dir": str(tmp_path)}, "dataset": node})
    dm = instantiate(cfg.dataset)  # constructing must not touch the network or disk
    assert type(dm) is cls and dm.num_classes == 10
    if name == "cifar10":
        assert dm.data_dir == tmp_path and list(tmp_path.iterdir()) == []
    if name == "synthetic":
        assert dm.input_shape == (3, 32, 32) and dm.batch_size == 32


def test_full_split_trains_on_the_whole_pool_without_changing_the_search_split():
    search, full = DigitsDataModule(seed=5), DigitsDataModule(seed=5, train_split="full")
    search.setup(), full.setup()
    assert full.search_train.indices == search.search_train.indices  # search split untouched
    pool = set(search.search_train.indices) | set(search.search_val.indices)
    assert sorted(full.full_train.indices) == sorted(pool) == list(range(1797 - 360))
    loader = full.train_dataloader()
    x, y = next(iter(loader))  # plain (x, y) batches, not the search dict
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    assert len(loader) == (1797 - 360) // 64
    assert sum(len(y) for _, y in full.test_dataloader()) == 360
    with pytest.raises(ValueError, match="train_split='all'.*valid: search, full"):
        DigitsDataModule(train_split="all")


def test_cutout_erases_one_clipped_square():
    from nas_lightning.data.augment import Cutout

    torch.manual_seed(0)
    sizes = set()
    for _ in range(50):
        out = Cutout(4)(torch.ones(2, 8, 8))
        zero = (out == 0).all(0)  # the same square in every channel
        assert ((out == 0).any(0) == zero).all()
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols)  # a rectangle
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4  # clipped at the borders
        sizes.add((len(rows), len(cols)))
    assert (4, 4) in sizes and len(sizes) > 1
    x = torch.randn(1, 8, 8)
    assert torch.equal(Cutout(0)(x), x)
    with pytest.raises(ValueError, match="cutout length.*-1"):
        Cutout(-1)


def test_cutout_applies_to_training_images_only():
    dm = DigitsDataModule(cutout=3, train_split="full")
    dm.setup()
    torch.manual_seed(0)
    i = dm.full_train.indices[0]
    clean = dm.full_train.dataset[i][0]
    erased = dm.full_train[0][0]
    assert (erased != clean).any() and ((erased == clean) | (erased == 0)).all()
    assert dm.search_val.transform is None
