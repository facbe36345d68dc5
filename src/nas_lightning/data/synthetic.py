"""Random but learnable data of any shape, for tests and throughput benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

from nas_lightning.data.base import SearchDataModule


class SyntheticDataModule(SearchDataModule):
    """Gaussian noise around one random mean pattern per class.

    Pure noise would pin accuracy at chance, which makes "did the search learn anything?"
    untestable; a per-class mean makes the labels learnable while staying fully deterministic
    for a given ``seed``. Classes are balanced (label ``i % num_classes``).
    """

    # Mean-pattern scale relative to unit noise: separable, but not instantly so.
    signal: float = 1.0

    def __init__(
        self,
        num_samples: int = 256,
        shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        num_test_samples: int = 64,
        batch_size: int = 32,
        train_portion: float = 0.5,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
        pin_memory: bool = False,
        cutout: int = 0,
        train_split: str = "search",
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
        dims = tuple(shape) if not isinstance(shape, (str, bytes)) else ()
        if len(dims) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims
        ):
            raise ValueError(f"shape must be 3 positive integers (C, H, W), got {shape!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples!r}")
        if num_test_samples < 0:
            raise ValueError(f"num_test_samples must be >= 0, got {num_test_samples!r}")
        self.num_samples = num_samples
        self.num_test_samples = num_test_samples
        self._shape: tuple[int, int, int] = (dims[0], dims[1], dims[2])
        self._num_classes = num_classes

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    def _load(self) -> tuple[Dataset, Dataset | None]:
        gen = torch.Generator().manual_seed(self.seed)
        means = self.signal * torch.randn((self._num_classes, *self._shape), generator=gen)
        train = self._sample(means, self.num_samples, gen)
        test = self._sample(means, self.num_test_samples, gen) if self.num_test_samples else None
        return train, test

    def _sample(self, means: torch.Tensor, n: int, gen: torch.Generator) -> TensorDataset:
        labels = torch.arange(n, dtype=torch.int64) % self._num_classes
        labels = labels[torch.randperm(n, generator=gen)]
        noise = torch.randn((n, *self._shape), generator=gen)
        return TensorDataset(means[labels] + noise, labels)
