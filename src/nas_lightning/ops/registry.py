"""The op registry: one entry per candidate op, from which everything about the op comes.

An entry (:class:`OpSpec`) gives the module factory ``build(desc, affine, preact)``, the analytic
cost (FLOPs proxy, predictor features), the candidate's display name (``mbconv_k3_e6``) and the
roles it can play (``cell``: a shape-keeping C→C DARTS edge op; ``block``: a searchable block
candidate C_in→C_out; ``fixed``: stem/head layers; ``rnn``: a recurrent-cell edge activation).
Adding an op is one decorated factory.

``preact=True`` asks for the op *without* its leading ReLU: the supernet applies ReLU once per
hidden state and shares it across every edge that reads that state. Built modules carry two
flags the supernet reads: ``expects_preact`` (it dropped its ReLU) and ``shareable`` (no
weights, output depends only on input and stride: one evaluation per state serves every edge).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from nas_lightning.ops.desc import NO_COST, OpCost, OpDesc

BuildFn = Callable[[OpDesc, bool, bool], nn.Module]  # (desc, affine, preact) -> module
ZERO = "none"
ALIASES = {"zero": ZERO}
ROLES = ("cell", "block", "fixed", "rnn")


@dataclass(frozen=True)
class OpSpec:
    name: str
    build: BuildFn
    cost: Callable[[OpDesc], OpCost]
    label: Callable[[OpDesc], str]
    roles: frozenset[str]
    kernel: int = 1  # the kernel an op of this name has (cell ops: implied by the name)
    zero: bool = False  # contributes nothing (never evaluated by the supernets)


_REGISTRY: dict[str, OpSpec] = {}


def register_op(
    name: str,
    cost: Callable[[OpDesc], OpCost] | None = None,
    label: Callable[[OpDesc], str] | None = None,
    roles: Iterable[str] = ("cell",),
    kernel: int = 1,
    zero: bool = False,
) -> Callable[[BuildFn], BuildFn]:
    """Decorator registering ``build(desc, affine, preact) -> nn.Module`` under ``name``."""
    roles = frozenset(roles)
    if not roles <= set(ROLES):
        raise ValueError(f"op {name!r}: roles {sorted(roles)} invalid; valid: {ROLES}")

    def deco(build: BuildFn) -> BuildFn:
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} is already registered")
        _REGISTRY[name] = OpSpec(
            name,
            build,
            cost or (lambda d: NO_COST),
            label or (lambda d: name),
            roles,
            kernel,
            zero,
        )
        return build

    return deco


def available_ops(role: str | None = None) -> list[str]:
    return [n for n, s in _REGISTRY.items() if role is None or role in s.roles]


def canonical_name(name: str, role: str | None = "cell") -> str:
    """Map aliases (``zero`` → ``none`` for cells) and reject unknown names with the choices."""
    if role == "cell":
        name = ALIASES.get(name, name)
    valid = available_ops(role)
    if name not in valid:
        raise ValueError(
            f"unknown op {name!r}; valid ops are: {', '.join(valid)}"
            + (f" (aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})" if role else "")
        )
    return name


def validate_ops(names: Iterable[str]) -> list[str]:
    """Canonicalise a cell op list; it must be non-empty, duplicate-free and hold a non-zero op."""
    out = [canonical_name(str(n)) for n in names]
    if not out:
        raise ValueError(f"the op list is empty; choose from: {', '.join(available_ops('cell'))}")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate ops {dup} in op list {out}")
    if all(op_spec(n).zero for n in out):
        raise ValueError(f"op list {out} has no op besides {ZERO!r}; a genotype needs one")
    return out


def op_spec(name: str) -> OpSpec:
    try:
        return _REGISTRY[ALIASES.get(name, name) if name not in _REGISTRY else name]
    except KeyError:
        raise ValueError(f"unknown op type {name!r}; valid: {', '.join(available_ops())}") from None


def describe(
    name: str,
    in_channels: int,
    out_channels: int,
    in_size: tuple[int, int],
    stride: int = 1,
    kernel: int | None = None,
    expand: int = 1,
) -> OpDesc:
    """The :class:`OpDesc` of op ``name`` at a feature-map size (output size ``ceil(in/s)``)."""
    spec = op_spec(name)
    out_size = (math.ceil(in_size[0] / stride), math.ceil(in_size[1] / stride))
    k = spec.kernel if kernel is None else kernel
    return OpDesc(spec.name, in_channels, out_channels, tuple(in_size), out_size, k, stride, expand)


def build_op(
    name: str, C: int, stride: int = 1, affine: bool = True, preact: bool = False
) -> nn.Module:
    """Build a shape-keeping cell op on ``C`` channels (``preact`` drops its leading ReLU)."""
    spec = op_spec(canonical_name(name))
    module = spec.build(describe(spec.name, C, C, (0, 0), stride), affine, preact)
    module.expects_preact = bool(getattr(module, "expects_preact", False))
    module.shareable = bool(getattr(module, "shareable", False))
    return module


def module_from_desc(desc: OpDesc, affine: bool = True) -> nn.Module:
    """A standalone module for one op description (used to profile it on real hardware)."""
    return op_spec(desc.op).build(desc, affine, False)


def op_cost(desc: OpDesc) -> OpCost:
    """MACs/params/activations of ``desc`` at its input and output feature-map sizes."""
    return op_spec(desc.op).cost(desc)


def is_zero(desc: OpDesc) -> bool:
    """Whether ``desc`` is a zero op (contributes nothing, costs 0 ms, is never timed)."""
    return op_spec(desc.op).zero


def op_label(desc: OpDesc) -> str:
    """The candidate name of ``desc`` (e.g. ``mbconv_k5_e3``)."""
    return op_spec(desc.op).label(desc)
