"""Plain-data specs of the callables a search is built from (optimiser factories, losses, metrics,
latency models), so that checkpoints hold only JSON-like hyper-parameters.

Lightning loads checkpoints with ``torch.load(weights_only=True)``, which refuses pickled
Python objects such as ``functools.partial``. A spec is the ``_target_`` dict Hydra composes
(``{"_target_": "torch.optim.SGD", "_partial_": true, "lr": 0.1}``), turned back into the object
with nothing but importlib, so a module rebuilds itself from its checkpoint without Hydra.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

PRIMITIVES = (str, int, float, bool, type(None))


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _resolve(path: str) -> Any:
    """``package.module.Attr.attr`` → the object (the longest importable module prefix)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ValueError(f"cannot import {path!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, PRIMITIVES):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return to_spec(value)


def to_spec(obj: Any) -> Any:
    """A JSON-like spec of ``obj``: primitives as they are, ``functools.partial`` and plain
    functions/classes as ``_target_`` dicts, objects offering ``spec()`` by that spec."""
    if obj is None or isinstance(obj, PRIMITIVES):
        return obj
    if isinstance(obj, functools.partial):
        spec: dict[str, Any] = {"_target_": _qualname(obj.func), "_partial_": True}
        if obj.args:
            spec["_args_"] = _plain(list(obj.args))
        spec.update({k: _plain(v) for k, v in obj.keywords.items()})
        return spec
    if callable(getattr(obj, "spec", None)):
        return obj.spec()
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return {"_target_": _qualname(obj), "_partial_": True}
    if isinstance(obj, (list, tuple, Mapping)):
        return _plain(obj)
    raise TypeError(f"{type(obj).__name__} has no plain-data spec (give it a spec() method)")


def from_spec(spec: Any) -> Any:
    """The object a :func:`to_spec` result describes (anything else is returned unchanged)."""
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        return spec
    target = _resolve(str(spec["_target_"]))
    args = [from_spec(a) for a in spec.get("_args_", [])]
    kwargs = {
        k: from_spec(v) for k, v in spec.items() if k not in ("_target_", "_partial_", "_args_")
    }
    if spec.get("_partial_"):
        return functools.partial(target, *args, **kwargs)
    return target(*args, **kwargs)


__all__ = ["from_spec", "to_spec"]
