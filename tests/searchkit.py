"""Small builders shared by tests: tiny spaces with a mixing strategy installed, and algorithms."""

from __future__ import annotations

from functools import partial

import torch

from nas_lightning.algos.mixing import MixingStrategy, SoftmaxMixing
from nas_lightning.spaces import CNNSearchSpace

SGD = partial(torch.optim.SGD, lr=0.1)


def tiny_cnn(**kw) -> CNNSearchSpace:
    """A 3-cell, 4-channel DARTS space on 1×8×8 inputs, 10 classes."""
    args = dict(in_channels=1, num_classes=10, init_channels=4, layers=3)
    return CNNSearchSpace(**{**args, **kw})


def mixed(space, mixing: MixingStrategy | None = None):
    """``(space, mixing)`` with ``mixing`` (default: DARTS softmax) installed on ``space``."""
    mixing = mixing or SoftmaxMixing()
    mixing.install(space)
    return space, mixing


def tiny_darts(**kw):
    """``(model, α list)`` of a tiny DARTS supernet: what hypergradient tests differentiate."""
    space, mixing = mixed(tiny_cnn(**kw))
    return space, mixing.arch_parameters()


def with_plans(module, plans: dict):
    """Bind ``module``'s choice points to fixed plans (``{key: plan}``) and return it."""
    from nas_lightning.spaces.choices import bind
    from nas_lightning.spaces.plans import FixedPlans

    bind(module, FixedPlans(plans))
    return module
