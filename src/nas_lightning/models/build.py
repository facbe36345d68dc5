"""Build the derived (evaluation) network of any genotype, with fresh weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from nas_lightning.genotype import BlockGenotype, CellGenotype
from nas_lightning.models.darts_net import DartsNetwork


def build_proxyless_network(
    genotype: BlockGenotype,
    in_channels: int | None = None,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
) -> nn.Module:
    """The single-path MobileNet of ``genotype`` (its ``space`` holds the constructor args),
    freshly initialised; ``in_channels``/``num_classes``/``input_size`` follow the data."""
    from nas_lightning.spaces.mobilenet import MobileNetSearchSpace

    if not genotype.space:
        raise ValueError(
            "this BlockGenotype has no 'space' (the search space's constructor arguments); "
            "use a genotype.json written by a ProxylessNAS search"
        )
    args = dict(genotype.space)
    for key, value in (
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("input_size", list(input_size) if input_size is not None else None),
    ):
        if value is not None:
            args[key] = value
    return MobileNetSearchSpace(**args).single_path(genotype)


def build_network(
    genotype: Any,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: Sequence[int] | None = None,
    init_channels: int = 36,
    layers: int = 20,
    auxiliary: bool = True,
    stem_multiplier: int = 3,
    channels_last: bool = False,
) -> nn.Module:
    """DARTS genotype → :class:`DartsNetwork` (``init_channels``, ``layers``, ``auxiliary``,
    ``stem_multiplier``, ``channels_last`` apply); ProxylessNAS genotype → the single-path
    MobileNet of its own space (those DARTS size arguments do not apply)."""
    if isinstance(genotype, CellGenotype):
        return DartsNetwork(
            genotype,
            in_channels=in_channels,
            num_classes=num_classes,
            init_channels=init_channels,
            layers=layers,
            auxiliary=auxiliary,
            stem_multiplier=stem_multiplier,
            channels_last=channels_last,
        )
    if isinstance(genotype, BlockGenotype):
        return build_proxyless_network(genotype, in_channels, num_classes, input_size)
    raise ValueError(
        f"cannot build a network from {type(genotype).__name__}; valid: CellGenotype (DARTS), "
        "BlockGenotype (ProxylessNAS)"
    )
