"""ProxylessNAS (Cai et al. 2019): binarised paths, BinaryConnect / REINFORCE α-steps and a
differentiable expected-latency loss, on the shared bilevel loop.

``mode``: ``binary`` (one path per block sampled from p = softmax(α) in the w-step: the memory
of a single compact net), ``darts`` (softmax mix) or ``full`` (the one-shot unweighted sum of all
paths in the w-step and validation; since that sum does not depend on α, its α-step uses the
softmax mix like ``darts``). ``binary_mode``: ``two`` (the paper's two-path α-step, then the
rescale that keeps the unsampled paths' probabilities) or ``full`` (gates of all paths).

Loss of the α-step: ``CE + λ2·E[lat]`` (``λ2·(E − T)/T`` when ``target_ms`` is set) or
``CE·(log E / log T)^β``. λ1‖w‖² is the weight optimiser's ``weight_decay`` (applied to sampled
paths only in binary mode, since only they get gradients). Requires a block space
(``latency_specs``, ``op_names_per_block``, a per-block plan in ``forward``), e.g. mobilenet.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.algos import gates as G
from nas_lightning.algos import reinforce as R
from nas_lightning.algos.base import BilevelSearch, frozen
from nas_lightning.ops.bn import running_stats_frozen
from nas_lightning.spaces.gated import GatePlan

MODES = ("binary", "darts", "full")
BINARY_MODES = ("two", "full")
ESTIMATORS = ("gradient", "reinforce")
LATENCY_LOSSES = ("additive", "multiplicative")
BLOCK_SPACE_API = ("latency_specs", "fixed_specs", "op_names_per_block", "argmax_choice")


def _check(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"algo.{name}={value!r} is invalid; valid choices: {', '.join(choices)}")
    return value


class ProxylessSearch(BilevelSearch):
    """ProxylessNAS on a block space; see the module docstring for the options."""

    def __init__(
        self,
        *args: Any,
        mode: str = "binary",
        binary_mode: str = "two",
        estimator: str = "gradient",
        latency: G.LatencyModel | None = None,
        latency_loss: str = "additive",
        latency_weight: float = 0.1,
        target_ms: float | None = None,
        beta: float = 0.3,
        reward_exponent: float = -0.07,
        baseline_decay: float = 0.99,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.mode = _check("mode", mode, MODES)
        self.binary_mode = _check("binary_mode", binary_mode, BINARY_MODES)
        self.estimator = _check("estimator", estimator, ESTIMATORS)
        self.latency_loss = _check("latency_loss", latency_loss, LATENCY_LOSSES)
        missing = [m for m in BLOCK_SPACE_API if not hasattr(self.space, m)]
        if missing:
            raise TypeError(
                f"algo=proxyless needs a block search space (e.g. space=mobilenet); "
                f"{type(self.space).__name__} lacks {', '.join(missing)}"
            )
        if latency is not None and not callable(getattr(latency, "op_latency_ms", None)):
            raise TypeError(f"latency model {type(latency).__name__} has no op_latency_ms(desc)")
        if latency_weight < 0 or not 0 <= baseline_decay < 1:
            raise ValueError(
                f"algo.latency_weight={latency_weight} must be >= 0 and "
                f"algo.baseline_decay={baseline_decay} in [0, 1)"
            )
        if target_ms is not None and target_ms <= 0:
            raise ValueError(f"algo.target_ms={target_ms} must be > 0 (or null)")
        if latency is not None and latency_loss == "multiplicative" and not (target_ms or 0) > 1:
            raise ValueError(
                f"algo.latency_loss=multiplicative needs algo.target_ms > 1 ms "
                f"(log T > 0); got {target_ms}"
            )
        self.latency = latency
        self.latency_weight, self.target_ms, self.beta = latency_weight, target_ms, beta
        self.reward_exponent, self.baseline_decay = reward_exponent, baseline_decay
        self.register_buffer("reward_baseline", torch.tensor(float("nan")))
        self.generator: torch.Generator | None = None  # None: the global (seeded) RNG
        self.last_choice: list[int] | None = None  # paths of the last binary w-step
        self.last_involved: list[list[int]] = []  # paths of the last binary α-step, per block
        self._tables: tuple[list[Tensor], float] | None = None
        self._rescale: list[tuple[Tensor, list[int], Tensor]] = []

    # ---------------------------------------------------------------- latency
    def setup(self, stage: str) -> None:
        self.latency_tables()  # fail fast on a latency model that cannot price this space

    def latency_tables(self) -> tuple[list[Tensor], float] | None:
        """Per-block ms per candidate (built once, on α's device) and the fixed ms."""
        if self.latency is None:
            return None
        a = self.space.arch_parameters()[0]
        if self._tables is None or self._tables[0][0].device != a.device:
            specs = (self.space.latency_specs(), self.space.fixed_specs())
            tables, fixed = G.latency_tables(self.latency, *specs, a.dtype, a.device)
            fastest = fixed + sum(float(t.min()) for t in tables)
            if self.latency_loss == "multiplicative" and fastest <= 1.0:
                raise ValueError(
                    f"algo.latency_loss=multiplicative needs E[lat] > 1 ms but the "
                    f"fastest net takes {fastest:.3g} ms; use latency_loss=additive"
                )
            self._tables = (tables, fixed)
        return self._tables

    def expected_latency_ms(self) -> float | None:
        lut = self.latency_tables()
        if lut is None:
            return None
        probs = [F.softmax(a.detach(), -1) for a in self.space.arch_parameters()]
        return float(G.expected_latency(probs, *lut))

    def add_latency_loss(self, ce: Tensor, probs: list[Tensor]) -> Tensor:
        lut = self.latency_tables()
        if lut is None:
            return ce
        lat = G.expected_latency(probs, *lut)
        return G.latency_loss(
            ce, lat, self.latency_loss, self.latency_weight, self.target_ms, self.beta
        )

    # ---------------------------------------------------------------- steps
    def eval_plan(self) -> list | None:
        if self.mode == "binary":
            return self.space.argmax_choice()
        if self.mode == "full":
            return [[1.0] * a.numel() for a in self.space.arch_parameters()]
        return None  # the space's default: softmax(α) mix

    def forward(self, x: Tensor) -> Tensor:
        return self.space(x, self.eval_plan())

    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        x, y = val
        alphas = self.space.arch_parameters()
        with running_stats_frozen(self.space):  # the val batch must not move BN statistics
            if self.estimator == "reinforce":
                ce = self._reinforce_step(x, y, alphas)
            else:
                with frozen(self.space.weight_parameters()):
                    step = self._binary_step if self.mode == "binary" else self._mix_step
                    ce = step(x, y, alphas)
        lat = self.expected_latency_ms()
        if lat is not None:
            self.log("arch/expected_latency_ms", lat, on_step=False, on_epoch=True)
        return ce

    def _mix_step(self, x: Tensor, y: Tensor, alphas: list[Tensor]) -> Tensor:
        probs = [F.softmax(a, -1) for a in alphas]
        ce = self.loss_fn(self.space(x, probs), y)
        grads = torch.autograd.grad(self.add_latency_loss(ce, probs), alphas, allow_unused=True)
        for a, g in zip(alphas, grads, strict=True):
            a.grad = None if g is None else g.detach()
        return ce.detach()

    def _binary_step(self, x: Tensor, y: Tensor, alphas: list[Tensor]) -> Tensor:
        two = self.binary_mode == "two"
        flat = torch.cat([a.detach() for a in alphas]).float().cpu()  # one device sync
        plans, involved = [], []
        for a, logits in zip(alphas, flat.split([a.numel() for a in alphas]), strict=True):
            active, inv = G.sample_paths(F.softmax(logits, -1), two, self.generator)
            gates = torch.zeros_like(a.detach())
            gates[active] = 1.0
            plans.append(
                GatePlan(gates.requires_grad_(), active, tuple(j for j in inv if j != active))
            )
            involved.append(inv)
        self.last_involved = involved
        ce = self.loss_fn(self.space(x, plans), y)
        if two:
            probs = [G.restricted_softmax(a, inv) for a, inv in zip(alphas, involved, strict=True)]
        else:
            probs = [F.softmax(a, -1) for a in alphas]
        loss = self.add_latency_loss(ce, probs)
        grads = torch.autograd.grad(loss, [p.gates for p in plans] + alphas, allow_unused=True)
        gate_grads, direct_grads = grads[: len(alphas)], grads[len(alphas) :]
        for a, plan, gg, direct, inv in zip(
            alphas, plans, gate_grads, direct_grads, involved, strict=True
        ):
            gg = torch.zeros_like(plan.gates) if gg is None else gg
            grad = G.binaryconnect_grad(gg, a, inv)
            a.grad = grad if direct is None else grad + direct.detach()
        if two:  # the rescale runs in on_arch_step_end, after the optimiser step
            self._rescale = [
                (a, inv, a.detach().clone()) for a, inv in zip(alphas, involved, strict=True)
            ]
        return ce.detach()

    def _reinforce_step(self, x: Tensor, y: Tensor, alphas: list[Tensor]) -> Tensor:
        choice = R.sample_architecture(alphas, self.generator)
        with torch.no_grad():
            logits = self.space(x, choice)
            ce = self.loss_fn(logits, y)
            reward = float((logits.argmax(-1) == y).float().mean())
        lut = self.latency_tables()
        if lut is not None:
            lat = lut[1] + sum(float(t[c]) for t, c in zip(lut[0], choice, strict=True))
            reward = R.latency_reward(reward, lat, self.target_ms, self.reward_exponent)
        advantage, baseline = R.update_baseline(
            float(self.reward_baseline), reward, self.baseline_decay
        )
        self.reward_baseline.fill_(baseline)
        for a, g in zip(alphas, R.reinforce_grads(alphas, choice, advantage), strict=True):
            a.grad = g
        self.log("arch/reward", reward, on_step=False, on_epoch=True)
        return ce

    def on_arch_step_end(self) -> None:
        for a, inv, old in self._rescale:
            G.rescale_pair(a, old, inv)
        self._rescale = []

    def weight_step(self, train: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Binary mode: one path per block sampled from p; only its weights get gradients."""
        x, y = train
        alphas = self.space.arch_parameters()
        with frozen(alphas):
            if self.mode == "binary":
                plan = self.last_choice = R.sample_architecture(alphas, self.generator)
            else:
                plan = self.eval_plan()
            logits = self.space(x, plan)
            loss = self.loss_fn(logits, y)
            self.manual_backward(loss)
        return loss, logits

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", self.loss_fn(logits, y), prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("arch/zero_blocks", float(self.space.export().ops().count("zero")))
        if self.current_epoch < self.warmup_epochs and self.latency is not None:
            self.log("arch/expected_latency_ms", self.expected_latency_ms())


__all__ = ["BINARY_MODES", "ESTIMATORS", "LATENCY_LOSSES", "MODES", "ProxylessSearch"]
