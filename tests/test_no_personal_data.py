"""No BSN, name or date of birth reaches the registry's database or its logs; nor does a key, nor
waarom-informatie (advice, A&T fields) in clear."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable

from builders import Marking, Person, subject
from harness import RunningRegistry, batch_request
from sqlalchemy import inspect, text

from baken.keyring import KeyRing
from baken.pseudonym import normalise_surname
from baken.registry.v1 import registry_service_pb2

pb = registry_service_pb2

MARKED = [
    Person("111222333", "Van der Berg", dt.date(1991, 6, 14)),
    Person("123456782", "Yılmaz", dt.date(1987, 1, 30)),
    Person("999999990", "El Amrani", dt.date(2003, 11, 2)),
    Person("100000009", "Kowalczyk", dt.date(1979, 8, 8)),
]
MARKED_WITHOUT_BSN = [
    Person(None, "Ten Brink", dt.date(1996, 3, 21)),
    Person(None, "Çelik", dt.date(2001, 12, 24)),
]
# Looked up at ZSM but known nowhere.
UNKNOWN = [Person("192837461", "De Groot-Visser", dt.date(1985, 5, 17))]
HOUSES = ["vh-rotterdam-rijnmond", "vh-regio-utrecht-utrecht", "vh-twente", "vh-breda"]
# waarom-informatie, sealed at rest: neither the advice nor an A&T field is stored in clear.
ADVICE = "dagvaarden; zie plan"
OPEN_CASES = "Openstaande zaak wegens XYZZY"
SEALED_TEXT = ["dagvaarden", "XYZZY"]


def forbidden_strings(ring: KeyRing) -> set[str]:
    """Every form in which a person's identifiers, or a key, could leak."""
    found: set[str] = set()
    for person in [*MARKED, *MARKED_WITHOUT_BSN, *UNKNOWN]:
        if person.bsn:
            found.add(person.bsn)
        assert person.surname and person.birth_date
        surname = person.surname
        found |= {surname, surname.lower(), surname.upper(), normalise_surname(surname)}
        found |= {w for w in surname.lower().replace("-", " ").split() if len(w) > 3}
        found |= {person.birth_date.isoformat(), person.birth_date.strftime("%d-%m-%Y")}
    for secret in ring.values():
        found.add(base64.b64encode(secret).decode())
    return found


def forbidden_bytes(ring: KeyRing) -> set[bytes]:
    found = {s.encode() for s in forbidden_strings(ring)}
    found |= {s.encode("utf-16-le") for s in forbidden_strings(ring) if len(s) > 4}
    return found | set(ring.values())


def use_the_registry(registry: RunningRegistry, ring: KeyRing) -> None:
    """Sync every marked person (some in two regions), then look everyone up in every way."""
    changes = [
        Marking(
            person,
            f"rec-{i}-{house}",
            house=house,
            advice=ADVICE,
            at_information={"open_cases": OPEN_CASES},
        ).upsert(ring)
        for i, person in enumerate([*MARKED, *MARKED_WITHOUT_BSN])
        for house in HOUSES[: 1 + i % 2]
    ]
    bad = Marking(MARKED[0], "rec-bad", house="vh-nowhere").upsert(ring)
    response = registry.sync(*changes, bad)
    assert (response.created, response.rejected) == (len(changes), 1)
    for person in [*MARKED, *MARKED_WITHOUT_BSN, *UNKNOWN]:
        registry.lookup(subject(ring, person))
        registry.lookup(subject(ring, Person(None, person.surname, person.birth_date)))
    entries = [
        pb.BatchLookupEntry(ref=f"monitor-{i}", subject=subject(ring, person))
        for i, person in enumerate([*MARKED, *UNKNOWN])
    ]
    list(registry.stub.BatchLookup(iter([batch_request(entries)]), timeout=10))
    # A tombstone, so erased rows are checked too.
    registry.sync(Marking(MARKED[3], f"rec-3-{HOUSES[0]}", house=HOUSES[0]).tombstone(version=2))


def table_text(registry: RunningRegistry) -> str:
    """Every row of every table, as the database itself renders it as text."""
    lines = [repr(registry.tables())]
    with registry.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            if connection.dialect.name == "postgresql":
                query = text(f'SELECT CAST(t AS text) FROM "{table}" AS t')  # noqa: S608
                lines += [row[0] for row in connection.execute(query)]
            else:
                query = text(f'SELECT * FROM "{table}"')  # noqa: S608
                lines += [repr(tuple(row)) for row in connection.execute(query)]
    return "\n".join(lines)


def test_no_bsn_name_birth_date_advice_or_a_and_t_text_is_stored(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    use_the_registry(registry, ring)
    # The registry still opens what it sealed.
    [marker] = registry.lookup(subject(ring, MARKED[0])).markers
    assert (marker.advice.text, marker.at_information.open_cases) == (ADVICE, OPEN_CASES)

    stored = table_text(registry)
    assert stored.count("rec-") > len(MARKED)  # the dump holds the data
    for forbidden in [*forbidden_strings(ring), *SEALED_TEXT]:
        assert forbidden not in stored

    if registry.engine.dialect.name == "sqlite":
        files = sorted(registry.data_dir.iterdir())
        assert {f.name for f in files} >= {"registry.db", "registry.db-wal"}
        raw = b"".join(f.read_bytes() for f in files)
        assert b"rec-1-" in raw
        for forbidden_raw in [*forbidden_bytes(ring), *(t.encode() for t in SEALED_TEXT)]:
            assert forbidden_raw not in raw


def test_no_bsn_name_birth_date_advice_or_key_is_logged(
    json_logs: Callable[[], str], registry: RunningRegistry, ring: KeyRing
) -> None:
    use_the_registry(registry, ring)

    output = json_logs()

    for forbidden in [*forbidden_strings(ring), *SEALED_TEXT]:
        assert forbidden not in output
    assert "registry ready" in output
    rpc_lines = [json.loads(line) for line in output.splitlines() if '"event": "rpc"' in line]
    methods = [line["method"].rsplit("/", 1)[-1] for line in rpc_lines]
    assert methods.count("Lookup") == 2 * len([*MARKED, *MARKED_WITHOUT_BSN, *UNKNOWN])
    assert methods.count("SyncMarkers") == 3  # one stream per adapter and sync
    assert methods.count("BatchLookup") == 1
    for line in rpc_lines:
        assert line["code"] == "OK"
        assert line["request_id"]
        assert isinstance(line["duration_ms"], float | int)
    assert len({line["request_id"] for line in rpc_lines}) == len(rpc_lines)
