"""What latency models know of an op: its identity (:class:`OpDesc`) and cost (:class:`OpCost`).

An :class:`OpDesc` is one op instance: registry name, input and output feature-map shape,
kernel, stride and expansion ratio. Latency lookup tables are keyed by it; the op registry turns
it into a module (to profile it), an analytic cost (FLOPs proxy, predictor features) and a
candidate name. Conventions of :class:`OpCost`: a MAC is one multiply-accumulate of a
convolution or linear layer (BN, activations, pooling and adds are not counted), while
``activations`` counts every element read or written — the memory traffic that makes depthwise
convolutions slower than their MACs suggest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class OpDesc:
    """One op instance. ``op`` is a registry name (``mbconv``, ``sep_conv_3x3``, ``conv``,
    ``pool_linear``, ``zero`` …); ``expand`` is 1 for ops without an expansion ratio."""

    op: str
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel: int = 1
    stride: int = 1
    expand: int = 1

    def key(self) -> str:
        """Stable string key for lookup tables."""
        return (
            f"{self.op}:in{self.in_channels}x{self.in_size[0]}x{self.in_size[1]}"
            f":out{self.out_channels}x{self.out_size[0]}x{self.out_size[1]}"
            f":k{self.kernel}:s{self.stride}:e{self.expand}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_size"], d["out_size"] = list(self.in_size), list(self.out_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpDesc:
        return cls(**{**d, "in_size": tuple(d["in_size"]), "out_size": tuple(d["out_size"])})


@dataclass(frozen=True)
class OpCost:
    """Per-sample (batch 1) cost of one op, split by kind of work."""

    dense_macs: int  # 1×1 / full convolutions and linear layers
    depthwise_macs: int  # depthwise k×k convolutions
    params: int
    activations: int  # elements read (input) + written (every produced tensor)
    layers: int  # kernels launched (conv/linear/pool), a per-call overhead proxy

    @property
    def macs(self) -> int:
        return self.dense_macs + self.depthwise_macs

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "macs": self.macs}

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(
            *(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True))
        )


NO_COST = OpCost(0, 0, 0, 0, 0)


def area(size: tuple[int, int]) -> int:
    return int(size[0]) * int(size[1])


def dense_conv_cost(c_in: int, c_out: int, k: int, in_size, out_size, bn: bool = True) -> OpCost:
    """A k×k conv (no bias), optionally followed by BN (2 affine parameters per channel)."""
    return OpCost(
        area(out_size) * c_in * c_out * k * k,
        0,
        c_in * c_out * k * k + (2 * c_out if bn else 0),
        c_in * area(in_size) + c_out * area(out_size),
        1,
    )


def depthwise_cost(c: int, k: int, in_size, out_size) -> OpCost:
    """A depthwise k×k conv (no bias, no BN)."""
    return OpCost(
        0, area(out_size) * c * k * k, c * k * k, c * area(in_size) + c * area(out_size), 1
    )


__all__ = ["NO_COST", "OpCost", "OpDesc", "area", "dense_conv_cost", "depthwise_cost"]
