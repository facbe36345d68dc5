"""Datamodules for differentiable NAS: each serves a bilevel (weights / architecture) split."""

from nas_lightning.data.base import SearchDataModule
from nas_lightning.data.cifar10 import CIFAR10DataModule
from nas_lightning.data.digits import DigitsDataModule
from nas_lightning.data.synthetic import SyntheticDataModule

__all__ = ["CIFAR10DataModule", "DigitsDataModule", "SearchDataModule", "SyntheticDataModule"]
