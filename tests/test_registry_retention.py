"""The registry's own retention (docs/RETENTION.md): a marker whose plan ended lapses a year
later even though its source never deletes it, and its source's replays do not bring it back;
signals nobody took over and matches go after their periods; nothing live goes, and every run
that removes something says so in the access log. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from builders import Marking, Person, subject, valid_bsns
from harness import RunningRegistry

from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2
from baken.registry.v1 import registry_service_pb2 as pb
from services.accesslog import store as access_log
from services.common.settings import RetentionSettings

_bsns = valid_bsns(27_182_818)
PERSON = Person(bsn=next(_bsns))
OTHER = Person(bsn=next(_bsns))
ROTTERDAM = "vh-rotterdam-rijnmond"
UTRECHT = "vh-regio-utrecht-utrecht"
DAY = dt.timedelta(days=1)
SCHEDULE = RetentionSettings()
HIT, NO_HIT = pb.LOOKUP_OUTCOME_HIT, pb.LOOKUP_OUTCOME_NO_HIT


def ended(person: Person, record_id: str, version: int = 1) -> Marking:
    return Marking(person, record_id, version=version, plan_status=marker_pb2.PLAN_STATUS_CLOSED)


def expiry_entries(registry: RunningRegistry) -> list[dict[str, int]]:
    with registry.engine.connect() as connection:
        entries = access_log.search(connection, limit=10_000)
    return [e.body["expired"] for e in entries if e.outcome == "expired"]


def test_a_marker_whose_plan_ended_lapses_after_the_period_and_a_replay_keeps_it_gone(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    closed, active = ended(PERSON, "pga-1"), Marking(OTHER, "pga-2")
    registry.sync(closed.upsert(ring), active.upsert(ring))
    registry.clock.advance(SCHEDULE.marker_lapse_days * DAY - dt.timedelta(minutes=1))
    assert registry.expire() == {}
    assert registry.lookup(subject(ring, PERSON)).outcome == HIT

    registry.clock.advance(dt.timedelta(minutes=2))
    assert registry.expire() == {"markers_lapsed": 1}

    assert registry.lookup(subject(ring, PERSON)).outcome == NO_HIT
    (row,) = [r for r in registry.tables()["markers"] if r["source_record_id"] == "pga-1"]
    assert (row["deleted"], row["source_version"], row["advice"], row["plan_status"]) == (
        True,
        1,
        None,
        None,
    )
    assert registry.lookup(subject(ring, OTHER)).outcome == HIT  # a plan at work never lapses
    # The source that forgot to delete it sends it again as it was: it stays lapsed.
    assert registry.sync(closed.upsert(ring)).unchanged == 1
    assert registry.lookup(subject(ring, PERSON)).outcome == NO_HIT
    # A new version (the house took him on again) is a new marker.
    reopened = Marking(PERSON, "pga-1", version=2)
    assert registry.sync(reopened.upsert(ring)).created == 1
    assert registry.lookup(subject(ring, PERSON)).outcome == HIT
    assert expiry_entries(registry) == [{"markers_lapsed": 1}]


def test_a_signal_nobody_took_over_goes_after_its_period_and_its_entry_may_go_later(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1").upsert(ring))
    registry.lookup(subject(ring, PERSON))
    assert len(registry.tables()["signals"]) == 1

    registry.clock.advance(SCHEDULE.signal_days * DAY - dt.timedelta(minutes=1))
    assert registry.expire() == {}
    registry.clock.advance(dt.timedelta(minutes=2))
    assert registry.expire() == {"signals": 1}
    assert registry.tables()["signals"] == []
    assert expiry_entries(registry) == [{"signals": 1}]


def test_a_match_goes_after_its_period_and_the_markers_stay(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1", house=ROTTERDAM).upsert(ring))
    registry.sync(Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring))
    assert len(registry.tables()["matches"]) == 1

    registry.clock.advance(SCHEDULE.match_days * DAY + DAY)
    # Its two MATCH signals, never taken over here, had their (shorter) period too.
    assert registry.expire() == {"matches": 1, "signals": 2}
    assert registry.tables()["matches"] == []
    assert len([r for r in registry.tables()["markers"] if not r["deleted"]]) == 2


def test_a_lapsed_marker_forgets_its_pairs_so_a_return_is_told_again(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(ended(PERSON, "pga-1").upsert(ring))
    registry.sync(Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring))
    assert len(registry.tables()["matches"]) == 1

    registry.clock.advance(SCHEDULE.marker_lapse_days * DAY + DAY)
    assert registry.expire() == {"markers_lapsed": 1, "signals": 2}
    assert registry.tables()["matches"] == []  # the pair went with the lapsed marker
    registry.sync(Marking(PERSON, "pga-1", version=2).upsert(ring))
    assert len(registry.tables()["matches"]) == 1
