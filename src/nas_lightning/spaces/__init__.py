"""Search spaces (supernets) behind one interface: :class:`SearchSpace`."""

from nas_lightning.spaces.base import SearchSpace
from nas_lightning.spaces.cnn import DARTS_OPS, CNNSearchSpace
from nas_lightning.spaces.mobilenet import MobileNetSearchSpace
from nas_lightning.spaces.rnn import RNNSearchSpace

__all__ = ["DARTS_OPS", "CNNSearchSpace", "MobileNetSearchSpace", "RNNSearchSpace", "SearchSpace"]
