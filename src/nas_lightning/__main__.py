"""``python -m nas_lightning algo=darts space=cnn``: compose the config and run the search."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

CONFIG_PATH = "pkg://nas_lightning.conf"
CONFIG_NAME = "search"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    if cfg.get("task") == "retrain":  # imported here so --help stays fast
        from nas_lightning.retrain.run import run_retrain as run
    else:
        from nas_lightning.run import run

    result = run(cfg)
    metric = cfg.get("optimized_metric")
    return result["metrics"].get(metric) if metric else None


if __name__ == "__main__":
    main()
