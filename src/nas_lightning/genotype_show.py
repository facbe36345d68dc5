"""``python -m nas_lightning.genotype show <genotype.json | run dir> [--out diagram.png]``.

Prints the genotype readably (per cell and node its inputs and ops; per block its op) and
writes the diagram (a cell diagram, or a block strip for ProxylessNAS), by default beside the
genotype file as ``genotype.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas_lightning.genotype import load_genotype
from nas_lightning.genotype_views import describe


def _genotype_path(arg: str) -> Path:
    path = Path(arg).expanduser()
    path = path / "genotype.json" if path.is_dir() else path
    if not path.is_file():
        raise SystemExit(
            f"error: genotype file {path} does not exist; give a genotype.json or a run "
            "directory that holds one"
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas_lightning.genotype",
        description="Show a genotype: print it and draw its diagram.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print the genotype and write its diagram (PNG)")
    show.add_argument("genotype", help="a genotype.json, or a run directory holding one")
    show.add_argument("--out", default=None, help="diagram path (default: beside the genotype)")
    show.add_argument("--no-diagram", action="store_true", help="only print")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    path = _genotype_path(args.genotype)
    try:
        genotype = load_genotype(path)
    except ValueError as err:
        raise SystemExit(f"error: {path}: {err}") from err
    print(describe(genotype))
    if not args.no_diagram:
        from nas_lightning.diagram import write_diagram  # matplotlib only when drawing

        out = write_diagram(genotype, args.out or path.with_suffix(".png"))
        print(f"diagram written to {out}")
    return 0
