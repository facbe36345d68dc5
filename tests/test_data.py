"""Offline tests for the search datamodules (digits, synthetic, CIFAR-10 on fake archives)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_lightning.data import CIFAR10DataModule, DigitsDataModule, SyntheticDataModule, cifar10
from nas_lightning.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, random_crop_flip

N_PER_BATCH, N_TEST = 4, 6


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


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _make_archive(path: Path, extra: dict[str, bytes] | None = None) -> dict[str, np.ndarray]:
    """Write a CIFAR-10-style .tar.gz; return the raw arrays so tests can check decoding."""
    rng = np.random.default_rng(0)
    raw = {}
    with tarfile.open(path, "w:gz") as tar:
        for b in range(1, 7):
            name = f"data_batch_{b}" if b <= 5 else "test_batch"
            n = N_PER_BATCH if b <= 5 else N_TEST
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labels = [(3 * i + b) % 10 for i in range(n)]
            raw[name] = (data, np.array(labels))
            entry = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
            entry[b"filenames"] = [f"img_{i}.png".encode() for i in range(n)]
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(entry, protocol=2))
        for name, payload in (extra or {}).items():
            _add(tar, name, payload)
    return raw


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    (tmp_path / "remote").mkdir()
    path = tmp_path / "remote" / "fake-cifar.tar.gz"
    return path, _make_archive(path)


def _cifar(tmp_path: Path, archive_path: Path, **kw) -> CIFAR10DataModule:
    kw.setdefault("md5", _md5(archive_path))
    return CIFAR10DataModule(
        data_dir=str(tmp_path / "data"), url=archive_path.as_uri(), batch_size=4, **kw
    )


def test_cifar_download_verify_extract_and_decode(tmp_path, archive):
    path, raw = archive
    dm = _cifar(tmp_path, path)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10
    dm.setup("fit")
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()
    assert not list((tmp_path / "data").glob("*.part"))
    full = dm.search_train.dataset
    assert len(dm.search_train) + len(dm.search_val) == len(full) == 5 * N_PER_BATCH
    assert len(dm.test_set) == N_TEST
    want = np.concatenate([raw[f"data_batch_{b}"][1] for b in range(1, 6)])
    assert full.labels.tolist() == want.tolist() and full.labels.dtype == torch.int64
    assert dm.test_set.labels.tolist() == raw["test_batch"][1].tolist()
    # Flat index c*1024 + r*32 + col holds channel c, row r, column col.
    data = raw["data_batch_2"][0]
    k, c, r, col = 1, 2, 5, 17
    x, y = full[N_PER_BATCH + k]  # second image of data_batch_2
    expected = (data[k, c * 1024 + r * 32 + col] / 255.0 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x[c, r, col].item() == pytest.approx(expected, abs=1e-5)
    assert y.item() == raw["data_batch_2"][1][k]
    # Extracted batches are reused without the archive (and without downloading).
    (tmp_path / "data" / "cifar-10-python.tar.gz").unlink()
    path.unlink()
    again = CIFAR10DataModule(str(tmp_path / "data"), download=False, url="http://127.0.0.1:9/")
    again.setup()
    assert len(again.test_set) == N_TEST


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    """A directory nothing can be written to (root writes through mode bits, so for root the
    writability probe is told the truth the mode bits state)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:
        probe = cifar10._is_writable
        monkeypatch.setattr(cifar10, "_is_writable", lambda d: Path(d) != ro and probe(d))
    yield ro
    ro.chmod(0o755)


def test_cifar_read_only_dir_with_the_archive_extracts_to_the_cache(
    tmp_path, archive, read_only_dir, monkeypatch
):
    path, raw = archive
    shutil.copy(path, read_only_dir / CIFAR10DataModule.archive_name)
    read_only_dir.chmod(0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dm = CIFAR10DataModule(str(read_only_dir), download=False, md5=_md5(path), batch_size=4)
    dm.setup()
    cache = tmp_path / "cache" / "nas_lightning" / "cifar10" / _md5(path) / "cifar-10-batches-py"
    assert dm.batches_dir == cache and (cache / "test_batch").is_file()
    assert os.listdir(read_only_dir) == [CIFAR10DataModule.archive_name]  # nothing written
    assert dm.test_set.labels.tolist() == raw["test_batch"][1].tolist()


def test_cifar_read_only_dir_and_no_cache_say_where_to_point(
    tmp_path, archive, read_only_dir, monkeypatch
):
    path, _ = archive
    shutil.copy(path, read_only_dir / CIFAR10DataModule.archive_name)
    read_only_dir.chmod(0o555)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # cannot hold a directory
    dm = CIFAR10DataModule(str(read_only_dir), download=False, md5=_md5(path))
    archive_path = read_only_dir / CIFAR10DataModule.archive_name
    with pytest.raises(RuntimeError) as err:
        dm.setup()
    assert str(err.value) == (
        f"cannot extract {archive_path}: paths.data_dir={read_only_dir} is read-only and so is "
        f"the cache {tmp_path / 'file' / 'nas_lightning' / 'cifar10' / _md5(path)} (Not a "
        f"directory); extract it yourself (tar xzf {archive_path} -C <dir>) and set "
        "paths.data_dir=<dir>, or set XDG_CACHE_HOME to a writable directory"
    )


def test_cifar_read_only_dir_without_archive(read_only_dir):
    read_only_dir.chmod(0o555)
    with pytest.raises(RuntimeError) as err:
        CIFAR10DataModule(str(read_only_dir)).setup()
    assert str(err.value) == (
        f"paths.data_dir={read_only_dir} is read-only and holds no CIFAR-10 archive: copy "
        f"cifar-10-python.tar.gz (from {CIFAR10DataModule.url}) there, or point paths.data_dir "
        "at a writable directory"
    )


def test_cifar_missing_archive_without_download(tmp_path, archive):
    path, _ = archive
    dm = _cifar(tmp_path, path, download=False)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert path.as_uri() in msg and str(tmp_path / "data" / "cifar-10-python.tar.gz") in msg
    assert "manually" in msg


def test_cifar_unreachable_url(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), url="http://127.0.0.1:9/x.tar.gz")
    with pytest.raises(RuntimeError, match="manually") as err:
        dm.setup()
    assert "http://127.0.0.1:9/x.tar.gz" in str(err.value)
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


def test_cifar_wrong_md5(tmp_path, archive):
    path, _ = archive
    dm = _cifar(tmp_path, path, md5="0" * 32)
    with pytest.raises(RuntimeError) as err:
        dm.setup()
    assert "0" * 32 in str(err.value) and _md5(path) in str(err.value)
    assert not (tmp_path / "data" / "cifar-10-python.tar.gz").exists()
    # A pre-existing bad archive is named, with advice to delete it.
    (tmp_path / "data" / "cifar-10-python.tar.gz").write_bytes(path.read_bytes())
    with pytest.raises(RuntimeError, match="Delete it") as err:
        _cifar(tmp_path, path, md5="0" * 32).setup()
    assert "cifar-10-python.tar.gz" in str(err.value) and _md5(path) in str(err.value)


def test_cifar_refuses_path_traversal(tmp_path):
    path = tmp_path / "evil.tar.gz"
    _make_archive(path, extra={"cifar-10-batches-py/../../escaped.txt": b"pwned"})
    with pytest.raises(RuntimeError, match="unsafe member"):
        _cifar(tmp_path, path).setup()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_cifar_corrupt_batch_named(tmp_path, archive):
    path, _ = archive
    dm = _cifar(tmp_path, path)
    dm.prepare_data()
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(RuntimeError, match="data_batch_3.*corrupt"):
        dm.setup()


def test_random_crop_flip_is_a_shifted_or_flipped_crop():
    x = torch.randn(3, 8, 8)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    candidates = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
    candidates += [c.flip(-1) for c in candidates]
    changed = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out = random_crop_flip(x, padding=2)
        assert out.shape == x.shape
        assert any(torch.equal(out, c) for c in candidates)
        changed += not torch.equal(out, x)
    assert changed > 0


def test_cifar_augmentation_only_on_search_train(tmp_path, archive):
    path, _ = archive
    dm = _cifar(tmp_path, path, augment=True)
    dm.setup()
    full = dm.search_train.dataset
    clean = full[dm.search_train.indices[0]][0]
    outs = []
    for seed in range(10):
        torch.manual_seed(seed)
        outs.append(dm.search_train[0][0])
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert any(not torch.equal(o, clean) for o in outs)
    # Padding is black in pixel space, i.e. -mean/std after normalisation.
    pad_vals = {round(v, 4) for o in outs for v in o[0].flatten().tolist()}
    assert any(abs(v + CIFAR10_MEAN[0] / CIFAR10_STD[0]) < 1e-3 for v in pad_vals)
    # The evaluation loader and the architecture ("val") stream see clean images.
    assert dm.search_val.transform is None
    xs = torch.cat([x for x, _ in dm.val_dataloader()])
    expect = torch.stack([full[i][0] for i in dm.search_val.indices])
    assert torch.equal(xs, expect)
    val_stream = _first_batch(dm.train_dataloader())["val"][0]
    assert all(any(torch.equal(v, e) for e in expect) for v in val_stream)


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
