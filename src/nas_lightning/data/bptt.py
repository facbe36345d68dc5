"""Truncated-BPTT windows over a batchified token stream, as in the DARTS / AWD-LSTM code.

A stream of shape ``[n_rows, batch]`` (see :func:`~nas_lightning.data.corpus.batchify`) is cut
along the rows into windows; a window starting at row ``i`` of length ``L`` gives
``x = data[i:i+L]`` and ``y = data[i+1:i+1+L]`` (targets: the inputs shifted by one token), both
``[L, batch]`` (sequence first). Windows run in order, so a recurrent model can carry its
hidden state from one to the next; the last one is shorter when the rows run out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset, Sampler

MIN_SEQ_LEN = 5  # AWD-LSTM: "prevent excessively small or negative sequence lengths"


class Window(NamedTuple):
    start: int  # first row
    length: int  # rows actually cut: min(seq_len, n_rows - 1 - start)
    seq_len: int  # the sampled length; the w learning rate is rescaled by seq_len / bptt


def bptt_windows(
    n_rows: int,
    bptt: int,
    *,
    variable: bool = False,
    seed: int = 0,
    epoch: int = 0,
    seq_len_std: float = 5.0,
    max_seq_len_delta: int = 20,
) -> list[Window]:
    """All windows of one pass over ``n_rows`` rows.

    Fixed: every window has ``bptt`` rows. Variable (AWD-LSTM, DARTS ``train.py``): the base is
    ``bptt`` with probability 0.95, else ``bptt / 2``; the length is ``int(N(base,
    seq_len_std))``, at least 5 and at most ``bptt + max_seq_len_delta`` (``seq_len_std=0``:
    ``int(base)``, as DARTS ``train_search.py`` runs). The lengths are drawn from
    ``numpy.random.default_rng([seed, epoch])``, so a resumed run sees the same windows.
    """
    rng = np.random.default_rng([seed, epoch]) if variable else None
    lo, hi = min(MIN_SEQ_LEN, bptt), bptt + max_seq_len_delta
    out: list[Window] = []
    start = 0
    while start < n_rows - 1:
        seq_len = bptt
        if rng is not None:
            base = bptt if rng.random() < 0.95 else bptt / 2.0
            drawn = int(rng.normal(base, seq_len_std)) if seq_len_std > 0 else int(base)
            seq_len = min(max(lo, drawn), hi)
        out.append(Window(start, min(seq_len, n_rows - 1 - start), seq_len))
        start += seq_len
    return out


def cut(data: Tensor, start: int, length: int) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of ``length`` rows from ``start``; ``y`` is ``x`` shifted by one token."""
    return data[start : start + length], data[start + 1 : start + 1 + length]


class BPTTSampler(Sampler[Window]):
    """Yields one epoch's windows in order; Lightning calls :meth:`set_epoch` every epoch.

    Variable-length windows have no length (``len()`` raises ``TypeError``): their number changes
    from epoch to epoch, and Lightning then ends each epoch when the windows run out (and
    validates there) instead of trusting a count taken before the first epoch.
    """

    def __init__(
        self,
        n_rows: int,
        bptt: int,
        variable: bool,
        seed: int,
        seq_len_std: float,
        max_seq_len_delta: int,
        epoch: int = 0,
    ) -> None:
        self.n_rows, self.bptt, self.variable, self.seed = n_rows, bptt, variable, seed
        self.seq_len_std, self.max_seq_len_delta = seq_len_std, max_seq_len_delta
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def windows(self) -> list[Window]:
        return bptt_windows(
            self.n_rows,
            self.bptt,
            variable=self.variable,
            seed=self.seed,
            epoch=self.epoch,
            seq_len_std=self.seq_len_std,
            max_seq_len_delta=self.max_seq_len_delta,
        )

    def __iter__(self) -> Iterator[Window]:
        # A generator: the epoch is read at the first next(), i.e. after set_epoch().
        yield from self.windows()

    def __len__(self) -> int:
        if self.variable:
            raise TypeError("variable-length BPTT windows: their number changes every epoch")
        return len(self.windows())


class BilevelWindows(Dataset):
    """Window → ``{"train": (x, y), "val": (x, y), "lr_scale": seq_len / bptt}``.

    As in DARTS ``train_search.py``, the architecture ("val") window starts at the same row as
    the weight window, modulo the length of the architecture stream, with ``bptt`` rows.
    """

    def __init__(self, train: Tensor, arch: Tensor, bptt: int) -> None:
        self.train, self.arch, self.bptt = train, arch, bptt

    def __getitem__(self, window: Window) -> dict[str, object]:
        pos = window.start % (self.arch.size(0) - 1)
        return {
            "train": cut(self.train, window.start, window.length),
            "val": cut(self.arch, pos, min(self.bptt, self.arch.size(0) - 1 - pos)),
            "lr_scale": window.seq_len / self.bptt,
        }


class EvalWindows(Dataset):
    """Fixed ``bptt`` windows in order, ``(x, y)`` each: what val/ppl and test ppl read."""

    def __init__(self, data: Tensor, bptt: int) -> None:
        self.data = data
        self.windows = bptt_windows(data.size(0), bptt)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor]:
        window = self.windows[idx]
        return cut(self.data, window.start, window.length)
