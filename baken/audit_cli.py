"""`baken audit …`: the privacy officer's commands.

`verify` reads the database itself (read-only use, with the checkpoint key's public half), so
an auditor need not trust the running service; the others ask the registry's AuditService
under the auditor's certificate, and each such read is itself logged.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.client import connect
from baken.clock import AMSTERDAM
from baken.errors import UserError
from baken.pki import TlsFiles

pb = audit_service_pb2
OUTCOME = {
    pb.ACCESS_OUTCOME_HIT: "hit",
    pb.ACCESS_OUTCOME_NO_HIT: "no hit",
    pb.ACCESS_OUTCOME_WITHHELD: "withheld",
    pb.ACCESS_OUTCOME_DENIED: "DENIED",
    pb.ACCESS_OUTCOME_BREAK_GLASS: "BREAK-GLASS",
    pb.ACCESS_OUTCOME_AUDIT_READ: "audit read",
    pb.ACCESS_OUTCOME_REVIEW: "review",
    pb.ACCESS_OUTCOME_SIGNALS_DISCLOSED: "signals disclosed",
}


class VerifyFailed(Exception):
    """The access log does not verify; the message names the first break."""


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD or an ISO time") from None
    return value if value.tzinfo else value.replace(tzinfo=AMSTERDAM)


@contextlib.contextmanager
def _stub(args: argparse.Namespace) -> Iterator[audit_service_pb2_grpc.AuditServiceStub]:
    if not args.user:
        raise UserError("say who you are: --user or BAKEN_USER")
    with connect(args.registry, TlsFiles.of(args.pki_dir, args.party)) as channel:
        yield audit_service_pb2_grpc.AuditServiceStub(channel)


def _entries(args: argparse.Namespace, **query: Any) -> Iterator[pb.AccessEntry]:
    token = ""
    with _stub(args) as stub:
        while True:
            page = stub.ListAccessEntries(
                pb.ListAccessEntriesRequest(on_behalf_of=args.user, page_token=token, **query),
                timeout=args.timeout,
            )
            yield from page.entries
            token = page.next_page_token
            if not token:
                return


def _range(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, value in (("start_time", args.start), ("end_time", args.end)):
        if value is not None:
            query[name] = value
    return query


def describe(e: pb.AccessEntry) -> str:
    """One entry as the data subject's report shows it: who, when, why, what."""
    when = e.time.ToDatetime(tzinfo=dt.UTC).astimezone(AMSTERDAM).strftime("%Y-%m-%d %H:%M:%S")
    who = f"{e.party} ({e.organisation}, {e.role}) for {e.on_behalf_of}"
    why = e.purpose + (f", case {e.case_reference}" if e.case_reference else "")
    lines = [f"#{e.sequence}  {when}  {OUTCOME.get(e.outcome, '?')}  {who}", f"    purpose  {why}"]
    if e.denial_reason:
        lines.append(f"    denied   {e.denial_reason}")
    if e.break_glass_reason:
        lines.append(f"    break-glass reason  {e.break_glass_reason}")
    for d in e.disclosed:
        lines.append(f"    saw      {d.marker}: {', '.join(d.fields)}")
    if e.withheld:
        lines.append(f"    withheld {len(e.withheld)} field(s)")
    if e.audit_query:
        lines.append(f"    query    {e.audit_query}")
    if e.reviews_sequence:
        lines.append(f"    reviews  #{e.reviews_sequence}: {e.review_finding}")
    if e.covenants:
        lines.append(f"    covenant {', '.join(e.covenants)}")
    return "\n".join(lines)


def _print_entries(entries: Iterator[pb.AccessEntry], empty: str) -> None:
    count = 0
    for e in entries:
        print(describe(e))
        count += 1
    print(f"{count} entries." if count else empty)


def _subject(args: argparse.Namespace) -> None:
    from baken.cli import person_subject

    _ring, subject = person_subject(args)
    print("Data-subject access report: who looked this person up, when, why, what they saw.")
    _print_entries(_entries(args, subject=subject, **_range(args)), "Nobody looked this person up.")


def _party(args: argparse.Namespace) -> None:
    _print_entries(_entries(args, party=args.party_id, **_range(args)), "No entries.")


def _export(args: argparse.Namespace) -> None:
    out = args.out.open("w") if args.out else sys.stdout
    try:
        for e in _entries(args, **_range(args)):
            record = json_format.MessageToDict(e, preserving_proto_field_name=True)
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
    finally:
        if args.out:
            out.close()


def _anomalies(args: argparse.Namespace) -> None:
    with _stub(args) as stub:
        found = stub.ListAnomalies(
            pb.ListAnomaliesRequest(on_behalf_of=args.user, **_range(args)), timeout=args.timeout
        ).anomalies
        for a in found:
            seqs = f" (entries {', '.join(map(str, a.sequences[:20]))})" if a.sequences else ""
            print(f"{a.rule}  {a.party}: {a.description}{seqs}")
        print(f"{len(found)} anomalies." if found else "No anomalies.")


def _review(args: argparse.Namespace) -> None:
    with _stub(args) as stub:
        if args.close is not None:
            done = stub.ReviewBreakGlass(
                pb.ReviewBreakGlassRequest(
                    on_behalf_of=args.user, sequence=args.close, finding=args.finding or ""
                ),
                timeout=args.timeout,
            )
            print(f"Reviewed #{done.reviews_sequence} in entry #{done.sequence}.")
            return
        pending = stub.ListPendingReviews(
            pb.ListPendingReviewsRequest(on_behalf_of=args.user), timeout=args.timeout
        ).entries
        _print_entries(iter(pending), "No break-glass entries wait for review.")


def _verify(args: argparse.Namespace) -> None:
    from sqlalchemy.exc import DBAPIError

    from baken.cli import registry_settings
    from baken.settings import FeedbackSettings, RegistrySettings
    from baken.signing import public_path
    from services.registry.log_verify import verify_database

    options = {"data_dir": args.data_dir, "database_url": args.database_url}
    settings: RegistrySettings | FeedbackSettings = (
        FeedbackSettings(**{k: v for k, v in options.items() if v is not None})
        if args.service == "feedback"
        else registry_settings(**options)
    )
    keys = args.public_key or [public_path(settings.resolved_audit_signing_key())]
    try:
        result = verify_database(settings.resolved_database_url(), keys)
    except FileNotFoundError as error:
        raise VerifyFailed(str(error)) from None
    except DBAPIError as error:
        raise VerifyFailed(f"cannot read the access log: {error.orig}") from None
    summary = (
        f"{result.entries} entries, {result.checkpoints} signed checkpoints, "
        f"signed up to #{result.last_signed_seq}"
    )
    if result.first_break is not None:
        b = result.first_break
        raise VerifyFailed(f"BROKEN at #{b.seq}: {b.kind}: {b.detail} ({summary})")
    print(f"OK: the access log verifies: {summary}.")


def add_parser(sub: Any, key_file_env: str, pki_dir_env: str, target_env: str) -> None:
    audit = sub.add_parser("audit", help="the privacy officer's access-log commands")
    actions = audit.add_subparsers(dest="action", required=True)

    def remote(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        p.add_argument("--registry", default=os.environ.get(target_env, "127.0.0.1:50051"))
        p.add_argument("--pki-dir", type=Path, default=Path(os.environ.get(pki_dir_env, "var/pki")))
        p.add_argument("--party", default="privacy-auditor", help="whose certificate to use")
        p.add_argument(
            "--user",
            default=os.environ.get("BAKEN_USER") or os.environ.get("USER"),
            help="you, the responsible user",
        )
        p.add_argument("--timeout", type=float, default=10.0)
        p.add_argument("--from", dest="start", type=_when, help="YYYY-MM-DD[THH:MM]")
        p.add_argument("--to", dest="end", type=_when, help="YYYY-MM-DD[THH:MM], exclusive")
        return p

    from baken.cli import _birth_date

    subject = remote("subject", "data-subject access report: who looked this person up")
    subject.add_argument("--key-file", help=f"the pseudonym key file (env {key_file_env})")
    subject.add_argument("--bsn")
    subject.add_argument("--surname")
    subject.add_argument("--birth-date", type=_birth_date)
    subject.set_defaults(run=_subject)

    party = remote("party", "every entry of one party")
    party.add_argument("party_id")
    party.set_defaults(run=_party)

    export = remote("export", "entries as JSON lines, for auditors")
    export.add_argument("--out", type=Path, help="write here instead of stdout")
    export.set_defaults(run=_export)

    remote("anomalies", "look-ups out of pattern (rules in docs/AUDIT.md)").set_defaults(
        run=_anomalies
    )

    review = remote("review", "break-glass entries waiting for review; --close one")
    review.add_argument("--close", type=int, metavar="SEQ", help="the entry reviewed")
    review.add_argument("--finding", help="your finding (10 to 2000 characters)")
    review.set_defaults(run=_review)

    verify = actions.add_parser("verify", help="recompute the hash chain and the signatures")
    verify.add_argument(
        "--service",
        choices=["registry", "feedback"],
        default="registry",
        help="whose access log (each service keeps its own, in the same format)",
    )
    verify.add_argument(
        "--data-dir",
        type=Path,
        help="the service's data dir (env BAKEN_<SERVICE>_DATA_DIR, default var/<service>)",
    )
    verify.add_argument(
        "--database-url",
        help="PostgreSQL URL instead of the data dir's SQLite (env BAKEN_<SERVICE>_DATABASE_URL)",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        help="checkpoint public key file(s); default the .pub next to the service's signing key "
        "(env BAKEN_<SERVICE>_AUDIT_SIGNING_KEY, default data-dir/audit-signing.key)",
    )
    verify.set_defaults(run=_verify)
