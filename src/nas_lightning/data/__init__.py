"""Datamodules for differentiable NAS: each serves a bilevel (weights / architecture) split."""

from nas_lightning.data.base import SearchDataModule
from nas_lightning.data.cifar10 import CIFAR10DataModule
from nas_lightning.data.digits import DigitsDataModule
from nas_lightning.data.synthetic import SyntheticDataModule
from nas_lightning.data.synthetic_text import SyntheticTextDataModule
from nas_lightning.data.text import TextSearchDataModule
from nas_lightning.data.text_files import PTBDataModule, WikiText2DataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "PTBDataModule",
    "SearchDataModule",
    "SyntheticDataModule",
    "SyntheticTextDataModule",
    "TextSearchDataModule",
    "WikiText2DataModule",
]
