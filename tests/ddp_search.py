"""Short searches of every algorithm on 2 CPU ranks (``trainer=ddp_cpu``, gloo), and some of them
in one process on the same global batch; run by ``tests/test_ddp.py`` as
``python tests/ddp_search.py OUT``.

The two ranks are processes this script spawns with the environment srun or torchrun would give
them (``LOCAL_RANK``, ``MASTER_ADDR``, ...): Lightning joins them instead of re-running a command
line, as on a cluster. Both ranks run every search one after the other in one process group (one
``import lightning`` per rank). Each search goes through ``nas_lightning.run.run`` with the
packaged configs; a callback saves what each rank holds at the end to
``OUT/<data>/<algo>/rank<r>.pt`` (the one-process run: ``single.pt``).

Two data settings (every algorithm runs in at least one; ``RUNS``):
- ``digits``: the configured datamodule, each rank reading its shard through Lightning's
  distributed sampler, so the ranks' gradients and BatchNorm statistics differ;
- ``paired`` (:class:`PairedLabels`): 2 ranks and one process see the same global batch with the
  same BatchNorm statistics, in float64 (``trainer.precision=64-true``), for the comparison; the
  ranks' gradients still differ (their labels do). In float32 first-order α agreed to 1e-7,
  but the second-order runs drifted to 1e-3..1e-2 within 6 steps; in float64 the same runs
  agree to ~1e-15, so that drift is rounding (of the sums' order) grown through the second-order
  terms, not a difference in what is computed.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.multiprocessing as mp
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset, Sampler

from nas_lightning.data import DigitsDataModule
from nas_lightning.data.base import EpochShuffle

BATCH = 8  # per rank; the one-process reference reads batches of 2 * BATCH
COMMON = [
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "algo.warmup_epochs=0",
]
CNN = ["space.init_channels=4", "space.layers=3"]
ALGOS: dict[str, list[str]] = {
    "darts": ["algo=darts", *CNN],
    "darts_2nd_exact": ["algo=darts_2nd", "algo.hvp=exact", *CNN],
    "darts_2nd_fd": ["algo=darts_2nd", "algo.hvp=finite_difference", *CNN],
    "pcdarts": ["algo=pcdarts", *CNN],
    "gdas": ["algo=gdas", *CNN],
    "proxyless": ["algo=proxyless", "space=mobilenet_tiny", "algo.mode=binary"],
    "proxyless_reinforce": ["algo=proxyless", "space=mobilenet_tiny", "algo.estimator=reinforce"],
}
# Data: the digits as configured (each rank reads its own shard through Lightning's distributed
# sampler, so the ranks' BatchNorm statistics and gradients differ: rank-identical α is checked),
# and PairedLabels, compared with the one-process run.
DATASETS = {
    "digits": [],
    "paired": [
        "dataset._target_=ddp_search.PairedLabels",
        "trainer.use_distributed_sampler=false",  # PairedLabels shards the data itself
        "trainer.precision=64-true",
    ],
}
# (data, algo) searched on 2 ranks, every algorithm at least once; the paired ones also in one
# process for the comparison
RUNS = [("digits", algo) for algo in ("darts", "darts_2nd_fd", "pcdarts")] + [
    ("paired", algo)
    for algo in ("darts", "darts_2nd_exact", "gdas", "proxyless", "proxyless_reinforce")
]
COMPARED = [run for run in RUNS if run[0] == "paired"]
ALPHA_LR = 0.5  # plain SGD on α: unlike Adam, its step is proportional to the averaged gradient


class Copies(Sampler[int]):
    """Each index of ``base`` as ``copies`` consecutive indices ``i * copies + c``."""

    def __init__(self, base: EpochShuffle, copies: int):
        self.base, self.copies = base, copies

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        return (i * self.copies + c for i in self.base for c in range(self.copies))

    def __len__(self) -> int:
        return len(self.base) * self.copies


class Relabelled(Dataset):
    """Sample ``k`` is image ``k // copies`` with its label shifted by ``shift + k % copies``."""

    def __init__(self, dataset: Dataset, copies: int, shift: int, classes: int):
        self.dataset, self.copies, self.shift, self.classes = dataset, copies, shift, classes

    def __len__(self) -> int:
        return len(self.dataset) * self.copies

    def __getitem__(self, k: int):
        i, c = divmod(k, self.copies)
        x, y = self.dataset[i]
        return x, (y + self.shift + c) % self.classes


class PairedLabels(DigitsDataModule):
    """The same global batch on 2 ranks and in one process, with BatchNorm statistics that do
    not depend on how it is split: both ranks read the same images (same shuffle), rank r with
    labels shifted by r; one process reads each image twice in a row, with both label sets, in
    batches twice as large. A duplicated batch has the mean and (biased) variance of each half,
    so per-rank BatchNorm (the trainer=ddp default) computes what one process computes, while
    the ranks' losses, hence gradients, differ."""

    def train_dataloader(self) -> CombinedLoader:
        self._ensure_setup()
        world, rank = self.trainer.world_size, self.trainer.global_rank
        copies = 2 // world

        def loader(dataset: Dataset, seed: int) -> DataLoader:
            data = Relabelled(dataset, copies, rank, self.num_classes)
            order = Copies(EpochShuffle(len(dataset), seed), copies)
            return DataLoader(data, batch_size=self.batch_size, sampler=order, drop_last=True)

        return CombinedLoader(
            {
                "train": loader(self.search_train, self.seed),
                "val": loader(self.search_val, self.seed + 1),
            },
            mode="max_size_cycle",
        )


class SaveState(pl.Callback):
    """Save α (at the start and the end), the weights and the genotype this rank holds."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.alpha0 = [p.detach().clone() for p in pl_module.arch_parameters()]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        name = f"rank{trainer.global_rank}" if trainer.world_size > 1 else "single"
        state = {
            "alpha0": self.alpha0,
            "alpha": [p.detach().clone() for p in pl_module.arch_parameters()],
            "weights": [p.detach().clone() for p in pl_module.weight_parameters()],
            "genotype": pl_module.export().to_dict(),
            "world_size": trainer.world_size,
        }
        torch.save(state, self.path / f"{name}.pt")


def config(algo: str, data: str, out: Path, *extra: str):
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict

    with initialize_config_module(config_module="nas_lightning.conf", version_base="1.3"):
        cfg = compose("search", overrides=[*COMMON, *ALGOS[algo], *DATASETS[data], *extra])
    run_dir = out / data / algo
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.data_dir = str(out / "data")
        cfg.algo.arch_optimizer = OmegaConf.create(
            {"_target_": "torch.optim.SGD", "_partial_": True, "lr": ALPHA_LR}
        )
        cfg.callbacks = {
            "genotype_writer": {
                "_target_": "nas_lightning.callbacks.GenotypeWriter",
                "dirpath": str(run_dir),
            },
            "save": {"_target_": "ddp_search.SaveState", "path": str(run_dir)},
        }
    return cfg


def rank_main(rank: int, out: str, port: int) -> None:
    """One rank: the environment srun/torchrun would set, then every search in turn."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    from nas_lightning.run import run

    for data, algo in RUNS:
        extra = ("trainer=ddp_cpu", "trainer.devices=2", f"dataset.batch_size={BATCH}")
        run(config(algo, data, Path(out), *extra))


def single_main(out: Path) -> None:
    """The compared searches in this one process (a DDP world of one), batches of 2 * BATCH."""
    from nas_lightning.run import run

    for data, algo in COMPARED:
        extra = ("trainer=ddp_cpu", "trainer.devices=1", f"dataset.batch_size={2 * BATCH}")
        cfg = config(algo, data, out, *extra)
        single = str(out / data / algo / "single")  # its own files; single.pt beside the ranks'
        cfg.paths.output_dir = cfg.callbacks.genotype_writer.dirpath = single
        run(cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    mp.start_processes(rank_main, args=(str(out), free_port()), nprocs=2, start_method="spawn")
    torch.set_num_threads(1)
    single_main(out)
