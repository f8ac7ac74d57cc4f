"""`baken demo`: a ZSM night shift across the four pilot regions, against Baken as it runs: the
registry, the feedback service and the GCOS, Amazone and PGA adapters each a process of its own
(`dev.topology.Topology`), on SQLite, every call gRPC over mutual TLS on localhost.

The shift itself is `dev.shift.play_shift`; around it the demo shows the covenants at work,
what never reaches the registry, what the services hold, the privacy officer's view of the
access log, and ends with the month's management report. Ctrl-C (or SIGTERM) at any moment stops
every process in order; the demo then says "demo stopped" and exits 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import grpc

from adapters.records import Person
from adapters.sources import SOURCES
from baken import pki
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.client import RegistryClient, connect, error_reason
from baken.clock import read_offset
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.pseudonym import InvalidIdentifier
from baken.pseudonymiser_client import ServiceOprf
from baken.render import access_entry, lookup_text
from baken.stuurinformatie.client import Request, fetch_report
from baken.stuurinformatie.figures import Level, Month
from baken.stuurinformatie.html import html_report
from baken.stuurinformatie.report import Report
from baken.stuurinformatie.text import table
from baken.type.v1 import purpose_pb2
from dev.shift import ShiftError, play_shift
from dev.topology import Endpoints, Interrupted, Topology, TopologyError
from services.common import covenants

Say = Callable[[str], None]

OVJ_USER = "ovj-utrecht-0042"
AUDITOR_USER = "fg-0001"
STUURGROEP_USER = "stuurgroep-secretaris"
DECISION = purpose_pb2.PURPOSE_AFDOENINGSBESLISSING
# Written into the access log, which is never erased: about the situation, never the person.
BREAK_GLASS_REASON = (
    "Decision due within 6 hours; the conditions depend on A&T information of a house in "
    "another region, which cannot be reached at night."
)
WATCH_INTERVAL_S = 0.5  # how often the adapters look for a new export
REPORT_MONTHS = 6  # of history in report.html, as `baken report --html` draws it up
ACKNOWLEDGED_WITHIN_S = 15.0


class _Signals:
    """Ctrl-C and SIGTERM, once: while the topology starts, ask it to give up (it stops what it
    started); while the demo runs, raise KeyboardInterrupt where it is; while it stops, only
    remember. A second signal changes nothing: stopping in order is not interrupted."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.topology: Topology | None = None
        self.raising = False
        self.expected = False  # a signal now is how the user ends a demo kept running

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signum
        if self.topology is not None:
            self.topology.interrupt()
        if self.raising:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread can have signal handlers
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Lines(io.StringIO):
    """A text stream that hands each whole line, indented, to `say`."""

    def __init__(self, say: Say, indent: str) -> None:
        super().__init__()
        self._say = say
        self._indent = indent
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._say(self._indent + line if line else "")
        return len(text)


def run(
    data_dir: Path | None, *, seed: int = 2014, say: Say = print, keep_running: bool = False
) -> int:
    """The demo in `data_dir` (kept), or in a temporary directory (removed at the end); 0, or
    128 + the signal's number when Ctrl-C or SIGTERM stopped it."""
    signals = _Signals()
    with signals.installed():
        try:
            if data_dir is None:
                with tempfile.TemporaryDirectory(prefix="baken-demo-") as tmp:
                    _run(Path(tmp), seed, say, signals, kept=False, keep_running=keep_running)
                say("(Everything was in a temporary directory, now removed: keep it with")
                say("`baken demo --data-dir DIR`.)")
            else:
                _run(data_dir.absolute(), seed, say, signals, kept=True, keep_running=keep_running)
        except (KeyboardInterrupt, Interrupted):
            say("demo stopped")
            return 128 + (signals.received or signal.SIGINT)
    return 0


def _run(
    run_dir: Path, seed: int, say: Say, signals: _Signals, *, kept: bool, keep_running: bool
) -> None:
    if (run_dir / "registry" / "registry.db").exists():
        raise SystemExit(
            f"{run_dir / 'registry'} already holds a registry; give an empty --data-dir"
        )
    topology = Topology(
        run_dir, watch_interval=WATCH_INTERVAL_S, clock_file=run_dir / "clock", say=say
    )
    signals.topology = topology
    if signals.received is not None:
        raise KeyboardInterrupt
    say("Baken demo: one ZSM night shift across the four pilot regions, against Baken running")
    say("on this machine, every component a process of its own. All persons are synthetic.\n")
    say(f"1. 21:45 Baken starts in {run_dir}:")
    try:
        topology.start()
    except Interrupted:
        raise  # Ctrl-C while starting: what had started is stopped again
    except TopologyError as error:
        raise SystemExit(f"baken demo: {error}") from None
    try:
        try:
            signals.raising = True
            if signals.received is not None:
                raise KeyboardInterrupt
            showcase = _demo(topology, run_dir, seed, say, kept=kept)
            if keep_running:
                _keep_running(topology, say, signals, showcase)
        finally:
            signals.raising = False
    finally:
        topology.stop()
    if signals.received is not None and not signals.expected:
        raise KeyboardInterrupt  # it came while everything was stopping anyway
    say(
        "All processes stopped: adapters, desk's screen, pseudonymisation service, feedback "
        "service, registry."
    )
    if kept:
        say(f"Kept in {run_dir}: registry/ and feedback/ (SQLite), pki/, keys/ (the access")
        say("logs' signing keys, the pseudonymisation service's OPRF key), pseudonymiser/")
        say("(its access log), witness/ (the signed heads), pseudonym-keys.json (no secret),")
        say("sources/ and deliveries/ (the houses' files), report.html, desk-users.toml and")
        say("desk-sign-in.txt (the desk's screen's users), and logs/ (one JSON line")
        say("per call and event of each process; no personal data).")


def _demo(
    topology: Topology, run_dir: Path, seed: int, say: Say, *, kept: bool
) -> dict[str, Person]:
    """The demo's story; the shift's showcase persons."""
    e = topology.endpoints
    _started(topology, run_dir, say)
    started = Month.of(dt.datetime.now(dt.UTC))  # the services' clock is not moved yet

    say("2. 22:00 The night shift, played at the four ZSM desks and the Safety Houses through")
    say("   the services' public APIs only:\n")
    try:
        shift = play_shift(e, _Lines(say, "   "), seed=seed)
        say("")
    except ShiftError as error:
        where = topology.log_dir if kept else "logs/ (keep them with --data-dir)"
        raise SystemExit(f"baken demo: {error}; the processes' logs: {where}") from None

    ring = KeyRing.load(e.pseudonym_key_file)
    travelling = shift.showcase["travelling"]
    _covenants_at_work(say, e, ring, travelling, shift.cases["travelling"])
    _never_reaches_the_registry(say, e, ring, run_dir, travelling)
    _what_the_services_hold(say, run_dir, travelling, shift.advice["travelling"])
    _privacy_officer(say, e, ring, run_dir, travelling)
    _month_report(say, e, run_dir, started, kept=kept)
    return shift.showcase


def _keep_running(
    topology: Topology, say: Say, signals: _Signals, showcase: dict[str, Person]
) -> None:
    """The next morning's inflow on the desk's screen; then everything runs until Ctrl-C."""
    e = topology.endpoints
    say("8. The next morning at ZSM Midden-Nederland, on the desk's screen (`baken desk`): the")
    say("   inflow arrives as the case system registers it (RecordInflow, as the desk's inflow")
    say("   adapter records it); the screen looks each suspect up for the signed-in user:")
    _next_inflow(e, say, showcase)
    say("")
    say(f"   Open {e.desk} in a browser on this machine and sign in")
    if e.desk_sign_in is not None:
        for line in e.desk_sign_in.read_text("utf-8").splitlines():
            name, password = line.split(" ", 1)
            role = "the KPC'er (intake)" if name == "kpc" else "the OvJ (afdoeningsbeslissing)"
            say(f"     as {name:<4} password {password}  {role}")
    say("   Everything keeps running until Ctrl-C.")
    signals.expected = True
    try:
        if signals.received is None:
            topology.wait()
    except KeyboardInterrupt:
        pass
    say("")


def _next_inflow(e: Endpoints, say: Say, showcase: dict[str, Person]) -> None:
    """The showcase persons flow in again, on new cases, in the hour before now by the
    services' clock: the desk's case system writes its monitor into the inflow adapter's
    folder, and the adapter checks and records each of them."""
    from adapters.zsm.export import InflowRow
    from adapters.zsm.write import write_export
    from baken.age import is_minor
    from baken.clock import ShiftedClock
    from baken.feedback.v1 import feedback_service_pb2 as fb
    from baken.feedback.v1 import feedback_service_pb2_grpc
    from dev.shift import SHOWCASE

    assert e.clock_file is not None
    now = ShiftedClock(e.clock_file).now()
    persons = [(k, showcase[k]) for k in SHOWCASE if k in showcase]
    rows = [
        InflowRow(
            where="",
            location="ZSM Midden-Nederland",
            case_reference=f"ZSM-MN-{now:%Y%m%d}-{n + 1:03d}",
            arrest_time=now - dt.timedelta(minutes=60 - 10 * n),
            person=person,
            minor=person.birth_date is not None and is_minor(person.birth_date, now.date()),
            offence_category="winkeldiefstal" if n % 2 else "mishandeling",
            decision=None,
        )
        for n, (_kind, person) in enumerate(persons)
    ]
    folder = e.inflow["midden-nederland"]
    target = folder / f"verdachtenmonitor-{now:%Y%m%d-%H%M}-ochtend.csv"
    write_export(folder / f".{target.name}.tmp", rows)
    (folder / f".{target.name}.tmp").replace(target)
    say(f"   The case system writes {target.relative_to(folder.parent.parent)}:")
    kpc = "zsm-midden-nederland-kpc"
    cases = {row.case_reference: kind for row, (kind, _) in zip(rows, persons, strict=True)}
    with connect(e.feedback, TlsFiles.of(e.pki_dir, kpc)) as channel:
        stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        deadline = time.monotonic() + 30
        while True:
            listed = stub.ListInflow(fb.ListInflowRequest(on_behalf_of="kpc-demo"), timeout=10)
            entries = {x.case_reference: x for x in listed.entries if x.case_reference in cases}
            if len(entries) == len(cases) and all(
                x.HasField("checked_time") for x in entries.values()
            ):
                break
            if time.monotonic() > deadline:
                raise SystemExit("baken demo: the desk's inflow adapter did not record the monitor")
            time.sleep(0.2)
    for case, kind in cases.items():
        entry = entries[case]
        say(f"   {entry.name}  case {case}  ({kind.replace('_', ' ')}), checked by the adapter")


def _started(topology: Topology, run_dir: Path, say: Say) -> None:
    e = topology.endpoints
    p = topology.processes

    def rel(path: Path) -> str:
        return f"{path.relative_to(run_dir)}/"

    say("   each component a process of its own, on SQLite, every call between them gRPC over")
    say(f"   mutual TLS (certificates of a development CA, {rel(e.pki_dir)}ca.pem):")
    say(f"   registry          pid {p['registry'].pid:<7} {e.registry}  registry/registry.db")
    say(f"   feedback service  pid {p['feedback'].pid:<7} {e.feedback}  feedback/feedback.db")
    say(
        f"   pseudonymiser     pid {p['pseudonymiser'].pid:<7} {e.pseudonymiser}  holds the "
        "pseudonym key (OPRF), keys/pseudonymiser-keys.json"
    )
    for system in SOURCES:
        watch, receive = p[f"adapter-{system}-watch"], p[f"adapter-{system}-receive"]
        say(
            f"   adapter {system:<9} pid {watch.pid}, {receive.pid}  "
            f"syncs {rel(e.sources[system])}, delivers into {rel(e.deliveries[system])}"
        )
    desks = [name for name in p if name.startswith("adapter-zsm-")]
    say(
        f"   inflow adapters   pid {', '.join(str(p[d].pid) for d in desks)}  each ZSM desk's "
        f"suspects monitor, {rel(e.inflow['midden-nederland'].parent)}{{region}}/"
    )
    say(f"   desk's screen     pid {p['desk'].pid:<7} {e.desk}  (ZSM Midden-Nederland)")
    say(f"   No edge holds a pseudonym key: the desks' and adapters' {e.pseudonym_key_file.name}")
    say("   names only the pseudonymisation service, which they ask, blind, for each pseudonym.")
    say(f"   Their own log lines go to {rel(topology.log_dir)}, not to this screen.")
    say("   Ctrl-C stops everything, at any moment.\n")


def _registry(
    channel: grpc.Channel, e: Endpoints, ring: KeyRing, party: str, user: str
) -> RegistryClient:
    """`party`'s client of the registry, pseudonymising through the service its key file names
    under its own certificate."""
    tls = TlsFiles.of(e.pki_dir, party)
    oprf = ServiceOprf(lambda address: connect(address, tls), on_behalf_of=user)
    return RegistryClient(channel, ring.served_by(oprf), on_behalf_of=user)


def _covenants_at_work(say: Say, e: Endpoints, ring: KeyRing, person: Person, case: str) -> None:
    say("3. The covenants at work, the next day at ZSM Midden-Nederland, for the travelling")
    say("   offender (marked in Amersfoort and in Rotterdam):")
    say("   07:30  Victim support at ZSM would look him up at intake-en-selectie, which its")
    say("          covenant does not grant it. No edge holds the pseudonym key: it asks the")
    say("          pseudonymisation service to pseudonymise his BSN, which refuses its role:")
    victim_support = "zsm-midden-nederland-slachtofferhulp"
    with connect(e.registry, TlsFiles.of(e.pki_dir, victim_support)) as ch:
        try:
            _registry(ch, e, ring, victim_support, "shn-0007").lookup(bsn=person.bsn, minor=False)
            say("          answered (not expected)")
        except grpc.RpcError as error:
            reason = error_reason(error) or "?"
            say(f"          DENIED: {error.code().name} ({reason}), and logged by the service;")
            say("          without a pseudonym it cannot even ask the registry.")
    say("   08:10  The OvJ prepares the dagvaarding (afdoeningsbeslissing, with the case")
    say("          reference) and sees what the covenants grant her: the advice of both houses,")
    say("          Rotterdam's too since the national covenant lets the advice travel with the")
    say("          person (version 2, covenants/national.toml); not Rotterdam's plan or A&T:")
    with connect(e.registry, TlsFiles.of(e.pki_dir, "zsm-midden-nederland-ovj")) as ch:
        ovj = _registry(ch, e, ring, "zsm-midden-nederland-ovj", OVJ_USER)
        response = ovj.lookup(bsn=person.bsn, purpose=DECISION, case_reference=case, minor=False)
        say("          " + lookup_text(response).replace("\n", "\n          "))
        say("   08:14  For the conditions she needs Rotterdam's A&T information, which no covenant")
        say("          grants her, and the house cannot be reached at night: she presses the")
        say("          noodknop (break-glass), and the privacy officer will review it:")
        response = ovj.lookup(
            bsn=person.bsn,
            purpose=DECISION,
            case_reference=case,
            minor=False,
            break_glass_reason=BREAK_GLASS_REASON,
        )
        say("          " + lookup_text(response).replace("\n", "\n          ") + "\n")


def _never_reaches_the_registry(
    say: Say, e: Endpoints, ring: KeyRing, run_dir: Path, person: Person
) -> None:
    say("4. What never reaches the registry:")
    assert person.bsn is not None
    typo = person.bsn[:-1] + str((int(person.bsn[-1]) + 1) % 10)
    say(f"   08:20  A BSN typed with one digit wrong ({typo}):")
    with connect(e.registry, TlsFiles.of(e.pki_dir, "zsm-midden-nederland-kpc")) as ch:
        try:
            kpc = _registry(ch, e, ring, "zsm-midden-nederland-kpc", "kpc-mn-0117")
            kpc.lookup(bsn=typo, minor=False)
            say("          answered (not expected)")
        except InvalidIdentifier as error:
            say(f"          refused at the desk, before anything left it: {error.field}: {error}")
    say("   08:25  `baken lookup` with a certificate from another CA (here: a freshly made one,")
    say("          for the same party) is refused in the TLS handshake of the first service it")
    say("          calls, the pseudonymisation service, before any code of it or of the registry")
    say("          runs; to such a caller Baken is simply not there:")
    foreign = run_dir / "foreign-pki"
    pki.init(
        foreign,
        [i for i in covenants.identities() if i.id == "zsm-midden-nederland-kpc"],
        now=dt.datetime.now(dt.UTC),
    )
    done = _baken(
        "lookup",
        *("--registry", e.registry, "--pki-dir", str(foreign)),
        *("--party", "zsm-midden-nederland-kpc", "--user", "kpc-mn-0117"),
        *("--key-file", str(e.pseudonym_key_file), "--bsn", person.bsn, "--adult"),
        *("--timeout", "3"),
    )
    said = (done.stderr.strip() or done.stdout.strip()).splitlines()
    say(f"          {said[-1] if said else '(nothing)'}  (exit code {done.returncode})\n")


def _baken(*args: str) -> subprocess.CompletedProcess[str]:
    """`baken ARGS` as a process of its own, its output captured; the environment's Baken
    settings left out (the arguments say where things are), grpc's own log lines too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAKEN_")}
    env["GRPC_VERBOSITY"] = "NONE"
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # a Ctrl-C at the terminal is the demo's to handle
        check=False,
    )


def _what_the_services_hold(say: Say, run_dir: Path, person: Person, advice: str) -> None:
    say("5. What the services hold: pseudonyms, never a BSN or a name; the advice only sealed")
    say("   (AES-GCM at rest). Searched for the travelling offender, byte by byte:")
    registry = b"".join(p.read_bytes() for p in sorted((run_dir / "registry").glob("registry.db*")))
    feedback = b"".join(p.read_bytes() for p in sorted((run_dir / "feedback").glob("feedback.db*")))
    assert person.bsn is not None and person.surname is not None
    for what, value, stored, where in (
        ("BSN", person.bsn, registry, "the registry's database files"),
        ("surname", person.surname, registry, "the registry's database files"),
        ("advice text", advice[:40], registry, "the registry's database files"),
        ("BSN", person.bsn, feedback, "the feedback service's database files"),
    ):
        found = "YES" if value.encode() in stored else "no"
        say(f"   {what} {value!r} in {where}: {found}")
    say("")


def _privacy_officer(say: Say, e: Endpoints, ring: KeyRing, run_dir: Path, person: Person) -> None:
    say("6. 09:00 The privacy officer, with the auditor's certificate. Data-subject access report")
    say(f"   for BSN {person.bsn}: who looked him up, when, why, and what they saw:\n")
    with connect(e.registry, TlsFiles.of(e.pki_dir, "privacy-auditor")) as ch:
        stub = audit_service_pb2_grpc.AuditServiceStub(ch)
        auditor = _registry(ch, e, ring, "privacy-auditor", AUDITOR_USER)
        subject = auditor.subject(bsn=person.bsn)
        entries: list[audit_service_pb2.AccessEntry] = []
        token = ""
        while True:
            page = stub.ListAccessEntries(
                audit_service_pb2.ListAccessEntriesRequest(
                    on_behalf_of=AUDITOR_USER, subject=subject, page_token=token
                ),
                timeout=10,
            )
            entries.extend(page.entries)
            token = page.next_page_token
            if not token:
                break
        for entry, alike in _alike(entries):
            say("   " + access_entry(entry).replace("\n", "\n   "))
            if alike:
                more = ", ".join(f"#{a.sequence}" for a in alike)
                say(f"       (and {len(alike)} more alike: {more})")
        pending = stub.ListPendingReviews(
            audit_service_pb2.ListPendingReviewsRequest(on_behalf_of=AUDITOR_USER), timeout=10
        ).entries
    noun = "entry" if len(pending) == 1 else "entries"
    say(f"\n   Review queue (`baken audit review`): {len(pending)} break-glass {noun} to review.")
    public_key = e.audit_public_keys["registry"]
    witness = run_dir / "witness"
    say("   Her witness keeps the registry's signed heads outside its database (`baken audit")
    say("   witness`, under her certificate):")
    say("   " + _said(_witness_once(e, public_key, witness)))
    say(
        f"   `baken audit verify --data-dir registry --public-key {public_key.relative_to(run_dir)}"
    )
    say("   --witness witness`, a process of its own that reads the registry's database file")
    say("   itself rather than trusting the running service, against her own copy of the public")
    say("   key and the heads her witness saw:")
    say("   " + _audit_verify(run_dir / "registry", public_key, witness) + "\n")


def _alike(
    entries: list[audit_service_pb2.AccessEntry],
) -> list[tuple[audit_service_pb2.AccessEntry, list[audit_service_pb2.AccessEntry]]]:
    """Each entry with the later ones alike (the same party and user, outcome, purpose and
    case: a process director's repeated check while the adapters synced), in log order."""
    groups: dict[tuple[str, str, int, str, str], list[audit_service_pb2.AccessEntry]] = {}
    for e in entries:
        key = (e.party, e.on_behalf_of, e.outcome, e.purpose, e.case_reference)
        groups.setdefault(key, []).append(e)
    return [(first, rest) for first, *rest in groups.values()]


def _witness_once(e: Endpoints, public_key: Path, store: Path) -> subprocess.CompletedProcess[str]:
    """`baken audit witness --once`: the registry's newest signed head into the store."""
    return _baken(
        "audit", "witness", "--once", "--store", str(store), "--public-key", str(public_key),
        "--target", e.registry, "--pki-dir", str(e.pki_dir),
    )  # fmt: skip


def _audit_verify(data_dir: Path, public_key: Path, witness: Path) -> str:
    """What `baken audit verify` says of the registry's access log."""
    return _said(
        _baken(
            "audit", "verify", "--data-dir", str(data_dir), "--public-key", str(public_key),
            "--witness", str(witness),
        )
    )  # fmt: skip


def _said(done: subprocess.CompletedProcess[str]) -> str:
    said = done.stdout.strip() or done.stderr.strip() or f"exit code {done.returncode}"
    return said.replace("\n", "\n   ")


def _month_report(say: Say, e: Endpoints, run_dir: Path, started: Month, *, kept: bool) -> None:
    assert e.clock_file is not None
    offset = dt.timedelta(seconds=read_offset(e.clock_file))
    now = Month.of(dt.datetime.now(dt.UTC) + offset)
    # The shift's look-ups fall in the month it started in; the clock moved on since.
    month = started
    say(f"7. The month's management report, {month}, as the landelijke stuurgroep sees it")
    say("   (`baken report`: aggregates only, every region; docs/REPORT.md defines each figure):")
    if now != started:
        say(f"   (The services' clock has moved on into {now}; the night fell in {month}.)")
    report = _report(e, month)
    say("")
    for line in table(report).rstrip("\n").split("\n"):
        say(f"   {line}" if line else "")
    html = run_dir / "report.html"
    html.write_text(html_report(report), encoding="utf-8")
    say(f"\n   With {REPORT_MONTHS} months of history and charts, as a single HTML file: {html}")
    if not kept:
        say("   (temporary: removed with the rest at the end; keep it with --data-dir)")
    say(f"   Against running services (`baken up`): baken report --month {month} --html FILE\n")


def _report(e: Endpoints, month: Month) -> Report:
    """The month's report once every item delivered is acknowledged (an adapter acknowledges
    just after it wrote the item into its source)."""
    tls = TlsFiles.of(e.pki_dir, "landelijke-stuurgroep")
    request = Request(month, REPORT_MONTHS, on_behalf_of=STUURGROEP_USER)
    deadline = time.monotonic() + ACKNOWLEDGED_WITHIN_S
    while True:
        report = fetch_report(e.registry, e.feedback, tls, request)
        behind = [
            scope
            for scope in report.scopes(Level.HOUSE)
            if report.cell(month, "feedback.items", *scope)
            != report.cell(month, "feedback.acknowledged", *scope)
        ]
        if not behind or time.monotonic() > deadline:
            return report
        time.sleep(0.2)
