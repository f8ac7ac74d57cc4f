"""`baken adapter <source> sync|watch|receive`: one source's export into the registry, and the
feedback service's deliveries into the source."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.framework import BATCH, MAX_DELETE_SHARE, Adapter, SyncReport
from adapters.receive import Receiver
from adapters.sources import SOURCES
from adapters.state import State
from adapters.synth import population, write_exports
from adapters.transport import answerer, sender
from baken import logs
from baken.client import connect
from baken.clock import SystemClock
from baken.errors import UserError
from baken.houses import House, load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from cli import inflow
from cli.options import (
    FEEDBACK_TARGET_ENV,
    HOUSE_KEYS_ENV,
    PARTY_ENV,
    key_file,
    registry_option,
    served_ring,
)

DELIVERY_DIR_ENV = "BAKEN_ADAPTER_DELIVERY_DIR"


class Rejected(Exception):
    """A sync that applied the good records and rejected others (exit 1)."""


# The ZSM side's adapter: the desk's inflow (adapters/zsm, cli/inflow.py); no marker source.
ZSM = "zsm"


MAX_DELETE_SHARE_ENV = "BAKEN_ADAPTER_MAX_DELETE_SHARE"
# Whom a source adapter pseudonymises for, in the pseudonymisation service's access log.
SYNC_USER = "sync"


@contextlib.contextmanager
def running_adapter(
    system: str,
    target: str,
    pki_dir: Path,
    ring: KeyRing,
    state_dir: Path,
    *,
    batch: int = BATCH,
    feedback: str | None = None,
    max_delete_share: float = MAX_DELETE_SHARE,
) -> Iterator[Adapter]:
    """The adapter of `system`, calling the registry at `target` under its own certificate,
    with its state file in `state_dir`; closed on exit. With `feedback` (host:port of the
    feedback service) it answers the advice requests the house answered in its source."""
    mapping = SOURCES[system].export()
    ring = served_ring(ring, pki_dir, mapping.party, SYNC_USER)
    state = State(state_dir / f"{mapping.source_system}.state.db")
    tls = TlsFiles.of(pki_dir, mapping.party)
    try:
        with contextlib.ExitStack() as stack:
            channel = stack.enter_context(connect(target, tls))
            answer = None
            if feedback is not None:
                answer = answerer(stack.enter_context(connect(feedback, tls)))
            yield Adapter(
                mapping,
                ring=ring,
                state=state,
                houses=load_houses(),
                clock=SystemClock(),
                send=sender(channel),
                batch=batch,
                answer=answer,
                max_delete_share=max_delete_share,
            )
    finally:
        state.close()


def _run(args: argparse.Namespace) -> None:
    """sync, or watch until SIGINT or SIGTERM. A sync that rejected a record exits 1."""
    if args.source_system == ZSM:
        inflow.run(args, export_files, printable)
        return
    if not args.source:
        raise UserError(f"{args.action} needs --source (the export)")
    if not 0.0 <= args.max_delete_share <= 1.0:
        raise UserError("--max-delete-share: a share from 0 to 1 (0.1 is 10 %)")
    if args.confirm_deletions is not None and args.confirm_deletions < 1:
        raise UserError("--confirm-deletions: the number of deletions a refused run named")
    ring = KeyRing.load(key_file(args))
    with running_adapter(
        args.source_system,
        args.registry,
        args.pki_dir,
        ring,
        args.state_dir,
        batch=args.batch,
        feedback=args.feedback,
        max_delete_share=args.max_delete_share,
    ) as adapter:
        waiting = False
        confirm = args.confirm_deletions
        while True:
            try:
                paths, absent = export_files(args.source), None
            except UserError as error:
                if args.action != "watch":
                    raise
                paths, absent = [], str(error)  # not there yet: this run syncs nothing
            if paths:
                try:
                    report = adapter.sync(paths, confirm_deletions=confirm)
                except OSError as error:  # the export went, or cannot be read
                    if error.filename is None:
                        raise
                    raise UserError(f"{error.filename}: {error.strerror}") from None
                print_report(paths, report)
                if report.deleted and confirm is not None and not report.refused:
                    confirm = None  # a confirmation holds for the one mass deletion it named
                if report.refused and args.action != "watch":
                    raise UserError(refusal(report))
                if report.refused:
                    print(refusal(report), flush=True)
                if report.rejected and args.action != "watch":
                    raise Rejected(
                        f"{report.rejected} record(s) rejected, named above; the others were "
                        "applied"
                    )
            elif not waiting:  # said once, not every run
                print(
                    absent
                    or f"no export in {', '.join(map(str, args.source))} yet: nothing synced",
                    flush=True,
                )
            waiting = not paths
            if args.action != "watch":
                return
            time.sleep(args.interval)


def refusal(report: SyncReport) -> str:
    """What the operator reads when a run changed nothing, and what to do about it."""
    text = f"nothing changed: {report.refused}"
    if report.deletions_to_confirm:
        text += (
            f". If {report.deletions_to_confirm} markers really left the source, run again"
            f" with --confirm-deletions {report.deletions_to_confirm}"
        )
    return text


def export_files(sources: Sequence[Path]) -> list[Path]:
    """The export as named: each file given, and every file in each directory given, looked at
    anew each run. Hidden files (.name) are skipped: write an export under a hidden name and
    rename it into place, so no run reads half of it. A source that is not there is a UserError:
    a run without one file of the export would take its records for deleted."""
    files: list[Path] = []
    for source in sources:
        if not source.exists():
            raise UserError(f"--source {source}: no such file or directory")
        if source.is_dir():
            files += sorted(
                p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")
            )
        else:
            files.append(source)
    return files


def receive_houses(system: str, asked: Sequence[str] | None) -> list[str]:
    """The houses to receive for: those asked (each must keep its markers in `system`), or
    every house of the source system."""
    houses = load_houses()
    mine = [h.id for h in houses.values() if h.source_system_token == system]
    if not asked:
        return mine
    for house_id in asked:
        house: House | None = houses.get(house_id.removeprefix("houses/"))
        if house is None:
            raise UserError(f"--house {house_id}: not a known Safety House")
        if house.source_system_token != system:
            raise UserError(
                f"--house {house_id}: keeps its markers in {house.source_system_token}, "
                f"not {system}"
            )
    return [h.removeprefix("houses/") for h in dict.fromkeys(asked)]


def _receive(args: argparse.Namespace) -> None:
    """Receive until SIGINT or SIGTERM, or until every house's stream was refused."""
    if args.source_system == ZSM:
        raise UserError(
            "zsm receive: the desk's adapter receives nothing (its screen shows the inflow)"
        )
    if not args.feedback:
        raise UserError(f"receive needs --feedback HOST:PORT (env {FEEDBACK_TARGET_ENV})")
    if args.target is None:
        raise UserError(f"receive needs --target DIR (env {DELIVERY_DIR_ENV})")
    houses = receive_houses(args.source_system, args.house)
    source = SOURCES[args.source_system]
    try:
        args.target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--target {args.target}: {error.strerror}") from None
    tls = TlsFiles.of(args.pki_dir, source.party)
    tls.read()  # a missing certificate is said now, not by every stream
    house_keys = args.house_keys or args.pki_dir / "houses"
    missing = [h for h in houses if not (house_keys / f"{h}.x25519.key").is_file()]
    logs.configure()
    print(
        f"receiving feedback for {len(houses)} house(s) from {args.feedback} into "
        f"{args.target}/{source.delivery_layout} (Ctrl-C stops)",
        flush=True,
    )
    if missing:
        print(
            f"no house key in {house_keys} for {', '.join(missing)}: their aanmeldingen "
            "are refused until it is there",
            flush=True,
        )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with connect(args.feedback, tls) as channel:
            receiver = Receiver(
                channel,
                args.source_system,
                houses,
                target=args.target,
                state_path=args.state_dir / f"{args.source_system}.state.db",
                house_keys=house_keys,
            )
            receiver.start()
            try:
                while not stop.wait(0.5):
                    if receiver.wait(timeout=0):
                        break
            finally:
                receiver.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = ", ".join(f"{outcome} {n}" for outcome, n in receiver.counts().items())
    print(counts, flush=True)
    refused = receiver.stopped
    if refused and len(refused) == len(houses):
        why = "; ".join(f"{house}: {reason}" for house, reason in refused.items())
        raise UserError(f"the feedback service refused every stream: {why}")


def print_report(sources: list[Path], report: SyncReport) -> None:
    for bad in report.problems:
        record = printable(bad.record_id or "")
        where = f"{printable(bad.where)} ({record})" if record else printable(bad.where)
        print(f"{where}: {printable(bad.reason)}")
    names = ", ".join(printable(s.name) for s in sources)
    print(f"{names}: {report.summary()}", flush=True)


def printable(text: str) -> str:
    """`text` with every character a terminal would act on escaped (\\x1b, \\u202e)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


EXIT_CODES = (
    "Exit codes: 0 every record synced; 1 a record was rejected (the others were applied and the "
    "report names each rejected one) or a service failed; 2 a usage error or a refused run "
    "(nothing changed)"
)


def add_parser(sub: Any, key_file_env: str, pki_dir_env: str, target_env: str) -> None:
    adapter = sub.add_parser(
        "adapter",
        help="sync a Safety House source system's export; receive the feedback for its houses",
        description="sync/watch: the source's export into the registry (with --feedback, also "
        "answer the advice requests the house answered). receive: the feedback service's "
        "deliveries into the source, until Ctrl-C or SIGTERM. `baken adapter SOURCE ACTION "
        "--help` lists an action's options.",
    )
    adapter.add_argument(
        "source_system",
        choices=[*sorted(SOURCES), ZSM],
        help="the source system, or zsm: a ZSM desk's suspects monitor (inflow and decisions)",
    )
    actions = adapter.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="`baken adapter SOURCE ACTION --help`"
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--pki-dir",
            type=Path,
            default=Path(os.environ.get(pki_dir_env, "var/pki")),
            help=f"the CA and the adapter's certificate (env {pki_dir_env}, default var/pki)",
        )
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(os.environ.get("BAKEN_ADAPTER_STATE_DIR", "var/adapters")),
            help="what was sent and confirmed (env BAKEN_ADAPTER_STATE_DIR, default var/adapters)",
        )

    def syncing(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=description
        )
        p.add_argument(
            "--source",
            type=Path,
            nargs="+",
            help="the export: one file, or one per house, or a directory of them (read anew "
            "each run; hidden files skipped); what is not in it has left the source",
        )
        p.add_argument(
            "--feedback",
            default=os.environ.get(FEEDBACK_TARGET_ENV),
            metavar="HOST:PORT",
            help=f"the feedback service (env {FEEDBACK_TARGET_ENV}); optional: without it no "
            "advice answers are sent",
        )
        registry_option(p, target_env)
        p.add_argument("--key-file", help=f"the adapter's pseudonym key file (env {key_file_env})")
        common(p)
        p.add_argument(
            "--batch", type=int, default=1000, help="changes per SyncMarkers call (default 1000)"
        )
        p.add_argument(
            "--max-delete-share",
            type=float,
            # A string default goes through `type`: a bad environment value is a usage error.
            default=os.environ.get(MAX_DELETE_SHARE_ENV, str(MAX_DELETE_SHARE)),
            metavar="SHARE",
            help="a run that would delete more than this share of the source's live markers "
            f"changes nothing (0 to 1; env {MAX_DELETE_SHARE_ENV}; default {MAX_DELETE_SHARE}: "
            f"{MAX_DELETE_SHARE * 100:.0f} %%)",
        )
        p.add_argument(
            "--party",
            default=os.environ.get(PARTY_ENV),
            help=f"zsm only: the desk whose certificate to call with, e.g. "
            f"zsm-midden-nederland-kpc (env {PARTY_ENV}); required",
        )
        p.add_argument(
            "--user",
            default=None,
            help=f"zsm only: the desk's system account the look-ups and records are made on "
            f"behalf of (default {inflow.ACCOUNT})",
        )
        p.add_argument(
            "--confirm-deletions",
            type=int,
            metavar="N",
            help="the operator's word that exactly N markers left the source: the number a "
            "refused run named; applies to the one run that deletes exactly N",
        )
        # calls: the registry is what a failed call names, --feedback or not; timeout: what its
        # DEADLINE_EXCEEDED message names (the sender's per call).
        p.set_defaults(run=_run, calls="registry", timeout=60.0)
        return p

    syncing(
        "sync",
        "sync the export into the registry once",
        f"Sync the export into the registry once. {EXIT_CODES}.",
    )
    watch = syncing(
        "watch",
        "sync the export every --interval seconds, until Ctrl-C or SIGTERM",
        "Sync the export every --interval seconds, until Ctrl-C or SIGTERM; each run prints "
        "its report, rejected records included.",
    )
    watch.add_argument(
        "--interval", type=float, default=60.0, help="seconds between runs (default 60)"
    )

    receive = actions.add_parser(
        "receive",
        help="write the feedback service's deliveries into the source, until Ctrl-C or SIGTERM",
        description="Write the feedback service's deliveries for the source's houses into "
        "--target, exactly once each, until Ctrl-C or SIGTERM.",
    )
    receive.add_argument(
        "--feedback",
        default=os.environ.get(FEEDBACK_TARGET_ENV),
        metavar="HOST:PORT",
        help=f"the feedback service (env {FEEDBACK_TARGET_ENV}); required",
    )
    receive.add_argument(
        "--target",
        type=Path,
        default=os.environ.get(DELIVERY_DIR_ENV),
        metavar="DIR",
        help=f"where the deliveries go (env {DELIVERY_DIR_ENV}): GCOS {{house}}/, "
        "Amazone {house}.mutaties.csv, PGA {house}.beslissingen.jsonl",
    )
    receive.add_argument(
        "--house",
        action="append",
        metavar="HOUSE",
        help="a house id, repeatable; default every house of the source system",
    )
    receive.add_argument(
        "--house-keys",
        type=Path,
        default=os.environ.get(HOUSE_KEYS_ENV),
        metavar="DIR",
        help=f"the houses' X25519 keys, to open aanmeldingen (env {HOUSE_KEYS_ENV}, "
        "default PKI-DIR/houses)",
    )
    common(receive)
    receive.set_defaults(run=_receive, calls="feedback", timeout=60.0)


def _synth(args: argparse.Namespace) -> None:
    houses = load_houses()
    today = SystemClock().today()
    people = population(houses, today, seed=args.seed, scale=args.scale)
    regions = {h.region for h in houses.values()} if args.region == "all" else {args.region}
    records = [r for r in people.records if houses[r.house_id].region in regions]
    written = write_exports(args.out, houses, records, today=today, seed=args.seed)
    for system, paths in written.items():
        for path in paths:
            print(f"{system:<8} {path}")
    persons = len({r.person for r in records})
    print(f"{len(records)} markers of {persons} persons in {len(regions)} region(s)")


def add_synth_parser(sub: Any) -> None:
    regions = sorted({h.region for h in load_houses().values()})
    synth = sub.add_parser(
        "synth", help="write synthetic source exports (GCOS, Amazone, PGA) for the pilot regions"
    )
    synth.add_argument(
        "--region", choices=["all", *regions], default="all", help="one region, or all (default)"
    )
    synth.add_argument(
        "--seed", type=int, default=2014, help="the same seed, the same exports (default 2014)"
    )
    synth.add_argument("--scale", type=float, default=1.0, help="x the pilots' volumes")
    synth.add_argument(
        "--out", type=Path, default=Path("var/sources"), help="the directory (default var/sources)"
    )
    synth.set_defaults(run=_synth)
