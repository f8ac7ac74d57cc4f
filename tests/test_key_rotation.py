"""Key rotation: a lookup hits at every step of add key -> resync -> retire key -> resync."""

from __future__ import annotations

import datetime as dt

from builders import Marking, Person, subject
from harness import RunningRegistry

from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2

HIT = registry_service_pb2.LOOKUP_OUTCOME_HIT
NO_HIT = registry_service_pb2.LOOKUP_OUTCOME_NO_HIT
PERSON = Person(bsn="111222333", surname="Öztürk", birth_date=dt.date(1995, 5, 5))


def _key_ids(registry: RunningRegistry) -> set[str]:
    rows = registry.tables()["marker_pseudonyms"]
    return {row["key_id"] for row in rows}


def test_a_rotation_keeps_every_lookup_hitting_and_retires_the_old_key(
    registry: RunningRegistry,
) -> None:
    k1 = KeyRing.generate("k1")
    k1_k2 = k1.with_new_key("k2")
    k2 = k1_k2.without_key("k1")
    marking = Marking(PERSON, "pga-1")

    # Markers synced under k1 only still hit for a ZSM client that already has {k1, k2}.
    assert registry.sync(marking.upsert(k1)).created == 1
    assert registry.lookup(subject(k1_k2, PERSON)).outcome == HIT
    assert registry.lookup(subject(k2, PERSON)).outcome == NO_HIT

    # The adapter resyncs under {k1, k2}: same version, only the pseudonyms differ.
    resync = registry.sync(marking.upsert(k1_k2))
    assert (resync.updated, resync.created, resync.unchanged) == (1, 0, 0)
    assert _key_ids(registry) == {"k1", "k2"}
    for ring in (k1, k1_k2, k2):
        assert registry.lookup(subject(ring, PERSON)).outcome == HIT

    # k1 is retired at the adapter: resync under {k2} only.
    retired = registry.sync(marking.upsert(k2))
    assert retired.updated == 1
    assert _key_ids(registry) == {"k2"}
    assert registry.lookup(subject(k2, PERSON)).outcome == HIT
    assert registry.lookup(subject(k1_k2, PERSON)).outcome == HIT
    assert registry.lookup(subject(k1, PERSON)).outcome == NO_HIT

    # And a further resync under {k2} is a plain replay.
    assert registry.sync(marking.upsert(k2)).unchanged == 1


def test_a_lookup_under_two_keys_lists_each_marker_once(registry: RunningRegistry) -> None:
    both = KeyRing.generate("k1").with_new_key("k2")
    registry.sync(
        Marking(PERSON, "pga-1").upsert(both),
        Marking(PERSON, "gcos-1", house="vh-markiezaten").upsert(both),
    )

    response = registry.lookup(subject(both, PERSON))

    assert len(response.markers) == 2
    assert len({m.name for m in response.markers}) == 2


def test_a_rekeying_resync_keeps_the_marker_content(registry: RunningRegistry) -> None:
    k1 = KeyRing.generate("k1")
    k1_k2 = k1.with_new_key("k2")
    marking = Marking(PERSON, "pga-1", at_information={"supervisions": "3RO"})
    registry.sync(marking.upsert(k1))
    [before] = registry.lookup(subject(k1, PERSON)).markers

    registry.sync(marking.upsert(k1_k2))

    [after] = registry.lookup(subject(k1_k2, PERSON)).markers
    assert after == before
