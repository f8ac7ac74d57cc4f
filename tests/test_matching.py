"""Matchingsmelding in the registry: when a second house marks a person another house marks (by
BSN pseudonym), the SyncMarkers transaction records the pair once and writes two MATCH signals,
one for each house, naming only the other house and its target group; PullSignals hands them to
the feedback service. Again after a marker ends and returns; never for a name + birth-date
match."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

from builders import Marking, Person, subject, valid_bsns
from feedback_harness import running_feedback
from harness import RunningRegistry
from sqlalchemy import Engine

from baken.feedback.v1 import feedback_service_pb2 as fpb
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


# --- The feedback service: two MATCH items per pair, under the covenants ----------------------


def match_items(feedback: Any) -> list[fpb.Delivery]:
    return [
        feedback.stored(row)
        for row in feedback.tables()["deliveries"]
        if row["kind"] == fpb.DELIVERY_KIND_MATCH
    ]


def test_both_houses_get_one_match_naming_the_other_and_nothing_else(feedback: Any) -> None:
    ring = feedback.ring
    feedback.registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring))
    feedback.registry.sync(
        Marking(PERSON, "gcos-1", house=UTRECHT, target_group=marker_pb2.TARGET_GROUP_JEUGD).upsert(
            ring
        )
    )
    feedback.server.follower.follow_once()

    items = {i.house: i for i in match_items(feedback)}
    assert sorted(items) == [f"houses/{UTRECHT}", f"houses/{ROTTERDAM}"]
    to_rotterdam, to_utrecht = items[f"houses/{ROTTERDAM}"], items[f"houses/{UTRECHT}"]
    assert to_rotterdam.source_record_id == "pga-1"
    assert to_rotterdam.match.house == f"houses/{UTRECHT}"
    assert to_rotterdam.match.target_group == marker_pb2.TARGET_GROUP_JEUGD
    assert to_rotterdam.match.contact.phone and to_rotterdam.match.contact.after_hours_phone
    assert to_rotterdam.match.house_display_name
    assert to_utrecht.source_record_id == "gcos-1"
    assert to_utrecht.match.house == f"houses/{ROTTERDAM}"
    assert to_utrecht.match.target_group == marker_pb2.TARGET_GROUP_VEELPLEGER
    for item in items.values():
        assert not item.withheld
        # Nothing else: no case, no desk, no decision, no advice, not the other's record.
        assert (item.case_reference, item.zsm_location, item.question) == ("", "", "")
        assert not item.HasField("decision") and not item.HasField("referral")
        assert "pga-1" not in str(item.match) and "gcos-1" not in str(item.match)
        assert b"dagvaarden" not in item.SerializeToString()

    # A resync sends nothing new; the same signals taken over again dedupe by key.
    feedback.registry.sync(
        Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring),
        Marking(PERSON, "gcos-1", house=UTRECHT, target_group=marker_pb2.TARGET_GROUP_JEUGD).upsert(
            ring
        ),
    )
    feedback.server.follower.follow_once()
    assert len(match_items(feedback)) == 2


def test_three_houses_six_items_and_a_return_tells_again(feedback: Any) -> None:
    ring = feedback.ring
    for record, house in (("pga-1", ROTTERDAM), ("gcos-1", UTRECHT), ("gcos-2", BREDA)):
        feedback.registry.sync(Marking(PERSON, record, house=house).upsert(ring))
    feedback.server.follower.follow_once()
    assert len(match_items(feedback)) == 6

    feedback.registry.sync(Marking(PERSON, "gcos-2", house=BREDA).tombstone(version=2))
    feedback.registry.sync(Marking(PERSON, "gcos-2", house=BREDA, version=3).upsert(ring))
    feedback.server.follower.follow_once()
    items = match_items(feedback)
    assert len(items) == 10  # Breda's two pairs, told again
    told_breda = [i for i in items if i.match.house == f"houses/{BREDA}"]
    assert len(told_breda) == 4


def test_the_match_is_logged_as_a_disclosure_per_house(feedback: Any) -> None:
    ring = feedback.ring
    feedback.registry.sync(
        Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring),
        Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring),
    )
    feedback.server.follower.follow_once()
    with feedback.engine.connect() as connection:
        entries = access_log.search(connection, limit=100)
    (matched,) = [e for e in entries if e.body["processing_activity"] == "baken:matchingsmelding"]
    assert sorted(i["house"] for i in matched.body["items"]) == sorted([ROTTERDAM, UTRECHT])
    assert all(i["kind"] == "DELIVERY_KIND_MATCH" for i in matched.body["items"])
    assert all(i["fields"] == {"feedback.match": ANY} for i in matched.body["items"])


def test_a_covenant_that_withholds_matching_sends_nothing_and_says_so(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
) -> None:
    covenants = tmp_path / "covenants"
    shutil.copytree(shipped_registry.settings.covenants_dir, covenants)
    zwb = covenants / "zeeland-west-brabant.toml"
    zwb.write_text(zwb.read_text().replace('    "feedback.match",\n', ""))
    with running_feedback(
        shipped_registry, ring, tmp_path, engines, covenants_dir=covenants
    ) as feedback:
        feedback.registry.sync(
            Marking(PERSON, "gcos-2", house=BREDA).upsert(ring),
            Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring),
        )
        feedback.server.follower.follow_once()
        assert [i.house for i in match_items(feedback)] == [f"houses/{ROTTERDAM}"]
        with feedback.engine.connect() as connection:
            entries = access_log.search(connection, limit=100)
        (matched,) = [
            e for e in entries if e.body["processing_activity"] == "baken:matchingsmelding"
        ]
        assert matched.body["not_routed"] == [{"house": BREDA, "reason": "NO_COVENANT"}]
