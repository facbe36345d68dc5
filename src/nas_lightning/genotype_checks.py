"""Validation of genotype dicts before they become genotypes (and networks).

Without it ``load_genotype`` turned input ``1.7`` into ``1``, and accepted unknown ops, inputs
out of range, odd edge counts and concat entries of nodes that do not exist; the error then came
(if at all) deep inside the retraining network. Every error here is one line naming the file and
line (when the dict came from a file), the field (``normal[3]``), the bad value and the valid
choices. ``k`` (inputs per node) is a parameter, not a DARTS constant.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from nas_lightning.ops.desc import OpDesc
from nas_lightning.ops.registry import ZERO, available_ops, canonical_name, op_label

JsonPath = tuple[str | int, ...]
_SCALAR = re.compile(r"-?(?:Infinity|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|true|false|null|NaN")
# mirrors spaces.gated.mbconv_name / ZERO_OP: the block genotype's file format
_MBCONV = re.compile(r"mbconv_k\d+_e\d+")
BLOCK_ZERO = "zero"
CELL_KS = (1, 2)  # the DARTS cell space: node 0 has two candidate inputs


class GenotypeError(ValueError):
    """An invalid genotype; the message is one line: ``file:line: field: problem; valid: …``."""


def json_lines(text: str) -> dict[JsonPath, int]:
    """The 1-based line of every value of a (valid) JSON text, keyed by its path."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    lines: dict[JsonPath, int] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def value(i: int, path: JsonPath) -> int:
        i = skip(i)
        lines[path] = bisect.bisect_left(newlines, i) + 1
        if text[i] in "[{":
            close, j, index = "]" if text[i] == "[" else "}", skip(i + 1), 0
            while text[j] != close:
                if close == "}":
                    key, j = json.decoder.scanstring(text, j + 1)
                    j = value(skip(j) + 1, (*path, key))  # past the ':'
                else:
                    j = value(j, (*path, index))
                    index += 1
                j = skip(j)
                j = skip(j + 1) if text[j] == "," else j
            return j + 1
        if text[i] == '"':
            return json.decoder.scanstring(text, i + 1)[1]
        return _SCALAR.match(text, i).end()

    value(0, ())
    return lines


@dataclass
class Where:
    """Where a genotype dict came from: a file (and its text, for line numbers) or code."""

    source: str = "genotype"
    text: str | None = None

    def fail(self, path: JsonPath, problem: str) -> NoReturn:
        loc = self.source
        if self.text is not None:
            lines = json_lines(self.text)
            located = next(path[:n] for n in range(len(path), -1, -1) if path[:n] in lines)
            loc += f":{lines[located]}"
        field = "".join(f"[{p}]" if isinstance(p, int) else p for p in path[:2]) or "genotype"
        raise GenotypeError(f"{loc}: {field}: {problem}")


def _fields(d: dict, known: Sequence[str], where: Where) -> None:
    for key in d:
        if key not in known:
            where.fail((key,), f"unknown field {key!r}; valid fields: {', '.join(known)}")


def _list(d: dict, key: str, where: Where, required: bool = True) -> list:
    value = d.get(key, None if required else [])
    if not isinstance(value, (list, tuple)):
        where.fail((key,), f"{value!r} is not a list" if key in d else "missing field")
    return value


def _int(value: Any, path: JsonPath, what: str, where: Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        where.fail(path, f"{what} {json.dumps(value, default=repr)} is not an integer")
    return value


def _cell_ops(ops: Sequence[str] | None) -> list[str]:
    names = [canonical_name(str(o)) for o in (available_ops("cell") if ops is None else ops)]
    return [n for n in names if n != ZERO]


def check_cell(
    d: dict,
    where: Where,
    ops: Sequence[str] | None = None,
    nodes: int | None = None,
    k: int | None = None,
) -> None:
    """A DARTS cell genotype: per cell ``k × nodes`` ``[op, input]`` entries, node ``i``'s inputs
    in ``0..i+1`` (0, 1: the previous cells; ``m ≥ 2``: node ``m − 2``), ops from ``ops`` (default:
    the registry) and never ``none``, concat entries in ``2..nodes+1``. ``nodes`` defaults to the
    genotype's own (its concat's largest entry − 1), ``k`` to entries / nodes (1 or 2)."""
    _fields(d, ("type", "normal", "normal_concat", "reduce", "reduce_concat"), where)
    valid = _cell_ops(ops)
    ks = [k] if k is not None else CELL_KS
    for cell in ("normal", "reduce"):
        gene, concat = _list(d, cell, where), _list(d, f"{cell}_concat", where)
        for i, entry in enumerate(gene):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
                where.fail(
                    (cell, i), f"{json.dumps(entry, default=repr)} is not an [op, input] pair"
                )
            op = entry[0]
            if op not in valid:
                if op in (ZERO, "zero"):
                    why = "cannot be chosen (a cell never picks zero)"
                else:
                    why = "is unknown" if ops is None else "is not in the given ops"
                where.fail((cell, i, 0), f"op {op!r} {why}; valid ops: {', '.join(valid)}")
            _int(entry[1], (cell, i, 1), "input", where)
        for j, c in enumerate(concat):
            _int(c, (f"{cell}_concat", j), "concat entry", where)
            if c < 2 or c in concat[:j]:  # checks that need no node count
                what = "is repeated" if c >= 2 else "is an input, not a node"
                where.fail((f"{cell}_concat", j), f"{c} {what}; valid: distinct states ≥ 2")
        if not concat:
            where.fail((f"{cell}_concat",), "is empty; list the states to concatenate")
        n = nodes if nodes is not None else max(concat) - 1
        if nodes is None and n > len(gene):  # more nodes than even one input each allows
            j = concat.index(max(concat))
            where.fail(
                (f"{cell}_concat", j),
                f"{max(concat)} would be node {n - 1}, but {cell} has {len(gene)} entries; "
                f"valid: 2..{len(gene) // ks[-1] + 1} ({len(gene) // ks[-1]} nodes of "
                f"k={ks[-1]} inputs)",
            )
        need = [kk * n for kk in ks]
        if n < 1 or len(gene) not in need:
            where.fail(
                (cell,),
                f"{len(gene)} entries for {n} nodes; a cell needs k × nodes entries, "
                f"{' or '.join(f'{x} (k={kk})' for x, kk in zip(need, ks, strict=True))}",
            )
        kk = len(gene) // n
        for i, (_, j) in enumerate(gene):
            node = i // kk
            if not 0 <= j < node + 2:
                where.fail(
                    (cell, i, 1),
                    f"input {j} is out of range for node {node} (entries "
                    f"{node * kk}..{node * kk + kk - 1}); valid inputs: 0..{node + 1} "
                    "(0, 1: the previous cells; m ≥ 2: node m − 2)",
                )
        for j, c in enumerate(concat):
            if c >= n + 2:
                where.fail((f"{cell}_concat", j), f"{c} is out of range; valid: 2..{n + 1}")
        if k is None:
            ks = [kk]  # both cells have the same k


def check_recurrent(
    d: dict,
    where: Where,
    ops: Sequence[str] | None = None,
    nodes: int | None = None,
    k: int | None = None,
) -> None:
    """A DARTS recurrent cell: one ``[op, input]`` per node (k = 1), node ``i`` (state ``i + 1``)
    reading a state in ``0..i`` (0: the highway-gated ``x_t``, ``h_{t−1}``), ops from ``ops``
    (default: the registry's recurrent ops) and never ``none``, concat entries in ``1..nodes``."""
    _fields(d, ("type", "recurrent", "concat"), where)
    valid = [n for n in (ops or available_ops("rnn")) if n not in (ZERO, "zero")]
    gene, concat = _list(d, "recurrent", where), _list(d, "concat", where)
    if k not in (None, 1):
        where.fail(("recurrent",), f"k={k}: a recurrent cell keeps one input per node (k=1)")
    n = nodes if nodes is not None else len(gene)
    if len(gene) != n:
        where.fail(("recurrent",), f"{len(gene)} entries for {n} nodes; valid: {n} (one per node)")
    for i, entry in enumerate(gene):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            where.fail(("recurrent", i), f"{json.dumps(entry, default=repr)} is not an [op, input]")
        if entry[0] not in valid:
            where.fail(
                ("recurrent", i, 0), f"op {entry[0]!r} is invalid; valid: {', '.join(valid)}"
            )
        j = _int(entry[1], ("recurrent", i, 1), "input", where)
        if not 0 <= j <= i:
            where.fail(
                ("recurrent", i, 1), f"input {j} is out of range for node {i}; valid: 0..{i}"
            )
    for j, c in enumerate(concat):
        if not 1 <= _int(c, ("concat", j), "concat entry", where) <= n:
            where.fail(("concat", j), f"{c} is out of range; valid: 1..{n}")


def _block_choices(
    ops: Sequence[str] | Sequence[Sequence[str]] | None, space: dict, n: int, where: Where
) -> list[list[str]] | None:
    if ops is not None:
        if all(isinstance(o, str) for o in ops):
            return [list(ops)] * n
        if len(ops) != n:
            where.fail(("blocks",), f"{n} blocks, but the space has {len(ops)} searchable blocks")
        return [list(o) for o in ops]
    if all(isinstance(space.get(key), list) for key in ("kernels", "expands")):
        names = [
            op_label(OpDesc("mbconv", 1, 1, (1, 1), (1, 1), k, 1, e))
            for k in space["kernels"]
            for e in space["expands"]
        ]
        return [names + ([BLOCK_ZERO] if space.get("allow_zero", True) else [])] * n
    return None


def check_blocks(
    d: dict, where: Where, ops: Sequence[str] | Sequence[Sequence[str]] | None = None, **_: Any
) -> None:
    """A ProxylessNAS block genotype: one op per block, from ``ops`` (one list for every block,
    or one list per block), else from the candidates its ``space`` names (kernels × expands,
    plus ``zero``), else any ``mbconv_k<kernel>_e<expand>`` or ``zero``. Whether ``zero`` suits
    a shape-changing block only the built space knows (``MobileNetSearchSpace.to_choice``)."""
    _fields(d, ("type", "blocks", "labels", "space"), where)
    blocks, labels = _list(d, "blocks", where), _list(d, "labels", where, required=False)
    space = d.get("space") or {}
    if not isinstance(space, dict):
        where.fail(("space",), f"{space!r} is not an object of the space's arguments")
    if not blocks:
        where.fail(("blocks",), "is empty; give one op per searchable block")
    if labels and (len(labels) != len(blocks) or len(set(map(str, labels))) != len(labels)):
        where.fail(("labels",), f"{len(labels)} labels for {len(blocks)} blocks; one per block")
    choices = _block_choices(ops, space, len(blocks), where)
    for i, op in enumerate(blocks):
        if choices is None:
            ok = op == BLOCK_ZERO or (isinstance(op, str) and bool(_MBCONV.fullmatch(op)))
        else:
            ok = op in choices[i]
        if not ok:
            hint = ", ".join(choices[i]) if choices else "mbconv_k<kernel>_e<expand>, zero"
            name = f"block {labels[i]}: " if labels else ""
            where.fail(("blocks", i), f"{name}op {op!r} is not a candidate; valid ops: {hint}")
