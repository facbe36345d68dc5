"""Search spaces (supernets) behind one interface: :class:`SearchSpace`."""

from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.cnn import DARTS_OPS, CNNSearchSpace

__all__ = ["DARTS_OPS", "CNNSearchSpace", "SearchSpace"]
