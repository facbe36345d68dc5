"""CIFAR-10 data module on a small archive the tests write in the real format: download,
md5, safe extraction, read-only directories, decoding, augmentation."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_lightning.data import CIFAR10DataModule, cifar10
from nas_lightning.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, random_crop_flip

N_PER_BATCH, N_TEST = 4, 6


def _first_batch(loader):
    batch, _, _ = next(iter(loader))
    return batch


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
