"""`baken report --month 2026-10 [--region R] [--house H] [--csv | --html FILE]`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from baken.errors import UserError
from baken.pki import TlsFiles
from baken.stuurinformatie.client import Request, fetch_report
from baken.stuurinformatie.figures import Month
from baken.stuurinformatie.html import html_report
from baken.stuurinformatie.text import csv_text, table

DEFAULT_PARTY = "landelijke-stuurgroep"


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub: Any, pki_dir_env: str, registry_env: str, feedback_env: str) -> None:
    report = sub.add_parser(
        "report",
        help="management information of a month: look-ups, hits, terugkoppeling, advice",
        description="A month's management information from the registry and the feedback "
        "service: aggregates only, for the regions your covenants grant you for purpose "
        "monitoring; counts below 5 are shown as '< 5'. docs/REPORT.md defines every figure.",
    )
    report.add_argument("--month", type=_month, required=True, help="YYYY-MM (Dutch time)")
    report.add_argument("--region", default="", help="only this region, e.g. midden-nederland")
    report.add_argument("--house", default="", help="only this house, e.g. vh-almere")
    report.add_argument(
        "--months", type=int, default=None, help="months of history (default 1; 6 with --html)"
    )
    out = report.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV on standard output")
    out.add_argument("--html", type=Path, metavar="FILE", help="a self-contained HTML file")
    report.add_argument(
        "--registry", default=os.environ.get(registry_env, "127.0.0.1:50051"), help="host:port"
    )
    report.add_argument(
        "--feedback", default=os.environ.get(feedback_env, "127.0.0.1:50052"), help="host:port"
    )
    report.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(pki_dir_env, "var/pki")),
        help=f"the CA and the party's certificate (env {pki_dir_env}, default var/pki)",
    )
    report.add_argument(
        "--party",
        default=os.environ.get("BAKEN_PARTY", DEFAULT_PARTY),
        help=f"whose certificate to use (env BAKEN_PARTY; default {DEFAULT_PARTY})",
    )
    report.add_argument(
        "--user",
        default=os.environ.get("BAKEN_USER") or os.environ.get("USER") or "",
        help="you, the responsible user (env BAKEN_USER)",
    )
    report.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    report.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> None:
    if not args.user:
        raise UserError("--user: name yourself, the responsible user (or set BAKEN_USER)")
    months = args.months if args.months is not None else (6 if args.html else 1)
    if not 1 <= months <= 36:
        raise UserError("--months: give 1 to 36")
    report = fetch_report(
        args.registry,
        args.feedback,
        TlsFiles.of(args.pki_dir, args.party),
        Request(args.month, months, args.region, args.house, args.user, args.timeout),
    )
    if args.html:
        args.html.write_text(html_report(report), encoding="utf-8")
        print(f"wrote {args.html}")
    elif args.csv:
        print(csv_text(report), end="")
    else:
        print(table(report), end="")
