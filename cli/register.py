"""`baken register [--covenants DIR] [--out FILE]`: the register of processing activities
(verwerkingsregister), as Markdown, from the covenants and the party register."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from baken.houses import load_houses
from services.common import covenants
from services.common.processing_register import register_markdown

COVENANTS_ENV = "BAKEN_REGISTRY_COVENANTS_DIR"


def _register(args: argparse.Namespace) -> None:
    houses = load_houses()
    text = register_markdown(covenants.load(args.covenants, houses), houses)
    if args.out is None:
        print(text, end="")
        return
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


def add_parser(sub: Any) -> None:
    register = sub.add_parser(
        "register",
        help="the register of processing activities (verwerkingsregister), from the covenants",
        description="Per purpose: the parties and roles, the data, the legal basis, the "
        "validity and the retention period, as Markdown, generated from the covenant files.",
    )
    register.add_argument(
        "--covenants",
        type=Path,
        default=Path(os.environ.get(COVENANTS_ENV) or covenants.DEFAULT_DIR),
        metavar="DIR",
        help=f"the covenants and the party register (env {COVENANTS_ENV}, default covenants/)",
    )
    register.add_argument("--out", type=Path, metavar="FILE", help="write here, not to stdout")
    register.set_defaults(run=_register)
