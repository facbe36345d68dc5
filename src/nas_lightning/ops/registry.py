"""Candidate-op registry: name → factory.

A factory builds one op module for ``(C, stride, affine, preact)``. ``preact=True`` asks for the
op *without* its leading ReLU: the supernet applies ReLU once per hidden state and shares it
across every edge and op that reads that state, instead of recomputing it per op. Built modules
carry two flags the supernet reads: ``expects_preact`` (it dropped its ReLU) and ``shareable``
(no weights, output depends only on input and stride, so one evaluation per hidden state serves
every edge leaving that state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

OpFactory = Callable[..., nn.Module]

ZERO = "none"
ALIASES = {"zero": ZERO}


@dataclass(frozen=True)
class OpSpec:
    name: str
    factory: OpFactory


_REGISTRY: dict[str, OpSpec] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator adding a factory ``f(C, stride, affine, preact) -> nn.Module`` to the registry."""

    def deco(factory: OpFactory) -> OpFactory:
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} is already registered")
        _REGISTRY[name] = OpSpec(name, factory)
        return factory

    return deco


def available_ops() -> list[str]:
    return list(_REGISTRY)


def canonical_name(name: str) -> str:
    """Map aliases (``zero`` → ``none``) and reject unknown names with the valid choices."""
    name = ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown op {name!r}; valid ops are: {', '.join(available_ops())} "
            f"(aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})"
        )
    return name


def validate_ops(names: Iterable[str]) -> list[str]:
    """Canonicalise an op list; it must be non-empty, duplicate-free and hold a non-zero op."""
    out = [canonical_name(str(n)) for n in names]
    if not out:
        raise ValueError(f"the op list is empty; choose from: {', '.join(available_ops())}")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate ops {dup} in op list {out}")
    if all(n == ZERO for n in out):
        raise ValueError(f"op list {out} has no op besides {ZERO!r}; a genotype needs one")
    return out


def op_spec(name: str) -> OpSpec:
    return _REGISTRY[canonical_name(name)]


def build_op(
    name: str, C: int, stride: int = 1, affine: bool = True, preact: bool = False
) -> nn.Module:
    """Build a registered op; ``preact`` drops the leading ReLU of ops that have one."""
    module = op_spec(name).factory(C, stride, affine, preact)
    module.expects_preact = bool(getattr(module, "expects_preact", False))
    module.shareable = bool(getattr(module, "shareable", False))
    return module
