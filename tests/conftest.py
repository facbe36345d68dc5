"""Shared fixtures: Hydra composition of the packaged configs, as the CLI would see them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

FAST = [
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture
def one_thread():
    """Tiny convs: OpenMP threads only add contention (100x slower on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``search.yaml`` with overrides; outputs go to a tmp dir."""

    def _compose(*overrides: str, config_name: str = "search") -> DictConfig:
        with initialize_config_module(config_module="nas_lightning.conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(tmp_path / "data")
        return cfg

    return _compose
