"""Analytic cost of one op (MACs, parameters, activation traffic) and the FLOPs latency proxy.

Conventions: a MAC is one multiply-accumulate of a convolution or linear layer; FLOPs are
2 × MACs. Batch norm, activations, pooling and residual adds are not counted in MACs (the
usual convention: BN folds into the conv at inference), but pooling and every produced tensor
do count in ``activations`` — the memory-traffic term that makes depthwise convolutions slower
than their MACs suggest, used as a predictor feature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nas_lightning.ops.mbconv import OpDesc

OP_TYPES = ("mbconv", "zero", "conv", "pool_linear")


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


def _area(size: tuple[int, int]) -> int:
    return int(size[0]) * int(size[1])


def op_cost(desc: OpDesc) -> OpCost:
    """MACs/params/activations of ``desc`` at its input and output feature-map sizes."""
    c_in, c_out, k = desc.in_channels, desc.out_channels, desc.kernel
    a_in, a_out = _area(desc.in_size), _area(desc.out_size)
    if desc.op == "zero":
        return OpCost(0, 0, 0, 0, 0)
    if desc.op == "conv":  # conv (no bias) → BN → ReLU6
        return OpCost(
            a_out * c_in * c_out * k * k,
            0,
            c_in * c_out * k * k + 2 * c_out,
            c_in * a_in + c_out * a_out,
            1,
        )
    if desc.op == "pool_linear":  # global average pool → linear (with bias)
        return OpCost(c_in * c_out, 0, c_in * c_out + c_out, c_in * a_in + c_in + c_out, 2)
    if desc.op == "mbconv":
        hidden = c_in * desc.expand
        expand_macs = a_in * c_in * hidden if desc.expand != 1 else 0
        expand_params = c_in * hidden + 2 * hidden if desc.expand != 1 else 0
        return OpCost(
            dense_macs=expand_macs + a_out * hidden * c_out,
            depthwise_macs=a_out * hidden * k * k,
            params=expand_params + hidden * k * k + 2 * hidden + hidden * c_out + 2 * c_out,
            activations=c_in * a_in
            + (hidden * a_in if desc.expand != 1 else 0)
            + hidden * a_out
            + c_out * a_out,
            layers=3 if desc.expand != 1 else 2,
        )
    raise ValueError(f"unknown op type {desc.op!r}; valid: {', '.join(OP_TYPES)}")


def op_macs(desc: OpDesc) -> int:
    """Multiply-accumulates of ``desc`` for one sample."""
    return op_cost(desc).macs


class FlopsLatency:
    """FLOPs as a latency proxy: ``op_latency_ms = FLOPs / 1e6 × ms_per_mflop × batch_size``.

    ``ms_per_mflop`` converts to "ms-equivalents" so that latency-loss weights and targets keep
    their meaning across models (0.01 ≈ a device sustaining 100 GFLOP/s). It ignores memory
    traffic and per-layer overhead, so on CPUs it ranks depthwise-heavy ops too cheap.
    """

    def __init__(self, ms_per_mflop: float = 0.01, batch_size: int = 1) -> None:
        if not ms_per_mflop > 0:
            raise ValueError(f"ms_per_mflop must be > 0, got {ms_per_mflop!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.ms_per_mflop = float(ms_per_mflop)
        self.batch_size = batch_size

    def op_latency_ms(self, desc: OpDesc) -> float:
        return 2.0 * op_macs(desc) / 1e6 * self.ms_per_mflop * self.batch_size

    def __repr__(self) -> str:
        return f"FlopsLatency(ms_per_mflop={self.ms_per_mflop}, batch_size={self.batch_size})"
