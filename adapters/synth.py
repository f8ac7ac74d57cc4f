"""Synthetic Safety House populations — never real people — as the sources' own exports.

Volumes follow the pilots (docs/PROCESS.md §6): the known clients per house as measured, a few
percent of persons marked in two regions (travelling repeat offenders), and persons without BSN.
`write_exports` writes each region's houses in their real source system's format (GCOS XML per
house, Amazone CSV and PGA JSON lines per region), with a sprinkling of bad records, for
`baken synth`, the demo and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters.records import Person, SourceRecord
from adapters.sources import SOURCES
from baken.houses import House
from baken.registry.v1 import house_pb2

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
    "veelpleger",
    "veelpleger",
    "hit",
    "huiselijk_geweld",
    "huiselijk_geweld",
    "jeugd",
    "top_x",
    "other",
)
# PGA keeps the A&T fields (docs/PROCESS.md §2); GCOS and Amazone only the advice (and Amazone
# the administrative measures its police officer notes).
AT_INFORMATION = {
    "antecedents": "Meerdere vermogensdelicten afgelopen 2 jaar.",
    "open_cases": "Eén openstaande zaak (winkeldiefstal).",
    "supervisions": "Reclasseringstoezicht loopt (3RO).",
}
BAD_SHARE = 0.004


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
    system = house.source_system
    at_information: dict[str, str] = {}
    if system == house_pb2.SOURCE_SYSTEM_PGA:
        at_information = dict(AT_INFORMATION)
    elif system == house_pb2.SOURCE_SYSTEM_AMAZONE and rng.random() < 0.2:
        at_information = {"administrative_measures": "Gebiedsverbod binnenstad tot 1 juni."}
    return SourceRecord(
        record_id=f"{house.id.removeprefix('vh-')[:12]}-{serial:06d}",
        house_id=house.id,
        person=person,
        target_group=rng.choice(TARGET_GROUPS),
        plan_status=rng.choice(("active",) * 4 + ("aftercare",)),
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

    showcase("travelling", ["vh-rotterdam-rijnmond", "vh-regio-utrecht-amersfoort"], 40)
    showcase("aged", ["vh-regio-utrecht-utrecht"], 250)
    showcase("expired", ["vh-gooi-en-vechtstreek"], 420)
    showcase("no_bsn", ["vh-almere"], 20, with_bsn=False)
    return result


def spoil(rng: random.Random, record: SourceRecord, today: dt.date) -> SourceRecord:
    """A record an adapter must refuse: a mistyped BSN, or an advice dated in the future."""
    if record.person.bsn and rng.random() < 0.5:
        bsn = record.person.bsn
        typo = bsn[:-1] + str((int(bsn[-1]) + 1) % 10)
        return dataclasses.replace(record, person=dataclasses.replace(record.person, bsn=typo))
    return dataclasses.replace(record, advice_date=today + dt.timedelta(days=rng.randrange(1, 60)))


def write_exports(
    directory: Path,
    houses: Mapping[str, House],
    records: Sequence[SourceRecord],
    *,
    today: dt.date,
    seed: int = 2014,
    bad_share: float = BAD_SHARE,
    spare: Collection[Person] = (),
) -> dict[str, list[Path]]:
    """Each region's houses in their own source system's export, `bad_share` of the records
    spoiled (never those of the persons in `spare`); source system ("gcos", "amazone", "pga")
    -> the files written."""
    rng = random.Random(seed + 1)
    directory.mkdir(parents=True, exist_ok=True)
    grouped: dict[tuple[str, str], list[SourceRecord]] = {}
    for record in records:
        house = houses[record.house_id]
        if rng.random() < bad_share and record.person not in spare:
            record = spoil(rng, record, today)
        source = SOURCES[house.source_system_token]
        # GCOS exports per house; Amazone and the shared PGA module per region.
        unit = house.id if source.export_per_house else house.region
        grouped.setdefault((source.system, unit), []).append(record)
    written: dict[str, list[Path]] = {}
    for (system, unit), batch in sorted(grouped.items()):
        source = SOURCES[system]
        path = directory / f"{system}-{unit}.{source.export_suffix}"
        source.write_export(path, unit, batch)
        written.setdefault(system, []).append(path)
    return written
