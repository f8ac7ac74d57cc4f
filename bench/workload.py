"""Synthetic but realistic registry traffic for the benchmark, made at the edge like an adapter.

Every marker carries the BSN pseudonym of its person; about one in five also carries a surname +
date-of-birth pseudonym. About one person in ten is known at two houses (a travelling offender).
House ids come from the reference data, each with its own source system; each source system's
markers go to the registry under its own adapter's certificate (SyncMarkers is for source
adapters only, each for its own system). Advice texts are about 150 characters. Lookups are the
hot path at ZSM: the KPC'er checks every incoming (adult) suspect at intake-en-selectie. Messages
are serialised here, once, so the timed runs measure the server.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from baken.client import date_proto
from baken.houses import House, load_houses
from baken.keyring import KeyRing
from baken.pseudonym import bsn_pseudonyms, name_birth_date_pseudonyms
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from baken.type.v1 import pseudonym_pb2, purpose_pb2

SYNC_MESSAGE = 5000
KEY_ID = "k2026-11"
KEY = bytes(range(32))  # a fixed key: the same pseudonyms in every process of the run
SURNAMES = ("Jansen", "de Vries", "van den Berg", "Bakker", "Çelik", "El Amrani", "Visser", "Smit")
ADVICE = (
    "Dagvaarden met het doel een voorwaardelijke straf met bijzondere voorwaarden op te leggen; "
    "betrokkene heeft een lopend plan van aanpak bij het veiligheidshuis ({n})",
    "Aanhouden en voorgeleiden: het casusoverleg adviseert snelrecht, de reclassering is "
    "betrokken; graag terugkoppeling aan de procesregisseur van het huis ({n})",
    "Geen sepot: de casus loopt in het veiligheidshuis en het plan vraagt om een interventie "
    "via de strafrechtketen; overleg met de procesregisseur ({n})",
)
AT_TEXT = "Gegevens aangeleverd door de ketenpartner; zie het casusoverleg van deze maand."
# Who asks, and why: every Lookup and BatchLookup names them (and is written to the access log).
PURPOSE = purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE
ON_BEHALF_OF = "kpc-bench-01"
AGE = registry_service_pb2.SUBJECT_AGE_ADULT
# Each source system's markers are synced by its own adapter (covenants/parties.toml).
ADAPTERS = {
    house_pb2.SOURCE_SYSTEM_GCOS: "adapter-gcos",
    house_pb2.SOURCE_SYSTEM_AMAZONE: "adapter-amazone",
    house_pb2.SOURCE_SYSTEM_PGA: "adapter-pga",
}


def valid_bsns(start: int) -> Iterator[str]:
    """Successive 9-digit numbers from `start` (8-digit prefix) that pass the 11-proef."""
    prefix = start
    while True:
        digits = f"{prefix:08d}"
        check = sum(int(d) * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check != 10:
            yield digits + str(check)
        prefix += 1


def lookup_request(subject: pseudonym_pb2.Subject) -> bytes:
    """A KPC'er's LookupRequest at intake for an adult suspect, serialised."""
    return registry_service_pb2.LookupRequest(
        subject=subject, purpose=PURPOSE, on_behalf_of=ON_BEHALF_OF, subject_age=AGE
    ).SerializeToString()


def _subject(pseudonyms: list[tuple[int, bytes]]) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(
        pseudonyms=[
            pseudonym_pb2.Pseudonym(kind=kind, key_id=KEY_ID, value=value)
            for kind, value in pseudonyms
        ]
    )


@dataclass
class Workload:
    markers: int
    # Per adapter party (its certificate), the serialised SyncMarkersRequests of its system.
    sync_messages: dict[str, list[bytes]]
    hit_requests: list[bytes]  # serialised LookupRequests of loaded persons
    miss_requests: list[bytes]  # serialised LookupRequests of unknown persons

    def lookup_requests(self, count: int, seed: int = 7) -> list[bytes]:
        """Half hits, half misses, shuffled."""
        rng = random.Random(seed)
        half = count // 2
        mixed = rng.choices(self.hit_requests, k=half) + rng.choices(
            self.miss_requests, k=count - half
        )
        rng.shuffle(mixed)
        return mixed


def make_workload(markers: int, today: dt.date, seed: int = 2026) -> Workload:
    rng = random.Random(seed)
    ring = KeyRing({KEY_ID: KEY})
    houses = list(load_houses().values())
    bsns = valid_bsns(10_000_000)
    changes: dict[str, list[marker_pb2.MarkerChange]] = {a: [] for a in ADAPTERS.values()}
    sync_messages: dict[str, list[bytes]] = {a: [] for a in ADAPTERS.values()}
    hit_requests: list[bytes] = []
    made = 0
    while made < markers:
        bsn = next(bsns)
        pseudonyms = [(p.kind, p.value) for p in bsn_pseudonyms(ring, bsn)]
        if rng.random() < 0.2:
            birth = today - dt.timedelta(days=rng.randrange(16 * 365, 60 * 365))
            pseudonyms += [
                (p.kind, p.value)
                for p in name_birth_date_pseudonyms(ring, rng.choice(SURNAMES), birth, today=today)
            ]
        subject = _subject(pseudonyms)
        if len(hit_requests) < 50_000:
            hit_requests.append(lookup_request(subject))
        known_at = rng.sample(houses, 2 if rng.random() < 0.1 else 1)
        for house in known_at[: markers - made]:
            record = _record(rng, made, house, subject, today)
            adapter = ADAPTERS[house.source_system]
            changes[adapter].append(marker_pb2.MarkerChange(upsert=record))
            made += 1
            if len(changes[adapter]) == SYNC_MESSAGE:
                sync_messages[adapter].append(_sync_message(changes[adapter]))
                changes[adapter] = []
    for adapter, rest in changes.items():
        if rest:
            sync_messages[adapter].append(_sync_message(rest))
    miss_bsns = valid_bsns(60_000_000)
    miss_requests = [
        lookup_request(_subject([(p.kind, p.value) for p in bsn_pseudonyms(ring, next(miss_bsns))]))
        for _ in range(len(hit_requests))
    ]
    return Workload(markers, sync_messages, hit_requests, miss_requests)


def _sync_message(changes: list[marker_pb2.MarkerChange]) -> bytes:
    return registry_service_pb2.SyncMarkersRequest(changes=changes).SerializeToString()


def _record(
    rng: random.Random,
    n: int,
    house: House,
    subject: pseudonym_pb2.Subject,
    today: dt.date,
) -> marker_pb2.MarkerRecord:
    source_system: house_pb2.SourceSystem.ValueType = house.source_system
    system = house_pb2.SourceSystem.Name(source_system).removeprefix("SOURCE_SYSTEM_")
    mark_date = today - dt.timedelta(days=rng.randrange(30, 900))
    record = marker_pb2.MarkerRecord(
        source_system=source_system,
        source_record_id=f"{system}-{n:09d}",
        source_version=rng.randrange(1, 4),
        house=house.name,
        subject=subject,
        target_group=rng.randrange(1, 7),
        plan_status=rng.randrange(1, 5),
        mark_date=date_proto(mark_date),
    )
    if rng.random() < 0.9:
        advice_date = mark_date + dt.timedelta(days=rng.randrange(0, (today - mark_date).days + 1))
        record.advice = ADVICE[n % 3].format(n=n)
        record.advice_date.CopyFrom(date_proto(advice_date))
    if source_system == house_pb2.SOURCE_SYSTEM_PGA and rng.random() < 0.5:
        record.at_information.antecedents = AT_TEXT
        record.at_information.open_cases = AT_TEXT
    return record
