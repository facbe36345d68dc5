"""Searchable blocks of ProxylessNAS-style supernets: one choice point plus the residual.

A block computes ``x + choice(x)`` when it keeps its shape (``choice(x)`` is ``None`` when the
strategy ran the ``zero`` candidate: the block is skipped) and ``choice(x)`` otherwise. Its
candidates come from the op registry: one ``OpDesc`` per candidate, built by
:func:`~nas_lightning.ops.module_from_desc`, so the same descriptions price the block.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from nas_lightning.ops import OpDesc, module_from_desc, op_label, op_spec
from nas_lightning.spaces.choices import OpChoice

ZERO_OP = "zero"


def make_divisible(value: float, divisor: int) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNetV2's ``_make_divisible``)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class PathBlock(nn.Module):
    """One fixed op plus the residual when shapes match (derived nets, the fixed first block)."""

    def __init__(self, op: nn.Module, residual: bool):
        super().__init__()
        self.op, self.residual = op, residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.op(x)
        return x + out if self.residual else out


class SearchBlock(nn.Module):
    """A block whose op is the choice point ``choice`` over ``descs`` (one per candidate; a
    ``zero`` candidate is only valid where the block keeps its shape)."""

    def __init__(self, key: str, label: str, descs: Sequence[OpDesc], group: str = "blocks"):
        super().__init__()
        d0 = descs[0]
        self.C_in, self.C_out, self.stride = d0.in_channels, d0.out_channels, d0.stride
        self.residual = self.stride == 1 and self.C_in == self.C_out
        names = [op_label(d) for d in descs]
        if len(set(names)) != len(names):
            raise ValueError(f"block {label}: duplicate candidates {names}")
        zero = [n for d, n in zip(descs, names, strict=True) if op_spec(d.op).zero]
        if zero and not self.residual:
            raise ValueError(f"block {label}: {zero} is only valid in a shape-keeping block")
        modules = {
            n: module_from_desc(d)
            for d, n in zip(descs, names, strict=True)
            if not op_spec(d.op).zero
        }
        self.choice = OpChoice(key, group, label, names, modules, stride=self.stride)
        self.choice.descs = list(descs)
        self.label = label

    @property
    def op_names(self) -> list[str]:
        return self.choice.op_names

    @property
    def zero_index(self) -> int | None:
        return self.choice.zero_index

    def candidate(self, j: int) -> nn.Module | None:
        """The module of candidate ``j`` (``None`` for the zero op)."""
        return None if j == self.zero_index else self.choice.ops[self.op_names[j]]

    def forward(self, x: Tensor) -> Tensor:
        out = self.choice(x)
        if out is None:
            if not self.residual:
                raise ValueError(f"block {self.label}: no candidate ran in a shape-changing block")
            return x
        return x + out if self.residual else out


__all__ = ["PathBlock", "SearchBlock", "ZERO_OP", "make_divisible"]
