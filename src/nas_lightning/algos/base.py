"""The bilevel search loop shared by every algorithm.

Each training step receives ``{"train": (x, y), "val": (x, y)}``: the α-step runs on the val
batch (skipped during ``warmup_epochs``), then the w-step on the train batch. Manual
optimisation, so the two optimisers and their order stay explicit. The algorithm owns α through
its mixing strategy (``self.mixing``), installed on the space at construction; the loss and the
metrics are injected (``loss(logits, y)``, ``metrics = {name: factory}``), so the loop knows no
task. Recurrent spaces carry a hidden state per data stream (``self.streams``, see
:mod:`nas_lightning.spaces.streams`); language-model batches scale the w learning rate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from nas_lightning.algos.distributed import all_reduce_mean, exclude_from_ddp, world_size
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.algos.mixing import MixingStrategy, SoftmaxMixing
from nas_lightning.spaces.base import SearchSpace, space_from_config
from nas_lightning.spaces.streams import Streams, is_stateful
from nas_lightning.specs import from_spec, to_spec

OptimFactory = Callable[..., torch.optim.Optimizer]
LossFn = Callable[[Tensor, Tensor], Tensor]


class BilevelSearch(pl.LightningModule):
    """α on the val split, w on the train split; subclasses implement :meth:`arch_step` and may
    pick another mixing strategy (:meth:`make_mixing`)."""

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any],
        weight_optimizer: OptimFactory,
        arch_optimizer: OptimFactory,
        scheduler: Callable[..., Any] | None = None,
        grad_clip: float | None = 5.0,
        warmup_epochs: int = 0,
        loss: LossFn | None = None,
        metrics: Mapping[str, Callable[[], Metric]] | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        if isinstance(space, Mapping):  # rebuilt from a checkpoint's hyper-parameters
            space = space_from_config(space)
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.mixing = self.make_mixing()
        self.mixing.install(space)
        self.streams = Streams(is_stateful(space))  # recurrent spaces: one state per stream
        if not self.arch_parameters():
            raise ValueError(f"{type(self).__name__} created no architecture parameters")
        # callables may arrive as plain-data specs (a checkpoint's hyper-parameters)
        self._weight_optimizer = from_spec(weight_optimizer)
        self._arch_optimizer = from_spec(arch_optimizer)
        self._scheduler = from_spec(scheduler)
        loss, metrics = from_spec(loss), {k: from_spec(v) for k, v in (metrics or {}).items()}
        if grad_clip is not None and grad_clip < 0:
            raise ValueError(f"algo.grad_clip={grad_clip} must be >= 0 (0 or null: no clipping)")
        if (
            isinstance(warmup_epochs, bool)
            or int(warmup_epochs) != warmup_epochs
            or warmup_epochs < 0
        ):
            raise ValueError(f"algo.warmup_epochs={warmup_epochs!r} must be an integer >= 0")
        self.grad_clip, self.warmup_epochs = grad_clip, int(warmup_epochs)
        self.loss_fn: LossFn = loss or F.cross_entropy
        if not metrics:
            metrics = {"acc": partial(MulticlassAccuracy, space.num_classes, average="micro")}
        self.train_metrics = nn.ModuleDict({k: f() for k, f in metrics.items()})
        self.val_metrics = nn.ModuleDict(
            {k: copy.deepcopy(m) for k, m in self.train_metrics.items()}
        )
        self.save_hyperparameters(ignore=["space"], logger=False)
        for key in list(self.hparams):  # plain data only: checkpoints load with weights_only
            try:
                self.hparams[key] = to_spec(self.hparams[key])
            except TypeError as e:  # e.g. a user's latency model: pass it again when loading
                rank_zero_warn(f"hyper-parameter {key!r} is not saved in checkpoints: {e}")
                self.hparams[key] = None
        self.hparams["space"] = space.space_config()
        self._hparams_initial = copy.deepcopy(self._hparams)

    def make_mixing(self) -> MixingStrategy:
        """The strategy that owns α and mixes every choice point (DARTS: softmax)."""
        return SoftmaxMixing()

    # ---------------------------------------------------------------- architecture API
    # What callbacks, loggers and run() read: they never reach into the space for α.
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters α (owned by the algorithm's mixing strategy)."""
        return self.mixing.arch_parameters()

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights w (everything that is not α)."""
        return self.space.weight_parameters()

    def export(self) -> Any:
        """The discrete architecture derived from the current α (a genotype)."""
        return self.space.derive(self.mixing.probs(), self.mixing.input_weights())

    def export_probs(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {row_label: {op: probability}}}``: one heatmap per group."""
        return self.space.export_probs(self.mixing.probs())

    def arch_entropy(self) -> Tensor:
        """Mean entropy of the architecture distribution over all decisions."""
        return self.mixing.entropy()

    def diagnostics(self) -> dict[str, float]:
        """Algorithm-specific per-epoch scalars (logged at epoch end)."""
        return {}

    # ---------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        weights, arch = self.weight_parameters(), self.arch_parameters()
        overlap = {id(p) for p in weights} & {id(p) for p in arch}
        if overlap:  # a space bug would silently train α with SGD otherwise
            raise RuntimeError(f"{len(overlap)} architecture parameters are also weights")
        opt_w = self._weight_optimizer(params=weights)
        opt_a = self._arch_optimizer(params=arch)
        if self._scheduler is None:
            return [opt_w, opt_a]
        return [opt_w, opt_a], [{"scheduler": self._scheduler(opt_w), "interval": "epoch"}]

    @property
    def weight_opt(self) -> torch.optim.Optimizer:
        return self.optimizers()[0].optimizer

    def weight_lr(self) -> float:
        return float(self.weight_opt.param_groups[0]["lr"])

    # ---------------------------------------------------------------- steps
    def forward(self, x: Tensor) -> Tensor:
        return self.space(x)

    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        """Set ``.grad`` of the α and return the architecture loss (α optimiser steps after)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- mixed precision
    def loss_scaler(self) -> Any:
        """The precision plugin's gradient scaler (``16-mixed``), else ``None``."""
        trainer = getattr(self, "_trainer", None)
        plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
        scaler = getattr(plugin, "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def loss_scale(self) -> float:
        """The factor α-step losses are multiplied by: the ``16-mixed`` loss scale (a power of
        two, so scaling is exact), else 1. The α optimiser's step (Lightning's precision plugin)
        divides ``.grad`` by it exactly once and skips a step with inf/NaN gradients."""
        scaler = self.loss_scaler()
        if scaler is None:
            return 1.0
        if scaler._scale is None:  # lazily created by the first scale() call
            scaler.scale(torch.ones((), device=self.device))
        return float(scaler.get_scale())

    def arch_loss_fn(self, logits: Tensor, y: Tensor) -> Tensor:
        """The task loss, times :meth:`loss_scale`: what α gradients are taken of, so that fp16
        activation gradients do not underflow."""
        return self.loss_fn(logits, y) * self.loss_scale()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the weight gradients here: Lightning calls this after unscaling them."""
        if self.grad_clip and optimizer is self.weight_opt:
            params = self.weight_parameters()  # foreach: one norm kernel (CPU defaults to a loop)
            cpu = params[0].device.type == "cpu"
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True if cpu else None)

    def on_arch_step_end(self) -> None:
        """Called right after the α optimiser step (ProxylessNAS rescales the updated α here)."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        start = batch_idx == 0  # each epoch's first window starts the streams afresh
        train = self.streams.bind("train", batch["train"], start)
        val = self.streams.bind("val", batch["val"], start)
        opt_w, opt_a = self.optimizers()
        if self.current_epoch >= self.warmup_epochs:
            opt_a.zero_grad(set_to_none=True)
            arch_loss = self.arch_step(train, val)
            self._average_arch_grads()
            opt_a.step()
            self.on_arch_step_end()
            n_val = val[1].numel()  # samples, or tokens of a language-model window
            self.log(  # sync_dist (here and below): under DDP the mean over ranks, not rank 0's
                "arch/val_loss",
                arch_loss,
                on_step=False,
                on_epoch=True,
                batch_size=n_val,
                sync_dist=True,
            )
        opt_w.zero_grad(set_to_none=True)
        loss, logits = self.weight_step(train)
        opt_w.step()  # clipping: on_before_optimizer_step, after any loss-scale unscaling
        n = train[1].numel()
        self.log(
            "train/loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=n,
            sync_dist=True,
        )
        self._log_metrics("train", self.train_metrics, logits.detach(), train[1])
        return loss.detach()

    def _average_arch_grads(self) -> None:
        """Data parallel: the same α step on every rank (see :mod:`.distributed`)."""
        if world_size() > 1:
            arch = self.arch_parameters()
            for p, g in zip(arch, all_reduce_mean([p.grad for p in arch]), strict=True):
                p.grad = g

    def setup(self, stage: str) -> None:
        exclude_from_ddp(self, self.arch_parameters())  # α gradients are averaged by hand
        gen = getattr(self.mixing, "generator", False)
        if gen is None:  # sampling strategies: the same draws on every rank, saved in checkpoints
            self.mixing.generator = torch.Generator().manual_seed(torch.initial_seed())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        gen = getattr(self.mixing, "generator", None)
        if isinstance(gen, torch.Generator):
            checkpoint["mixing_generator"] = gen.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("mixing_generator")
        if state is not None:
            self.mixing.generator = torch.Generator()
            self.mixing.generator.set_state(state)

    def _log_metrics(self, stage: str, metrics: nn.ModuleDict, logits: Tensor, y: Tensor) -> None:
        for name, metric in metrics.items():
            metric(logits, y)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=True)

    def weight_step(self, train: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Backward of the train loss into w only (α frozen: no α graph is built)."""
        x, y = train
        with frozen(self.arch_parameters()):
            logits = self(x)
            loss = self.loss_fn(logits, y)
            self.manual_backward(loss)
        return loss, logits

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        # the same on every rank (α and the lr are): synchronised only to keep logs uniform
        self.log("arch/entropy", self.arch_entropy(), sync_dist=True)
        for key, value in self.diagnostics().items():
            self.log(key, float(value), sync_dist=True)
        self.log("train/lr", self.weight_lr(), sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self.streams.bind("eval", batch, batch_idx == 0)
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self.log("val/loss", loss, prog_bar=True, batch_size=y.numel(), sync_dist=True)
        self._log_metrics("val", self.val_metrics, logits, y)

    # ---------------------------------------------------------------- token streams
    # A language-model batch carries ``lr_scale = seq_len / bptt`` (variable-length windows):
    # the w learning rate is scaled for that step, the virtual step's ξ included, as the DARTS
    # rnn code does. After the step, recurrent streams carry their end states on (detached).
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        scale = float(batch.get("lr_scale", 1.0)) if isinstance(batch, Mapping) else 1.0
        self._unscaled_lrs = [g["lr"] for g in self.weight_opt.param_groups]
        if scale != 1.0:
            for g in self.weight_opt.param_groups:
                g["lr"] = g["lr"] * scale

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for g, lr in zip(self.weight_opt.param_groups, self._unscaled_lrs, strict=True):
            g["lr"] = lr
        self.streams.advance()

    def on_validation_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.streams.advance()
