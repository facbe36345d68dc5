"""The DARTS recurrent cell search space (Liu et al. 2019): a word-level language model.

Embedding → the recurrent search cell (:mod:`.rnn_cell`) unrolled over the window → a decoder
tied to the embedding, with the AWD-LSTM/DARTS regularisers: embedding dropout (``dropoute``,
whole words), variational (locked) dropout on the inputs (``dropouti``), on the cell's inputs to
its projections (``dropoutx`` on ``x_t``, ``dropouth`` on the states) and on the outputs
(``dropout``). Input tokens are ``[seq_len, batch]`` (sequence first); logits are
``[seq_len, batch, vocab]``. The hidden state is carried between windows through the
stateful-forward protocol (:mod:`.streams`): ``space(Streamed(tokens, stream))`` starts from
``stream.state``; a plain tensor starts from zeros.

Derivation (the DARTS rnn ``_parse``): each node keeps one incoming edge (k = 1), the one whose
strongest non-``none`` op weighs most, with that op.

``init_range`` / ``emb_range``: uniform init of the cell's projections / the (tied) embedding
(DARTS: 0.04 / 0.1). BatchNorm rescales every node, so at these scales the input enters the
state faintly and a small model is slow to start; the CPU preset uses larger ones.

``init_channels`` and ``layers`` are the generic size knobs every space takes (``debug=tiny``
sets them): ``init_channels`` overrides the width (``emsize = nhid``), ``layers`` caps ``nodes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_lightning.genotype import Gene, RecurrentGenotype
from nas_lightning.ops.registry import ZERO
from nas_lightning.ops.rnn_ops import RNN_OPS, validate_rnn_ops
from nas_lightning.spaces.base import Probs, SearchSpace
from nas_lightning.spaces.rnn_cell import (
    GROUP,
    INIT_RANGE,
    RecurrentCell,
    edge_index,
    variational_mask,
)
from nas_lightning.spaces.streams import Streamed

EMB_RANGE = 0.1  # DARTS rnn: uniform init of the (tied) embedding


def derive_recurrent(probs: Tensor, op_names: Sequence[str], nodes: int) -> Gene:
    """Per node ``i`` (inputs ``0..i``, rows node by node), the input whose strongest
    non-``none`` op weighs most, with that op; ties go to the lower index (DARTS ``_parse``)."""
    non_zero = [c for c, name in enumerate(op_names) if name != ZERO]
    if not non_zero:
        raise ValueError(f"op list {list(op_names)} has no op besides {ZERO!r}")
    expected = (nodes * (nodes + 1) // 2, len(op_names))
    if tuple(probs.shape) != expected:
        raise ValueError(f"probs of shape {tuple(probs.shape)}; expected {expected} for {nodes}")
    p = probs.detach().double().cpu()[:, non_zero].tolist()
    gene: Gene = []
    for i in range(nodes):
        rows = p[edge_index(i, 0) : edge_index(i, i) + 1]
        best = [max(range(len(r)), key=lambda k, r=r: (r[k], -k)) for r in rows]
        j = max(range(i + 1), key=lambda j: (rows[j][best[j]], -j))
        gene.append((op_names[non_zero[best[j]]], j))
    return gene


class RNNSearchSpace(SearchSpace):
    """The DARTS recurrent search model; see the module docstring for the arguments."""

    kind = "recurrent"
    stateful = True  # carries its hidden state between windows (spaces/streams.py)

    def __init__(
        self,
        vocab_size: int,
        nhid: int = 300,
        emsize: int | None = None,
        nodes: int = 8,
        ops: Sequence[str] = tuple(RNN_OPS),
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.0,
        batch_norm: bool = True,
        init_range: float = INIT_RANGE,
        emb_range: float = EMB_RANGE,
        init_channels: int | None = None,
        layers: int | None = None,
    ):
        super().__init__()
        self.config = dict(
            vocab_size=vocab_size,
            nhid=nhid,
            emsize=emsize,
            nodes=nodes,
            ops=list(ops),
            dropout=dropout,
            dropouth=dropouth,
            dropoutx=dropoutx,
            dropouti=dropouti,
            dropoute=dropoute,
            batch_norm=batch_norm,
            init_range=init_range,
            emb_range=emb_range,
            init_channels=init_channels,
            layers=layers,
        )
        nhid = int(init_channels) if init_channels is not None else nhid
        emsize = nhid if init_channels is not None or emsize is None else emsize
        nodes = min(nodes, int(layers)) if layers is not None else nodes
        for name, value, low in (
            ("vocab_size", vocab_size, 2),
            ("nhid", nhid, 1),
            ("nodes", nodes, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(
                    f"space.{name}={value!r} is invalid; it must be an integer >= {low}"
                )
        if emsize != nhid:
            raise ValueError(
                f"space.emsize={emsize} != space.nhid={nhid}: the decoder is tied to the "
                "embedding, so they must be equal (or leave emsize null)"
            )
        for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
            p = self.config[name]
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"space.{name}={p!r} is invalid; it must lie in [0, 1)")
        self.op_names = validate_rnn_ops(ops)
        self.num_classes = self.vocab_size = int(vocab_size)
        self.nhid, self.nodes = int(nhid), int(nodes)
        self.dropout, self.dropouth = float(dropout), float(dropouth)
        self.dropoutx = float(dropoutx)
        self.dropouti, self.dropoute = float(dropouti), float(dropoute)

        self.encoder = nn.Embedding(self.vocab_size, self.nhid)
        self.cell = RecurrentCell(
            self.op_names, self.nhid, self.nhid, self.nodes, batch_norm, float(init_range)
        )
        self.decoder = nn.Linear(self.nhid, self.vocab_size)
        nn.init.uniform_(self.encoder.weight, -emb_range, emb_range)
        nn.init.zeros_(self.decoder.bias)
        self.decoder.weight = self.encoder.weight  # tied weights

    # ------------------------------------------------------------------ forward
    def init_state(self, batch_size: int) -> Tensor:
        return self.encoder.weight.new_zeros(batch_size, self.nhid)

    def forward(self, x: Tensor | Streamed) -> Tensor:
        if isinstance(x, Streamed):
            logits, end = self.forward_state(x.tokens, x.stream.state)
            x.stream.last = end.detach()  # truncated BPTT: the next window starts here
            return logits
        return self.forward_state(x, None)[0]

    def forward_state(self, tokens: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(logits [T, B, vocab], end state [B, nhid])`` from ``state`` (``None``: zeros).
        Runs inside :meth:`forward`, where the mixing strategy has planned the choice points."""
        batch = tokens.size(1)
        if state is None or state.shape != (batch, self.nhid):
            state = self.init_state(batch)
        train = self.training
        weight = self.encoder.weight
        if train and self.dropoute > 0:  # drop whole words: rows of the embedding
            weight = weight * variational_mask((weight.size(0), 1), self.dropoute, weight)
        emb = F.embedding(tokens, weight)
        emb = self._locked(emb, self.dropouti)
        x_mask = variational_mask((batch, self.nhid), self.dropoutx, emb) if train else None
        h_mask = variational_mask((batch, self.nhid), self.dropouth, emb) if train else None
        out, end = self.cell(emb, state, x_mask, h_mask)
        return self.decoder(self._locked(out, self.dropout)), end

    def _locked(self, x: Tensor, p: float) -> Tensor:
        """Variational dropout: one mask per sequence, shared by its time steps."""
        mask = variational_mask((1, *x.shape[1:]), p, x) if self.training else None
        return x if mask is None else x * mask

    # ------------------------------------------------------------------ derivation
    def derive(self, probs: Probs, input_weights: Probs | None = None) -> RecurrentGenotype:
        """k = 1 per node (DARTS rnn ``_parse``); ``input_weights`` scale each node's edges."""
        n_edges = edge_index(self.nodes, 0)
        p = torch.stack([probs[f"{GROUP}_e{e}"].detach().double().cpu() for e in range(n_edges)])
        if input_weights is not None:
            scale = torch.cat(
                [input_weights[f"{GROUP}_n{i}"].detach().double().cpu() for i in range(self.nodes)]
            )
            p = p * scale[:, None]
        gene = derive_recurrent(p, self.op_names, self.nodes)
        return RecurrentGenotype(gene, list(range(1, self.nodes + 1)))


__all__ = ["RNNSearchSpace", "derive_recurrent"]
