"""The FLOPs latency proxy. The analytic cost of every op (MACs, parameters, activation
traffic) comes from its op-registry entry (:func:`nas_lightning.ops.op_cost`).

Conventions: a MAC is one multiply-accumulate of a convolution or linear layer; FLOPs are
2 × MACs (see :class:`~nas_lightning.ops.OpCost`).
"""

from __future__ import annotations

from typing import Any

from nas_lightning.ops import OpCost, OpDesc, op_cost


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

    def spec(self) -> dict[str, Any]:
        return {
            "_target_": "nas_lightning.latency.FlopsLatency",
            "ms_per_mflop": self.ms_per_mflop,
            "batch_size": self.batch_size,
        }

    def op_latency_ms(self, desc: OpDesc) -> float:
        return 2.0 * op_macs(desc) / 1e6 * self.ms_per_mflop * self.batch_size

    def __repr__(self) -> str:
        return f"FlopsLatency(ms_per_mflop={self.ms_per_mflop}, batch_size={self.batch_size})"


__all__ = ["FlopsLatency", "OpCost", "op_cost", "op_macs"]
