"""Matchingsmelding in the registry: when a second house marks a person another house marks (by
BSN pseudonym), the SyncMarkers transaction records the pair once and writes two MATCH signals,
one for each house, naming only the other house and its target group; PullSignals hands them to
the feedback service. Again after a marker ends and returns; never for a name + birth-date
match."""

from __future__ import annotations

import datetime as dt

from builders import Marking, Person, subject, valid_bsns
from harness import RunningRegistry

from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2
from baken.registry.v1 import registry_service_pb2 as pb
from baken.type.v1 import pseudonym_pb2
from services.accesslog import store as access_log
from services.registry import matches

_bsns = valid_bsns(31_415_926)
PERSON = Person(bsn=next(_bsns))
OTHER = Person(bsn=next(_bsns))
FEEDBACK = "feedback"
UTRECHT = "vh-regio-utrecht-utrecht"
ROTTERDAM = "vh-rotterdam-rijnmond"
BREDA = "vh-breda"


def pulled(registry: RunningRegistry) -> list[pb.Signal]:
    response = registry.stub_for(FEEDBACK).PullSignals(pb.PullSignalsRequest(), timeout=10)
    return [s for s in response.signals if s.kind == pb.SIGNAL_KIND_MATCH]


def told(signals: list[pb.Signal]) -> list[tuple[str, str, str, int]]:
    return sorted(
        (s.house, s.source_record_id, s.other_house, s.other_target_group) for s in signals
    )


def test_the_kinds_are_the_wires() -> None:
    assert matches.BSN_KIND == pseudonym_pb2.PSEUDONYM_KIND_BSN
    assert matches.FLOWED_IN == pb.SIGNAL_KIND_FLOWED_IN
    assert matches.MATCH == pb.SIGNAL_KIND_MATCH


def test_a_second_house_marking_the_person_tells_both_of_each_other(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring))
    assert pulled(registry) == []

    registry.sync(
        Marking(
            PERSON, "gcos-1", house=UTRECHT, target_group=marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD
        ).upsert(ring)
    )

    signals = pulled(registry)
    assert told(signals) == [
        (f"houses/{UTRECHT}", "gcos-1", f"houses/{ROTTERDAM}", marker_pb2.TARGET_GROUP_VEELPLEGER),
        (
            f"houses/{ROTTERDAM}",
            "pga-1",
            f"houses/{UTRECHT}",
            marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD,
        ),
    ]
    for s in signals:
        # Nothing of the flowing in: no case, no ZSM desk.
        assert (s.case_reference, s.zsm_location) == ("", "")
    # Both signals cite one access-log entry: the pair's, under the adapter's sync, with the
    # person's pseudonym as its subject.
    (seq,) = {s.access_log_entry for s in signals}
    with registry.engine.connect() as connection:
        (stored,) = [e for e in access_log.search(connection, limit=1000) if e.seq == seq]
    assert stored.outcome == "matched"
    assert stored.body["processing_activity"] == "baken:matchingsmelding"
    assert stored.body["operation"].endswith("/SyncMarkers")
    assert stored.party_id == "adapter-gcos"
    assert sorted(stored.body["houses"]) == sorted([ROTTERDAM, UTRECHT])


def test_a_resync_or_a_new_version_tells_nobody_again(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    rotterdam = Marking(PERSON, "pga-1", house=ROTTERDAM)
    utrecht = Marking(PERSON, "gcos-1", house=UTRECHT)
    registry.sync(rotterdam.upsert(ring), utrecht.upsert(ring))
    assert len(pulled(registry)) == 2

    registry.sync(rotterdam.upsert(ring), utrecht.upsert(ring))  # a replay
    changed = Marking(PERSON, "gcos-1", house=UTRECHT, version=2, advice="anders")
    registry.sync(changed.upsert(ring))

    assert len(pulled(registry)) == 2  # the same two, not yet confirmed
    assert len(registry.tables()["matches"]) == 1


def test_three_houses_are_three_pairs(registry: RunningRegistry, ring: KeyRing) -> None:
    registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring))
    registry.sync(Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring))
    registry.sync(Marking(PERSON, "gcos-2", house=BREDA).upsert(ring))

    signals = pulled(registry)
    assert len(signals) == 6
    pairs = {(s.house, s.other_house) for s in signals}
    houses = [f"houses/{h}" for h in (ROTTERDAM, UTRECHT, BREDA)]
    assert pairs == {(a, b) for a in houses for b in houses if a != b}


def test_a_marker_that_ends_and_returns_is_matched_again(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    rotterdam = Marking(PERSON, "pga-1", house=ROTTERDAM)
    registry.sync(rotterdam.upsert(ring), Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring))
    assert len(pulled(registry)) == 2

    registry.sync(rotterdam.tombstone(version=2))
    assert registry.tables()["matches"] == []
    assert len(pulled(registry)) == 2  # an end tells nobody

    registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM, version=3).upsert(ring))
    assert len(pulled(registry)) == 4


def test_one_house_marking_a_person_twice_is_no_match(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(
        Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring),
        Marking(PERSON, "gcos-9", house=UTRECHT).upsert(ring),
        Marking(OTHER, "pga-2", house=ROTTERDAM).upsert(ring),
    )
    assert pulled(registry) == []


def test_a_name_and_birth_date_alone_is_no_match(registry: RunningRegistry, ring: KeyRing) -> None:
    """A lookup finds him by name and birth date (the weaker match, for a person before the
    KPC'er); unasked, two houses are not told of each other on that alone."""
    without_bsn = Person(surname="van der Berg", birth_date=dt.date(1990, 4, 1))
    spelled = Person(surname="Berg, v.d.", birth_date=dt.date(1990, 4, 1))
    registry.sync(
        Marking(without_bsn, "pga-7", house=ROTTERDAM).upsert(ring),
        Marking(spelled, "gcos-7", house=UTRECHT).upsert(ring),
    )
    found = registry.lookup(subject(ring, without_bsn))
    assert len(found.markers) == 2  # a lookup finds both
    assert pulled(registry) == []
    assert registry.tables()["matches"] == []
