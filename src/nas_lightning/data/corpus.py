"""Word-level corpora as in the PyTorch word_language_model / DARTS ``data.py``.

Every line is split on whitespace and gets an ``<eos>`` token at its end (blank lines too, so
WikiText-2's blank lines count, as in the reference code). The vocabulary is built from the
*training* split only, ids in order of first appearance. PTB and WikiText-2 are pre-unked (their
valid/test words all occur in train); a word of valid/test that is not in the training vocabulary
is mapped to ``<unk>`` (appended to the vocabulary if train never used it) and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

log = logging.getLogger(__name__)

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")


def tokenize(lines: Iterable[str]) -> list[str]:
    """Whitespace tokens of every line, each line closed by ``<eos>``."""
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append(EOS)
    return out


class Vocabulary:
    """Word ↔ id mapping; ``itos[i]`` is the word of id ``i``."""

    def __init__(self, words: Iterable[str]) -> None:
        self.itos: list[str] = list(words)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = sorted({w for w in self.itos if self.itos.count(w) > 1})
            raise ValueError(f"vocabulary words must be unique, got duplicates {dup[:5]}")

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> Vocabulary:
        """Ids in order of first appearance (dict keeps insertion order)."""
        return cls(dict.fromkeys(tokens))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def encode(self, tokens: Sequence[str]) -> tuple[Tensor, int]:
        """``(int64 ids, number of tokens mapped to <unk>)``; unknown words need ``<unk>``."""
        stoi = self.stoi
        unk = stoi.get(UNK)
        ids = [stoi.get(w, -1) for w in tokens]
        n_unk = ids.count(-1)
        if n_unk:
            if unk is None:
                missing = next(w for w in tokens if w not in stoi)
                raise KeyError(
                    f"word {missing!r} is not in the vocabulary and the vocabulary has no {UNK}"
                )
            ids = [unk if i < 0 else i for i in ids]
        return torch.tensor(ids, dtype=torch.int64), n_unk

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


@dataclass
class Corpus:
    """A vocabulary and the three splits as 1-D int64 token streams."""

    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor
    unk_replaced: dict[str, int]

    @classmethod
    def from_lines(
        cls,
        train: Iterable[str],
        valid: Iterable[str],
        test: Iterable[str],
        vocab: Vocabulary | None = None,
    ) -> Corpus:
        """Tokenise; build the vocabulary from ``train`` unless one is given (``<unk>`` added
        only when valid/test hold words the training split never uses)."""
        tokens = {"train": tokenize(train), "valid": tokenize(valid), "test": tokenize(test)}
        if vocab is None:
            vocab = Vocabulary.from_tokens(tokens["train"])
            held_out = (w for s in ("valid", "test") for w in tokens[s])
            if UNK not in vocab and any(w not in vocab for w in held_out):
                vocab = Vocabulary([*vocab.itos, UNK])
        encoded = {name: vocab.encode(toks) for name, toks in tokens.items()}
        unk_replaced = {name: n for name, (_, n) in encoded.items()}
        for name, n in unk_replaced.items():
            if n:
                log.warning(
                    "%d of %d %s tokens are not in the vocabulary; mapped to %s",
                    n,
                    len(tokens[name]),
                    name,
                    UNK,
                )
        ids = {name: t for name, (t, _) in encoded.items()}
        return cls(vocab, ids["train"], ids["valid"], ids["test"], unk_replaced)

    def split(self, name: str) -> Tensor:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
        return getattr(self, name)


def batchify(ids: Tensor, n_cols: int) -> Tensor:
    """``[n_rows, n_cols]``: column ``j`` is the contiguous chunk ``ids[j*n_rows:(j+1)*n_rows]``.

    The remainder that does not fill a whole row is dropped, as in the DARTS/AWD-LSTM code.
    """
    n_rows = ids.numel() // n_cols
    return ids[: n_rows * n_cols].view(n_cols, n_rows).t().contiguous()


def unigram_perplexity(
    train_ids: Tensor, eval_ids: Tensor, vocab_size: int, smoothing: float = 1.0
) -> float:
    """Perplexity of ``eval_ids`` under the unigram model fitted on ``train_ids``.

    Additive (Laplace) smoothing keeps words unseen in training finite; with large corpora it
    changes nothing visible. ``exp(-mean log p(w))`` over all evaluated tokens.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing!r}")
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + smoothing
    log_p = counts.log() - math.log(float(counts.sum()))
    return float(torch.exp(-log_p[eval_ids].mean()))
