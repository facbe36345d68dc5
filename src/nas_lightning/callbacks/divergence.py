"""Stop a search whose loss, α, weights or gradients stop being finite.

Without it a diverged run finishes "successfully": α turns NaN, the NaN α derive an arbitrary
genotype (all ``max_pool_3x3``), and it is written as ``genotype.json`` and as the best
checkpoint. The guard checks after every training batch (and the validation metrics before the
epoch's checkpoints are saved), raises :class:`DivergenceError`, and stops the checkpoint
callbacks from saving the diverged state on the way out, so the files of the last finished
epoch stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

Named = list[tuple[str, Tensor]]


class DivergenceError(RuntimeError):
    """A non-finite loss, α, weight, gradient or statistic; the message is one line."""


def all_finite(tensors: Iterable[Tensor]) -> bool:
    """One fused check, one device sync: the 1-norm of every tensor is finite (NaN and inf
    propagate; unlike the 2-norm it overflows only when Σ|x| > 3e38 in float32, and the
    detailed per-tensor pass that follows a failure then finds nothing and the run goes on)."""
    ts = [t for t in tensors if t.numel()]
    if not ts:
        return True
    with torch.no_grad():
        norms = torch._foreach_norm(ts, 1)
    if len({n.dtype for n in norms}) > 1:
        norms = [n.double() for n in norms]
    return bool(torch.isfinite(torch.stack(norms)).all())


def _bad(named: Named) -> list[str]:
    return [n for n, t in named if not bool(torch.isfinite(t.detach()).all())]


def _describe(label: str, bad: list[str], total: int) -> str:
    if total <= 3:
        return f"{label} ({', '.join(bad)})"
    return f"{label} ({len(bad)} of {total} tensors, first: {bad[0]})"


class DivergenceGuard(pl.Callback):
    """Raise :class:`DivergenceError` naming the epoch, global step and quantity."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        arch = {id(p) for p in getattr(pl_module, "arch_parameters", list)()}
        named = list(pl_module.named_parameters())
        self._alpha: Named = [(n, p) for n, p in named if id(p) in arch]
        self._weights: Named = [(n, p) for n, p in named if id(p) not in arch]
        # running statistics only: other buffers may hold NaN on purpose (an unset baseline)
        self._buffers: Named = [
            (f"{m_name}.{stat}", getattr(m, stat))
            for m_name, m in pl_module.named_modules()
            if isinstance(m, _NormBase)
            for stat in ("running_mean", "running_var")
            if getattr(m, stat, None) is not None
        ]

    def _groups(self, loss: Tensor | None) -> list[tuple[str, Named]]:
        def grads(named: Named) -> Named:
            return [(n, p.grad) for n, p in named if p.grad is not None]

        return [
            ("train/loss", [("train/loss", loss)] if loss is not None else []),
            ("α", self._alpha),
            ("α gradient", grads(self._alpha)),
            ("weights", self._weights),
            ("weight gradient", grads(self._weights)),
            ("BatchNorm statistics", self._buffers),
        ]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        loss = loss if isinstance(loss, Tensor) else None
        groups = self._groups(loss)
        found = []
        if not all_finite(t for _, named in groups for _, t in named):
            for label, named in groups:  # the slow, exact pass: only after the fused check failed
                bad = _bad(named)  # (may find nothing: only the fused 1-norm overflowed)
                if bad:
                    found.append(
                        label if label == "train/loss" else _describe(label, bad, len(named))
                    )
        if trainer.world_size > 1:  # a rank may diverge alone: all stop, none hangs
            if not trainer.strategy.reduce_boolean_decision(not found, all=True) and not found:
                found = ["values on another rank"]
        if found:
            self._raise(trainer, pl_module, f"training batch {i}", found)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # runs before the checkpoint callbacks' (Lightning orders those last): nothing is saved
        if trainer.sanity_checking:
            return
        metrics = [
            (k, v)
            for k, v in trainer.callback_metrics.items()
            if isinstance(v, Tensor) and v.is_floating_point() and v.numel() == 1
        ]
        bad = _bad(metrics)
        if bad:
            values = dict(metrics)
            found = [f"{k} ({float(values[k])})" for k in bad]
            self._raise(trainer, pl_module, "validation", found)

    def _raise(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, where: str, found: list[str]
    ) -> None:
        raise DivergenceError(
            f"diverged at epoch {trainer.current_epoch}, global step {trainer.global_step} "
            f"({where}): non-finite {'; '.join(found)}. {self._advice(trainer, pl_module)} "
            "Checkpoints and genotype.json of earlier epochs are left as they were."
        )

    def _advice(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        arch = {id(p) for _, p in self._alpha}
        lrs = []
        for opt in trainer.optimizers:
            params = [p for g in opt.param_groups for p in g["params"]]
            key = "arch_optimizer" if any(id(p) in arch for p in params) else "weight_optimizer"
            lrs.append(f"algo.{key}.lr (now {opt.param_groups[0]['lr']:.3g})")
        text = f"Lower the learning rates: {', '.join(lrs)}" if lrs else "Lower the learning rates"
        clip = getattr(pl_module, "grad_clip", None)
        if clip is not None and not clip:
            text += f", or clip the weight gradients: algo.grad_clip=5 (now {clip:g})"
        return text + "."

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """The checkpoint callbacks run after this hook: keep them from saving the NaN state."""
        if not isinstance(exception, DivergenceError):
            return
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.save_on_exception:
                cb.save_on_exception = False
                rank_zero_warn(f"not saving the diverged state to {cb.dirpath} (save_on_exception)")
