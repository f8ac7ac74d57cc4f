"""`baken audit …`: the privacy officer's commands.

`verify` reads the database itself (read-only use, with the auditor's copy of the checkpoint
key's public half, and the heads the witness kept), so an auditor need not trust the running
service. `witness` keeps the services' signed heads outside their databases (cli/witness.py).
The others ask the registry's AuditService (`inzage` the feedback service's too) under the
auditor's certificate, and each such read is itself logged.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format

from baken import inzage
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.client import connect
from baken.clock import AMSTERDAM, SystemClock
from baken.errors import UserError
from baken.houses import load_houses
from baken.pki import TlsFiles
from baken.purposes import INZAGE, PURPOSES
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.render import access_entry, shown
from baken.type.v1 import pseudonym_pb2
from cli.options import pages, person_options, person_subject, registry_option, registry_settings
from cli.witness import WitnessError, check, head_of, opened
from services.accesslog import signing
from services.common.settings import FeedbackSettings, RegistrySettings

if TYPE_CHECKING:
    from services.accesslog.store import CheckpointPolicy
    from services.accesslog.verify import Verification

pb = audit_service_pb2


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
    with _stub(args) as stub:
        request = pb.ListAccessEntriesRequest(on_behalf_of=args.user, **query)
        yield from pages(stub.ListAccessEntries, request, "entries", args.timeout)


def _range(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, value in (("start_time", args.start), ("end_time", args.end)):
        if value is not None:
            query[name] = value
    return query


def _print_entries(entries: Iterator[pb.AccessEntry], empty: str) -> None:
    count = 0
    for e in entries:
        print(access_entry(e))
        count += 1
    print(f"{count} entries." if count else empty)


def _subject(args: argparse.Namespace) -> None:

    _ring, subject = person_subject(args)
    print("Data-subject access report: who looked this person up, when, why, what they saw.")
    _print_entries(_entries(args, subject=subject, **_range(args)), "Nobody looked this person up.")


def _outcome(entry: pb.AccessEntry) -> str:
    name = pb.AccessOutcome.Name(entry.outcome)
    return name.removeprefix("ACCESS_OUTCOME_").lower().replace("_", "-")


def _entries_about(
    target: str, args: argparse.Namespace, subject: pseudonym_pb2.Subject
) -> list[pb.AccessEntry]:
    with connect(target, TlsFiles.of(args.pki_dir, args.party)) as channel:
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        request = pb.ListAccessEntriesRequest(
            on_behalf_of=args.user, subject=subject, **_range(args)
        )
        return list(pages(stub.ListAccessEntries, request, "entries", args.timeout))


def _inzage(args: argparse.Namespace) -> None:
    """Which houses mark the person (a look-up for purpose inzage, under the request's
    reference) and every entry about him in the registry's log and the feedback service's,
    gathered under the auditor's certificate: each call is an entry of a log itself."""
    _ring, subject = person_subject(args)
    if not args.user:
        raise UserError("say who you are: --user or BAKEN_USER")
    with connect(args.registry, TlsFiles.of(args.pki_dir, args.party)) as channel:
        answer = registry_service_pb2_grpc.RegistryServiceStub(channel).Lookup(
            registry_service_pb2.LookupRequest(
                subject=subject,
                purpose=PURPOSES[INZAGE],
                case_reference=args.request,
                on_behalf_of=args.user,
            ),
            timeout=args.timeout,
        )
    entries = _entries_about(args.registry, args, subject)
    sent: list[pb.AccessEntry] | None = None
    if args.feedback:
        feedback = _entries_about(args.feedback, args, subject)
        sent = [e for e in feedback if e.routed]
        entries += [e for e in feedback if not e.routed]
    entries.sort(key=lambda e: e.entry_time.ToDatetime())
    houses = load_houses()

    def house(house_id: str) -> str:
        known = houses.get(house_id)
        return known.display_name if known else house_id

    extract = inzage.Extract(
        request=args.request,
        made=SystemClock().now(),
        houses=tuple(
            inzage.MarkingHouse(name, region)
            for name, region in sorted(
                {(m.house.display_name, m.house.region_display_name) for m in answer.markers}
            )
        ),
        # Organisation and role only: never the official (on_behalf_of), nor a free text.
        lookups=tuple(
            inzage.LookUp(
                e.entry_time.ToDatetime(tzinfo=dt.UTC),
                e.organisation,
                e.role,
                e.purpose or e.processing_activity,
                _outcome(e),
            )
            for e in entries
        ),
        # What was sent to which house, never what it said (no deviation reason, no advice).
        decisions=None
        if sent is None
        else tuple(
            inzage.Decision(
                e.entry_time.ToDatetime(tzinfo=dt.UTC),
                e.organisation,
                e.decision or e.processing_activity,
                tuple(sorted({house(i.house) for i in e.routed})),
            )
            for e in sent
        ),
    )
    page = inzage.html_page(extract)
    args.out.write_text(page, encoding="utf-8")
    told = "" if sent is not None else "; no decisions: give --feedback to gather them"
    print(
        f"wrote {args.out}: {len(extract.houses)} houses, {len(extract.lookups)} entries"
        + (f", {len(sent)} decisions and requests" if sent is not None else "")
        + told
    )
    if args.pdf:
        _print_to_pdf(page, args.pdf)
        print(f"wrote {args.pdf}")


def _print_to_pdf(page: str, pdf: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise UserError("--pdf needs chromium on the PATH; open the HTML and print it instead")
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch, "inzage.html")
        source.write_text(page, encoding="utf-8")
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={scratch}/profile",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf.resolve()}",
            source.as_uri(),
        ]
        try:
            subprocess.run(command, capture_output=True, timeout=60, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            raise UserError(f"chromium could not print {pdf}; open the HTML and print it") from None


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
        request = pb.ListAnomaliesRequest(on_behalf_of=args.user, **_range(args))
        found = list(pages(stub.ListAnomalies, request, "anomalies", args.timeout))
        for a in found:
            seqs = f" (entries {', '.join(map(str, a.sequences[:20]))})" if a.sequences else ""
            print(f"{a.rule}  {a.party}: {shown(a.description)}{seqs}")
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
        request = pb.ListPendingReviewsRequest(on_behalf_of=args.user)
        pending = pages(stub.ListPendingReviews, request, "entries", args.timeout)
        _print_entries(pending, "No break-glass entries wait for review.")


def _service_settings(args: argparse.Namespace) -> RegistrySettings | FeedbackSettings:

    options = {"data_dir": args.data_dir, "database_url": args.database_url}
    if args.service == "feedback":
        return FeedbackSettings(**{k: v for k, v in options.items() if v is not None})
    return registry_settings(**options)


def _verify(args: argparse.Namespace) -> None:
    from sqlalchemy.exc import DBAPIError

    from services.accesslog.store import CheckpointPolicy
    from services.accesslog.verify import verify_database

    settings = _service_settings(args)
    policy = CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_seconds)
    try:
        witnessed = []
        if args.witness is not None:
            with opened(args.witness) as store:
                witnessed = store.heads(args.service)
        result = verify_database(
            settings.resolved_database_url(), args.public_key, policy, witnessed
        )
    except (FileNotFoundError, WitnessError) as error:
        raise VerifyFailed(str(error)) from None
    except DBAPIError as error:
        raise VerifyFailed(f"cannot read the access log: {error.orig}") from None
    summary = _summary(result, policy)
    if args.witness is not None:
        summary += f"; the witness saw {_count(len(witnessed), 'head')}" + (
            f", the newest the log still leads to at #{result.witnessed_seq}"
            if result.witnessed_seq
            else ""
        )
    if result.first_break is not None:
        b = result.first_break
        raise VerifyFailed(f"BROKEN at #{b.seq}: {b.kind}: {b.detail} ({summary})")
    print(f"OK: the access log verifies: {summary}.")


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _summary(result: Verification, policy: CheckpointPolicy) -> str:
    """Entries and checkpoints, the newest checkpoint that holds, and what no checkpoint signs."""
    from services.accesslog.verify import entries_are

    text = f"{_count(result.entries, 'entry', 'entries')}, "
    text += _count(result.checkpoints, "checkpoint")
    if result.expired_seq and result.expired_before is not None:
        before = result.expired_before.isoformat(timespec="seconds")
        text += f", entries up to #{result.expired_seq} expired (written before {before})"
    if result.last_signed_seq:
        text += f", the newest valid one at #{result.last_signed_seq}"
    elif result.checkpoints:
        text += ", none of them valid"
    tail = result.last_seq - result.last_signed_seq
    if result.first_break is None and tail > 0:
        text += (
            f"; {entries_are(result.last_signed_seq + 1, result.last_seq)} not signed yet "
            f"(the service signs within {policy.seconds:g} s)"
        )
    return text


def _witness(args: argparse.Namespace) -> None:
    target = args.target or os.environ.get(
        "BAKEN_FEEDBACK_TARGET" if args.service == "feedback" else "BAKEN_REGISTRY_TARGET",
        "127.0.0.1:50052" if args.service == "feedback" else "127.0.0.1:50051",
    )
    keys = signing.load_public_keys(args.public_key)
    label = "the feedback service" if args.service == "feedback" else "the registry"
    alarms = 0
    with (
        opened(args.store, create=True) as store,
        connect(target, TlsFiles.of(args.pki_dir, args.party)) as channel,
    ):
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        while True:
            try:
                head = head_of(stub.GetSignedHead(pb.GetSignedHeadRequest(), timeout=args.timeout))
                if head is None:
                    print(f"{label} has signed nothing yet", flush=True)
                else:
                    check(head, keys)
                    conflict = store.conflict(args.service, head, label)
                    if conflict is not None:
                        alarms += 1
                        print(f"ALARM: {conflict}", file=sys.stderr, flush=True)
                    if store.add(args.service, head, dt.datetime.now(dt.UTC)):
                        print(f"kept {label}'s signed head at #{head.seq}", flush=True)
            except WitnessError as error:
                alarms += 1
                print(f"ALARM: {error}", file=sys.stderr, flush=True)
            except grpc.RpcError as error:
                if args.once:
                    raise
                print(f"cannot reach {label}: {error.code().name}", file=sys.stderr, flush=True)
            if args.once:
                break
            time.sleep(args.interval)
    if alarms:
        raise VerifyFailed(f"{_count(alarms, 'alarm')}; the heads are kept in {store.path}")


def add_parser(sub: Any, key_file_env: str, pki_dir_env: str, target_env: str) -> None:
    audit = sub.add_parser("audit", help="the privacy officer's access-log commands")
    actions = audit.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="`baken audit ACTION --help`"
    )

    def remote(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        registry_option(p, target_env)
        p.add_argument(
            "--pki-dir",
            type=Path,
            default=Path(os.environ.get(pki_dir_env, "var/pki")),
            help=f"the CA and the auditor's certificate (env {pki_dir_env}, default var/pki)",
        )
        p.add_argument("--party", default="privacy-auditor", help="whose certificate to use")
        p.add_argument(
            "--user",
            default=os.environ.get("BAKEN_USER") or os.environ.get("USER"),
            help="you, the responsible user",
        )
        p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
        p.add_argument("--from", dest="start", type=_when, help="YYYY-MM-DD[THH:MM]")
        p.add_argument("--to", dest="end", type=_when, help="YYYY-MM-DD[THH:MM], exclusive")
        return p

    subject = remote("subject", "data-subject access report: who looked this person up")
    subject.add_argument("--key-file", help=f"the pseudonym key file (env {key_file_env})")
    person_options(subject)
    subject.set_defaults(run=_subject)

    extract = remote(
        "inzage", "the extract for a person's request of access (inzageverzoek), as HTML"
    )
    extract.add_argument("--key-file", help=f"the pseudonym key file (env {key_file_env})")
    person_options(extract)
    extract.add_argument(
        "--request",
        required=True,
        metavar="REFERENCE",
        help="the request's reference, e.g. AVG-2026-0042: the case reference of the look-up",
    )
    extract.add_argument(
        "--feedback",
        default=os.environ.get("BAKEN_FEEDBACK_TARGET"),
        metavar="HOST:PORT",
        help="the feedback service, for the decisions and requests sent about him (env "
        "BAKEN_FEEDBACK_TARGET); without it the extract says that part was not gathered",
    )
    extract.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    extract.add_argument("--pdf", type=Path, help="also print it to this PDF (needs chromium)")
    extract.set_defaults(run=_inzage)

    party = remote("party", "every entry of one party")
    party.add_argument("party_id", help="the party, e.g. zsm-midden-nederland-kpc")
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

    def service_log(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        p.add_argument(
            "--service",
            choices=["registry", "feedback"],
            default="registry",
            help="whose access log (each service keeps its own, in the same format)",
        )
        p.add_argument(
            "--public-key",
            type=Path,
            action="append",
            required=True,
            help="the checkpoint public key file(s) (.pub) the auditors were given, kept apart "
            "from the service; never a key found beside its database",
        )
        return p

    verify = service_log("verify", "recompute the hash chain and the signatures")
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
        "--witness",
        type=Path,
        metavar="DIR",
        help="the witness's store (`baken audit witness --store DIR`): names a cut tail or a "
        "rewritten chain that the database alone cannot show",
    )
    verify.set_defaults(run=_verify)

    witness = service_log(
        "witness", "keep the service's signed heads outside its database (runs until Ctrl-C)"
    )
    witness.add_argument("--store", type=Path, required=True, metavar="DIR", help="its own dir")
    witness.add_argument(
        "--target",
        help="the service, host:port (env BAKEN_REGISTRY_TARGET or BAKEN_FEEDBACK_TARGET)",
    )
    witness.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(pki_dir_env, "var/pki")),
        help=f"the CA and the auditor's certificate (env {pki_dir_env}, default var/pki)",
    )
    witness.add_argument("--party", default="privacy-auditor", help="whose certificate to use")
    witness.add_argument("--interval", type=float, default=5.0, help="seconds between asks")
    witness.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    witness.add_argument("--once", action="store_true", help="ask once and exit (cron)")
    witness.set_defaults(run=_witness)
