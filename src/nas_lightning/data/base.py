"""Shared datamodule for differentiable NAS: one training set split into two search halves.

DARTS-style bilevel search optimises the network weights on one half of the training data
("search-train") and the architecture parameters on the other half ("search-val"), so every
training step needs a batch from *both* halves.  :class:`SearchDataModule` owns that split and
hands Lightning a :class:`CombinedLoader` yielding ``{"train": (x, y), "val": (x, y)}``.

A retrain of a derived network (``train_split="full"``) instead trains on the whole pool (both
halves, augmented) with plain ``(x, y)`` batches and is evaluated on the held-out test set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from nas_lightning.data.augment import Chain, Cutout

Transform = Callable[[Tensor], Tensor]
TRAIN_SPLITS = ("search", "full")


def check_int(name: str, value: object, minimum: int = 1, allow_none: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int >= ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"None or an integer >= {minimum}" if allow_none else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")


class SplitDataset(Dataset):
    """A view of ``dataset`` restricted to ``indices``, optionally augmenting each sample.

    Unlike :class:`torch.utils.data.Subset` it carries its own transform, so the same
    underlying tensors can back an augmented and a clean view without being copied.
    """

    def __init__(
        self, dataset: Dataset, indices: Sequence[int], transform: Transform | None = None
    ) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor]:
        x, y = self.dataset[self.indices[idx]]
        if self.transform is not None:
            x = self.transform(x)
        return x, y


class EpochShuffle(Sampler[int]):
    """A shuffle whose order depends only on ``(seed, epoch)``.

    A DataLoader's own generator advances once per epoch, so a run restarted from a checkpoint
    would replay epoch 0's order. Lightning calls ``set_epoch`` before each epoch; without it
    (plain iteration) each pass counts as the next epoch. ``worker_generator`` (the DataLoader's
    ``generator``, which seeds its worker processes) is re-seeded per epoch as well, so worker
    augmentations also replay after a restart.
    """

    def __init__(self, size: int, seed: int, worker_generator: torch.Generator | None = None):
        self.size, self.seed, self.epoch = size, int(seed), 0
        self.worker_generator = worker_generator

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.worker_generator is not None:
            self.worker_generator.manual_seed(self._seed(1))

    def _seed(self, stream: int) -> int:
        return (self.seed * 1_000_003 + self.epoch * 2 + stream) % (2**63)

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self._seed(0)))
        self.set_epoch(self.epoch + 1)  # a second pass without set_epoch gets a new order
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.size


class SearchDataModule(pl.LightningDataModule):
    """Base class: subclasses provide the data via :meth:`_load`, this class splits and serves it.

    ``num_classes`` and ``input_shape`` must be known right after construction because the
    search space (stem channels, classifier width) is built before :meth:`setup` runs.
    """

    def __init__(
        self,
        batch_size: int = 64,
        train_portion: float = 0.5,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
        cutout: int = 0,
        train_split: str = "search",
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size)
        check_int("eval_batch_size", eval_batch_size, allow_none=True)
        if not 0.0 < float(train_portion) < 1.0:
            raise ValueError(
                f"train_portion must lie strictly between 0 and 1, got {train_portion!r}"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        if train_split not in TRAIN_SPLITS:
            raise ValueError(
                f"train_split={train_split!r} is invalid; valid: {', '.join(TRAIN_SPLITS)} "
                "(search: the two search halves; full: the whole pool, for a retrain)"
            )
        self.cutout = Cutout(cutout)
        self.train_split = train_split
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.train_portion = float(train_portion)
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.search_train: SplitDataset | None = None
        self.search_val: SplitDataset | None = None
        self.full_train: SplitDataset | None = None
        self.test_set: Dataset | None = None
        self._loaded = False

    # --- subclass interface -------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def _load(self) -> tuple[Dataset, Dataset | None]:
        """Return ``(full training set, test set or None)`` of ``(float [C,H,W], int64 [])``."""
        raise NotImplementedError

    def _train_transform(self) -> Transform | None:
        """Augmentation of the training split (search-train, or the full pool of a retrain)
        before cutout; ``None`` means none. The architecture ("val") stream is never augmented.
        """
        return None

    # --- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load and split once; later calls (one per Trainer stage) are no-ops."""
        if self._loaded:
            return
        full, test = self._load()
        n = len(full)
        n_train = int(n * self.train_portion)
        if n_train < 1 or n_train >= n:
            raise ValueError(
                f"train_portion={self.train_portion} leaves an empty split of a dataset with "
                f"{n} samples; use more samples or a different train_portion"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        augment = Chain(self._train_transform(), self.cutout if self.cutout.length else None)
        augment = augment if augment.transforms else None
        self.search_train = SplitDataset(full, perm[:n_train], augment)
        self.full_train = SplitDataset(full, perm, augment)
        self.search_val = SplitDataset(full, perm[n_train:])
        self.test_set = test
        self._loaded = True

    def train_dataloader(self) -> CombinedLoader | DataLoader:
        """Both search halves, cycled to the longer one, so each step gets weights+arch batches.

        The ``"val"`` stream is shuffled but not augmented, as in the original DARTS code.
        With ``train_split="full"``: one shuffled, augmented loader over the whole pool.
        """
        self._ensure_setup()
        if self.train_split == "full":
            return self._loader(self.full_train, self.batch_size, self.seed)
        loaders = {
            "train": self._loader(self.search_train, self.batch_size, self.seed),
            "val": self._loader(self.search_val, self.batch_size, self.seed + 1),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        """Clean, ordered search-val split: this is what ``val/acc`` is measured on."""
        self._ensure_setup()
        return self._loader(self.search_val, self.eval_batch_size, None)

    def test_dataloader(self) -> DataLoader:
        """Held-out test set; never touched during search."""
        self._ensure_setup()
        if self.test_set is None:
            raise RuntimeError(
                f"{type(self).__name__} has no test set; evaluate with val_dataloader() instead"
            )
        return self._loader(self.test_set, self.eval_batch_size, None)

    # --- helpers ------------------------------------------------------------------------------
    def _ensure_setup(self) -> None:
        if not self._loaded:
            self.setup(None)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle_seed: int | None) -> DataLoader:
        """``shuffle_seed``: shuffle with :class:`EpochShuffle` (``None``: keep the order)."""
        shuffle = shuffle_seed is not None
        generator = torch.Generator() if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffle(len(dataset), shuffle_seed, generator) if shuffle else None,
            # Dropping the ragged last batch keeps BatchNorm statistics sane during search,
            # but only when that would not drop everything.
            drop_last=shuffle and len(dataset) >= batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )
