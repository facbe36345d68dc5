"""Run directories that two runs never share.

Hydra names a run directory after the current second, so two runs started in the same second
(a shell loop, a job array) would write into one directory. ``claim_unique_dir`` creates the
directory itself with ``os.mkdir`` — atomic, so exactly one caller wins a name — and the loser
takes the next free ``<name>_<n>``. The config reaches it through the OmegaConf resolver
``${unique_dir:...}`` (see ``conf/hydra/default.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

RESOLVER = "unique_dir"


def claim_unique_dir(base: str, attempts: int = 10_000) -> str:
    """Create and return ``base`` or, if it exists, the first free ``base_1``, ``base_2``, …"""
    path = Path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(attempts):
        candidate = path if n == 0 else path.with_name(f"{path.name}_{n}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return str(candidate)
    raise RuntimeError(f"no free run directory after {attempts} tries at {base}_<n>")


def register_resolvers() -> None:
    """Make ``${unique_dir:<base>}`` available (cached: one config claims one directory), and
    ``${metric_direction:<metric>}`` (the Optuna sweeper's direction, ``runtime.sweep``)."""
    from nas_lightning.runtime.sweep import metric_direction

    OmegaConf.register_new_resolver(RESOLVER, claim_unique_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("metric_direction", metric_direction, replace=True)
