"""ProxylessNAS (Cai et al. 2019): binarised paths, BinaryConnect / REINFORCE α-steps and a
differentiable expected-latency loss, on the shared bilevel loop.

``mode``: ``binary`` (one path per block sampled from p = softmax(α) in the w-step: the memory
of a single compact net), ``darts`` (softmax mix) or ``full`` (the one-shot unweighted sum of all
paths in the w-step and validation; since that sum does not depend on α, its α-step uses the
softmax mix like ``darts``). ``binary_mode``: ``two`` (the paper's two-path α-step, then the
rescale that keeps the unsampled paths' probabilities) or ``full`` (gates of all paths). The
decisions are any space's choice points: MobileNet blocks, or DARTS cell edges (binary gates per
edge; the expected latency sums over every edge of every cell).

Loss of the α-step: ``CE + λ2·E[lat]`` (``λ2·(E − T)/T`` when ``target_ms`` is set) or
``CE·(log E / log T)^β``. λ1‖w‖² is the weight optimiser's ``weight_decay`` (applied to sampled
paths only in binary mode, since only they get gradients).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nas_lightning.algos import gates as G
from nas_lightning.algos import latency_constraint as C
from nas_lightning.algos import reinforce as R
from nas_lightning.algos.base import BilevelSearch
from nas_lightning.algos.distributed import all_reduce_mean
from nas_lightning.algos.hypergrad import frozen
from nas_lightning.algos.mixing.binary import MODES, BinaryGateMixing
from nas_lightning.latency.base import LatencyModel, LatencyTables, expected_latency, latency_tables
from nas_lightning.ops.bn import running_stats_frozen
from nas_lightning.spaces.plans import GatePlan
from nas_lightning.specs import from_spec

BINARY_MODES = ("two", "full")
ESTIMATORS = ("gradient", "reinforce")
LATENCY_LOSSES = ("additive", "multiplicative", "constraint")


def _check(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"algo.{name}={value!r} is invalid; valid choices: {', '.join(choices)}")
    return value


class ProxylessSearch(BilevelSearch):
    """ProxylessNAS on any space; see the module docstring for the options."""

    def __init__(
        self,
        *args: Any,
        mode: str = "binary",
        binary_mode: str = "two",
        estimator: str = "gradient",
        latency: LatencyModel | None = None,
        latency_loss: str = "additive",
        latency_weight: float = 0.1,
        target_ms: float | None = None,
        beta: float = 0.3,
        reward_exponent: float = -0.07,
        baseline_decay: float = 0.99,
        constraint_lr: float = 1.0,
        **kwargs: Any,
    ):
        self.mode = _check("mode", mode, MODES)
        super().__init__(*args, **kwargs)
        self.binary_mode = _check("binary_mode", binary_mode, BINARY_MODES)
        self.estimator = _check("estimator", estimator, ESTIMATORS)
        self.latency_loss = _check("latency_loss", latency_loss, LATENCY_LOSSES)
        latency = from_spec(latency)
        if latency is not None and not callable(getattr(latency, "op_latency_ms", None)):
            raise TypeError(f"latency model {type(latency).__name__} has no op_latency_ms(desc)")
        if latency_weight < 0 or not 0 <= baseline_decay < 1:
            raise ValueError(
                f"algo.latency_weight={latency_weight} must be >= 0 and "
                f"algo.baseline_decay={baseline_decay} in [0, 1)"
            )
        if target_ms is not None and target_ms <= 0:
            raise ValueError(f"algo.target_ms={target_ms} must be > 0 (or null)")
        if latency_loss == "constraint" and (latency is None or target_ms is None):
            raise ValueError(
                "algo.latency_loss=constraint needs a latency model (latency=lut|predictor|flops) "
                "and algo.target_ms (the hard target T in ms)"
            )
        if latency is not None and latency_loss == "multiplicative" and not (target_ms or 0) > 1:
            raise ValueError(
                f"algo.latency_loss=multiplicative needs algo.target_ms > 1 ms "
                f"(log T > 0); got {target_ms}"
            )
        self.latency = latency
        self.latency_weight, self.target_ms, self.beta = latency_weight, target_ms, beta
        self.reward_exponent, self.baseline_decay = reward_exponent, baseline_decay
        self.register_buffer("reward_baseline", torch.tensor(float("nan")))
        self.constraint_lr = constraint_lr
        self.register_buffer("lagrange_multiplier", torch.tensor(0.0))  # λ of the constraint
        self.last_involved: dict[str, list[int]] = {}  # paths of the last binary α-step
        self._tables: LatencyTables | None = None
        self._rescale: list[tuple[Tensor, list[int], Tensor]] = []

    def make_mixing(self) -> BinaryGateMixing:
        return BinaryGateMixing(self.mode)

    @property
    def generator(self) -> torch.Generator | None:
        return self.mixing.generator

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        self.mixing.generator = value

    @property
    def last_choice(self) -> dict[str, int] | None:
        """The paths of the last binary w-step, per decision key."""
        return self.mixing.last_choice

    def alpha_rows(self) -> dict[str, Tensor]:
        """Per decision key, its α row (a view of the group's parameter)."""
        return self.mixing.rows_of(dict(self.mixing.alpha.items()))

    # ---------------------------------------------------------------- latency
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.latency_tables()  # fail fast on a latency model that cannot price this space

    def latency_tables(self) -> LatencyTables | None:
        """Per decision key the ms of each candidate (built once, on α's device) + fixed ms."""
        if self.latency is None:
            return None
        a = self.arch_parameters()[0]
        if self._tables is None or next(iter(self._tables[0].values())).device != a.device:
            specs = (self.space.latency_specs(), self.space.fixed_specs())
            tables, fixed = latency_tables(self.latency, *specs, a.dtype, a.device)
            fastest = C.fastest_latency_ms((tables, fixed))
            if self.latency_loss == "multiplicative" and fastest <= 1.0:
                raise ValueError(
                    f"algo.latency_loss=multiplicative needs E[lat] > 1 ms but the "
                    f"fastest net takes {fastest:.3g} ms; use latency_loss=additive"
                )
            if self.latency_loss == "constraint" and fastest > self.target_ms:
                raise ValueError(
                    f"algo.target_ms={self.target_ms} is unreachable: the fastest network of "
                    f"this space takes {fastest:.4g} ms; raise the target"
                )
            self._tables = (tables, fixed)
        return self._tables

    def expected_latency_ms(self) -> float | None:
        lut = self.latency_tables()
        return None if lut is None else float(expected_latency(self.mixing.probs(), lut))

    def add_latency_loss(self, ce: Tensor, probs: dict[str, Tensor]) -> Tensor:
        lut = self.latency_tables()
        if lut is None:
            return ce
        lat = expected_latency(probs, lut)
        if self.latency_loss == "constraint":  # CE + λ·(E − T)/T, λ from dual ascent
            lam = float(self.lagrange_multiplier)
            return ce + lam * (lat - self.target_ms) / self.target_ms
        return G.latency_loss(
            ce, lat, self.latency_loss, self.latency_weight, self.target_ms, self.beta
        )

    # ---------------------------------------------------------------- steps
    def arch_step(self, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor]) -> Tensor:
        x, y = val
        with running_stats_frozen(self.space):  # the val batch must not move BN statistics
            if self.estimator == "reinforce":
                ce = self._reinforce_step(x, y)
            else:
                with frozen(self.weight_parameters()):
                    step = self._binary_step if self.mode == "binary" else self._mix_step
                    ce = step(x, y)
        lat = self.expected_latency_ms()
        if lat is not None:
            self.log("arch/expected_latency_ms", lat, on_step=False, on_epoch=True)
        return ce

    def _set_grads(self, grads: dict[str, Tensor]) -> None:
        """Write per-key α gradients into the group parameters' ``.grad``."""
        for param in self.mixing.alpha.values():
            param.grad = torch.zeros_like(param)
        for key, grad in grads.items():
            g, r, w = self.mixing.rows[key]
            self.mixing.alpha[g].grad[r, :w] += grad.detach()

    def _mix_step(self, x: Tensor, y: Tensor) -> Tensor:
        rows = self.alpha_rows()
        probs = {k: F.softmax(a, -1) for k, a in rows.items()}
        with self.mixing.using(probs):
            ce = self.loss_fn(self(x), y)
        params = list(self.mixing.alpha.values())
        loss = self.add_latency_loss(ce, probs) * self.loss_scale()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for a, grad in zip(params, grads, strict=True):
            a.grad = torch.zeros_like(a) if grad is None else grad.detach()
        return ce.detach()

    def _binary_step(self, x: Tensor, y: Tensor) -> Tensor:
        two = self.binary_mode == "two"
        rows = self.alpha_rows()
        plans, involved = {}, {}
        probs = self.mixing.probs()
        flat = torch.cat([p.float() for p in probs.values()]).cpu()  # one host transfer
        for key, p in zip(probs, flat.split([len(p) for p in probs.values()]), strict=True):
            active, inv = G.sample_paths(p, two, self.generator)
            gates = torch.zeros_like(rows[key].detach())
            gates[active] = 1.0
            others = tuple(j for j in inv if j != active)
            plans[key] = GatePlan(gates.requires_grad_(), active, others)
            involved[key] = inv
        self.last_involved = involved
        with self.mixing.using(plans):
            ce = self.loss_fn(self(x), y)
        if two:
            probs = {k: G.restricted_softmax(a, involved[k]) for k, a in rows.items()}
        else:
            probs = {k: F.softmax(a, -1) for k, a in rows.items()}
        loss = self.add_latency_loss(ce, probs) * self.loss_scale()
        params = list(self.mixing.alpha.values())
        keys = list(plans)
        grads = torch.autograd.grad(
            loss, [plans[k].gates for k in keys] + params, allow_unused=True
        )
        gate_grads, direct = grads[: len(keys)], grads[len(keys) :]
        self._set_grads(
            {
                k: G.binaryconnect_grad(
                    torch.zeros_like(plans[k].gates) if gg is None else gg, rows[k], involved[k]
                )
                for k, gg in zip(keys, gate_grads, strict=True)
            }
        )
        for a, d in zip(params, direct, strict=True):  # the latency term's direct gradient
            if d is not None:
                a.grad += d.detach()
        if two:  # the rescale runs in on_arch_step_end, after the optimiser step
            self._rescale = [(rows[k], involved[k], rows[k].detach().clone()) for k in keys]
        return ce.detach()

    def _reinforce_step(self, x: Tensor, y: Tensor) -> Tensor:
        choice = self.mixing.sample()
        with torch.no_grad(), self.mixing.using(choice):
            logits = self(x)
            ce = self.loss_fn(logits, y)
            # data parallel: the accuracy on the global batch, so that every rank moves the
            # reward baseline alike (and as one process would)
            reward = float(all_reduce_mean([(logits.argmax(-1) == y).float().mean()])[0])
        lut = self.latency_tables()
        if lut is not None:
            lat = lut[1] + sum(float(lut[0][k][c]) for k, c in choice.items())
            reward = R.latency_reward(reward, lat, self.target_ms, self.reward_exponent)
        advantage, baseline = R.update_baseline(
            float(self.reward_baseline), reward, self.baseline_decay
        )
        self.reward_baseline.fill_(baseline)
        rows = self.alpha_rows()
        self._set_grads({k: -advantage * R.log_prob_grad(rows[k], c) for k, c in choice.items()})
        self.log("arch/reward", reward, on_step=False, on_epoch=True)
        return ce

    def on_arch_step_end(self) -> None:
        for a, inv, old in self._rescale:
            G.rescale_pair(a, old, inv)
        self._rescale = []
        if self.latency_loss == "constraint":  # λ by dual ascent, then E[lat] ≤ T by projection
            lut = self.latency_tables()
            lat = float(expected_latency(self.mixing.probs(), lut))
            lam = C.dual_ascent(
                float(self.lagrange_multiplier), lat, self.target_ms, self.constraint_lr
            )
            self.lagrange_multiplier.fill_(lam)
            C.project(self.alpha_rows(), lut, self.target_ms)
            self.log("arch/lagrange_multiplier", lam, on_step=False, on_epoch=True)

    def diagnostics(self) -> dict[str, float]:
        out = {"arch/zero_blocks": float(sum(G.is_zero_name(n) for n in self.export().ops()))}
        if self.current_epoch < self.warmup_epochs and self.latency is not None:
            out["arch/expected_latency_ms"] = self.expected_latency_ms()
        return out


__all__ = ["BINARY_MODES", "ESTIMATORS", "LATENCY_LOSSES", "MODES", "ProxylessSearch"]
