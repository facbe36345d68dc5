"""CIFAR-10 without torchvision: download, verify, extract and decode the python batches."""

from __future__ import annotations

import logging
import os
import pickle
import tarfile
import tempfile
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from nas_lightning.data.base import SearchDataModule, Transform
from nas_lightning.data.download import ensure_file

log = logging.getLogger(__name__)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def random_crop_flip(x: Tensor, padding: int = 4, fill: Tensor | None = None) -> Tensor:
    """Pad by ``padding``, crop back to the original size at a random offset, flip half the time.

    ``fill`` is the per-channel padding value; pass ``-mean/std`` to pad normalised images with
    what would have been black pixels, matching torchvision's ``RandomCrop(32, padding=4)``.
    """
    c, h, w = x.shape
    padded = x.new_zeros((c, h + 2 * padding, w + 2 * padding))
    if fill is not None:
        padded += fill.view(c, 1, 1).to(padded)
    padded[:, padding : padding + h, padding : padding + w] = x
    i, j = torch.randint(0, 2 * padding + 1, (2,)).tolist()
    out = padded[:, i : i + h, j : j + w]
    if torch.rand(()) < 0.5:
        out = out.flip(-1)
    return out.contiguous()


def _is_writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory`` (tried, not guessed from mode bits)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


class _CIFARTensors(Dataset):
    """Keeps images as uint8 (150 MB instead of 600 MB as float) and normalises per sample."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor]:
        x = self.images[idx].float().div_(255.0).sub_(self.mean).div_(self.std)
        return x, self.labels[idx]


class CIFAR10DataModule(SearchDataModule):
    """The real CIFAR-10 (50k train / 10k test, 3x32x32, 10 classes) as used by DARTS."""

    url: str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    md5: str = "c58f30108f718f92721af3b95e74349a"
    archive_name: str = "cifar-10-python.tar.gz"
    folder_name: str = "cifar-10-batches-py"
    download_timeout: float = 30.0

    def __init__(
        self,
        data_dir: str,
        download: bool = True,
        augment: bool = True,
        batch_size: int = 64,
        train_portion: float = 0.5,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
        cutout: int = 0,
        train_split: str = "search",
        url: str | None = None,
        md5: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            train_portion=train_portion,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
            pin_memory=pin_memory,
            cutout=cutout,
            train_split=train_split,
        )
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.augment = augment
        if url is not None:
            self.url = url
        if md5 is not None:
            self.md5 = md5.lower()
        self._batches_dir: Path | None = None

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def archive_path(self) -> Path:
        return self.data_dir / self.archive_name

    @property
    def batches_dir(self) -> Path:
        """Where the decoded batches are: ``data_dir``, or the cache when ``data_dir`` is
        read-only (see :meth:`_ensure_extracted`)."""
        return self._batches_dir or self.data_dir / self.folder_name

    @property
    def cache_batches_dir(self) -> Path:
        """Extraction target for a read-only ``data_dir``: ``$XDG_CACHE_HOME`` (default
        ``~/.cache``) ``/nas_lightning/cifar10/<md5>/``, one folder per archive."""
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return root / "nas_lightning" / "cifar10" / self.md5 / self.folder_name

    def prepare_data(self) -> None:
        """Download/extract on one process only (Lightning calls this on rank 0)."""
        self._ensure_extracted()

    def _train_transform(self) -> Transform | None:
        if not self.augment:
            return None
        fill = -torch.tensor(CIFAR10_MEAN) / torch.tensor(CIFAR10_STD)
        # functools.partial (not a lambda) so the dataset still pickles for spawned workers.
        return partial(random_crop_flip, padding=4, fill=fill)

    def _load(self) -> tuple[Dataset, Dataset | None]:
        self._ensure_extracted()
        train = [self._read_batch(name) for name in TRAIN_BATCHES]
        images = torch.cat([b[0] for b in train])
        labels = torch.cat([b[1] for b in train])
        test_images, test_labels = self._read_batch(TEST_BATCH)
        return _CIFARTensors(images, labels), _CIFARTensors(test_images, test_labels)

    # --- files --------------------------------------------------------------------------------
    def _ensure_extracted(self) -> None:
        names = (*TRAIN_BATCHES, TEST_BATCH)
        for folder in (self.data_dir / self.folder_name, self.cache_batches_dir):
            if all((folder / n).is_file() for n in names):
                self._batches_dir = folder
                return
        if (
            not self.archive_path.is_file()
            and self.data_dir.is_dir()
            and not _is_writable(self.data_dir)
        ):
            raise RuntimeError(
                f"paths.data_dir={self.data_dir} is read-only and holds no CIFAR-10 archive: "
                f"copy {self.archive_name} (from {self.url}) there, or point "
                "paths.data_dir at a writable directory"
            )
        ensure_file(
            self.archive_path,
            self.url,
            f"md5:{self.md5}",
            "CIFAR-10 archive",
            allow_download=self.download,
            timeout=self.download_timeout,
        )
        target = self.data_dir / self.folder_name
        if not _is_writable(self.data_dir):
            target = self.cache_batches_dir
            try:
                target.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise RuntimeError(
                    f"cannot extract {self.archive_path}: paths.data_dir={self.data_dir} is "
                    f"read-only and so is the cache {target.parent} ({err.strerror}); extract "
                    f"it yourself (tar xzf {self.archive_path} -C <dir>) and set "
                    "paths.data_dir=<dir>, or set XDG_CACHE_HOME to a writable directory"
                ) from err
            log.info("%s is read-only: extracting CIFAR-10 to %s", self.data_dir, target)
        self._extract(target)
        self._batches_dir = target

    def _extract(self, target: Path) -> None:
        """Extract into a temp dir beside ``target``, refusing path traversal, then move files
        in one by one."""
        with (
            tempfile.TemporaryDirectory(dir=target.parent) as tmp,
            tarfile.open(self.archive_path, "r:gz") as tar,
        ):
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name.replace("\\", "/")).parts
                if m.name.startswith(("/", "\\")) or os.path.isabs(m.name) or ".." in parts:
                    raise RuntimeError(
                        f"Refusing to extract {self.archive_path}: unsafe member path {m.name!r}"
                    )
                if not (m.isfile() or m.isdir()):
                    raise RuntimeError(
                        f"Refusing to extract {self.archive_path}: member {m.name!r} is not a "
                        "regular file or directory"
                    )
            tar.extractall(tmp, members=members, filter="data")
            src = Path(tmp) / self.folder_name
            if not src.is_dir():
                raise RuntimeError(
                    f"{self.archive_path} does not contain a '{self.folder_name}/' folder; "
                    "is it the CIFAR-10 python archive? Delete it and retry."
                )
            target.mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                os.replace(f, target / f.name)

    def _read_batch(self, name: str) -> tuple[Tensor, Tensor]:
        """Decode one pickled batch: ``b"data"`` is uint8 [N, 3072] in R,G,B planes, row-major."""
        path = self.batches_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 batch file {path} is missing; delete {self.batches_dir} to re-extract."
            )
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8)
            labels = np.asarray(entry[b"labels"], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                raise ValueError(f"data shape {data.shape} with {len(labels)} labels")
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise ValueError(f"labels outside 0..9: {labels.min()}..{labels.max()}")
        except Exception as err:
            raise RuntimeError(
                f"CIFAR-10 batch file {path} is corrupt ({type(err).__name__}: {err}); "
                f"delete {self.batches_dir} to re-extract it."
            ) from err
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
        return images, torch.from_numpy(labels)
