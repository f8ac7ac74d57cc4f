"""`baken demo`: a night shift at ZSM Midden-Nederland against a registry holding all four
pilot regions, on a fresh embedded database, over real gRPC."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from adapters.cli import running_adapter
from adapters.framework import SyncReport
from adapters.records import Person
from adapters.synth import make_person, population, write_exports
from baken import covenants, logs, pki, sealed
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.client import RegistryClient, Suspect, connect, error_reason, is_minor
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.pseudonym import InvalidIdentifier
from baken.registry.v1 import registry_service_pb2
from baken.render import lookup_text
from baken.settings import RegistrySettings
from baken.type.v1 import purpose_pb2
from services.registry.server import create_server

SYNC_BATCH = 1000
ZSM_REGION = "midden-nederland"
KPC_USER = "kpc-utrecht-0117"
OVJ_USER = "ovj-utrecht-0042"
AUDITOR_USER = "fg-0001"
CASE = "ZSM-MN-2026-004711"
REFERRAL_CASE = "ZSM-MN-2026-004712"
SEPOT_CASE = "ZSM-MN-2026-004713"
# The substantive reason, as the OvJ gives it (in the houses' language).
DEVIATION_REASON = (
    "Advies was een voorwaardelijke straf met reclasseringstoezicht; hij heeft zich dit jaar "
    "twee keer aan toezicht onttrokken, daarom dagvaarden."
)
DECISION = purpose_pb2.PURPOSE_AFDOENINGSBESLISSING
# Written into the access log, which is never erased: about the situation, never the person.
BREAK_GLASS_REASON = (
    "Decision due within 6 hours; the marking houses cannot be reached at night; "
    "need the advice to decide."
)


def run(data_dir: Path | None, *, seed: int = 2014, say: Callable[[str], None] = print) -> None:
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="baken-demo-") as tmp:
            _run(Path(tmp), seed, say)
        say("\n(The database, certificates and log were temporary: keep them with --data-dir.)")
    else:
        _run(data_dir, seed, say)
        say(f"\nKept in {data_dir}: registry/ (SQLite), pki/, edge-keys.json and registry.log")
        say("(one JSON line per call, naming the calling party; no personal data).")


def _run(data_dir: Path, seed: int, say: Callable[[str], None]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    registry_dir = data_dir / "registry"
    if (registry_dir / "registry.db").exists():
        raise SystemExit(f"{registry_dir} already holds a registry; give an empty --data-dir")
    log_path = data_dir / "registry.log"
    with log_path.open("a") as log_file:
        logs.configure(json=True, file=log_file)
        pki_dir = data_dir / "pki"
        now = dt.datetime.now(dt.UTC)
        pki.init(pki_dir, covenants.identities(), now=now)
        sealed.init_house_keys(pki_dir / "houses", load_houses(), now=now)
        settings = RegistrySettings(address="127.0.0.1:0", data_dir=registry_dir, pki_dir=pki_dir)
        server, port = create_server(settings)
        server.start()
        try:
            _shift(data_dir, settings, port, seed, say)
        finally:
            server.stop(grace=1).wait()
            logs.configure()


def _shift(
    data_dir: Path, settings: RegistrySettings, port: int, seed: int, say: Callable[[str], None]
) -> None:
    pki_dir = settings.pki_dir
    houses = load_houses()
    ring = KeyRing.generate("k2026-11")
    ring.save(data_dir / "edge-keys.json")
    target = f"127.0.0.1:{port}"
    today = dt.date.today()
    say(f"Baken registry listening on {target} (mTLS, SQLite in {data_dir / 'registry'})\n")

    say("1. Each house exports its markers in its own source system (synthetic persons, with a")
    say("   few bad records), and the three adapters sync them, pseudonymised before they leave,")
    say("   each under its own certificate:")
    people = population(houses, today, seed=seed)
    exports = write_exports(
        data_dir / "sources",
        houses,
        people.records,
        today=today,
        seed=seed,
        spare=set(people.showcase.values()),
    )
    for system, label in (("gcos", "GCOS"), ("amazone", "Amazone"), ("pga", "PGA/A&T")):
        files = exports[system]
        report = _adapter_sync(system, files, target, pki_dir, ring, data_dir / "adapters")
        say(f"   {label:<8} {len(files):>2} file(s): {report.summary()}")
        for bad in report.problems[:1]:
            say(f"            e.g. {bad.where} ({bad.record_id}): {bad.reason}")
    persons = len({r.person for r in people.records})
    say(f"   {len(people.records)} records in the exports, {persons} persons.\n")

    channel = connect(target, TlsFiles.of(pki_dir, "zsm-midden-nederland-kpc"))
    client = RegistryClient(channel, ring, on_behalf_of=KPC_USER)
    show = people.showcase
    say("2. Night shift at ZSM Midden-Nederland (Utrecht). The KPC'er checks every suspect")
    say("   (purpose intake-en-selectie). The covenants decide each field: the national")
    say("   that-signal for every house, the advice only for houses of Midden-Nederland:\n")
    _lookup(
        say,
        client,
        "23:40",
        "arrested in Utrecht for street robbery",
        show["travelling"],
        "A travelling repeat offender: marked in Amersfoort and in Rotterdam, whose marker "
        "the regional systems never showed ZSM Midden-Nederland. Nationwide, he is known.",
    )
    _lookup(
        say,
        client,
        "00:15",
        "held after a domestic-violence call in Utrecht-Overvecht",
        show["aged"],
        "Known locally, but the advice is 8 months old: ZSM weighs it less.",
    )
    _lookup(
        say,
        client,
        "01:05",
        "caught shoplifting in Amersfoort, no papers, no BSN",
        show["no_bsn"],
        "No BSN: found through surname and date of birth, reported as a weaker match.",
    )
    _lookup(
        say,
        client,
        "02:30",
        "arrested for burglary in Hilversum",
        show["expired"],
        "The advice is over a year old: the that-signal remains, the advice text is withheld.",
    )
    stranger = make_person(random.Random(seed + 1), today)
    _lookup(
        say,
        client,
        "03:10",
        "arrested for vandalism in Utrecht",
        stranger,
        "Nobody knows him: a clear no-hit.",
    )
    say("   03:12  A BSN typed with one digit wrong:")
    assert stranger.bsn is not None
    typo = stranger.bsn[:-1] + str((int(stranger.bsn[-1]) + 1) % 10)
    try:
        client.lookup(bsn=typo, minor=False)
    except InvalidIdentifier as error:
        say(f"          refused before anything left the desk: {error.field}: {error}\n")

    say("3. 06:00 The suspects monitor re-checks the whole night's inflow in one BatchLookup:")
    rng = random.Random(seed + 2)
    known = rng.sample([r.person for r in people.records if r.person.bsn], 14)
    inflow = known + [make_person(rng, today) for _ in range(126)]
    rng.shuffle(inflow)
    suspects = [
        Suspect(f"suspect-{i:03d}", client.subject(bsn=p.bsn), minor=is_minor(p.birth_date, today))
        for i, p in enumerate(inflow)
    ]
    hits = [
        r
        for r in client.batch_lookup(suspects)
        if r.lookup.outcome == registry_service_pb2.LOOKUP_OUTCOME_HIT
    ]
    elsewhere = [r for r in hits if any(m.house.region != ZSM_REGION for m in r.lookup.markers)]
    say(
        f"   {len(inflow)} suspects, {len(hits)} known at a Safety House "
        f"({100 * len(hits) / len(inflow):.0f} %), {len(elsewhere)} of them at a house outside "
        "Midden-Nederland: invisible in the old regional systems.\n"
    )

    _covenants_at_work(say, target, pki_dir, ring, show["travelling"])
    _terugkoppeling(say, data_dir, target, pki_dir, ring, show["travelling"], stranger)

    say("6. A caller with a certificate from another CA (here: a freshly made one) is refused")
    say("   in the TLS handshake, before any registry code runs:")
    foreign = pki.init(
        data_dir / "foreign-pki",
        [i for i in covenants.identities() if i.id == "zsm-midden-nederland-kpc"],
        now=dt.datetime.now(dt.UTC),
    )
    with connect(target, foreign["zsm-midden-nederland-kpc"]) as stranger_channel:
        try:
            RegistryClient(stranger_channel, ring, on_behalf_of=KPC_USER, timeout_s=2).lookup(
                bsn=show["travelling"].bsn, minor=False
            )
        except grpc.RpcError as error:
            say(f"   refused: {error.code().name}\n")

    say("7. What the registry holds: pseudonyms, never a BSN or a name, and advice only sealed")
    say("   (AES-GCM at rest):")
    person = show["travelling"]
    assert person.bsn is not None and person.surname is not None
    advice = next(r.advice for r in people.records if r.person == show["aged"] and r.advice)
    stored = b"".join(p.read_bytes() for p in (data_dir / "registry").glob("registry.db*"))
    for what, value in (
        ("BSN", person.bsn),
        ("surname", person.surname),
        ("advice text", advice[:40]),
    ):
        found = "YES" if value.encode() in stored else "no"
        say(f"   {what} {value!r} in the registry's database files: {found}")

    _privacy_officer(say, target, settings, ring, person)


def _adapter_sync(
    system: str, files: list[Path], target: str, pki_dir: Path, ring: KeyRing, state_dir: Path
) -> SyncReport:
    with running_adapter(system, target, pki_dir, ring, state_dir) as adapter:
        return adapter.sync(files)


def _terugkoppeling(
    say: Callable[[str], None],
    data_dir: Path,
    target: str,
    pki_dir: Path,
    ring: KeyRing,
    travelling: Person,
    stranger: Person,
) -> None:
    """The feedback service and the houses' receiving adapters, in this process."""
    from adapters.receive import Receiver
    from baken.settings import FeedbackSettings
    from services.feedback.server import create_server as create_feedback

    settings = FeedbackSettings(
        address="127.0.0.1:0", data_dir=data_dir / "feedback", pki_dir=pki_dir, registry=target
    )
    feedback = create_feedback(settings)
    feedback.start()
    address = f"127.0.0.1:{feedback.port}"
    houses = load_houses()
    with contextlib.ExitStack() as stack:
        stack.callback(feedback.stop, 1)
        for system in ("gcos", "amazone", "pga"):
            channel = connect(address, TlsFiles.of(pki_dir, f"adapter-{system}"))
            stack.callback(channel.close)
            receiver = Receiver(
                channel,
                system,
                [h.id for h in houses.values() if h.source_system_token == system],
                target=data_dir / "deliveries" / system,
                state_path=data_dir / "adapters" / f"{system}.state.db",
                house_keys=pki_dir / "houses",
            )
            receiver.start()
            stack.callback(receiver.stop)
        _decide(say, address, data_dir, pki_dir, ring, travelling, stranger)


def _decide(
    say: Callable[[str], None],
    address: str,
    data_dir: Path,
    pki_dir: Path,
    ring: KeyRing,
    travelling: Person,
    stranger: Person,
) -> None:
    from baken.feedback.v1 import feedback_service_pb2 as fb
    from baken.feedback.v1 import feedback_service_pb2_grpc

    say("5. Terugkoppeling, with nobody typing an e-mail. The feedback service took over the")
    say("   night's hits as signals to the marking houses; now the KPC'er records the decisions")
    say("   (`baken decide`), and each house's adapter writes them into its own source system:")
    deliveries = data_dir / "deliveries"
    pga_file = deliveries / "pga" / "vh-rotterdam-rijnmond.beslissingen.jsonl"
    gcos_dir = deliveries / "gcos" / "vh-regio-utrecht-amersfoort"
    with connect(address, TlsFiles.of(pki_dir, "zsm-midden-nederland-kpc")) as channel:
        stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        client = RegistryClient(channel, ring, on_behalf_of=KPC_USER)
        response = stub.RecordDecision(
            fb.RecordDecisionRequest(
                case_reference=CASE,
                subject=client.subject(bsn=travelling.bsn),
                code=fb.DECISION_CODE_DAGVAARDING,
                stage=fb.DECISION_STAGE_FINAL,
                subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
                advice_followed=fb.ADVICE_FOLLOWED_NOT_FOLLOWED,
                deviation_reason=DEVIATION_REASON,
                probation_report_requested=True,
                on_behalf_of=KPC_USER,
                request_key="demo-decision-1",
            ),
            timeout=10,
        )
        say("   08:30  The travelling offender: dagvaarding, deviating from Amersfoort's advice,")
        say("          with the reason. Fed back to every house that marked him, nationwide:")
        for item in response.items:
            say(f"          -> {item.house}  [{item.key}]")
        keys = {item.key for item in response.items}
        _until(lambda: _landed(keys, pga_file, gcos_dir) == keys)
        line = next(
            json.loads(x)
            for x in pga_file.read_text("utf-8").splitlines()
            if any(k in x for k in keys)
        )
        say(f"          arrived in PGA (Rotterdam), {pga_file.relative_to(data_dir)}:")
        for name in (
            "kenmerk",
            "registratie_id",
            "beslissing",
            "advies_gevolgd",
            "reden_afwijking",
        ):
            say(f"            {name:<16} {json.dumps(line[name], ensure_ascii=False)}")
        xml = next(p for p in sorted(gcos_dir.glob("*.xml")) if any(k in p.name for k in keys))
        say(f"          arrived in GCOS (Amersfoort), {xml.relative_to(data_dir)}:")
        for text in xml.read_text("utf-8").splitlines()[1:]:
            say(f"            {text}")
        signals = sum(1 for _ in deliveries.rglob("*") if _.is_file())
        say(f"          ({signals} source files now hold the night's signals and decisions.)\n")

        stranger_subject = client.subject(bsn=stranger.bsn)
        key = sealed.load_public(pki_dir / "houses", "vh-regio-utrecht-utrecht")
        referral = sealed.seal_person(
            key,
            sealed.ReferredPerson(stranger.bsn, stranger.surname, stranger.birth_date, "Utrecht"),
            case_reference=REFERRAL_CASE,
        )
        response = stub.RecordDecision(
            fb.RecordDecisionRequest(
                case_reference=REFERRAL_CASE,
                subject=stranger_subject,
                code=fb.DECISION_CODE_STRAFBESCHIKKING,
                stage=fb.DECISION_STAGE_FINAL,
                subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
                triage=fb.TriageCheck(checked=True, matched=[fb.TRIAGE_CRITERION_REPEAT_OFFENDER]),
                complex_problems_suspected=True,
                residence_municipality="Utrecht",
                referral=referral,
                on_behalf_of=KPC_USER,
                request_key="demo-decision-2",
            ),
            timeout=10,
        )
        [item] = response.items
        say("   08:40  The vandal of 03:10, not known anywhere, shows complex problems: an")
        say(f"          aanmelding to {item.house} (residence Utrecht), his data sealed at this")
        say("          desk to the house's key; the feedback service stores only ciphertext.")
        referral_file = deliveries / "gcos" / "vh-regio-utrecht-utrecht"
        _until(lambda: any(item.key in p.name for p in referral_file.glob("*.xml")))
        stored = b"".join(p.read_bytes() for p in (data_dir / "feedback").glob("feedback.db*"))
        found = "YES" if str(stranger.bsn).encode() in stored else "no"
        say(f"          his BSN in the feedback service's database files: {found}\n")

        response = stub.RecordDecision(
            fb.RecordDecisionRequest(
                case_reference=SEPOT_CASE,
                subject=client.subject(bsn=travelling.bsn),
                code=fb.DECISION_CODE_TECHNISCH_SEPOT_01,
                stage=fb.DECISION_STAGE_FINAL,
                subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
                on_behalf_of=KPC_USER,
            ),
            timeout=10,
        )
        say("   08:50  A suspect registered by mistake: technisch sepot 01. Nothing is fed back,")
        say(f"          the case is purged ({response.purged_items} queued items); the purge is")
        say("          logged without the case.\n")


def _landed(keys: set[str], pga_file: Path, gcos_dir: Path) -> set[str]:
    text = pga_file.read_text("utf-8") if pga_file.exists() else ""
    names = " ".join(p.name for p in gcos_dir.glob("*.xml")) if gcos_dir.exists() else ""
    return {k for k in keys if k in text or k in names}


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("a delivery did not arrive within 30 s; see the logs")
        time.sleep(0.05)


def _covenants_at_work(
    say: Callable[[str], None], target: str, pki_dir: Path, ring: KeyRing, person: Person
) -> None:
    say("4. The covenants at work, for the travelling offender of 23:40:")
    say("   07:30  Victim support at ZSM asks at intake-en-selectie, which its covenant does")
    say("          not grant it:")
    with connect(target, TlsFiles.of(pki_dir, "zsm-midden-nederland-slachtofferhulp")) as ch:
        try:
            RegistryClient(ch, ring, on_behalf_of="shn-0007").lookup(bsn=person.bsn, minor=False)
        except grpc.RpcError as error:
            reason = error_reason(error) or "?"
            say(f"          DENIED: {error.code().name} ({reason}), and logged.")
    say("   08:10  The OvJ decides the case (afdoeningsbeslissing, with the case reference):")
    with connect(target, TlsFiles.of(pki_dir, "zsm-midden-nederland-ovj")) as ch:
        ovj = RegistryClient(ch, ring, on_behalf_of=OVJ_USER)
        response = ovj.lookup(bsn=person.bsn, purpose=DECISION, case_reference=CASE, minor=False)
        say("          " + lookup_text(response).replace("\n", "\n          "))
        say("   08:14  The houses cannot be reached; the OvJ presses the noodknop (break-glass):")
        response = ovj.lookup(
            bsn=person.bsn,
            purpose=DECISION,
            case_reference=CASE,
            minor=False,
            break_glass_reason=BREAK_GLASS_REASON,
        )
        say("          " + lookup_text(response).replace("\n", "\n          ") + "\n")


def _privacy_officer(
    say: Callable[[str], None],
    target: str,
    settings: RegistrySettings,
    ring: KeyRing,
    person: Person,
) -> None:
    from baken.audit_cli import describe
    from baken.signing import public_path
    from services.registry.log_verify import verify_database

    say("\n8. The privacy officer, with the auditor's certificate. Data-subject access report for")
    say(f"   BSN {person.bsn}: who looked him up, when, why, and what they saw:\n")
    with connect(target, TlsFiles.of(settings.pki_dir, "privacy-auditor")) as ch:
        stub = audit_service_pb2_grpc.AuditServiceStub(ch)
        subject = RegistryClient(ch, ring, on_behalf_of=AUDITOR_USER).subject(bsn=person.bsn)
        report = stub.ListAccessEntries(
            audit_service_pb2.ListAccessEntriesRequest(on_behalf_of=AUDITOR_USER, subject=subject),
            timeout=10,
        )
        for entry in report.entries:
            say("   " + describe(entry).replace("\n", "\n   "))
        pending = stub.ListPendingReviews(
            audit_service_pb2.ListPendingReviewsRequest(on_behalf_of=AUDITOR_USER), timeout=10
        ).entries
        say(
            f"\n   Review queue (`baken audit review`): {len(pending)} break-glass entry to review."
        )
    result = verify_database(
        settings.resolved_database_url(), [public_path(settings.resolved_audit_signing_key())]
    )
    verdict = (
        f"the hash chain over {result.entries} entries holds."
        if result.ok
        else f"BROKEN: {result.first_break}"
    )
    say(f"   `baken audit verify`: {verdict}")


def _lookup(
    say: Callable[[str], None],
    client: RegistryClient,
    time: str,
    what: str,
    person: Person,
    why: str,
) -> None:
    if person.bsn:
        say(f"   {time}  Suspect {what}. BSN {person.bsn} (synthetic).")
        response = client.lookup(bsn=person.bsn, minor=is_minor(person.birth_date, dt.date.today()))
    else:
        say(f"   {time}  Suspect {what}: {person.surname}, born {person.birth_date} (synthetic).")
        response = client.lookup(surname=person.surname, birth_date=person.birth_date)
    say("          " + lookup_text(response).replace("\n", "\n          "))
    say(f"          -> {why}\n")
