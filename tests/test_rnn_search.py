"""The recurrent space in the bilevel loop: carried hidden states (truncated BPTT), the lr scale
of variable windows, the exact hypergradient, perplexity, and the search end to end."""

import json
import os
import subprocess
import sys
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from searchkit import mixed

from nas_lightning.algos import DartsSearch, hypergrad
from nas_lightning.algos.mixing import SoftmaxMixing
from nas_lightning.data import SyntheticTextDataModule
from nas_lightning.language_model import Perplexity, sequence_cross_entropy
from nas_lightning.run import build
from nas_lightning.spaces import RNNSearchSpace
from nas_lightning.spaces.streams import Stream, Streamed

NO_DROPOUT = dict(dropout=0, dropouth=0, dropoutx=0, dropouti=0)


def tiny_rnn_darts(vocab_size: int, **kw):
    """``(module, α list)``: first-order DARTS on a 6-unit, 3-node recurrent space."""
    space = RNNSearchSpace(vocab_size=vocab_size, nhid=6, nodes=3, **{**NO_DROPOUT, **kw})
    module = DartsSearch(
        space,
        weight_optimizer=partial(torch.optim.SGD, lr=2.0),
        arch_optimizer=partial(torch.optim.Adam, lr=3e-3),
        grad_clip=0.25,
        loss=sequence_cross_entropy,
        metrics={"ppl": Perplexity},
    )
    return module, module.arch_parameters()


def _text(**kw) -> SyntheticTextDataModule:
    args = dict(train_tokens=600, valid_tokens=300, test_tokens=50, batch_size=4, bptt=6)
    return SyntheticTextDataModule(**{**args, **kw})


def _fit(module, dm, **kw) -> pl.Trainer:
    args = dict(max_epochs=2, limit_train_batches=3, limit_val_batches=2, accelerator="cpu")
    trainer = pl.Trainer(
        **{**args, **kw},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def test_hidden_state_is_carried_detached_and_reset_per_stream(one_thread):
    torch.manual_seed(0)
    dm = _text(variable_length=False)
    module, _ = tiny_rnn_darts(dm.vocab_size)
    calls = []  # (stream, start state, end state, training)
    forward = module.space.forward

    def spy(x):
        start = x.stream.state
        out = forward(x)
        calls.append((x.stream, start, x.stream.last, module.training))
        return out

    module.space.forward = spy
    _fit(module, dm)
    streams = module.streams.streams
    for name, per_epoch in (("val", 3), ("train", 3), ("eval", 2)):
        seq = [(s, e) for stream, s, e, _ in calls if stream is streams[name]]
        assert len(seq) == 2 * per_epoch, name  # two epochs
        for epoch in range(2):
            part = seq[epoch * per_epoch : (epoch + 1) * per_epoch]
            assert part[0][0] is None, name  # each pass over the data starts afresh
            for (_, end), (start, _) in zip(part, part[1:], strict=False):
                assert start is end and start.grad_fn is None and not start.requires_grad
    train_starts = [s for stream, s, _, _ in calls if stream is streams["train"]]
    val_ends = [e for stream, _, e, _ in calls if stream is streams["val"]]
    assert not any(s is e for s in train_starts for e in val_ends)  # streams never mix


def test_weight_lr_is_scaled_by_the_window_length_and_restored(one_thread):
    torch.manual_seed(0)
    dm = _text(bptt=8, seq_len_std=3.0, train_tokens=2000)
    module, _ = tiny_rnn_darts(dm.vocab_size)
    seen = []
    step = module.training_step

    def spy(batch, batch_idx):
        seen.append((batch["lr_scale"], module.weight_lr(), batch["train"][0].shape[0]))
        return step(batch, batch_idx)

    module.training_step = spy
    _fit(module, dm, max_epochs=1, limit_train_batches=6)
    assert len({scale for scale, _, _ in seen}) > 1
    for scale, lr, seq_len in seen:
        assert lr == pytest.approx(2.0 * scale) and scale == pytest.approx(seq_len / 8)
    assert module.weight_lr() == 2.0


def _unrolled(hvp: str, **kw):
    torch.manual_seed(0)
    space = RNNSearchSpace(vocab_size=11, nhid=5, nodes=3, **NO_DROPOUT).double()
    space, mixing = mixed(space, SoftmaxMixing())
    mixing.double()
    arch = mixing.arch_parameters()
    with torch.no_grad():  # spread α so the softmax is not uniform
        for a in arch:
            a.normal_(0, 0.5)
    streams = {name: Stream() for name in ("train", "val")}
    batches = {}
    for name, stream in streams.items():
        stream.state = torch.randn(3, 5, dtype=torch.float64)  # a carried state
        tokens = torch.randint(0, 11, (5, 3))
        batches[name] = (Streamed(tokens, stream), torch.randint(0, 11, (5, 3)))
    starts = {name: s.state for name, s in streams.items()}
    grads, _ = hypergrad.unrolled_grad(
        space,
        arch,
        dict(space.named_weight_parameters()),
        batches["train"],
        batches["val"],
        sequence_cross_entropy,
        xi=0.05,
        hvp=hvp,
        **kw,
    )
    assert all(streams[n].state is starts[n] for n in streams)  # every forward starts there
    assert streams["val"].last is not None
    return torch.cat([g.flatten() for g in grads])


def test_exact_hypergradient_matches_the_full_unrolled_one_on_the_rnn_space():
    full, exact = _unrolled("full"), _unrolled("exact")
    assert full.norm() > 0
    assert ((exact - full).norm() / full.norm()).item() < 1e-6
    fd = _unrolled("finite_difference", fd_r=1e-6)
    assert ((fd - full).norm() / full.norm()).item() < 1e-4


def test_perplexity_is_exp_of_the_token_mean_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(7, 3, 9), torch.randint(0, 9, (7, 3))
    metric = Perplexity()
    metric(logits[:2], y[:2])
    metric(logits[2:], y[2:])  # batches of different sizes: weighted by tokens
    expected = torch.exp(F.cross_entropy(logits.reshape(-1, 9), y.reshape(-1)))
    torch.testing.assert_close(metric.compute(), expected)
    torch.testing.assert_close(sequence_cross_entropy(logits, y), expected.log())


@pytest.mark.parametrize(
    "space, dataset, match",
    [
        ("rnn", "digits", "space RNNSearchSpace cannot read DigitsDataModule, which gives images"),
        ("cnn", "synthetic_text", "CNNSearchSpace cannot read .* token streams; use space=rnn"),
    ],
)
def test_space_and_data_mismatch_fails_in_one_line(compose_cfg, space, dataset, match):
    with pytest.raises(ValueError, match=match) as err:
        build(compose_cfg(f"space={space}", f"dataset={dataset}", "logger=none"))
    assert "\n" not in str(err.value)


def test_load_from_checkpoint_rebuilds_the_recurrent_search(compose_cfg, tmp_path, one_thread):
    cfg = compose_cfg(
        "algo=darts_2nd",
        "space=rnn",
        "debug=tiny",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    )
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    ckpt = next((tmp_path / "run" / "checkpoints").glob("best_epoch_*.ckpt"))  # by val/ppl
    loaded = DartsSearch.load_from_checkpoint(ckpt)
    assert loaded.export().to_dict() == module.export().to_dict()
    assert loaded.streams.stateful and loaded.space.vocab_size == datamodule.vocab_size


@pytest.mark.slow
def test_end_to_end_recurrent_search_leaves_outputs(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nas_lightning", "algo=darts", "space=rnn", "debug=tiny"]
        + [f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    genotype = json.loads((run_dir / "genotype.json").read_text())
    assert genotype["type"] == "darts_rnn" and len(genotype["recurrent"]) == 3  # layers=3
    assert genotype["concat"] == [1, 2, 3]
    assert all(op != "none" and i <= n for n, (op, i) in enumerate(genotype["recurrent"]))
    for epoch in (0, 1):
        png = run_dir / "heatmaps" / f"epoch_{epoch:03d}_recurrent.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/ppl", "val/ppl", "val/loss", "arch/entropy"} <= set(header)
    assert list((run_dir / "checkpoints").glob("best_epoch_*.ckpt"))


@pytest.mark.slow
def test_the_default_search_beats_the_unigram_baseline(compose_cfg, one_thread):
    """`algo=darts space=rnn` on the synthetic corpus: val/ppl below the unigram model's within
    the default run (checked after its first 3 of 6 epochs, to keep the suite short)."""
    cfg = compose_cfg(
        "algo=darts",
        "space=rnn",
        "logger=none",
        "callbacks=none",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    )
    assert (
        cfg.dataset._target_.endswith("SyntheticTextDataModule") and cfg.threads == 1
    )  # one_thread
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    unigram = datamodule.unigram_ppl("valid")
    assert float(trainer.callback_metrics["val/ppl"]) < unigram  # ≈ 50.7


def test_clipped_virtual_step_scales_the_train_term_only(one_thread):
    """``clip_virtual_step``: the train loss's w-gradient is clipped to ``grad_clip``, the val
    loss is untouched, and BatchNorm statistics do not move."""
    torch.manual_seed(0)
    module, _ = tiny_rnn_darts(20)
    module.grad_clip, module.clip_virtual_step = 1e-3, True
    tokens = torch.randint(0, 20, (2, 6, 4))
    train = module.streams.bind("train", (tokens[0], tokens[0].roll(1, 0)))
    val = module.streams.bind("val", (tokens[1], tokens[1].roll(1, 0)))
    stats = [b.clone() for b in module.space.buffers()]
    loss = module._clipped_train_loss(train)
    assert all(torch.equal(a, b) for a, b in zip(stats, module.space.buffers(), strict=True))
    weights = module.weight_parameters()
    grads = torch.autograd.grad(loss(module.space(train[0]), train[1]), weights)
    assert torch.sqrt(sum((g**2).sum() for g in grads)).item() == pytest.approx(1e-3, rel=1e-4)
    logits = module.space(val[0])
    assert torch.equal(loss(logits, val[1]), module.loss_fn(logits, val[1]))


def test_paper_preset_composes_and_its_second_order_search_runs(compose_cfg, one_thread):
    cfg = compose_cfg("experiment=darts_ptb_search")
    assert cfg.dataset._target_.endswith("PTBDataModule") and cfg.algo.order == 2
    assert (cfg.space.nhid, cfg.space.emsize, cfg.space.nodes) == (300, 300, 8)
    assert (cfg.algo.weight_optimizer.lr, cfg.algo.grad_clip, cfg.algo.arch_optimizer.lr) == (
        20.0,
        0.25,
        3e-3,
    )
    assert cfg.algo.clip_virtual_step and cfg.dataset.batch_size == 256
    small = ["dataset=synthetic_text", "debug=tiny", "trainer=cpu", "logger=none"]
    cfg = compose_cfg("experiment=darts_ptb_search", *small, "callbacks=none")
    cfg.trainer.max_epochs, cfg.trainer.enable_progress_bar = 1, False
    datamodule, module, trainer = build(cfg)
    before = [a.detach().clone() for a in module.arch_parameters()]
    trainer.fit(module, datamodule=datamodule)
    after = module.arch_parameters()
    assert all(
        not torch.equal(b, a) and a.isfinite().all() for b, a in zip(before, after, strict=True)
    )
