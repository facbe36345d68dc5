"""The synthetic text corpus: the grammar engine on hand-checkable grammars, determinism, and
the structure (agreement, topics) that makes memory pay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas_lightning.data import SyntheticTextDataModule
from nas_lightning.data.corpus import EOS
from nas_lightning.data.grammar import StochasticGrammar
from nas_lightning.data.synthetic_text import toy_english

LETTERS = {"a": [("a", 1.0)], "b": [("b", 1.0)], "ab": [("a", 3.0), ("b", 1.0)]}


def test_entropy_rate_and_log_prob_of_hand_built_grammars():
    coin = StochasticGrammar({"S": [(1.0, ("ab", "S"))]}, LETTERS, "S")
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert len(coin.states) == 1 and coin.entropy_rate() == pytest.approx(h)
    assert coin.log_prob(["a", "b", "a"]) == pytest.approx(2 * math.log(0.75) + math.log(0.25))
    # After "b" always "a": states A (0.9 a / 0.1 b) and B; π = (10/11, 1/11).
    rules = {"A": [(0.9, ("a", "A")), (0.1, ("b", "B"))], "B": [(1.0, ("a", "A"))]}
    chain = StochasticGrammar(rules, LETTERS, "A")
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert chain.entropy_rate() == pytest.approx(10 / 11 * h)
    assert chain.log_prob(["a", "b", "a"]) == pytest.approx(math.log(0.9 * 0.1 * 1.0))
    with pytest.raises(ValueError, match="cannot emit 'b'"):
        chain.log_prob(["b", "b"])
    rng_words = chain.sample(50, np.random.default_rng(0), stop="a")
    assert len(rng_words) >= 50 and rng_words[-1] == "a" and "b b" not in " ".join(rng_words)


@pytest.mark.parametrize(
    "rules, match",
    [
        ({"S": [(0.5, ("a", "X")), (0.5, ("a", "Y"))], "X": [(1.0, ("b", "S"))]}, "undefined"),
        (
            {"S": [(0.5, ("a", "X")), (0.5, ("a", "Y"))]}
            | {"X": [(1.0, ("b", "S"))], "Y": [(1.0, ("a", "S"))]},
            "not unifilar.*'a'",
        ),
        ({"S": [(1.0, ("a", "S", "b"))]}, "more than 50 states"),
        ({"S": [(0.5, ("a", "S")), (0.4, ("b", "S"))]}, "sum to 1"),
        ({"S": [(1.0, ("a",))]}, "can end"),
        ({"S": [(1.0, ("S", "a"))]}, "left recursion"),
    ],
)
def test_grammars_that_cannot_be_compiled_are_refused(rules, match):
    with pytest.raises(ValueError, match=match):
        StochasticGrammar(rules, LETTERS, "S", max_states=50)


def _dm(**kw) -> SyntheticTextDataModule:
    return SyntheticTextDataModule(train_tokens=400, valid_tokens=120, test_tokens=120, **kw)


def test_same_corpus_seed_same_text_other_seed_other_text():
    a, b, c = _dm(corpus_seed=1), _dm(corpus_seed=1, seed=9), _dm(corpus_seed=2)
    assert a.lines("train") == b.lines("train")  # the window seed does not change the text
    assert a.lines("train") != c.lines("train") and a.lines("valid") != a.lines("train")
    assert a.vocab.itos == c.vocab.itos and a.vocab_size == 114  # fixed ids for every seed
    for split, n in (("train", 400), ("valid", 120), ("test", 120)):
        ids = a.corpus.split(split)
        assert ids.numel() >= n and a.vocab.itos[int(ids[-1])] == EOS  # whole sentences
        assert a.corpus.split(split).equal(b.corpus.split(split))


def test_toy_english_enforces_agreement_and_topic():
    g = toy_english()
    good = [
        "a dog runs",
        "some dogs that a cat sees run",
        "these cats that some dogs that a cow sees like jump today",
        "every big robot needs some old engines",
    ]
    for sentence in good:
        assert math.isfinite(g.log_prob(f"{sentence} {EOS}".split()))
    bad = {
        "a dog run": "run",  # subject-verb number
        "some dogs that a cat sees runs": "runs",  # across the relative clause
        "a dog hums": "hums",  # topic of the verb
        "a dog sees a robot": "robot",  # topic of the object
        "a dogs": "dogs",  # determiner number
    }
    for sentence, word in bad.items():
        with pytest.raises(ValueError, match=f"cannot emit '{word}'"):
            g.log_prob(f"{sentence} {EOS}".split())
    # The topic carries across <eos>: switching costs exactly log(0.8 / 0.1).
    same = g.log_prob(f"a dog runs {EOS} a dog runs {EOS}".split())
    switch = g.log_prob(f"a dog runs {EOS} a robot hums {EOS}".split())
    assert same - switch == pytest.approx(math.log(0.8 / 0.1))


def test_memory_pays_unigram_far_above_the_generator_entropy_rate():
    dm = SyntheticTextDataModule(train_tokens=20_000, valid_tokens=5_000, test_tokens=200)
    best = dm.entropy_rate_ppl()
    assert 6.0 < best < 8.0
    assert dm.grammar_ppl("valid") == pytest.approx(best, rel=0.05)
    assert dm.unigram_ppl("valid") > 5 * best
