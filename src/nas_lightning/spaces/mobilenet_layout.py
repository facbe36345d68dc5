"""The validated shape of a MobileNetSearchSpace: channels, strides and feature-map sizes.

Kept apart from the modules so argument checking and size arithmetic (what latency models
need) are readable on their own and testable without building a network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas_lightning.spaces.block import make_divisible

REFERENCE_STEM = 32  # MobileNetV2 / ProxylessNAS stem width: init_channels / 32 scales the net


@dataclass(frozen=True)
class BlockLayout:
    label: str
    C_in: int
    C_out: int
    stride: int
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"space.{name}={value!r} is invalid; it must be an integer >= {low}")
    return value


def _ints(name: str, values: Any, low: int, choices: Sequence[int] | None = None) -> list[int]:
    if isinstance(values, (str, bytes, int)) or not list(values):
        raise ValueError(f"space.{name}={values!r} is invalid; give a non-empty list of integers")
    out = [_int(f"{name}[{i}]", v, low) for i, v in enumerate(values)]
    for v in out:
        if choices is not None and v not in choices:
            raise ValueError(f"space.{name} has {v}; valid choices: {', '.join(map(str, choices))}")
    return out


class MobileNetLayout:
    """Arguments of the space (all validated, errors name the bad value and the valid range).

    ``widths``/``depths``/``strides``: per stage output channels, searchable blocks and stride
    of its first block. ``init_channels``: stem width; unless ``width_mult`` is given, every
    other width (first block, stages, final conv) is scaled by ``init_channels / 32`` and rounded
    to a multiple of ``round_to``. ``layers``: keep at most this many searchable blocks (the
    first ones; later stages are dropped). ``first_channels``: the fixed MBConv(k3, e1) after the
    stem (0 or null: none). ``kernels`` × ``expands``: the MBConv candidates; ``allow_zero`` adds
    ``zero`` to shape-keeping blocks.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: Sequence[int] | None = None,
        init_channels: int = 32,
        widths: Sequence[int] = (24, 40, 80, 96, 192, 320),
        depths: Sequence[int] = (4, 4, 4, 4, 4, 1),
        strides: Sequence[int] = (1, 2, 2, 1, 2, 1),
        stem_stride: int = 1,
        first_channels: int | None = 16,
        last_channels: int = 1280,
        width_mult: float | None = None,
        round_to: int = 8,
        layers: int | None = None,
        kernels: Sequence[int] = (3, 5, 7),
        expands: Sequence[int] = (3, 6),
        allow_zero: bool = True,
    ):
        self.in_channels = _int("in_channels", in_channels, 1)
        self.num_classes = _int("num_classes", num_classes, 2)
        self.input_size: tuple[int, int] | None = None
        if input_size is not None:
            size = _ints("input_size", input_size, 1)
            if len(size) != 2:
                raise ValueError(f"space.input_size={input_size!r} is invalid; give (H, W)")
            self.input_size = (size[0], size[1])
        self.stem_channels = _int("init_channels", init_channels, 1)
        widths, depths = _ints("widths", widths, 1), _ints("depths", depths, 1)
        strides = _ints("strides", strides, 1, choices=(1, 2))
        if not len(widths) == len(depths) == len(strides):
            raise ValueError(
                f"space.widths ({len(widths)}), space.depths ({len(depths)}) and space.strides "
                f"({len(strides)}) must have one entry per stage"
            )
        self.stem_stride = _int("stem_stride", stem_stride, 1)
        if self.stem_stride not in (1, 2):
            raise ValueError(f"space.stem_stride={stem_stride!r} is invalid; valid choices: 1, 2")
        self.round_to = _int("round_to", round_to, 1)
        if width_mult is None:
            width_mult = self.stem_channels / REFERENCE_STEM
        if isinstance(width_mult, bool) or not float(width_mult) > 0:
            raise ValueError(f"space.width_mult={width_mult!r} is invalid; it must be > 0")
        self.width_mult = float(width_mult)
        first = _int("first_channels", first_channels or 0, 0)
        self.first_channels = self.scale(first) if first else 0
        self.last_channels = self.scale(_int("last_channels", last_channels, 1))
        if layers is not None:
            _int("layers", layers, 1)
        self.kernels = _ints("kernels", kernels, 1, choices=(1, 3, 5, 7, 9))
        self.expands = _ints("expands", expands, 1)
        self.choices = [
            (k, e) for k in dict.fromkeys(self.kernels) for e in dict.fromkeys(self.expands)
        ]
        if not isinstance(allow_zero, bool):
            raise ValueError(f"space.allow_zero={allow_zero!r} is invalid; valid: true, false")
        self.allow_zero = allow_zero
        self._args = dict(
            widths=widths,
            depths=depths,
            strides=strides,
            layers=layers,
            first_channels=first_channels,
            last_channels=last_channels,
        )
        self.blocks = self._blocks(widths, depths, strides, layers)

    def scale(self, channels: int) -> int:
        return make_divisible(channels * self.width_mult, self.round_to)

    def _blocks(
        self, widths: list[int], depths: list[int], strides: list[int], layers: int | None
    ) -> list[BlockLayout]:
        budget = sum(depths) if layers is None else min(layers, sum(depths))
        C = self.first_channels or self.stem_channels
        out = []
        for s, (w, d, st) in enumerate(zip(widths, depths, strides, strict=True)):
            for j in range(d):
                if len(out) == budget:
                    return out
                C_out = self.scale(w)
                out.append(BlockLayout(f"s{s}b{j}", C, C_out, st if j == 0 else 1))
                C = C_out
        return out

    def require_input_size(self) -> tuple[int, int]:
        if self.input_size is None:
            raise ValueError("space.input_size is unknown (None): latency specs need (H, W)")
        return self.input_size

    def blocks_sized(self) -> list[BlockLayout]:
        """The blocks with their input/output feature-map sizes (convs use padding k // 2)."""
        H, W = self.require_input_size()
        h, w = math.ceil(H / self.stem_stride), math.ceil(W / self.stem_stride)
        out = []
        for b in self.blocks:
            h2, w2 = math.ceil(h / b.stride), math.ceil(w / b.stride)
            out.append(BlockLayout(b.label, b.C_in, b.C_out, b.stride, (h, w), (h2, w2)))
            h, w = h2, w2
        return out

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this space (JSON-friendly)."""
        return dict(
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            input_size=list(self.input_size) if self.input_size else None,
            init_channels=self.stem_channels,
            stem_stride=self.stem_stride,
            width_mult=self.width_mult,
            round_to=self.round_to,
            kernels=list(self.kernels),
            expands=list(self.expands),
            allow_zero=self.allow_zero,
            **self._args,
        )


__all__ = ["BlockLayout", "MobileNetLayout"]
