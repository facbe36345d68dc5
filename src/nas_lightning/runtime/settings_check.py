"""Refuse, before anything is built or trained, settings that cannot work or that make the
search pointless. Each check takes plain values and raises :class:`ConfigError` with one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from nas_lightning.runtime.errors import ConfigError

# scheduler arguments that are a horizon in epochs (cosine's T_max, linear's total_iters)
HORIZON_ARGS = ("T_max", "total_iters")
# words of torch.optim's "Invalid ..." messages → the argument they are about
OPTIM_ARGS = {
    "learning rate": "lr",
    "epsilon": "eps",
    "beta": "betas",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
    "dampening": "dampening",
    "nesterov": "nesterov",
}


def check_epochs(trainer: Mapping[str, Any], algo: Mapping[str, Any]) -> None:
    """``algo.warmup_epochs >= trainer.max_epochs`` never trains α (the genotype is the initial
    α's); an unbounded ``trainer.max_epochs`` (-1/null) cannot drive an epoch-horizon
    scheduler (cosine with T_max=-1 alternates the learning rate every epoch).

    The unbounded case is refused, not warned about: its result is silently wrong, and a
    warning scrolls away. ``algo.scheduler=null`` (constant lr) runs unbounded."""
    max_epochs = trainer.get("max_epochs")
    if trainer.get("fast_dev_run"):
        return
    unbounded = max_epochs is None or max_epochs == -1
    scheduler = algo.get("scheduler")
    if unbounded and scheduler:
        horizon = {k: scheduler[k] for k in HORIZON_ARGS if k in scheduler}
        target = str(scheduler.get("_target_", "?")).rsplit(".", 1)[-1]
        if not horizon or any(not isinstance(v, int) or v < 1 for v in horizon.values()):
            shown = ", ".join(f"algo.scheduler.{k}={v}" for k, v in horizon.items())
            raise ConfigError(
                f"trainer.max_epochs={max_epochs} (unbounded) cannot drive algo.scheduler "
                f"({target}{', ' + shown if shown else ''}): give a finite trainer.max_epochs, "
                "or set algo.scheduler=null for a constant learning rate"
            )
    warmup = int(algo.get("warmup_epochs") or 0)
    if not unbounded and warmup >= int(max_epochs):
        raise ConfigError(
            f"algo.warmup_epochs={warmup} >= trainer.max_epochs={max_epochs}: α would never be "
            "trained and the genotype would be the initial α's; lower algo.warmup_epochs or "
            "raise trainer.max_epochs"
        )


def check_optimizers(factories: Mapping[str, tuple[Callable[..., Any], Mapping[str, Any]]]) -> None:
    """Build each optimiser factory (``{"algo.arch_optimizer": (partial, its settings)}``) on a
    dummy parameter, so a bad value is named with the optimiser it belongs to."""
    probe = [torch.nn.Parameter(torch.zeros(1))]
    for name, (factory, settings) in factories.items():
        try:
            factory(params=probe)
        except (ValueError, TypeError) as err:
            target = settings.get("_target_", type(factory).__name__)
            reason = str(err).split("\n")[0]
            arg = next((a for w, a in OPTIM_ARGS.items() if w in reason.lower()), None)
            field = f"{name}.{arg}={settings[arg]}" if arg in settings else name
            raise ConfigError(
                f"{field} is invalid for {target} ({reason}); fix {name}"
                + (f".{arg}" if arg else "")
            ) from err


def check_takes_latency(algo_target: type | Callable[..., Any], algo_name: str, latency: str):
    """``latency=<model>`` needs an algorithm with a ``latency`` argument."""
    try:
        params = inspect.signature(algo_target).parameters
    except (TypeError, ValueError):
        return
    if "latency" not in params:
        name = getattr(algo_target, "__name__", str(algo_target))
        raise ConfigError(
            f"latency={latency} is set but algo={algo_name} ({name}) takes no latency model; "
            "use an algorithm that does (e.g. algo=proxyless) or drop latency="
        )


def check_latency_covers(latency: Any, ops: Iterable[Any]) -> None:
    """A measured table must price every op of the space now, not fail mid-epoch."""
    require = getattr(latency, "require", None)
    if callable(require):
        require(list(ops))
