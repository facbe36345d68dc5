"""scikit-learn's bundled 8x8 digits: a real, offline, seconds-fast dataset for smoke searches."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from nas_lightning.data.base import SearchDataModule


class DigitsDataModule(SearchDataModule):
    """1797 grayscale 8x8 digits, 10 classes, shipped with scikit-learn (no download).

    A stratified test split is held out first with its own ``test_seed`` so that searches with
    different ``seed`` values are all evaluated on the *same* unseen images; the search
    train/val split is drawn from the remaining pool.
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
        test_fraction: float = 0.2,
        test_seed: int = 0,
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
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(
                f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}"
            )
        self.test_fraction = float(test_fraction)
        self.test_seed = test_seed
        self.pool_indices: np.ndarray | None = None
        self.test_indices: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 8, 8)

    def _load(self) -> tuple[Dataset, Dataset | None]:
        """Split off the test set, then standardise with the pool's statistics only."""
        x, y = load_digits(return_X_y=True)
        x = x.astype(np.float32) / 16.0
        pool_idx, test_idx = train_test_split(
            np.arange(len(y)),
            test_size=self.test_fraction,
            stratify=y,
            random_state=self.test_seed,
        )
        # Indices into the original 1797 images, so callers can check the splits never overlap.
        self.pool_indices = np.asarray(pool_idx)
        self.test_indices = np.asarray(test_idx)
        mean = float(x[pool_idx].mean())
        std = float(x[pool_idx].std())
        x = (x - mean) / std
        return self._as_dataset(x[pool_idx], y[pool_idx]), self._as_dataset(
            x[test_idx], y[test_idx]
        )

    @staticmethod
    def _as_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).view(-1, 1, 8, 8)
        return TensorDataset(images, torch.from_numpy(y.astype(np.int64)))
