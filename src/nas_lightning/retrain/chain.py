"""``task=search_retrain``: search, then retrain the derived genotype, in one job.

A sweep of search settings (λ2 of ProxylessNAS, a latency target T, seeds) is only judged by
the networks it derives, trained from scratch and timed. Chaining the two in one job keeps each
sweep point in one directory, so ``python -m nas_lightning.report <multirun dir>`` shows the
search's final metrics beside the retrained test accuracy and measured latency:

- ``<job>/``: the search, exactly as ``task=search`` leaves it (``genotype.json``,
  ``csv/metrics.csv``, checkpoints, ``status.json``);
- ``<job>/retrain/``: the retrain of ``<job>/genotype.json``, exactly as ``task=retrain`` leaves
  it (``result.json``, its own ``csv/``, checkpoints).

The retrain's config is the search's with ``retrain.dataset`` and ``retrain.trainer`` merged
over ``dataset`` and ``trainer`` (e.g. ``train_split: full``, its own epochs) and
``retrain.callbacks`` as the callbacks. Plain OmegaConf; the two halves are ``nas_lightning.run``
and ``nas_lightning.retrain.run``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nas_lightning.genotype import genotype_from_dict, save_genotype

log = logging.getLogger(__name__)
RETRAIN_DIR = "retrain"
CHAIN_KEYS = ("dataset", "trainer", "callbacks")  # retrain.<key>: the retrain's own settings


def retrain_config(cfg: DictConfig, search_dir: str | Path) -> DictConfig:
    """The config of the retrain half: ``genotype`` = the search's, outputs in
    ``<search_dir>/retrain``, ``retrain.dataset`` / ``.trainer`` merged over the search's,
    ``retrain.callbacks`` as its callbacks, no checkpoint to resume."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        chain = {key: out.retrain.pop(key, None) for key in CHAIN_KEYS}
        for key in ("dataset", "trainer"):
            if chain[key] is not None:
                out[key] = OmegaConf.merge(out[key], chain[key])
        out.callbacks = chain["callbacks"]
        out.paths.output_dir = str(Path(search_dir) / RETRAIN_DIR)
        out.genotype = str(Path(search_dir) / "genotype.json")
        out.task = "retrain"
        out.ckpt_path = None
    return out


def run_search_retrain(cfg: DictConfig) -> dict[str, Any]:
    """Search (``nas_lightning.run.run``), then retrain its genotype (``run_retrain``).

    Returns the search's metrics updated with the retrain's (``test/acc``, ``test/loss``) and
    ``retrain/latency_ms``; ``result`` is the retrain's ``result.json``."""
    from nas_lightning.retrain.run import run_retrain  # both import Lightning: only when run
    from nas_lightning.run import run

    searched = run(cfg)
    search_dir = Path(searched["output_dir"])
    genotype_path = search_dir / "genotype.json"
    if not genotype_path.is_file():  # callbacks without the genotype writer
        save_genotype(genotype_from_dict(searched["genotype"]), genotype_path)
    log.info("search done; retraining %s in %s", genotype_path, search_dir / RETRAIN_DIR)
    retrained = run_retrain(retrain_config(cfg, search_dir))
    result = retrained["result"]
    metrics = {
        **searched["metrics"],
        **retrained["metrics"],
        "retrain/latency_ms": result["latency_ms"],
    }
    return {
        "metrics": metrics,
        "genotype": searched["genotype"],
        "result": result,
        "output_dir": str(search_dir),
    }
