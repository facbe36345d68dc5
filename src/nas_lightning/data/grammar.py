"""A stochastic grammar compiled to a finite, unifilar automaton: sample it, score it, and know
its entropy rate exactly.

Rules rewrite a nonterminal into a sequence of symbols; a symbol is a nonterminal or a word
class of the lexicon (a word drawn from the class by its weights). The generator's state is the
stack of symbols still to expand. Depth must be bounded (the state set is finite; compilation
stops at ``max_states`` otherwise) and the grammar must be *unifilar*: from every state each word
leads to one next state, so the state is a function of the text so far. Then the probability of a
text is a product of per-state word probabilities, and the entropy rate is
``Σ_s π(s) H(word | s)`` with ``π`` the stationary distribution of the state chain: the best
per-token cross-entropy any model can reach on long text from this source.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

Rules = Mapping[str, Sequence[tuple[float, Sequence[str]]]]
Lexicon = Mapping[str, Sequence[tuple[str, float]]]
State = tuple[str, ...]


class StochasticGrammar:
    def __init__(self, rules: Rules, lexicon: Lexicon, start: str, max_states: int = 100_000):
        both = set(rules) & set(lexicon)
        if both:
            raise ValueError(f"symbols {sorted(both)} are both nonterminals and word classes")
        for nt, alternatives in rules.items():
            total = sum(p for p, _ in alternatives)
            if not math.isclose(total, 1.0, abs_tol=1e-9) or any(p <= 0 for p, _ in alternatives):
                raise ValueError(
                    f"rule {nt!r}: probabilities must be > 0 and sum to 1, got {total}"
                )
            for _, rhs in alternatives:
                unknown = [s for s in rhs if s not in rules and s not in lexicon]
                if unknown:
                    raise ValueError(f"rule {nt!r} uses undefined symbols {unknown}")
        self.rules = {nt: [(float(p), tuple(rhs)) for p, rhs in alts] for nt, alts in rules.items()}
        self.lexicon = {}
        for cls, entries in lexicon.items():
            total = float(sum(w for _, w in entries))
            self.lexicon[cls] = [(word, w / total) for word, w in entries]
        self.words: list[str] = list(dict.fromkeys(w for es in lexicon.values() for w, _ in es))
        self._word_id = {w: i for i, w in enumerate(self.words)}
        self._compile((start,), max_states)

    # --- compilation --------------------------------------------------------------------------
    def _leading(self, stack: State, depth: int = 0) -> list[tuple[float, str, State]]:
        """Every way to expand the top of ``stack`` until a word class is on top."""
        if not stack:
            raise ValueError("the grammar can end; it must generate an endless stream")
        if depth > 100:
            raise ValueError(f"left recursion while expanding {stack[:3]}")
        head, rest = stack[0], stack[1:]
        if head in self.lexicon:
            return [(1.0, head, rest)]
        return [
            (p * q, cls, tail)
            for p, rhs in self.rules[head]
            for q, cls, tail in self._leading(rhs + rest, depth + 1)
        ]

    def _compile(self, start: State, max_states: int) -> None:
        self.states: list[State] = [start]
        index = {start: 0}
        # Per state: cumulative probabilities, word ids and destination states (for sampling).
        self._cum: list[list[float]] = []
        self._word: list[list[int]] = []
        self._dest: list[list[int]] = []
        self._logp: list[dict[int, tuple[float, int]]] = []  # word id -> (log p, destination)
        s = 0
        while s < len(self.states):
            out: dict[int, list] = {}
            for p, cls, rest in self._leading(self.states[s]):
                for word, q in self.lexicon[cls]:
                    wid = self._word_id[word]
                    if wid in out and out[wid][1] != rest:
                        raise ValueError(
                            f"grammar is not unifilar: after state {self.states[s]} the word "
                            f"{word!r} can lead to {out[wid][1]} or {rest}"
                        )
                    out.setdefault(wid, [0.0, rest])[0] += p * q
            dests = []
            for _, rest in out.values():
                if rest not in index:
                    if len(self.states) >= max_states:
                        raise ValueError(f"more than {max_states} states: is recursion unbounded?")
                    index[rest] = len(self.states)
                    self.states.append(rest)
                dests.append(index[rest])
            probs = [v[0] for v in out.values()]
            self._cum.append(list(np.cumsum(probs) / sum(probs)))
            self._word.append(list(out))
            self._dest.append(dests)
            self._logp.append(
                {w: (math.log(p), d) for w, p, d in zip(out, probs, dests, strict=True)}
            )
            s += 1

    # --- use ----------------------------------------------------------------------------------
    def sample(self, n_tokens: int, rng: np.random.Generator, stop: str) -> list[str]:
        """Walk from the start until at least ``n_tokens`` words ending with ``stop``."""
        stop_id, words = self._word_id[stop], self.words
        out: list[int] = []
        state = 0
        while len(out) < n_tokens or out[-1] != stop_id:
            for u in rng.random(max(256, n_tokens - len(out))).tolist():
                k = bisect.bisect_right(self._cum[state], u)
                k = min(k, len(self._word[state]) - 1)  # guards u against cumsum rounding
                out.append(self._word[state][k])
                state = self._dest[state][k]
                if len(out) >= n_tokens and out[-1] == stop_id:
                    break
        return [words[i] for i in out]

    def log_prob(self, words: Sequence[str]) -> float:
        """Natural-log probability of ``words`` as a walk from the start state."""
        state, total = 0, 0.0
        for word in words:
            hit = self._logp[state].get(self._word_id.get(word, -1))
            if hit is None:
                raise ValueError(f"the grammar cannot emit {word!r} in state {self.states[state]}")
            total += hit[0]
            state = hit[1]
        return total

    def entropy_rate(self) -> float:
        """Nats per word of the stationary source (exp of it: the best achievable perplexity)."""
        n = len(self.states)
        trans = np.zeros((n, n))
        entropy = np.zeros(n)
        for s, table in enumerate(self._logp):
            for logp, dest in table.values():
                trans[s, dest] += math.exp(logp)
                entropy[s] -= math.exp(logp) * logp
        # Stationary π: π P = π, Σ π = 1 (one equation replaced by the normalisation).
        system = trans.T - np.eye(n)
        system[-1] = 1.0
        rhs = np.zeros(n)
        rhs[-1] = 1.0
        pi = np.linalg.solve(system, rhs)
        return float(pi @ entropy)
