"""Synthetic Safety House populations for the demo, benchmarks and tests — never real people.

Volumes follow the pilots (DOMAIN.md section 6): the known clients per house as measured, a few
percent of persons marked in two regions (travelling repeat offenders), and persons without BSN.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from baken.client import date_proto, subject_proto
from baken.houses import House
from baken.keyring import KeyRing
from baken.pseudonym import bsn_pseudonyms, name_birth_date_pseudonyms
from baken.registry.v1 import house_pb2, marker_pb2

# Known clients per house, from the pilot monitors (Oost-Nederland: 4 % of 11,098 inflow, spread).
PILOT_VOLUMES: Mapping[str, int] = {
    "vh-regio-utrecht-utrecht": 666,
    "vh-regio-utrecht-amersfoort": 306,
    "vh-almere": 107,
    "vh-gooi-en-vechtstreek": 94,
    "vh-breda": 335,
    "vh-markiezaten": 287,
    "vh-zeeland": 360,
    "vh-midden-brabant": 718,
    "vh-ijsselland": 90,
    "vh-noord-oost-gelderland": 55,
    "vh-twente": 85,
    "vh-gelderland-midden-arnhem": 70,
    "vh-gelderland-midden-ede": 35,
    "vh-gelderland-zuid-nijmegen": 75,
    "vh-gelderland-zuid-tiel": 34,
    "vh-rotterdam-rijnmond": 1_300,
    "vh-zuid-holland-zuid": 374,
}
TRAVELLING_SHARE = 0.03
NO_BSN_SHARE = 0.05

SURNAMES = (
    "de Vries", "van den Berg", "Jansen", "Bakker", "van Dijk", "El Amrani", "Yılmaz", "Çelik",
    "de Jong", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos",
    "Peters", "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra", "Smits",
    "de Graaf", "van der Meer", "van der Linden", "Kok", "Jacobs", "de Haan", "Vermeulen",
    "van den Heuvel", "van der Veen", "van den Broek", "de Bruijn", "van der Heijden", "Schouten",
    "van Beek", "Willems", "van Vliet", "van de Ven", "Hoekstra", "Maas", "Verhoeven", "Koster",
    "van Dam", "van der Wal", "Prins", "Blom", "Huisman", "Peeters", "Kuipers", "Bosman",
    "Tahiri", "Boukhari", "Öztürk", "Şahin", "Kaya", "in 't Veld", "Pinas", "Martina",
)  # fmt: skip
ADVICE = (
    "Dagvaarden met het doel een voorwaardelijke straf met reclasseringstoezicht; het plan van "
    "aanpak loopt (schuldhulp, woonbegeleiding).",
    "Bij een nieuw feit voorgeleiden en ISD-maatregel overwegen; contact met procesregisseur.",
    "Strafbeschikking met gedragsaanwijzing (contactverbod); huisverbod is opgelegd, Veilig Thuis "
    "betrokken.",
    "Geen Halt: jeugdreclassering intensiveren, leerplicht en school zijn aangesloten.",
    "Dagvaarden, vordering tenuitvoerlegging; gebiedsverbod binnenstad loopt tot de zomer.",
    "Voorwaardelijk sepot met bijzondere voorwaarde: meewerken aan behandeling verslavingszorg.",
    "Reclasseringsadvies aanvragen; LVB-problematiek, begeleiding door MEE.",
)
TARGET_GROUPS = (
    marker_pb2.TARGET_GROUP_VEELPLEGER,
    marker_pb2.TARGET_GROUP_VEELPLEGER,
    marker_pb2.TARGET_GROUP_HIT,
    marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD,
    marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD,
    marker_pb2.TARGET_GROUP_JEUGD,
    marker_pb2.TARGET_GROUP_TOP_X,
    marker_pb2.TARGET_GROUP_OTHER,
)


@dataclass(frozen=True, slots=True)
class Person:
    bsn: str | None
    surname: str
    birth_date: dt.date


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One marker as a house's source system holds it, personal data included (edge side)."""

    person: Person
    house: House
    record_id: str
    version: int
    target_group: marker_pb2.TargetGroup.ValueType
    plan_status: marker_pb2.PlanStatus.ValueType
    mark_date: dt.date
    advice: str | None
    advice_date: dt.date | None
    at_information: dict[str, str] | None = None


@dataclass
class Population:
    records: list[SourceRecord] = field(default_factory=list)
    # Persons the demo shows: "travelling", "aged", "expired", "no_bsn".
    showcase: dict[str, Person] = field(default_factory=dict)


def make_bsn(rng: random.Random) -> str:
    """A random 9-digit number that passes the 11-proef."""
    while True:
        head = f"{rng.randrange(10_000_000, 100_000_000):08d}"
        total = sum(int(d) * w for d, w in zip(head, range(9, 1, -1), strict=True))
        check = total % 11
        if check < 10:
            return head + str(check)


def make_person(rng: random.Random, today: dt.date, *, with_bsn: bool = True) -> Person:
    age_days = rng.randrange(12 * 365, 60 * 365)
    return Person(
        bsn=make_bsn(rng) if with_bsn else None,
        surname=rng.choice(SURNAMES),
        birth_date=today - dt.timedelta(days=age_days),
    )


def _record(
    rng: random.Random,
    person: Person,
    house: House,
    serial: int,
    today: dt.date,
    advice_age_days: int | None = None,
) -> SourceRecord:
    mark_age = rng.randrange(30, 900)
    advice_age = (
        advice_age_days if advice_age_days is not None else rng.randrange(0, min(mark_age, 540))
    )
    at_information = None
    if house.source_system == house_pb2.SOURCE_SYSTEM_PGA:  # PGA keeps the A&T fields
        at_information = {
            "antecedents": "Meerdere vermogensdelicten afgelopen 2 jaar.",
            "open_cases": "Eén openstaande zaak (winkeldiefstal).",
            "supervisions": "Reclasseringstoezicht loopt (3RO).",
        }
    return SourceRecord(
        person=person,
        house=house,
        record_id=f"{house.id.removeprefix('vh-')[:12]}-{serial:06d}",
        version=1,
        target_group=rng.choice(TARGET_GROUPS),
        plan_status=rng.choice(
            (marker_pb2.PLAN_STATUS_ACTIVE,) * 4 + (marker_pb2.PLAN_STATUS_AFTERCARE,)
        ),
        mark_date=today - dt.timedelta(days=max(mark_age, advice_age)),
        advice=rng.choice(ADVICE),
        advice_date=today - dt.timedelta(days=advice_age),
        at_information=at_information,
    )


def population(
    houses: Mapping[str, House], today: dt.date, *, seed: int = 2014, scale: float = 1.0
) -> Population:
    rng = random.Random(seed)
    result = Population()
    serial = 0
    by_region: dict[str, list[House]] = {}
    for house in houses.values():
        by_region.setdefault(house.region, []).append(house)
    for house_id, volume in PILOT_VOLUMES.items():
        house = houses[house_id]
        for _ in range(max(1, round(volume * scale))):
            serial += 1
            person = make_person(rng, today, with_bsn=rng.random() >= NO_BSN_SHARE)
            result.records.append(_record(rng, person, house, serial, today))
            if rng.random() < TRAVELLING_SHARE:
                other = rng.choice([r for r in by_region if r != house.region])
                serial += 1
                result.records.append(
                    _record(rng, person, rng.choice(by_region[other]), serial, today)
                )

    def showcase(
        name: str, house_ids: list[str], advice_age_days: int, *, with_bsn: bool = True
    ) -> None:
        nonlocal serial
        person = make_person(rng, today, with_bsn=with_bsn)
        result.showcase[name] = person
        for house_id in house_ids:
            serial += 1
            result.records.append(
                _record(rng, person, houses[house_id], serial, today, advice_age_days)
            )

    showcase("travelling", ["vh-rotterdam-rijnmond", "vh-midden-brabant"], 40)
    showcase("aged", ["vh-regio-utrecht-utrecht"], 250)
    showcase("expired", ["vh-gooi-en-vechtstreek"], 420)
    showcase("no_bsn", ["vh-almere"], 20, with_bsn=False)
    return result


def marker_change(record: SourceRecord, ring: KeyRing, today: dt.date) -> marker_pb2.MarkerChange:
    """The record as an adapter sends it: the person replaced by pseudonyms under every key."""
    person = record.person
    pseudonyms = bsn_pseudonyms(ring, person.bsn) if person.bsn else []
    pseudonyms += name_birth_date_pseudonyms(ring, person.surname, person.birth_date, today=today)
    upsert = marker_pb2.MarkerRecord(
        source_system=record.house.source_system,
        source_record_id=record.record_id,
        source_version=record.version,
        house_id=record.house.id,
        subject=subject_proto(pseudonyms),
        target_group=record.target_group,
        plan_status=record.plan_status,
        mark_date=date_proto(record.mark_date),
        advice=record.advice or "",
        advice_date=date_proto(record.advice_date),
        at_information=marker_pb2.AtInformation(**(record.at_information or {})),
    )
    return marker_pb2.MarkerChange(upsert=upsert)
