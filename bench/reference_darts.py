"""A naive but faithful plain-PyTorch DARTS search model and architect (the bench baseline).

Written from the DARTS paper (Liu et al. 2019) and the design of its reference code, with none
of our supernet's shortcuts, so ``bench/darts_step.py`` can report our step time and saved
bytes as a ratio to what the original design costs on the same machine:

- every edge is a MixedOp evaluating all eight ops, ``none`` included (``x.mul(0.)``), pools
  followed by a non-affine BN, mixed by ``sum(w * op(x))``; NCHW; α are plain tensors (not
  module parameters), so the w-step builds their graph too, as in the original code;
- first order: ``L_val.backward()`` (which also fills the weight grads, zeroed by the w-step);
- second order: a freshly built network is loaded with the virtual-step weights
  ``w − ξ(∇w L_train + μ·buf + λ·w)`` and ``H v`` is the paper's central difference around
  ``w`` with ``ε = 0.01/‖v‖``. ``v = ∇w' L_val`` exactly: the original code also adds ``λ·w'``
  to ``v`` and clips ‖∇α‖; neither changes the cost, so both are left out and the maths equals
  ours (``nas_lightning.algos.hypergrad``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"]
PRIMITIVES += ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
Batch = tuple[Tensor, Tensor]


def relu_conv_bn(C_in: int, C_out: int) -> nn.Sequential:
    conv = nn.Conv2d(C_in, C_out, 1, bias=False)
    return nn.Sequential(nn.ReLU(inplace=False), conv, nn.BatchNorm2d(C_out, affine=False))


def dil_conv(C: int, k: int, stride: int, pad: int, dil: int) -> nn.Sequential:
    depthwise = nn.Conv2d(C, C, k, stride, pad, dilation=dil, groups=C, bias=False)
    pointwise = nn.Conv2d(C, C, 1, bias=False)
    return nn.Sequential(
        nn.ReLU(inplace=False), depthwise, pointwise, nn.BatchNorm2d(C, affine=False)
    )


class Zero(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x.mul(0.0) if self.stride == 1 else x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_op(name: str, C: int, stride: int) -> nn.Module:
    """One candidate op at search time (``affine=False``; pools get their non-affine BN)."""
    if name == "none":
        return Zero(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(C, C)
    if name.endswith("pool_3x3"):
        if name.startswith("max"):
            return nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.BatchNorm2d(C, affine=False))
        pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        return nn.Sequential(pool, nn.BatchNorm2d(C, affine=False))
    k = int(name[-1])
    if name.startswith("sep"):  # two stacked (ReLU, depthwise, pointwise, BN) blocks
        return nn.Sequential(dil_conv(C, k, stride, k // 2, 1), dil_conv(C, k, 1, k // 2, 1))
    return dil_conv(C, k, stride, 2 * (k // 2), 2)


class MixedOp(nn.Module):
    def __init__(self, C: int, stride: int, ops: list[str]):
        super().__init__()
        self._ops = nn.ModuleList(make_op(n, C, stride) for n in ops)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        return sum(w * op(x) for w, op in zip(weights, self._ops, strict=True))


class Cell(nn.Module):
    """``single_path``: node ``i`` reads states ``i, i+1`` through ``ops[0]`` (a derived net)."""

    def __init__(self, C_pp: int, C_p: int, C: int, kind: tuple[bool, bool], net: Network):
        super().__init__()
        (self.reduction, reduction_prev), self.nodes = kind, net.nodes
        self.single_path = net.single_path
        self.pre0 = FactorizedReduce(C_pp, C) if reduction_prev else relu_conv_bn(C_pp, C)
        self.pre1 = relu_conv_bn(C_p, C)
        self.edges = nn.ModuleDict()
        for i in range(self.nodes):
            for j in (i, i + 1) if self.single_path else range(i + 2):
                stride = 2 if self.reduction and j < 2 else 1
                single = self.single_path
                op = make_op(net.ops[0], C, stride) if single else MixedOp(C, stride, net.ops)
                self.edges[f"{i}_{j}"] = op

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor | None) -> Tensor:
        states, e = [self.pre0(s0), self.pre1(s1)], 0
        for i in range(self.nodes):
            if self.single_path:
                states.append(sum(self.edges[f"{i}_{j}"](states[j]) for j in (i, i + 1)))
                continue
            terms = []
            for j, h in enumerate(states):
                terms.append(self.edges[f"{i}_{j}"](h, weights[e]))
                e += 1
            states.append(sum(terms))
        return torch.cat(states[2:], dim=1)


class Network(nn.Module):
    """The DARTS search network (3 input channels, stem ×3, 4 nodes); ``single_path=True``
    gives the same shape with one op per edge, two edges per node: what a derived, discrete net
    of this size costs per training step, for scale."""

    def __init__(self, C: int, num_classes: int, layers: int, single_path: bool = False):
        super().__init__()
        self.config = dict(C=C, num_classes=num_classes, layers=layers, single_path=single_path)
        self.nodes, self.single_path = 4, single_path
        self.ops = ["sep_conv_3x3"] if single_path else PRIMITIVES
        C_curr = 3 * C
        stem = nn.Conv2d(3, C_curr, 3, padding=1, bias=False)
        self.stem = nn.Sequential(stem, nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells, reduction_prev = nn.ModuleList(), False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C_curr = 2 * C_curr if reduction else C_curr
            self.cells.append(Cell(C_pp, C_p, C_curr, (reduction, reduction_prev), self))
            reduction_prev, C_pp, C_p = reduction, C_p, self.nodes * C_curr
        self.classifier = nn.Linear(C_p, num_classes)
        shape = (sum(i + 2 for i in range(self.nodes)), len(self.ops))
        # plain tensors, as in the original: not in parameters(), so SGD never sees them
        self.alphas_normal = (1e-3 * torch.randn(shape)).requires_grad_()
        self.alphas_reduce = (1e-3 * torch.randn(shape)).requires_grad_()

        self.placement: tuple[torch.device, bool] = (torch.device("cpu"), False)

    def placed(self, device: torch.device, channels_last: bool = False) -> Network:
        """This network on ``device`` (α too: plain tensors), channels_last if asked."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.to(device=device, memory_format=fmt)
        self.alphas_normal = self.alphas_normal.detach().to(device).requires_grad_()
        self.alphas_reduce = self.alphas_reduce.detach().to(device).requires_grad_()
        self.placement = (torch.device(device), channels_last)
        return self

    def arch_parameters(self) -> list[Tensor]:
        return [self.alphas_normal, self.alphas_reduce]

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alpha = self.alphas_reduce if cell.reduction else self.alphas_normal
            w = None if cell.single_path else F.softmax(alpha, dim=-1)
            s0, s1 = s1, cell(s0, s1, w)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self(x), y)


class Architect:
    """The α-step: Adam(3e-4, (0.5, 0.999), wd 1e-3) on the first- or second-order gradient."""

    def __init__(self, model: Network, momentum: float = 0.9, weight_decay: float = 3e-4):
        self.model, self.momentum, self.weight_decay = model, momentum, weight_decay
        arch = model.arch_parameters()
        self.optimizer = torch.optim.Adam(arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def step(self, train: Batch, val: Batch, eta: float, w_opt: Optimizer, unrolled: bool) -> None:
        self.optimizer.zero_grad()
        if unrolled:
            self._unrolled_backward(train, val, eta, w_opt)
        else:
            self.model.loss(*val).backward()
        self.optimizer.step()

    def _unrolled_backward(self, train: Batch, val: Batch, eta: float, w_opt: Optimizer) -> None:
        model, params = self.model, list(self.model.parameters())
        theta = torch.cat([p.data.reshape(-1) for p in params])
        try:
            moment = torch.cat([w_opt.state[p]["momentum_buffer"].reshape(-1) for p in params])
            moment = moment * self.momentum
        except KeyError:
            moment = torch.zeros_like(theta)
        dtheta = torch.cat([g.reshape(-1) for g in torch.autograd.grad(model.loss(*train), params)])
        dtheta = dtheta.data + self.weight_decay * theta
        unrolled = self._model_from_theta(theta - eta * (moment + dtheta))
        loss = unrolled.loss(*val)
        grads = torch.autograd.grad(loss, unrolled.arch_parameters(), retain_graph=True)
        vector = [g.data for g in torch.autograd.grad(loss, list(unrolled.parameters()))]
        implicit = self._hessian_vector_product(vector, train)
        for a, g, ig in zip(model.arch_parameters(), grads, implicit, strict=True):
            a.grad = (g - eta * ig).data

    def _model_from_theta(self, theta: Tensor) -> Network:
        """A new network (built from scratch, as the original does) holding ``theta``."""
        clone = Network(**self.model.config).placed(*self.model.placement)
        for x, y in zip(clone.arch_parameters(), self.model.arch_parameters(), strict=True):
            x.data.copy_(y.data)
        state, offset = self.model.state_dict(), 0
        for name, p in self.model.named_parameters():
            state[name] = theta[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        clone.load_state_dict(state)
        return clone

    def _hessian_vector_product(self, vector: list[Tensor], train: Batch, r: float = 1e-2):
        params, arch = list(self.model.parameters()), self.model.arch_parameters()
        R = r / torch.cat([v.reshape(-1) for v in vector]).norm()
        grads = []
        for scale in (1.0, -2.0):  # w + Rv, then w - Rv
            for p, v in zip(params, vector, strict=True):
                p.data.add_(scale * R * v)
            grads.append(torch.autograd.grad(self.model.loss(*train), arch))
        for p, v in zip(params, vector, strict=True):
            p.data.add_(R * v)
        return [(x - y).div_(2 * R) for x, y in zip(*grads, strict=True)]


def make_weight_optimizer(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)


def weight_step(model: Network, train: Batch, w_opt: Optimizer) -> Tensor:
    """The w-step of the original loop: α still requires grad, so its graph is built too."""
    w_opt.zero_grad()
    loss = model.loss(*train)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    w_opt.step()
    return loss.detach()
