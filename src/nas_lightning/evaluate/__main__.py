"""``python -m nas_lightning.evaluate genotype=<searched genotype.json | run dir | [a, b]>``.

Samples ``n_random`` random genotypes of the searched one's space under the same derivation
constraints, retrains all of them with the identical protocol (the retrain config, by default
``experiment=darts_digits_retrain``) and the same ``seeds``, and writes to the run directory
``runs.csv``, ``summary.json`` (random mean ± std, each searched genotype's rank), the
printed table as ``summary.txt`` and ``strip.png``; every retrain keeps its own sub-directory
with its ``result.json``.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

CONFIG_PATH = "pkg://nas_lightning.conf"
CONFIG_NAME = "evaluate"
log = logging.getLogger("nas_lightning.evaluate")


def searched_paths(value: Any) -> list[str]:
    """One path or a list of paths (a genotype.json or a search run directory each)."""
    if isinstance(value, (list, tuple, ListConfig)):
        paths = [str(v) for v in value]
    else:
        paths = [str(value)] if value not in (None, "") else []
    if not paths:
        raise ValueError(
            "no searched genotype: add genotype=<genotype.json | search run dir> "
            "(or genotype=[a,b] for several)"
        )
    return paths


def evaluate(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Retrain the searched and random genotypes; write and return the summary."""
    from nas_lightning.evaluate.report import print_table, strip_plot, summarise, write_tables
    from nas_lightning.evaluate.sampling import sample_like
    from nas_lightning.genotype import load_genotype, save_genotype
    from nas_lightning.retrain.run import genotype_file, run_retrain

    start = time.perf_counter()
    given = None if OmegaConf.is_missing(cfg, "genotype") else cfg.genotype
    searched = [load_genotype(genotype_file(p)) for p in searched_paths(given)]
    ops = list(cfg.space.ops) if "ops" in cfg.space else None
    k = cfg.space.get("k")
    randoms = sample_like(searched[0], int(cfg.n_random), int(cfg.sample_seed), ops, k)
    jobs = [(f"searched_{i}", "searched", g) for i, g in enumerate(searched)]
    jobs += [(f"random_{i:02d}", "random", g) for i, g in enumerate(randoms)]
    rows = []
    for seed in [int(s) for s in cfg.seeds]:
        for name, kind, genotype in jobs:
            job_dir = out / f"{name}_seed{seed}"
            job_dir.mkdir(parents=True, exist_ok=True)
            save_genotype(genotype, job_dir / "genotype.json")
            job = copy.deepcopy(cfg)
            with open_dict(job):
                job.seed, job.genotype = seed, str(job_dir / "genotype.json")
                job.paths.output_dir = str(job_dir)
            log.info("retraining %s (seed %d): %s", name, seed, genotype)
            res = run_retrain(job)["result"]
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "seed": seed,
                    "dir": str(job_dir),
                    **{k: res[k] for k in ("test_acc", "params_M", "macs_M", "latency_ms")},
                }
            )
    summary = summarise(rows)
    summary["wall_time_s"] = time.perf_counter() - start
    write_tables(rows, summary, out)
    strip_plot(rows, out / "strip.png")
    (out / "summary.txt").write_text(print_table(summary))
    log.info("wall time %.0f s; tables and strip.png in %s", summary["wall_time_s"], out)
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    out = Path(HydraConfig.get().runtime.output_dir)
    summary = evaluate(cfg, out)
    return summary["searched"][0]["test_acc"] if summary["searched"] else None


if __name__ == "__main__":
    main()
