"""Word-level language modelling for the bilevel (DARTS recurrent cell) search.

Streams, as DARTS ``rnn/train_search.py`` uses them:

- weights w: the training split, ``batch_size`` columns, windows in order (fixed or variable
  length, :mod:`~nas_lightning.data.bptt`);
- architecture α ("val" stream): the validation split, ``batch_size`` columns, a ``bptt`` window
  at the weight window's row modulo its length; with ``train_portion`` set, the training split is
  cut instead (the first part for w, the rest for α) and the validation split stays held out;
- ``val_dataloader``: the validation split, ``eval_batch_size`` columns, fixed ``bptt``
  windows (``val/ppl``); ``test_dataloader``: the test split, ``test_batch_size`` columns.

Each training batch is ``{"train": (x, y), "val": (x, y), "lr_scale": float}`` with ``x`` and
``y`` int64 ``[seq_len, batch]`` (sequence first, as the DARTS code), ``y`` the next tokens;
``lr_scale = seq_len / bptt`` is what the weight learning rate is multiplied by for that step.
Windows come in stream order, so the hidden state can be carried (and detached) between
batches; the first window of every epoch starts the stream again at row 0.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from torch import Tensor
from torch.utils.data import DataLoader

from nas_lightning.data.base import check_int
from nas_lightning.data.bptt import BilevelWindows, BPTTSampler, EvalWindows
from nas_lightning.data.corpus import Corpus, Vocabulary, batchify, unigram_perplexity

log = logging.getLogger(__name__)


class TextSearchDataModule(pl.LightningDataModule):
    """Base class: subclasses provide the three splits' lines via :meth:`_read_splits`."""

    name: str = "text corpus"

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 35,
        variable_length: bool = True,
        seq_len_std: float = 5.0,
        max_seq_len_delta: int = 20,
        train_portion: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("test_batch_size", test_batch_size),
            ("bptt", bptt),
        ):
            check_int(key, value)
        check_int("max_seq_len_delta", max_seq_len_delta, minimum=0)
        check_int("seed", seed, minimum=0)
        if not float(seq_len_std) >= 0:
            raise ValueError(f"seq_len_std must be >= 0, got {seq_len_std!r}")
        if train_portion is not None and not 0.0 < float(train_portion) < 1.0:
            raise ValueError(
                f"train_portion must be null (α on the validation split, as DARTS) or lie "
                f"strictly between 0 and 1, got {train_portion!r}"
            )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.test_batch_size, self.bptt = test_batch_size, bptt
        self.variable_length, self.seq_len_std = bool(variable_length), float(seq_len_std)
        self.max_seq_len_delta, self.seed = max_seq_len_delta, seed
        self.train_portion = None if train_portion is None else float(train_portion)
        self._corpus: Corpus | None = None
        self.train_data: Tensor | None = None  # [rows, batch_size]: the w stream
        self.arch_data: Tensor | None = None  # [rows, batch_size]: the α stream
        self.val_data: Tensor | None = None  # [rows, eval_batch_size]
        self.test_data: Tensor | None = None  # [rows, test_batch_size]

    # --- subclass interface -------------------------------------------------------------------
    def _read_splits(self) -> tuple[list[str], list[str], list[str]]:
        """The lines of the train, valid and test splits (downloading first if needed)."""
        raise NotImplementedError

    def _fixed_vocabulary(self) -> Vocabulary | None:
        """A vocabulary known without reading the data; ``None``: build it from train."""
        return None

    # --- what the search space reads before setup ---------------------------------------------
    @property
    def corpus(self) -> Corpus:
        if self._corpus is None:
            self._corpus = Corpus.from_lines(*self._read_splits(), vocab=self._fixed_vocabulary())
            sizes = {s: self._corpus.split(s).numel() for s in ("train", "valid", "test")}
            log.info("%s: %d words in the vocabulary, tokens %s", self.name, self.vocab_size, sizes)
        return self._corpus

    @property
    def vocab(self) -> Vocabulary:
        if self._corpus is None and (fixed := self._fixed_vocabulary()) is not None:
            return fixed
        return self.corpus.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def num_classes(self) -> int:
        """Next-token prediction is a ``vocab_size``-way classification."""
        return self.vocab_size

    @property
    def input_shape(self) -> None:
        """Token streams have no image shape: a recurrent space reads ``vocab_size`` instead."""
        return None

    def unigram_ppl(self, split: str = "valid", smoothing: float = 1.0) -> float:
        """Perplexity of ``split`` under the add-``smoothing`` unigram model of the train split:
        the baseline a language model must beat to have learnt anything beyond word counts."""
        corpus = self.corpus
        return unigram_perplexity(corpus.train, corpus.split(split), self.vocab_size, smoothing)

    # --- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_data is not None:
            return
        corpus = self.corpus
        train, arch = corpus.train, corpus.valid
        if self.train_portion is not None:
            n_w = int(corpus.train.numel() * self.train_portion)
            train, arch = corpus.train[:n_w], corpus.train[n_w:]
        arch_name = "valid" if self.train_portion is None else "train (α part)"
        self.train_data = self._batchify(train, "train", "batch_size")
        self.arch_data = self._batchify(arch, arch_name, "batch_size")
        self.val_data = self._batchify(corpus.valid, "valid", "eval_batch_size")
        self.test_data = self._batchify(corpus.test, "test", "test_batch_size")

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = getattr(self, "trainer", None)
        # Lightning prefetches the first batch of an unsized loader before it calls set_epoch(),
        # and does not restart the iterator of a resumed run: start at the epoch it will pass to
        # set_epoch() (after a resume, trainer.current_epoch is still the previous one here).
        epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
        sampler = BPTTSampler(
            n_rows=self.train_data.size(0),
            bptt=self.bptt,
            variable=self.variable_length,
            seed=self.seed,
            seq_len_std=self.seq_len_std,
            max_seq_len_delta=self.max_seq_len_delta,
            epoch=epoch,
        )
        dataset = BilevelWindows(self.train_data, self.arch_data, self.bptt)
        return DataLoader(dataset, batch_size=None, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(EvalWindows(self.val_data, self.bptt), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(EvalWindows(self.test_data, self.bptt), batch_size=None)

    # --- helpers ------------------------------------------------------------------------------
    def _batchify(self, ids: Tensor, split: str, key: str) -> Tensor:
        n_cols = getattr(self, key)
        data = batchify(ids, n_cols)
        if data.size(0) < 2:  # one row has no next token to predict
            raise ValueError(
                f"{self.name}: the {split} split has {ids.numel()} tokens, fewer than 2 rows of "
                f"{key}={n_cols} columns; lower {key} or use a larger corpus"
            )
        return data
