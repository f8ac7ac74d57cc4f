"""One ZSM night shift in the four pilot regions, played against RUNNING services through their
public gRPC APIs only (`baken demo` on `baken up`'s separate processes): the houses register
clients in their own source systems, the ZSM desks look suspects up, decide and ask advice, and
the feedback arrives in each house's source.

It expects what `dev.topology.Topology` runs: per source system an adapter that syncs every
file in `endpoints.sources[system]` (with --feedback, so it answers advice requests) and one
that receives the deliveries into `endpoints.deliveries[system]`, sharing a state dir. The
shift owns the exports: it writes them whole (hidden name, then rename), as `baken synth` names
them.

Play it once per set of services: it moves their clock 25 hours ahead (`baken.clock.advance` on
`endpoints.clock_file`), after which a house's answer dated today would be older than a request
asked "later"; a moved clock is refused at the start.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from xml.sax.saxutils import escape as xml_escape

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from adapters.records import Person, SourceRecord
from adapters.sources import SOURCES
from adapters.synth import make_person, population, write_exports
from adapters.zsm.export import Decision, InflowRow
from adapters.zsm.write import OFFENCES, write_export
from baken import enums, sealed
from baken.age import is_minor
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.client import (
    RegistryClient,
    Suspect,
    connect,
    error_reason,
    subject_age,
    subject_proto,
)
from baken.clock import SystemClock, advance, read_offset
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import House, house_name, load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.pseudonym import person_pseudonyms
from baken.pseudonymiser_client import ServiceOprf
from baken.registry.v1 import registry_service_pb2
from baken.render import access_entry, lookup_text
from baken.render import advice_request_line as advice_line
from baken.type.v1 import pseudonym_pb2, purpose_pb2
from dev.topology import Endpoints
from services.registry.freshness import Freshness, freshness

__all__ = [
    "Endpoints",
    "ShiftError",
    "ShiftResult",
    "delivered_keys",
    "delivery_path",
    "play_shift",
    "write_sources",
]

# Region -> (its code in case references, suspects flowing in, of whom known): known shares
# within the pilots' 4-20 %, at least 5 per region so that the month's report shows them.
REGIONS: Mapping[str, tuple[str, int, int]] = {
    "midden-nederland": ("MN", 50, 6),
    "zeeland-west-brabant": ("ZWB", 40, 8),
    "oost-nederland": ("ON", 50, 5),
    "rotterdam-rijnmond": ("RR", 42, 7),
}
SHOWCASE = ("travelling", "aged", "expired", "no_bsn")  # adapters.synth, at ZSM Midden-Nederland
SCALE = 0.05  # x the pilots' client volumes: about 260 markers, one sync batch per source
TIMEOUT_S = 60.0
# Past the shortest term (24 h), so that a request becomes overdue; not much further, so that
# the shift stays in its month but on its last day.
ADVANCE_S = 25 * 3600
NO_HIT = registry_service_pb2.LOOKUP_OUTCOME_NO_HIT
MINOR_AT_INTAKE = registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE
DEVIATION_TRAVELLER = (
    "Advies was een voorwaardelijke straf met reclasseringstoezicht; hij heeft zich dit jaar "
    "twee keer aan toezicht onttrokken, daarom dagvaarden."
)
DEVIATION_RR = (
    "Advies was een strafbeschikking; het nieuwe feit is ernstiger (geweld tegen een "
    "hulpverlener), daarom voorgeleiden."
)
QUESTION = "Is het plan van aanpak nog actueel; past een meldplicht?"
NEW_ADVICE = (
    "Strafbeschikking met meldplicht bij de reclassering; het plan van aanpak is vandaag in "
    "het casusoverleg herzien."
)
# The other decisions about adults, in turn (a known minor gets Halt).
CODES = (
    fb.DECISION_CODE_STRAFBESCHIKKING,
    fb.DECISION_CODE_SEPOT,
    fb.DECISION_CODE_TOM_ZITTING,
    fb.DECISION_CODE_VOORWAARDELIJK_SEPOT,
    fb.DECISION_CODE_OVERDRACHT_BACKOFFICE,
    fb.DECISION_CODE_TRANSACTIE,
)
KINDS = {
    fb.DELIVERY_KIND_SIGNAL: "signal",
    fb.DELIVERY_KIND_DECISION: "decision",
    fb.DELIVERY_KIND_REFERRAL: "referral",
    fb.DELIVERY_KIND_ADVICE_REQUEST: "advice-request",
    fb.DELIVERY_KIND_MATCH: "match",
}


@dataclass
class ShiftResult:
    """What was played, to compare with the month's report; regions and houses by id."""

    lookups: dict[str, int] = field(default_factory=dict)  # ZSM look-ups (KPC, intake)
    hits: dict[str, int] = field(default_factory=dict)  # of which found a marker
    persons: dict[str, int] = field(default_factory=dict)  # distinct persons looked up
    known_persons: dict[str, int] = field(default_factory=dict)
    # The desk's inflow (a technisch sepot 01 takes its case out), and of it known as the
    # check told the desk (a minor at intake is told nothing, so is not among them).
    inflow: dict[str, int] = field(default_factory=dict)
    inflow_known: dict[str, int] = field(default_factory=dict)
    travelling_hits: dict[str, int] = field(default_factory=dict)  # another region's marker
    decisions: dict[str, int] = field(default_factory=dict)  # recorded (sepot 01 records none)
    deviations: dict[str, int] = field(default_factory=dict)  # from CURRENT advice, with reason
    late_decisions: dict[str, int] = field(default_factory=dict)  # after the clock moved
    technisch_sepot_01: int = 0
    aanmeldingen: dict[str, int] = field(default_factory=dict)  # house -> referrals
    advice_requested: dict[str, int] = field(default_factory=dict)  # house -> requests
    advice_answered: list[str] = field(default_factory=list)  # adviceRequests/..., in term
    advice_overdue: list[str] = field(default_factory=list)  # past their term, unanswered
    # house -> kind ("signal", "match", "decision", "referral", "advice-request", "retraction")
    # -> items in its source at the end; the signal of the technisch sepot 01's case was
    # retracted:
    items: dict[str, dict[str, int]] = field(default_factory=dict)
    # house -> items of that case, delivered and then purged from the feedback service (which
    # counts them no more).
    purged: dict[str, int] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)  # house -> keys the desks were told
    # Look-ups by the houses' process directors (terugkoppeling) while the adapters synced:
    # no ZSM look-ups, they signal nothing.
    sync_checks: int = 0
    clock_advanced_s: float = 0.0
    markers_lapsed: int = 0  # by the registry's expirer, after the clock moved (step f)
    # adapters.synth's showcase persons (travelling, aged, expired, no_bsn), looked up at ZSM
    # Midden-Nederland: their case references and the advice text a house gave each.
    showcase: dict[str, Person] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)
    advice: dict[str, str] = field(default_factory=dict)

    def items_per_house(self) -> dict[str, int]:
        return {house: sum(kinds.values()) for house, kinds in self.items.items()}


class ShiftError(RuntimeError):
    """The running services or adapters did not do their part (in time)."""


def delivery_path(deliveries: Mapping[str, Path], house: House) -> Path:
    """Where the house's adapter writes its deliveries (adapters/receive.py SOURCES)."""
    system = house.source_system_token
    return SOURCES[system].delivery_target(deliveries[system], house.id)


def delivered_keys(deliveries: Mapping[str, Path], house: House) -> list[str]:
    """The idempotency keys of the items in the house's source, repeats included."""
    path = delivery_path(deliveries, house)
    if not path.exists():
        return []
    return SOURCES[house.source_system_token].delivered_keys(path)


def _match_in_source(path: Path, house: House, record: SourceRecord) -> bool:
    """Whether the house's source holds a matchingsmelding (key "mat-…") about `record`."""
    if not path.exists():
        return False
    system = house.source_system_token
    if system == "gcos":
        clientnummer = f"<clientnummer>{xml_escape(record.record_id)}</clientnummer>"
        return any(
            clientnummer in file.read_text("utf-8")
            for file in path.glob("terugkoppeling-mat-*.xml")
        )
    if system == "amazone":
        text = path.read_text("cp1252")
        return any(
            row.get("Kenmerk Baken", "").startswith("mat-")
            and row.get("Registratienummer") == record.record_id
            for row in csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
        )
    lines = (_json(line) for line in path.read_text("utf-8-sig").splitlines())
    return any(
        isinstance(line, dict)
        and str(line.get("kenmerk", "")).startswith("mat-")
        and line.get("registratie_id") == record.record_id
        for line in lines
    )


def _json(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None  # a line the A&T module or a person added, not ours


def write_sources(
    sources: Mapping[str, Path], records: Sequence[SourceRecord], today: dt.date
) -> dict[str, list[Path]]:
    """The records as their houses' source systems export them, into each source's directory,
    each file whole (a hidden name, then renamed into place); the files placed."""
    placed: dict[str, list[Path]] = {}
    with tempfile.TemporaryDirectory(prefix="baken-shift-") as staging:
        written = write_exports(Path(staging), load_houses(), records, today=today, bad_share=0)
        for system, files in written.items():
            sources[system].mkdir(parents=True, exist_ok=True)
            for source in files:
                target = sources[system] / source.name
                temp = target.with_name(f".{target.name}.tmp")
                shutil.copyfile(source, temp)
                os.replace(temp, target)
                placed.setdefault(system, []).append(target)
    return placed


def _add(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _short(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    with contextlib.suppress(ValueError):
        return str(path.absolute().relative_to(Path.cwd()))
    return str(path)


@dataclass(frozen=True)
class _Suspect:
    person: Person
    region: str  # of the ZSM desk
    case: str
    records: tuple[SourceRecord, ...]  # his markers; none: not known

    @property
    def known(self) -> bool:
        return bool(self.records)

    @property
    def user(self) -> str:
        return f"kpc-{REGIONS[self.region][0].lower()}-0117"


class _Shift:
    def __init__(self, endpoints: Endpoints, out: TextIO, seed: int) -> None:
        self.e = endpoints
        self.out = out
        self.seed = seed
        self.houses = load_houses()
        self.ring = KeyRing.load(endpoints.pseudonym_key_file)
        self.today = SystemClock().today()  # the houses' and desks' day: the adapters' too
        # Case references differ per run: a case signals a house once.
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        self.result = ShiftResult()
        # The inflow's arrests lie in the hours before the shift is played.
        self.arrested = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
        self.region_names = {h.region: h.region_display_name for h in self.houses.values()}
        self.stack = contextlib.ExitStack()
        self.channels: dict[tuple[str, str], grpc.Channel] = {}
        self.records: list[SourceRecord] = []
        self.ended: SourceRecord | None = None  # the marker whose plan ended (step f)
        self.suspects: dict[str, _Suspect] = {}  # by case
        self.showcase: dict[str, Person] = {}
        self.featured: set[str] = set()  # item keys to show in the sources
        self.asked: dict[str, set[str]] = {}  # case -> the houses the desk asked for advice
        self.expected: dict[str, Counter[str]] = {h: Counter() for h in self.houses}
        self.before = {
            h: Counter(delivered_keys(self.e.deliveries, x)) for h, x in self.houses.items()
        }

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def channel(self, target: str, party: str) -> grpc.Channel:
        if (target, party) not in self.channels:
            channel = connect(target, TlsFiles.of(self.e.pki_dir, party))
            self.channels[target, party] = self.stack.enter_context(channel)
        return self.channels[target, party]

    def ring_of(self, party: str, user: str) -> KeyRing:
        """The key file's ring, served by `party`'s client of the pseudonymisation service it
        names."""
        return self.ring.served_by(
            ServiceOprf(lambda address: self.channel(address, party), on_behalf_of=user)
        )

    def registry(self, party: str, user: str) -> RegistryClient:
        return RegistryClient(
            self.channel(self.e.registry, party), self.ring_of(party, user), on_behalf_of=user
        )

    def feedback(self, party: str) -> feedback_service_pb2_grpc.FeedbackServiceStub:
        return feedback_service_pb2_grpc.FeedbackServiceStub(self.channel(self.e.feedback, party))

    def subject(self, p: Person, party: str, user: str) -> pseudonym_pb2.Subject:
        """Pseudonymised at `party`'s edge, through the pseudonymisation service on behalf of
        `user`: the BSN, or surname and date of birth without."""
        ring = self.ring_of(party, user)
        if p.bsn:
            return subject_proto(person_pseudonyms(ring, bsn=p.bsn, today=self.today))
        return subject_proto(
            person_pseudonyms(ring, surname=p.surname, birth_date=p.birth_date, today=self.today)
        )

    def minor(self, p: Person) -> bool:
        return p.birth_date is not None and is_minor(p.birth_date, self.today)

    def expect(self, house: str, kind: str, key: str = "") -> None:
        self.expected[house][kind] += 1
        if key:
            self.result.keys.setdefault(house, []).append(key)

    def arrived(self, house: str) -> Counter[str]:
        return Counter(delivered_keys(self.e.deliveries, self.houses[house])) - self.before[house]

    def until(self, condition: Callable[[], bool], what: str) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > TIMEOUT_S:
                raise ShiftError(f"{what}: not within {TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        return time.monotonic() - started

    # -- a. the houses register their clients ---------------------------------------------------

    def register(self) -> dict[str, list[_Suspect]]:
        clock = self.e.clock_file
        if clock is not None and read_offset(clock):
            raise ShiftError(
                f"{clock}: the services' clock was moved already (a shift was played against "
                "these services): start them afresh"
            )
        self.say("a. The houses register their clients in their own source systems (synthetic")
        self.say("   persons, never real): GCOS for Midden-Nederland and Zeeland-West-Brabant,")
        self.say("   Amazone for Oost-Nederland, PGA/A&T for Rotterdam-Rijnmond.")
        people = population(self.houses, self.today, seed=self.seed, scale=SCALE)
        self.records, self.showcase = list(people.records), dict(people.showcase)
        inflow = self._inflow()
        self.ended = self._end_a_plan(inflow)
        placed = write_sources(self.e.sources, self.records, self.today)
        for system in SOURCES:
            names = ", ".join(p.name for p in placed[system][:2])
            more = f" and {len(placed[system]) - 2} more" if len(placed[system]) > 2 else ""
            self.say(f"   {system:<8} {_short(self.e.sources[system])}/: {names}{more}")
        persons = len({r.person for r in self.records})
        self.say(f"   {len(self.records)} markers of {persons} persons, among them a travelling")
        ended = self.houses[self.ended.house_id].display_name
        self.say("   offender marked in Amersfoort and in Rotterdam, and a client of")
        self.say(f"   {ended} whose plan has ended (step f). The running adapters")
        self.say("   pseudonymise them and sync them into the registry.")
        took = self._wait_for_sync([s for suspects in inflow.values() for s in suspects])
        checks = self.result.sync_checks
        self.say(f"   All there after {took:.1f} s: each region's process director finds her")
        self.say(f"   houses' clients ({checks} checks for terugkoppeling, no ZSM look-ups).")
        matches = self._expect_matches()
        self.say(f"   Houses marking the same person (by BSN) hear of each other: {matches}")
        self.say("   matchingsmeldingen (docs/FEEDBACK.md).\n")
        return inflow

    def _end_a_plan(self, inflow: Mapping[str, list[_Suspect]]) -> SourceRecord:
        """One marker's plan ended (status closed): of a person with one marker whom no desk
        looks up, so that its lapse (step f) changes nothing else the shift shows."""
        flowing = {s.person for suspects in inflow.values() for s in suspects}
        markers = Counter(r.person for r in self.records)
        at = next(
            i
            for i, r in enumerate(self.records)
            if r.person.bsn and markers[r.person] == 1 and r.person not in flowing
        )
        self.records[at] = dataclasses.replace(self.records[at], plan_status="closed")
        return self.records[at]

    def _expect_matches(self) -> int:
        """Each pair of markers of two houses sharing a BSN: one match item to each house."""
        by_bsn: dict[str, list[SourceRecord]] = {}
        for record in self.records:
            if record.person.bsn:
                by_bsn.setdefault(record.person.bsn, []).append(record)
        count = 0
        for records in by_bsn.values():
            for a, b in itertools.combinations(records, 2):
                if a.house_id != b.house_id:
                    self.expect(a.house_id, "match")
                    self.expect(b.house_id, "match")
                    count += 2
        return count

    def _inflow(self) -> dict[str, list[_Suspect]]:
        """Each region's suspects, shuffled, each with a case: known ones (the showcase at ZSM
        Midden-Nederland, first the travelling offender) and strangers."""
        rng = random.Random(self.seed + 3)
        marked: dict[Person, list[SourceRecord]] = {}
        for record in self.records:
            marked.setdefault(record.person, []).append(record)
        bsns = {p.bsn for p in marked}
        showcase = [self.showcase[k] for k in SHOWCASE]
        inflow: dict[str, list[_Suspect]] = {}
        for region, (code, count, known) in REGIONS.items():
            local = [
                p
                for p, records in marked.items()
                if p.bsn and p not in showcase and any(self._region(r) == region for r in records)
            ]
            chosen = showcase if code == "MN" else []
            chosen = chosen + rng.sample(local, known - len(chosen))
            strangers: list[Person] = []
            while len(strangers) < count - known:
                person = make_person(rng, self.today)
                if person.bsn not in bsns:
                    bsns.add(person.bsn)
                    strangers.append(person)
            rest = chosen[1:] + strangers
            people = chosen[:1] + rng.sample(rest, len(rest))
            inflow[region] = [
                _Suspect(p, region, f"ZSM-{code}-{self.stamp}-{i:03d}", tuple(marked.get(p, ())))
                for i, p in enumerate(people, start=1)
            ]
        self.suspects = {s.case: s for suspects in inflow.values() for s in suspects}
        return inflow

    def _region(self, record: SourceRecord) -> str:
        return self.houses[record.house_id].region

    def _wait_for_sync(self, suspects: Sequence[_Suspect]) -> float:
        """Until every known suspect's markers are in the registry, as each region's process
        director sees her own houses' markers: first one person per region, then the rest."""
        waiting: dict[str, dict[str, tuple[Person, set[str]]]] = {}
        for s in suspects:
            for r in s.records:
                houses = waiting.setdefault(self._region(r), {}).setdefault(
                    s.case, (s.person, set())
                )
                houses[1].add(house_name(r.house_id))
        started, delay, synced = time.monotonic(), 0.25, set()
        while waiting:
            for region, cases in list(waiting.items()):
                code = REGIONS[region][0]
                party, user = f"vh-{region}-procesregie", f"procesregie-{code.lower()}"
                client = self.registry(party, user)
                asked = list(cases.items()) if region in synced else list(cases.items())[:1]
                checks = [
                    Suspect(
                        case,
                        self.subject(p, party, user),
                        f"VH-{code}-CONTROLE-{self.stamp}",
                        self.minor(p),
                    )
                    for case, (p, _) in asked
                ]
                for answer in client.batch_lookup(
                    checks, purpose=purpose_pb2.PURPOSE_TERUGKOPPELING
                ):
                    self.result.sync_checks += 1
                    if answer.HasField("error"):
                        raise ShiftError(f"a sync check was refused: {answer.error.message}")
                    if cases[answer.ref][1] <= {m.house.name for m in answer.lookup.markers}:
                        del cases[answer.ref]
                        synced.add(region)
                if not cases:
                    del waiting[region]
            if waiting and time.monotonic() - started > TIMEOUT_S:
                missing = sum(len(c) for c in waiting.values())
                raise ShiftError(
                    f"after {TIMEOUT_S:.0f} s, {missing} known person(s) are not in the registry: "
                    f"do adapters watch {', '.join(map(str, self.e.sources.values()))}?"
                )
            if waiting:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        return time.monotonic() - started

    # -- b. look-ups ------------------------------------------------------------------------------

    def look_up(self, inflow: Mapping[str, list[_Suspect]]) -> None:
        self.say("b. The night's inflow at the four ZSM desks, as each desk's case system")
        self.say("   exports it (the suspects monitor) into its inflow adapter's folder. Each")
        self.say("   adapter checks every suspect by itself, nationwide (intake-en-selectie, with")
        self.say("   the case), and records him in the desk's inflow; nobody types a look-up:\n")
        started = time.monotonic()
        for region, suspects in inflow.items():
            self.monitor(region, [self._row(s, None) for s in suspects], "nacht")
        for region, suspects in inflow.items():
            self._checked(region, suspects)
        took = time.monotonic() - started
        showcase = set(self.showcase.values())
        for region, suspects in inflow.items():
            code = REGIONS[region][0]
            r = self.result
            hits = r.known_persons.get(region, 0)
            self.say(
                f"   ZSM {code}: {len(suspects)} suspects, all checked; {hits} known "
                f"({100 * hits / len(suspects):.0f} %), {r.travelling_hits.get(region, 0)} "
                "at a house in another region."
            )
        self.say(f"   All checked {took:.1f} s after the monitors were written.\n")
        self.say("   On the desk's screen (`baken desk`), the KPC'er of ZSM Midden-Nederland opens")
        self.say("   a suspect: the screen looks him up for her, as any look-up, logged:\n")
        suspects = inflow["midden-nederland"]
        shown = [s for s in suspects if s.person in showcase]
        shown.append(next(s for s in suspects if not s.known and not self.minor(s.person)))
        client = self.registry("zsm-midden-nederland-kpc", suspects[0].user)
        for s in shown:
            p = s.person
            response = client.lookup_subject(
                self.subject(p, "zsm-midden-nederland-kpc", suspects[0].user),
                case_reference=s.case,
                minor=self.minor(p),
            )
            if (response.outcome != NO_HIT) != s.known:
                raise ShiftError(f"{s.case}: the registry's answer does not match the sources")
            self._count_lookup(s)
            who = f"BSN {p.bsn}" if p.bsn else f"{p.surname}, born {p.birth_date}, no BSN"
            self.say(f"   {s.case}  {who}:")
            self.say("     " + lookup_text(response).replace("\n", "\n     "))
        self.say("")
        took = self.until(self._all_arrived, "the signals")
        signals = sum(k["signal"] for k in self.expected.values())
        self.say(f"   Each hit signals every house that marked the person: {signals} signals,")
        self.say(f"   in the houses' sources {took:.1f} s later.")
        told = self._travellers_matches()
        self.say("   The travelling offender's houses were told of each other (matchingsmelding)")
        self.say(f"   when the second marked him, at sync: {' and '.join(told)}.\n")

    def _travellers_matches(self) -> list[str]:
        """Where the travelling offender's matchingsmelding is in his houses' own sources (each
        names the house's own record), as "SOURCE of house"; ShiftError if one is missing."""
        traveller = self.showcase["travelling"]
        told = []
        for record in (r for r in self.records if r.person == traveller):
            house = self.houses[record.house_id]
            if not _match_in_source(delivery_path(self.e.deliveries, house), house, record):
                raise ShiftError(
                    f"{house.id}: the travelling offender's matchingsmelding is not in its source"
                )
            told.append(f"{house.source_system_token.upper()} of {house.id}")
        if len(told) < 2:
            raise ShiftError("the travelling offender is not marked at two houses")
        return told

    def monitor(self, region: str, rows: Sequence[InflowRow], part: str) -> Path:
        """The desk's suspects monitor, whole, in its inflow adapter's folder (a hidden name,
        then renamed into place)."""
        folder = self.e.inflow[region]
        target = folder / f"verdachtenmonitor-{self.stamp}-{part}.csv"
        temp = folder / f".{target.name}.tmp"
        write_export(temp, rows)
        os.replace(temp, target)
        return target

    def _row(self, s: _Suspect, decision: Decision | None) -> InflowRow:
        """The suspect as the desk's case system exports him: arrested a minute apart in the
        hour before now, in the order of the inflow (checked well within the 60 minutes)."""
        number = int(s.case.rsplit("-", 1)[1])
        return InflowRow(
            where="",
            location=f"ZSM {self.region_names[s.region]}",
            case_reference=s.case,
            arrest_time=self.arrested - dt.timedelta(minutes=REGIONS[s.region][1] - number),
            person=s.person,
            minor=self.minor(s.person),
            offence_category=OFFENCES[number % len(OFFENCES)],
            decision=decision,
        )

    def inflow_entries(self, region: str) -> dict[str, fb.InflowEntry]:
        """The desk's inflow since the shift began, by case, as its screen lists it."""
        stub = self.feedback(f"zsm-{region}-kpc")
        since = timestamp_pb2.Timestamp()
        since.FromDatetime(self.arrested - dt.timedelta(days=1))
        entries: dict[str, fb.InflowEntry] = {}
        token = ""
        while True:
            response = stub.ListInflow(
                fb.ListInflowRequest(
                    since=since, on_behalf_of="kpc-shift", page_size=200, page_token=token
                ),
                timeout=10,
            )
            entries.update((e.case_reference, e) for e in response.entries)
            token = response.next_page_token
            if not token:
                return entries

    def _checked(self, region: str, suspects: Sequence[_Suspect]) -> None:
        """Until the desk's inflow holds every suspect, checked; then each is counted as the
        registry counts the adapter's look-up. A minor is shown nothing at intake, so the desk
        does not learn he is known; the registry finds his markers all the same."""
        cases = {s.case for s in suspects}

        def done() -> bool:
            entries = self.inflow_entries(region)
            return all(c in entries and entries[c].HasField("checked_time") for c in cases)

        self.until(done, f"ZSM {REGIONS[region][0]}'s inflow adapter")
        entries = self.inflow_entries(region)
        for s in suspects:
            if entries[s.case].known != self._told_known(s):
                raise ShiftError(f"{s.case}: the inflow's check does not match the sources")
            _add(self.result.inflow, s.region)
            if self._told_known(s):
                _add(self.result.inflow_known, s.region)
            self._count_person(s)

    def _told_known(self, s: _Suspect) -> bool:
        return s.known and not self.minor(s.person)

    def _count_person(self, s: _Suspect) -> None:
        """A suspect of the inflow, looked up once by the desk's inflow adapter."""
        r = self.result
        _add(r.persons, s.region)
        if s.known:
            _add(r.known_persons, s.region)
            for house_id in dict.fromkeys(m.house_id for m in s.records):
                self.expect(house_id, "signal")
        self._count_lookup(s)

    def _count_lookup(self, s: _Suspect) -> None:
        """A ZSM look-up of the suspect with his case (a case signals its houses once)."""
        r = self.result
        _add(r.lookups, s.region)
        if s.known:
            _add(r.hits, s.region)
            if any(self._region(m) != s.region for m in s.records):
                _add(r.travelling_hits, s.region)

    def _all_arrived(self) -> bool:
        return all(
            sum(self.arrived(h).values()) >= sum(kinds.values())
            for h, kinds in self.expected.items()
            if kinds
        )

    # -- c. decisions -----------------------------------------------------------------------------

    def decide_all(self, inflow: Mapping[str, list[_Suspect]], later: set[str]) -> None:
        self.say("c. The decisions: every house that marked the person hears each, nationwide.")
        self.say("   Those that weigh advice per house the KPC'er records at the desk's screen")
        self.say("   (RecordDecision, as `baken decide`); the rest come with the case system's")
        self.say("   morning monitor and the desk's inflow adapter takes them over.")
        now = [
            s for suspects in inflow.values() for s in suspects if s.known and s.case not in later
        ]
        sepot = next(s for s in now if s.region == "zeeland-west-brabant")
        rr = next(
            (s for s in now if s.region == "rotterdam-rijnmond" and self._fresh(s, 150)), None
        )
        turn = 0
        exported: dict[str, list[InflowRow]] = {}
        for s in now:
            if s is sepot:
                continue
            if s.person == self.showcase["travelling"]:
                response = self.decide(
                    s,
                    fb.DECISION_CODE_DAGVAARDING,
                    deviation=DEVIATION_TRAVELLER,
                    probation_report_requested=True,
                )
                self.featured.update(i.key for i in response.items)
                self.say(f"   {s.case}  the travelling offender: dagvaarding, deviating from the")
                self.say("     CURRENT advice the desk could see, with the reason. Fed back to")
                self.say("     both marking houses, each with its own advice line only:")
                for item in response.items:
                    self.say(f"     -> {item.house}  [{item.key}]")
            elif s is rr:
                response = self.decide(s, fb.DECISION_CODE_VOORGELEIDING, deviation=DEVIATION_RR)
                houses = ", ".join(i.house for i in response.items)
                self.say(f"   {s.case}  voorgeleiding, deviating from the CURRENT advice of")
                self.say(f"     {houses}, with the reason.")
            else:
                code = fb.DECISION_CODE_HALT if self.minor(s.person) else CODES[turn % len(CODES)]
                turn += not self.minor(s.person)
                if len(self._weighed(s)) <= 1:
                    exported.setdefault(s.region, []).append(self._decision_row(s, code))
                else:
                    self.decide(s, code)
        self._taken_over(exported)
        response = self.decide(sepot, fb.DECISION_CODE_TECHNISCH_SEPOT_01)
        self.result.technisch_sepot_01 += 1
        self.result.inflow[sepot.region] -= 1
        self.result.inflow_known[sepot.region] -= self._told_known(sepot)
        for house_id in dict.fromkeys(m.house_id for m in sepot.records):
            _add(self.result.purged, house_id)  # the case's signal, delivered before
            # ... and withdrawn: the source removes or strikes it, and holds the retraction.
            self.expected[house_id]["signal"] -= 1
            self.expect(house_id, "retraction")
        self.say(f"   {sepot.case}  registered by mistake: technisch sepot 01. Nothing is fed")
        self.say(f"     back; the feedback service purged the case ({response.purged_items} item),")
        self.say("     and the signal that reached the house before is retracted: its source")
        self.say("     removes or strikes it (docs/FEEDBACK.md, Retraction).")
        self._aanmelding(next(s for s in inflow["rotterdam-rijnmond"] if not s.known))
        counts = ", ".join(f"{REGIONS[r][0]} {n}" for r, n in self.result.decisions.items())
        self.say(f"   Decisions recorded so far: {counts}.\n")

    def _fresh(self, s: _Suspect, days: int) -> bool:
        """Some house's advice is at most `days` old."""
        return any(r.advice_date and (self.today - r.advice_date).days <= days for r in s.records)

    def _weighed(self, s: _Suspect) -> list[str]:
        """The houses whose CURRENT or AGED advice the desk could weigh: its own region's,
        under the shipped covenants, and the houses it asked."""
        return sorted(
            {
                r.house_id
                for r in s.records
                if freshness(r.advice_date, self.today) in (Freshness.CURRENT, Freshness.AGED)
                and (self._region(r) == s.region or r.house_id in self.asked.get(s.case, ()))
            }
        )

    def _decision_row(self, s: _Suspect, code: fb.DecisionCode.ValueType) -> InflowRow:
        """The decision as the case system exports it, with the one advice line the desk could
        weigh followed, if any."""
        decision = Decision(
            code=enums.token(fb.DecisionCode, code, "DECISION_CODE_", "-"),
            sepot_code="02" if code == fb.DECISION_CODE_SEPOT else "",
            stage="routing" if code == fb.DECISION_CODE_OVERDRACHT_BACKOFFICE else "final",
            advice_followed="followed" if self._weighed(s) else None,
            deviation_reason=None,
            probation_report_requested=False,
        )
        return self._row(s, decision)

    def _taken_over(self, exported: Mapping[str, list[InflowRow]]) -> None:
        """The decisions in the desks' morning monitors, until each desk's inflow adapter
        recorded them (the case's inflow entry names its decision); every house that marked
        the person then gets the decision."""
        for region, rows in exported.items():
            self.monitor(region, rows, "beslissingen")
        counts = ", ".join(f"{REGIONS[r][0]} {len(rows)}" for r, rows in exported.items())
        self.say(f"   From the desks' morning monitors, their inflow adapters took over: {counts}.")
        for region, rows in exported.items():
            cases = {row.case_reference for row in rows}

            def recorded(region: str = region, cases: set[str] = cases) -> bool:
                entries = self.inflow_entries(region)
                return all(entries[c].decision for c in cases)

            self.until(recorded, f"ZSM {REGIONS[region][0]}'s decisions from its monitor")
            for case in cases:
                _add(self.result.decisions, region)
                s = self.suspects[case]
                for house_id in dict.fromkeys(m.house_id for m in s.records):
                    self.expect(house_id, "decision")

    def decide(
        self,
        s: _Suspect,
        code: fb.DecisionCode.ValueType,
        *,
        deviation: str = "",
        late: bool = False,
        **fields: object,
    ) -> fb.RecordDecisionResponse:
        """RecordDecision as the desk's KPC'er, with a line for each house whose CURRENT or AGED
        advice it could weigh (its own region's, under the shipped covenants, and the houses it
        asked): not followed, with `deviation`, where one is given. The items it routes are
        expected in the sources."""
        followed = fb.ADVICE_FOLLOWED_NOT_FOLLOWED if deviation else fb.ADVICE_FOLLOWED_FOLLOWED
        weighed = self._weighed(s)
        request = fb.RecordDecisionRequest(
            case_reference=s.case,
            subject=self.subject(s.person, f"zsm-{s.region}-kpc", s.user),
            code=code,
            sepot_code="02" if code == fb.DECISION_CODE_SEPOT else "",
            stage=fb.DECISION_STAGE_ROUTING
            if code == fb.DECISION_CODE_OVERDRACHT_BACKOFFICE
            else fb.DECISION_STAGE_FINAL,
            subject_age=subject_age(self.minor(s.person)),
            house_advice=[
                fb.HouseAdvice(
                    house=house_name(house), advice_followed=followed, deviation_reason=deviation
                )
                for house in weighed
            ],
            on_behalf_of=s.user,
            request_key=f"{s.case}-decision",
            **fields,  # type: ignore[arg-type]
        )
        stub = self.feedback(f"zsm-{s.region}-kpc")
        response: fb.RecordDecisionResponse = stub.RecordDecision(request, timeout=10)
        r = self.result
        if response.name:
            _add(r.decisions, s.region)
            if late:
                _add(r.late_decisions, s.region)
            if deviation:
                _add(r.deviations, s.region)
        for item in response.items:
            house = item.house.removeprefix("houses/")
            self.expect(house, KINDS[item.kind], item.key)
            if item.kind == fb.DELIVERY_KIND_REFERRAL:
                _add(r.aanmeldingen, house)
        for missed in response.not_routed:
            self.say(f"     not sent -> {missed.house or '(no house)'}: {missed.reason}")
        return response

    def _aanmelding(self, s: _Suspect) -> None:
        p = s.person
        key = sealed.load_public(self.e.house_keys_dir, "vh-rotterdam-rijnmond")
        envelope = sealed.seal_person(
            key,
            sealed.ReferredPerson(p.bsn, p.surname, p.birth_date, "Rotterdam"),
            case_reference=s.case,
        )
        response = self.decide(
            s,
            fb.DECISION_CODE_STRAFBESCHIKKING,
            triage=fb.TriageCheck(checked=True, matched=[fb.TRIAGE_CRITERION_REPEAT_OFFENDER]),
            complex_problems_suspected=True,
            residence_municipality="Rotterdam",
            referral=envelope,
        )
        self.featured.update(i.key for i in response.items)
        houses = ", ".join(i.house for i in response.items)
        self.say(f"   {s.case}  not known anywhere, complex problems suspected: an aanmelding")
        self.say(f"     to {houses}, the person sealed at the desk to the house's key.")

    # -- d. advice on request ---------------------------------------------------------------------

    def ask(self, s: _Suspect, house: str, hours: int) -> fb.AdviceRequest:
        term = duration_pb2.Duration()
        term.FromTimedelta(dt.timedelta(hours=hours))
        self.asked.setdefault(s.case, set()).add(house)
        made: fb.AdviceRequest = self.feedback(f"zsm-{s.region}-kpc").RequestAdvice(
            fb.RequestAdviceRequest(
                case_reference=s.case,
                subject=self.subject(s.person, f"zsm-{s.region}-kpc", s.user),
                house=house_name(house),
                term=term,
                question=QUESTION,
                on_behalf_of=s.user,
                subject_age=subject_age(self.minor(s.person)),
            ),
            timeout=10,
        )
        self.expect(house, "advice-request", made.delivery_key)
        _add(self.result.advice_requested, house)
        self.until(lambda: made.delivery_key in self.arrived(house), "the advice request")
        return made

    def listed(self, *, overdue_only: bool = False) -> list[fb.AdviceRequest]:
        stub = self.feedback("zsm-midden-nederland-kpc")
        request = fb.ListAdviceRequestsRequest(overdue_only=overdue_only)
        return list(stub.ListAdviceRequests(request, timeout=10).advice_requests)

    def advice(self, aged: _Suspect, overdue: _Suspect) -> None:
        self.say("d. Advies op aanvraag (`baken advice request`): ZSM asks a house for fresh")
        self.say("   advice within a term, and decides once it is answered or the term passed.")
        [marker] = aged.records
        first = self.ask(aged, marker.house_id, 24)
        self.say(f"   {aged.case}  the advice is AGED: asked of {first.house}, term 24 h.")
        self.say(
            "     The request arrives in the house's GCOS; the casusoverleg answers there with"
        )
        self.say("     a new advice, which the adapter syncs and reports as the answer.")
        renewed = dataclasses.replace(marker, advice=NEW_ADVICE, advice_date=self.today)
        self.records = [renewed if r is marker else r for r in self.records]
        write_sources(
            self.e.sources, [r for r in self.records if r.house_id == marker.house_id], self.today
        )
        took = self.until(lambda: all(r.name != first.name for r in self.listed()), "the answer")
        self.result.advice_answered.append(first.name)
        self.decide(aged, fb.DECISION_CODE_STRAFBESCHIKKING)
        self.say(f"     {first.name} answered after {took:.1f} s; ZSM decides with the fresh")
        self.say("     advice: strafbeschikking, advice followed.")

        house = next(r.house_id for r in overdue.records if self._region(r) == overdue.region)
        second = self.ask(overdue, house, 24)
        self.featured.add(second.delivery_key)
        self.say(f"   {overdue.case}  asked of {second.house}, term 48 h; no answer comes.")
        try:
            self.decide(overdue, fb.DECISION_CODE_DAGVAARDING)
        except grpc.RpcError as error:
            self.say(f"     Deciding now is refused: {error.code().name} ({error_reason(error)}).")
        self.say("   `baken advice list`:")
        for request in self.listed():
            self.say("     " + advice_line(request))
        if self.e.clock_file is None:
            self.say("   (No clock file: the services' clock cannot be moved ahead, so the request")
            self.say("   stays open and the case undecided.)\n")
            return
        advance(self.e.clock_file, ADVANCE_S)
        self.result.clock_advanced_s = ADVANCE_S
        self.say(
            f"   {ADVANCE_S // 3600} hours later (the services' clock moved ahead: "
            f"{_short(self.e.clock_file)}):"
        )
        self.say("   `baken advice list --overdue`:")
        listed = self.listed(overdue_only=True)
        for request in listed:
            self.say("     " + advice_line(request))
        overdue_now = [r.name for r in listed if r.state == fb.ADVICE_REQUEST_STATE_OVERDUE]
        if second.name not in overdue_now:
            self.say("   (The services do not read the clock file: the request is not overdue,")
            self.say("   and the case stays undecided.)\n")
            return
        self.result.advice_overdue = overdue_now
        self.say(f"     ({first.name}, answered in time, is not listed.)")
        response = self.decide(overdue, fb.DECISION_CODE_DAGVAARDING, late=True)
        self.featured.update(i.key for i in response.items)
        self.say(f"   {overdue.case}  ZSM decides without the advice: dagvaarding.\n")

    # -- e. the deliveries ------------------------------------------------------------------------

    def deliveries(self) -> None:
        took = self.until(self._all_arrived, "the feedback")
        total = sum(sum(k.values()) for k in self.expected.values())
        self.say(f"e. In the houses' own source systems after {took:.1f} s: {total} items, each")
        self.say("   once (signals, matches, decisions, the aanmelding and the advice requests):")
        for system in SOURCES:
            houses = [h for h in self.houses.values() if h.source_system_token == system]
            counts = ", ".join(
                f"{h.id} {n}" for h in houses if (n := sum(self.arrived(h.id).values()))
            )
            self.say(f"   {system.upper()} {_short(self.e.deliveries[system])}/: {counts}")
            self._excerpt(system, houses)
        self.result.items = {h: dict(k) for h, k in self.expected.items() if k}

    def _excerpt(self, system: str, houses: Sequence[House]) -> None:
        """One featured item per system: the file, or its lines."""
        for house in houses:
            path = delivery_path(self.e.deliveries, house)
            if system == "gcos":
                for file in sorted(path.glob("*.xml")) if path.exists() else ():
                    if any(key in file.name for key in self.featured):
                        self.say(f"     {house.id}/{file.name}:")
                        for line in file.read_text("utf-8").splitlines()[1:]:
                            self.say(f"       {line}")
                        return
            elif path.exists():
                lines = path.read_text("cp1252" if system == "amazone" else "utf-8").splitlines()
                picked = [x for x in lines if any(key in x for key in self.featured)]
                if picked:
                    self.say(f"     {path.name}:")
                    for line in lines[:1] + picked if system == "amazone" else picked:
                        self.say(f"       {line[:96]}{' ...' if len(line) > 96 else ''}")
                    return

    # -- f. retention -----------------------------------------------------------------------------

    def retention(self) -> None:
        """After the clock moved: the registry's expirer let the ended plan's marker lapse,
        and the privacy officer finds its entry in the registry's log."""
        if not self.result.advice_overdue or self.ended is None:
            return  # the services did not read the moved clock (step d said so)
        auditor = audit_service_pb2_grpc.AuditServiceStub(
            self.channel(self.e.registry, "privacy-auditor")
        )
        moved = timestamp_pb2.Timestamp()
        moved.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ADVANCE_S - 60))
        request = audit_service_pb2.ListAccessEntriesRequest(
            on_behalf_of="privacy-officer", party="registry", start_time=moved
        )
        found: list[audit_service_pb2.AccessEntry] = []

        def lapsed() -> bool:
            time.sleep(0.5)  # each look is an entry of the log itself: not too many
            entries = auditor.ListAccessEntries(request, timeout=TIMEOUT_S).entries
            found[:] = [e for e in entries if e.expired.get("markers_lapsed")]
            return bool(found)

        took = self.until(lapsed, "the marker's lapse")
        self.result.markers_lapsed = sum(e.expired["markers_lapsed"] for e in found)
        self.say("f. Retention (docs/RETENTION.md). A marker whose plan ended lapses after a")
        self.say("   period even when its source keeps it: 365 days in production, 1 day in this")
        house = self.houses[self.ended.house_id].display_name
        self.say(f"   demo. The marker of {house}'s client, synced a day ago, lapsed")
        self.say(f"   {took:.1f} s after the clock moved; the privacy officer reads the registry's")
        self.say("   own entry of it (`baken audit party registry`):")
        for e in found:
            for line in access_entry(e).splitlines():
                self.say(f"     {line}")
        self.say("   Nothing else went: every other period is longer than a day.\n")


def play_shift(endpoints: Endpoints, out: TextIO, *, seed: int = 2014) -> ShiftResult:
    """Play one ZSM shift against the running services (see the module's doc), printing what
    happens to `out`; what was played, to compare with the month's report. The persons are
    synthetic and the same for the same seed (the case references differ per run). Raises
    ShiftError when the adapters or services do not do their part within a minute."""
    shift = _Shift(endpoints, out, seed)
    with shift.stack:
        inflow = shift.register()
        shift.look_up(inflow)
        result = shift.result
        result.showcase = dict(shift.showcase)
        for name, person in shift.showcase.items():
            suspect = next(s for s in inflow["midden-nederland"] if s.person == person)
            result.cases[name] = suspect.case
            given = [r.advice for r in suspect.records if r.advice]
            if given:
                result.advice[name] = given[0]
        aged = next(s for s in inflow["midden-nederland"] if s.person == shift.showcase["aged"])
        known = [s for s in inflow["oost-nederland"] if s.known]
        overdue = next((s for s in known if not shift.minor(s.person)), known[0])
        shift.decide_all(inflow, {aged.case, overdue.case})
        shift.advice(aged, overdue)
        shift.deliveries()
        shift.retention()
    return shift.result
