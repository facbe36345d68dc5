"""SYNTHETIC text: a seeded toy-English grammar, the offline default for the recurrent search.

Nothing here is real language data. Sentences (one per line, ``<eos>`` at the end) follow a small
grammar with structure that only a model with memory can exploit:

- number agreement: the determiner fixes the subject's number (``a``/``this``/``every`` vs
  ``some``/``these``/``many``), and the main verb agrees with it *across* up to two nested
  object relative clauses, which have numbers of their own ("these dogs that a cat sees run");
- topics (animals, machines, people): every noun and intransitive verb of a sentence belongs to
  the topic of its subject noun, and the topic carries over to the next sentence with
  probability 0.8, so memory across ``<eos>`` pays;
- Zipf-distributed words inside each class, so a unigram model is a meaningful but weak baseline.

The generator is a unifilar automaton (:mod:`~nas_lightning.data.grammar`): its entropy rate, and
hence the best perplexity any model can reach, is computed exactly (:meth:`entropy_rate_ppl`).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from nas_lightning.data.base import check_int
from nas_lightning.data.corpus import EOS, SPLITS, Vocabulary
from nas_lightning.data.grammar import StochasticGrammar
from nas_lightning.data.text import TextSearchDataModule

TOPICS = {
    "animals": ("dog cat bird horse cow lion duck goat", "run sleep jump hide swim growl"),
    "machines": (
        "robot engine drone truck pump clock radio motor",
        "hum stall beep rust spin stop",
    ),
    "people": (
        "doctor farmer teacher pilot singer driver nurse baker",
        "talk laugh work sing read",
    ),
}
WORDS = {
    "det_sg": "a this every",
    "det_pl": "some these many",
    "adj": "big small old young red quiet happy strange",
    "tverb": "see like follow help find need",
    "adv": "today again often now",
}
NUMBERS = ("sg", "pl")
P_SAME_TOPIC, P_ADJ, P_RELATIVE, P_NESTED, P_INTRANSITIVE, P_ADVERB = (
    0.8,
    0.25,
    0.3,
    0.25,
    0.55,
    0.2,
)


def _zipf(words: list[str]) -> list[tuple[str, float]]:
    return [(w, 1.0 / (rank + 1)) for rank, w in enumerate(words)]


def _inflect(stems: str, number: str, verb: bool) -> list[str]:
    """Nouns take -s in the plural, verbs in the singular."""
    return [s + "s" if (number == "sg") == verb else s for s in stems.split()]


@lru_cache(maxsize=1)
def toy_english() -> StochasticGrammar:
    """The fixed grammar (compiled once); only the sampled text depends on the seed."""
    lex: dict[str, list[tuple[str, float]]] = {"eos": [(EOS, 1.0)], "that": [("that", 1.0)]}
    for cls, words in WORDS.items():
        if cls == "tverb":
            for n in NUMBERS:
                lex[f"tverb_{n}"] = _zipf(_inflect(words, n, verb=True))
        else:
            lex[cls] = _zipf(words.split())
    for t, (nouns, verbs) in TOPICS.items():
        for n in NUMBERS:
            lex[f"noun_{t}_{n}"] = _zipf(_inflect(nouns, n, verb=False))
            lex[f"verb_{t}_{n}"] = _zipf(_inflect(verbs, n, verb=True))
    half = [(0.5, n) for n in NUMBERS]
    rules: dict[str, list[tuple[float, tuple[str, ...]]]] = {}
    for t in TOPICS:
        switch = {
            u: P_SAME_TOPIC if u == t else (1 - P_SAME_TOPIC) / (len(TOPICS) - 1) for u in TOPICS
        }
        rules[f"S_{t}"] = [(p, (f"det_{n}", f"NS_{n}_{t}")) for p, n in half]
        rules[f"OBJ_{t}"] = [(p, (f"det_{n}", f"ON_{n}_{t}")) for p, n in half]
        rules[f"END_{t}"] = [
            (P_ADVERB, ("adv", "eos", f"S_{t}")),
            (1 - P_ADVERB, ("eos", f"S_{t}")),
        ]
        for d in (1, 2):
            rules[f"RC{d}_{t}"] = [(p, (f"det_{n}", f"RN{d}_{n}_{t}")) for p, n in half]
        for n in NUMBERS:
            # The subject noun reveals the (possibly new) topic: one noun class per topic.
            rules[f"NS_{n}_{t}"] = [(P_ADJ, ("adj", f"NS_{n}_{t}"))] + [
                ((1 - P_ADJ) * q, (f"noun_{u}_{n}", f"SUBJ_{n}_{u}")) for u, q in switch.items()
            ]
            rules[f"SUBJ_{n}_{t}"] = [
                (P_RELATIVE, ("that", f"RC1_{t}", f"VP_{n}_{t}")),
                (1 - P_RELATIVE, (f"VP_{n}_{t}",)),
            ]
            rules[f"VP_{n}_{t}"] = [
                (P_INTRANSITIVE, (f"verb_{t}_{n}", f"END_{t}")),
                (1 - P_INTRANSITIVE, (f"tverb_{n}", f"OBJ_{t}")),
            ]
            rules[f"ON_{n}_{t}"] = [
                (P_ADJ, ("adj", f"ON_{n}_{t}")),
                (1 - P_ADJ, (f"noun_{t}_{n}", f"END_{t}")),
            ]
            for d in (1, 2):
                rules[f"RN{d}_{n}_{t}"] = [
                    (P_ADJ, ("adj", f"RN{d}_{n}_{t}")),
                    (1 - P_ADJ, (f"noun_{t}_{n}", f"RT{d}_{n}_{t}")),
                ]
                nested = [(P_NESTED, ("that", f"RC2_{t}", f"tverb_{n}"))] if d == 1 else []
                rules[f"RT{d}_{n}_{t}"] = nested + [
                    (1 - (P_NESTED if d == 1 else 0), (f"tverb_{n}",))
                ]
    return StochasticGrammar(rules, lex, start=f"S_{next(iter(TOPICS))}")


class SyntheticTextDataModule(TextSearchDataModule):
    """Train/valid/test text sampled from :func:`toy_english` (synthetic; no download).

    Each split is an independent walk of about ``*_tokens`` tokens (whole sentences) seeded by
    ``(corpus_seed, split)``; ``seed`` only drives the BPTT windows. The vocabulary is the
    grammar's (fixed ids, the same for every seed). Other arguments: :class:`TextSearchDataModule`.
    """

    name = "synthetic text"

    def __init__(
        self,
        train_tokens: int = 50_000,
        valid_tokens: int = 10_000,
        test_tokens: int = 10_000,
        corpus_seed: int = 0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.tokens = {"train": train_tokens, "valid": valid_tokens, "test": test_tokens}
        for split, value in self.tokens.items():
            check_int(f"{split}_tokens", value, minimum=2)
        check_int("corpus_seed", corpus_seed, minimum=0)
        self.corpus_seed = corpus_seed
        self.grammar = toy_english()

    def _fixed_vocabulary(self) -> Vocabulary:
        return Vocabulary(self.grammar.words)

    def lines(self, split: str) -> list[str]:
        """The sentences of ``split`` (a fresh, deterministic sample: same seed, same text)."""
        rng = np.random.default_rng([self.corpus_seed, SPLITS.index(split)])
        lines, sentence = [], []
        for word in self.grammar.sample(self.tokens[split], rng, stop=EOS):
            if word == EOS:
                lines.append(" ".join(sentence))
                sentence = []
            else:
                sentence.append(word)
        return lines

    def _read_splits(self) -> tuple[list[str], list[str], list[str]]:
        return self.lines("train"), self.lines("valid"), self.lines("test")

    def entropy_rate_ppl(self) -> float:
        """exp(entropy rate): the best perplexity any model can reach on long text."""
        return math.exp(self.grammar.entropy_rate())

    def grammar_ppl(self, split: str = "valid") -> float:
        """Perplexity of ``split`` under the generator itself (the oracle on that sample)."""
        tokens = self.vocab.decode(self.corpus.split(split))
        return math.exp(-self.grammar.log_prob(tokens) / len(tokens))
