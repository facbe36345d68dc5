"""Searchable MBConv blocks for ProxylessNAS-style supernets, driven by per-forward path plans.

A block computes ``x + Σ_j w_j·o_j(x)`` (the residual only when the block keeps its shape). The
supernet holds no sampling state: the caller passes one *plan* per block, so a single module
serves every path mode of every algorithm:

- ``int j``: run candidate ``j`` only (binary / single-path forward; ``zero`` skips the block);
- a float sequence, one weight per candidate: a fixed mix with fused adds and no α graph (the
  w-step of DARTS-style mixing, the unweighted one-shot sum); zero weights are not evaluated;
- a tensor, one weight per candidate: a differentiable mix such as softmax(α);
- :class:`GatePlan`: BinaryConnect gates. Only ``active`` runs with autograd; ``others`` run
  without it and enter the output multiplied by their gate, which is 0: the output equals the
  active path's, yet autograd gives ``∂L/∂g_j = ⟨∂L/∂out, o_j⟩`` for every listed path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nas_lightning.ops.mbconv import MBConv, ZeroBlock

ZERO_OP = "zero"


def mbconv_name(kernel: int, expand: int) -> str:
    return f"mbconv_k{kernel}_e{expand}"


def make_divisible(value: float, divisor: int) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNetV2's ``_make_divisible``)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


@dataclass
class GatePlan:
    """Binary gates of one block: ``gates`` is one-hot at ``active`` and requires grad."""

    gates: Tensor
    active: int
    others: tuple[int, ...] = ()


BlockPlan = int | Sequence[float] | Tensor | GatePlan


class PathBlock(nn.Module):
    """One fixed op plus the residual when shapes match (derived nets, the fixed first block)."""

    def __init__(self, op: nn.Module, residual: bool):
        super().__init__()
        self.op, self.residual = op, residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.op(x)
        return x + out if self.residual else out


class MixedBlock(nn.Module):
    """The candidates of one searchable block: MBConv per (kernel, expand), then ``zero`` when
    the block keeps its shape (skipping a shape-changing block is impossible)."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        choices: Sequence[tuple[int, int]],
        allow_zero: bool = True,
    ):
        super().__init__()
        self.C_in, self.C_out, self.stride = C_in, C_out, stride
        self.residual = stride == 1 and C_in == C_out
        self.candidates = nn.ModuleList(MBConv(C_in, C_out, k, stride, e) for k, e in choices)
        self.op_names = [mbconv_name(k, e) for k, e in choices]
        self.choices = [tuple(c) for c in choices]
        self.zero_index: int | None = None
        if allow_zero and self.residual:
            self.zero_index = len(self.candidates)
            self.candidates.append(ZeroBlock())
            self.op_names.append(ZERO_OP)

    def __len__(self) -> int:
        return len(self.candidates)

    def _run(self, j: int, x: Tensor) -> Tensor | None:
        return None if j == self.zero_index else self.candidates[j](x)

    def forward(self, x: Tensor, plan: BlockPlan) -> Tensor:
        if isinstance(plan, int):
            if not 0 <= plan < len(self):
                raise ValueError(f"path {plan} is invalid; valid: 0..{len(self) - 1}")
            out = self._run(plan, x)
        elif isinstance(plan, GatePlan):
            out = self._gated(x, plan)
        else:
            if len(plan) != len(self):
                raise ValueError(f"{len(plan)} mixing weights for {len(self)} candidates")
            out = self._mix(x, plan)
        if out is None:
            return x
        return x + out if self.residual else out

    def _mix(self, x: Tensor, weights: Sequence[float] | Tensor) -> Tensor | None:
        acc = None
        for j, w in enumerate(weights):
            w = w if isinstance(w, Tensor) else float(w)
            if j == self.zero_index or (isinstance(w, float) and w == 0.0):
                continue
            out = self.candidates[j](x)
            if isinstance(w, float):
                acc = (out if w == 1.0 else out * w) if acc is None else acc.add(out, alpha=w)
            else:
                acc = out * w if acc is None else acc + out * w
        if acc is None and not self.residual:
            raise ValueError("every candidate of a shape-changing block has weight 0")
        return acc

    def _gated(self, x: Tensor, plan: GatePlan) -> Tensor | None:
        g = plan.gates
        active = self._run(plan.active, x)
        acc = None if active is None else active * g[plan.active]
        with torch.no_grad():  # paths run only for their gate gradient ⟨∂L/∂out, o_j⟩
            others = [(j, self._run(j, x.detach())) for j in plan.others if j != plan.active]
        for j, o in others:
            if o is not None:
                acc = o * g[j] if acc is None else acc + o * g[j]
        return acc


__all__ = [
    "BlockPlan",
    "GatePlan",
    "MixedBlock",
    "PathBlock",
    "ZERO_OP",
    "make_divisible",
    "mbconv_name",
]
