"""Mixing strategies: each algorithm's way of running the choice points of any space."""

from nas_lightning.algos.mixing.base import MixingStrategy
from nas_lightning.algos.mixing.gumbel import GumbelMixing
from nas_lightning.algos.mixing.partial import PartialChannelMixing
from nas_lightning.algos.mixing.softmax import SoftmaxMixing

__all__ = ["GumbelMixing", "MixingStrategy", "PartialChannelMixing", "SoftmaxMixing"]
