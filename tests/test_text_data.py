"""Word-level LM data: vocabulary, batchify, BPTT windows, the bilevel loaders, Lightning epochs."""

from __future__ import annotations

import math
import re

import pytest
import torch

from nas_lightning.data import TextSearchDataModule
from nas_lightning.data.bptt import BPTTSampler, bptt_windows, cut
from nas_lightning.data.corpus import (
    EOS,
    UNK,
    Corpus,
    Vocabulary,
    batchify,
    tokenize,
    unigram_perplexity,
)


class LinesDataModule(TextSearchDataModule):
    """The text datamodule on lines given in memory (what the file loaders read from disk)."""

    def __init__(self, train, valid, test, **kw) -> None:
        super().__init__(**kw)
        self.splits = (train, valid, test)

    def _read_splits(self):
        return self.splits


def _numbers(n_lines: int, width: int = 4, start: int = 0) -> list[str]:
    """Lines of distinct words, so every token's position in the stream is recognisable."""
    return [" ".join(f"w{start + i * width + j}" for j in range(width)) for i in range(n_lines)]


def test_tokenize_closes_every_line_with_eos_blank_lines_included():
    assert tokenize([" the cat sat \n", "\n", "a dog"]) == [
        *("the", "cat", "sat", EOS),
        EOS,
        *("a", "dog", EOS),
    ]


def test_vocabulary_ids_in_first_appearance_order_from_train_only():
    corpus = Corpus.from_lines(["b a <unk>", "a c"], ["c b"], ["a"])
    assert corpus.vocab.itos == ["b", "a", UNK, EOS, "c"]
    assert corpus.train.tolist() == [0, 1, 2, 3, 1, 4, 3]
    assert corpus.valid.tolist() == [4, 0, 3] and corpus.test.tolist() == [1, 3]
    again = Corpus.from_lines(["b a <unk>", "a c"], ["c b"], ["a"])
    assert again.vocab.itos == corpus.vocab.itos  # stable ids
    assert corpus.unk_replaced == {"train": 0, "valid": 0, "test": 0}


def test_words_unseen_in_train_map_to_unk():
    # Train has <unk> (PTB, WikiText-2): unknown valid/test words take its id.
    corpus = Corpus.from_lines(["a <unk> b"], ["a zebra"], ["yak yak b"])
    unk = corpus.vocab.stoi[UNK]
    assert corpus.valid.tolist() == [0, unk, corpus.vocab.stoi[EOS]]
    assert corpus.test.tolist()[:2] == [unk, unk]
    assert corpus.unk_replaced == {"train": 0, "valid": 1, "test": 2}
    # Train without <unk>: it is appended after the training words, only when needed.
    corpus = Corpus.from_lines(["a b"], ["a zebra"], ["b"])
    assert corpus.vocab.itos == ["a", "b", EOS, UNK] and corpus.valid.tolist() == [0, 3, 2]
    assert UNK not in Corpus.from_lines(["a b"], ["b a"], ["a"]).vocab
    with pytest.raises(KeyError, match="'zebra' is not in the vocabulary"):
        Vocabulary(["a", EOS]).encode(["a", "zebra"])
    with pytest.raises(ValueError, match="duplicates"):
        Vocabulary(["a", "b", "a"])


def test_batchify_columns_are_contiguous_chunks_and_the_remainder_is_dropped():
    data = batchify(torch.arange(23), 4)
    assert data.shape == (5, 4) and data.is_contiguous()
    for j in range(4):
        assert data[:, j].tolist() == list(range(5 * j, 5 * j + 5))


def test_fixed_windows_cover_the_stream_targets_shifted_last_shorter():
    data = batchify(torch.arange(2 * 23), 2)  # 23 rows
    windows = bptt_windows(23, 5)
    assert [(w.start, w.length) for w in windows] == [(0, 5), (5, 5), (10, 5), (15, 5), (20, 2)]
    assert all(w.seq_len == 5 for w in windows)
    sampler = BPTTSampler(23, 5, variable=False, seed=0, seq_len_std=5, max_seq_len_delta=20)
    assert len(sampler) == 5 and list(sampler) == windows
    x, y = cut(data, 20, 2)
    assert x.shape == y.shape == (2, 2)
    assert torch.equal(y[:-1], x[1:]) and torch.equal(y, x + 1)  # the next token of each column


def test_variable_windows_follow_the_awd_rule_and_replay_from_seed_and_epoch():
    kw = dict(variable=True, seq_len_std=5.0, max_seq_len_delta=20)
    runs = {e: bptt_windows(5000, 35, seed=7, epoch=e, **kw) for e in range(4)}
    assert runs[1] == bptt_windows(5000, 35, seed=7, epoch=1, **kw)  # reproducible
    assert runs[1] != runs[2] and runs[1] != bptt_windows(5000, 35, seed=8, epoch=1, **kw)
    lengths = [w.seq_len for ws in runs.values() for w in ws]
    assert min(lengths) >= 5 and max(lengths) <= 55
    half = sum(w < 26 for w in lengths) / len(lengths)  # the bptt/2 branch, p = 0.05
    assert 0.01 < half < 0.12 and abs(sum(lengths) / len(lengths) - 34.1) < 1.5
    for ws in runs.values():  # contiguous, in order, each window cut to the stream's end
        assert ws[0].start == 0 and all(
            b.start == a.start + a.seq_len for a, b in zip(ws, ws[1:], strict=False)
        )
        assert all(w.length == min(w.seq_len, 4999 - w.start) for w in ws)
    # seq_len_std=0: DARTS train_search.py, lengths are exactly bptt or int(bptt / 2).
    darts = bptt_windows(5000, 35, variable=True, seed=0, seq_len_std=0)
    assert {w.seq_len for w in darts} == {35, 17}
    sampler = BPTTSampler(5000, 35, True, seed=7, seq_len_std=5.0, max_seq_len_delta=20)
    sampler.set_epoch(3)
    assert list(sampler) == runs[3]
    with pytest.raises(TypeError, match="variable-length"):
        len(sampler)


def test_unigram_perplexity_by_hand():
    # Train "a b <eos> a <eos>": counts a=2, b=1, <eos>=2; evaluate "b <eos>".
    dm = LinesDataModule(["a b", "a"], ["b"], ["a"])
    assert dm.vocab.itos == ["a", "b", EOS] and dm.num_classes == dm.vocab_size == 3
    assert dm.unigram_ppl("valid", smoothing=0.0) == pytest.approx(math.sqrt(5 * 5 / 2))
    assert dm.unigram_ppl("valid") == pytest.approx(math.sqrt(8 / 2 * 8 / 3))  # add-one
    assert dm.unigram_ppl("train", smoothing=0.0) == pytest.approx(5 / (2**0.8 * 1**0.2))
    ids = torch.tensor([0, 0, 1])
    assert unigram_perplexity(ids, torch.tensor([2]), 3, smoothing=0.0) == math.inf
    with pytest.raises(ValueError, match="unknown split 'dev'.*train, valid, test"):
        dm.unigram_ppl("dev")


def test_bilevel_batches_w_on_train_alpha_on_valid_like_darts():
    train = _numbers(60)  # 240 distinct words, 300 tokens with <eos>
    kw = dict(batch_size=4, eval_batch_size=2, bptt=6, variable_length=False)
    dm = LinesDataModule(train, train[:20], train[:10], **kw)
    assert dm.input_shape is None and dm.vocab_size == dm.num_classes == 241
    dm.setup()
    rows, arch_rows = dm.train_data.size(0), dm.arch_data.size(0)
    assert dm.train_data.shape == (300 // 4, 4) and dm.arch_data.shape == (100 // 4, 4)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == math.ceil((rows - 1) / 6)
    for k, batch in enumerate(batches):
        (x, y), (xa, ya) = batch["train"], batch["val"]
        start = 6 * k
        assert torch.equal(x, dm.train_data[start : start + x.size(0)])
        assert torch.equal(y, dm.train_data[start + 1 : start + 1 + x.size(0)])
        pos = start % (arch_rows - 1)
        assert torch.equal(xa, dm.arch_data[pos : pos + xa.size(0)])
        assert xa.size(0) == min(6, arch_rows - 1 - pos) and torch.equal(ya[:-1], xa[1:])
        assert x.dtype == torch.int64 and x.size(1) == 4 and batch["lr_scale"] == 1.0
    assert batches[-1]["train"][0].size(0) == (rows - 1) % 6 == 2
    val = list(dm.val_dataloader())
    assert all(x.size(1) == 2 for x, _ in val)
    assert torch.cat([x for x, _ in val]).equal(dm.val_data[:-1])  # every token but the last
    assert sum(y.numel() for _, y in dm.test_dataloader()) == (dm.test_data.size(0) - 1)


def test_train_portion_cuts_train_into_w_and_alpha_streams():
    dm = LinesDataModule(_numbers(50), _numbers(5), _numbers(5), batch_size=2, train_portion=0.6)
    dm.setup()
    train = dm.corpus.train
    assert torch.equal(dm.train_data, batchify(train[:150], 2))
    assert torch.equal(dm.arch_data, batchify(train[150:], 2))
    assert torch.equal(dm.val_data, batchify(dm.corpus.valid, 10))  # valid stays held out


def test_split_too_small_for_its_batch_size_is_named():
    dm = LinesDataModule(_numbers(50), ["a b"], ["a"], batch_size=1, eval_batch_size=4)
    with pytest.raises(ValueError, match=r"valid split has 3 tokens.*eval_batch_size=4"):
        dm.setup()


BAD = [("batch_size", 0), ("bptt", -1), ("seq_len_std", -1.0), ("train_portion", 1.0)]
BAD += [("eval_batch_size", 2.5), ("max_seq_len_delta", -1), ("seed", -3)]


@pytest.mark.parametrize("key,value", BAD)
def test_invalid_arguments_name_the_value(key, value):
    with pytest.raises(ValueError, match=rf"{key}.*{re.escape(repr(value))}"):
        LinesDataModule([], [], [], **{key: value})


def test_lightning_gets_each_epochs_windows_validates_every_epoch_and_resumes(tmp_path):
    """Variable windows have no length: Lightning must still end every epoch when they run out,
    validate there, set the epoch on the sampler, and replay the same windows on resume."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from nas_lightning.data import SyntheticTextDataModule

    class Probe(pl.LightningModule):
        def __init__(self, vocab_size: int) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(vocab_size, 3)
            self.seen, self.validated = [], []

        def training_step(self, batch, batch_idx):
            x, y = batch["train"]
            self.seen.append((self.current_epoch, x.clone(), batch["lr_scale"]))
            logits = self.emb(x) @ self.emb.weight.t()
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

        def validation_step(self, batch, batch_idx):
            self.validated.append(self.current_epoch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(ckpt_path=None):
        dm = SyntheticTextDataModule(
            train_tokens=500, valid_tokens=200, test_tokens=200, batch_size=4, bptt=8, seed=3
        )
        probe = Probe(dm.vocab_size)
        keep = ModelCheckpoint(tmp_path / ("again" if ckpt_path else "ckpt"), save_top_k=-1)
        off = ("logger", "enable_progress_bar", "enable_model_summary")
        trainer = pl.Trainer(
            max_epochs=3, num_sanity_val_steps=0, callbacks=[keep], **dict.fromkeys(off, False)
        )
        trainer.fit(probe, datamodule=dm, ckpt_path=ckpt_path)
        return dm, probe

    dm, probe = fit()
    n_val = len(dm.val_dataloader())
    for epoch in range(3):
        windows = bptt_windows(dm.train_data.size(0), 8, variable=True, seed=3, epoch=epoch)
        seen = [(x, scale) for e, x, scale in probe.seen if e == epoch]
        assert len(seen) == len(windows)
        for (x, scale), w in zip(seen, windows, strict=True):
            assert torch.equal(x, dm.train_data[w.start : w.start + w.length])
            assert scale == w.seq_len / 8
        assert probe.validated.count(epoch) == n_val
    last_epoch = [x for e, x, _ in probe.seen if e == 2]
    resumed_dm, resumed = fit(ckpt_path=next((tmp_path / "ckpt").glob("epoch=1-*.ckpt")))
    assert {e for e, _, _ in resumed.seen} == {2}
    assert all(torch.equal(a, b) for a, (_, b, _) in zip(last_epoch, resumed.seen, strict=True))
