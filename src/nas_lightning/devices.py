"""Device-aware defaults: what is fast on one device is slow on another.

``channels_last`` (NHWC) makes convolutions and pooling several times faster on CPUs (oneDNN),
but on CUDA in fp32 the NCHW cuDNN kernels of a supernet's small depthwise convs are faster
(measured on an H200: a first-order DARTS step took 1.04 s NCHW vs 1.49 s channels_last).
"""

from __future__ import annotations

import torch

CHANNELS_LAST_CHOICES = ("auto", True, False)


def check_channels_last(setting: object) -> bool | str:
    if isinstance(setting, str) and setting.lower() == "auto":
        return "auto"
    if isinstance(setting, bool):
        return setting
    raise ValueError(
        f"channels_last={setting!r} is invalid; valid choices: auto (on for CPU, off for CUDA), "
        "true, false"
    )


def use_channels_last(setting: bool | str, device: torch.device | str) -> bool:
    """``auto``: on for CPU, off elsewhere; an explicit true/false wins."""
    setting = check_channels_last(setting)
    if setting == "auto":
        return torch.device(device).type == "cpu"
    return bool(setting)


__all__ = ["CHANNELS_LAST_CHOICES", "check_channels_last", "use_channels_last"]
