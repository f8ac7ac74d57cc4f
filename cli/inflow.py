"""`baken adapter zsm sync|watch`: a ZSM desk's suspects monitor into Baken (adapters/zsm)."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from adapters.zsm import Inflow, InflowReport, InflowState
from baken.client import RegistryClient, connect
from baken.clock import clock_from_env
from baken.errors import UserError
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.purposes import INTAKE, PURPOSES
from cli.options import FEEDBACK_TARGET_ENV, key_file, party, served_ring
from services.common import covenants

# The desk's system account the adapter looks up and records on behalf of (NEN 7513).
ACCOUNT = "instroom"


class Unfinished(Exception):
    """A run that left something to do: a row rejected, the export incomplete, or a service
    that could not be used (exit 1)."""


def desk_of(party_id: str) -> tuple[covenants.Party, str]:
    """The ZSM desk `party_id` names in the party register, and its ZSM location."""
    houses = load_houses()
    parties = covenants.load_parties(
        covenants.DEFAULT_DIR / covenants.PARTIES_FILE, {h.region for h in houses.values()}
    )
    locations = covenants.zsm_locations(parties, houses)
    desk = parties.get(party_id)
    if desk is None or party_id not in locations:
        raise UserError(f"--party {party_id}: not a ZSM desk of the party register")
    return desk, locations[party_id]


@contextlib.contextmanager
def running_inflow(args: argparse.Namespace) -> Iterator[Inflow]:
    party_id = party(args)
    desk, location = desk_of(party_id)
    user = args.user or ACCOUNT
    if not desk.formats.user.fullmatch(user):
        raise UserError(f"--user: not an account of {party_id} (the party register's format)")
    tls = TlsFiles.of(args.pki_dir, party_id)
    tls.read()  # a missing certificate is said now, not by every call
    ring = served_ring(KeyRing.load(key_file(args)), args.pki_dir, party_id, user, PURPOSES[INTAKE])
    state = InflowState(args.state_dir / f"{party_id}.state.db")
    try:
        with connect(args.registry, tls) as registry, connect(args.feedback, tls) as feedback:
            yield Inflow(
                ring=ring,
                state=state,
                clock=clock_from_env(),  # the services' clock, shifted in the demo
                registry=RegistryClient(registry, ring, on_behalf_of=user),
                feedback=feedback_service_pb2_grpc.FeedbackServiceStub(feedback),
                on_behalf_of=user,
                location=location,
                case_format=desk.formats.case_reference,
            )
    finally:
        state.close()


def run(
    args: argparse.Namespace,
    files: Callable[[Sequence[Path]], list[Path]],
    shown: Callable[[str], str],
) -> None:
    """sync, or watch until SIGINT or SIGTERM. `files`: the export files --source names
    (cli.adapter.export_files); `shown`: text as a terminal may print it (cli.adapter.printable)."""
    if not args.source:
        raise UserError(f"{args.action} needs --source (the suspects monitor)")
    if not args.feedback:
        raise UserError(
            f"zsm {args.action} needs --feedback HOST:PORT (env {FEEDBACK_TARGET_ENV}): the "
            "inflow and the decisions are recorded there"
        )
    if args.confirm_deletions is not None:
        raise UserError("--confirm-deletions: the ZSM inflow deletes nothing")
    with running_inflow(args) as inflow:
        waiting = False
        while True:
            try:
                paths, absent = files(args.source), None
            except UserError as error:
                if args.action != "watch":
                    raise
                paths, absent = [], str(error)
            if paths:
                try:
                    report = inflow.run(paths)
                except OSError as error:
                    if error.filename is None:
                        raise
                    raise UserError(f"{error.filename}: {error.strerror}") from None
                print_report(paths, report, shown)
                if args.action != "watch":
                    finish(report)
            elif not waiting:
                print(absent or "no monitor yet: nothing done", flush=True)
            waiting = not paths
            if args.action != "watch":
                return
            time.sleep(args.interval)


def finish(report: InflowReport) -> None:
    """The exit of a sync: 2 for a file that is no monitor, 1 for a run that left something."""
    if report.refused:
        raise UserError(f"nothing done: {report.refused}")
    if report.rejected or report.incomplete or report.failures:
        why = []
        if report.rejected:
            why.append(f"{report.rejected} row(s) rejected, named above")
        if report.incomplete:
            why.append("the export is incomplete: its whole rows were taken")
        if report.failures:
            why.append("a service could not be used: what waits goes with the next run")
        raise Unfinished("; ".join(why))


def print_report(paths: list[Path], report: InflowReport, shown: Callable[[str], str]) -> None:
    for bad in report.problems:
        where = shown(bad.where)
        if bad.record_id:
            where += f" ({shown(bad.record_id)})"
        print(f"{where}: {shown(bad.reason)}")
    for failure in report.failures:
        print(shown(failure))
    names = ", ".join(shown(p.name) for p in paths)
    print(f"{names}: {report.summary()}", flush=True)
