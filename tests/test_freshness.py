"""Advice freshness: CURRENT under 6 months, AGED up to and including 12 months, then EXPIRED."""

from __future__ import annotations

import datetime as dt

import pytest
from builders import Marking, Person, day_of, subject
from harness import RunningRegistry
from hypothesis import given
from hypothesis import strategies as st

from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2, registry_service_pb2
from baken.type.v1 import purpose_pb2
from services.registry.freshness import Freshness, add_months, freshness

CURRENT = marker_pb2.ADVICE_FRESHNESS_CURRENT
AGED = marker_pb2.ADVICE_FRESHNESS_AGED
EXPIRED = marker_pb2.ADVICE_FRESHNESS_EXPIRED
NO_ADVICE = marker_pb2.ADVICE_FRESHNESS_NO_ADVICE
PERSON = Person(bsn="111222333")
ADVICE = "dagvaarden met het doel een leerstraf"


def _marker_on(registry: RunningRegistry, ring: KeyRing, today: dt.date) -> marker_pb2.Marker:
    registry.set_today(today)
    response = registry.lookup(subject(ring, PERSON))
    assert response.outcome == registry_service_pb2.LOOKUP_OUTCOME_HIT
    [marker] = response.markers
    return marker


@pytest.fixture
def advised_on_15_march(registry: RunningRegistry, ring: KeyRing) -> RunningRegistry:
    """A marker whose advice was given on 15 March 2026, synced that day."""
    registry.set_today(dt.date(2026, 3, 15))
    marking = Marking(
        PERSON,
        "pga-1",
        mark_date=dt.date(2026, 3, 1),
        advice=ADVICE,
        advice_date=dt.date(2026, 3, 15),
    )
    response = registry.sync(marking.upsert(ring))
    assert response.created == 1
    return registry


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2026, 3, 15), CURRENT),
        (dt.date(2026, 9, 14), CURRENT),  # 6 months minus one day
        (dt.date(2026, 9, 15), AGED),  # exactly 6 months
        (dt.date(2027, 3, 15), AGED),  # exactly 12 months
        (dt.date(2027, 3, 16), EXPIRED),  # 12 months and a day
        (dt.date(2031, 1, 1), EXPIRED),
    ],
)
def test_freshness_of_an_advice_at_the_month_boundaries(
    advised_on_15_march: RunningRegistry, ring: KeyRing, today: dt.date, expected: int
) -> None:
    marker = _marker_on(advised_on_15_march, ring, today)
    assert marker.advice.freshness == expected
    assert day_of(marker.advice.advice_date) == dt.date(2026, 3, 15)


def test_a_current_or_aged_advice_is_disclosed(
    advised_on_15_march: RunningRegistry, ring: KeyRing
) -> None:
    assert _marker_on(advised_on_15_march, ring, dt.date(2026, 9, 14)).advice.text == ADVICE
    assert _marker_on(advised_on_15_march, ring, dt.date(2027, 3, 15)).advice.text == ADVICE


def test_an_expired_advice_is_withheld_but_the_marker_still_signals(
    advised_on_15_march: RunningRegistry, ring: KeyRing
) -> None:
    marker = _marker_on(advised_on_15_march, ring, dt.date(2027, 3, 16))
    assert marker.advice.freshness == EXPIRED
    assert marker.advice.text == ""
    # The that-signal: who marked the person, for what, and since when.
    assert marker.house.name == "houses/vh-rotterdam-rijnmond"
    assert marker.target_group == marker_pb2.TARGET_GROUP_VEELPLEGER
    assert marker.plan_status == marker_pb2.PLAN_STATUS_ACTIVE
    assert day_of(marker.mark_date) == dt.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2026, 9, 14), CURRENT),
        (dt.date(2027, 3, 15), AGED),
        (dt.date(2027, 3, 16), EXPIRED),
    ],
)
def test_advice_freshness_alone_shows_whether_an_advice_is_current_never_its_text_or_date(
    advised_on_15_march: RunningRegistry, ring: KeyRing, today: dt.date, expected: int
) -> None:
    # The test covenant grants the feedback service house, source_record and advice_freshness.
    advised_on_15_march.set_today(today)
    response = advised_on_15_march.lookup(
        subject(ring, PERSON),
        party="feedback",
        purpose=purpose_pb2.PURPOSE_TERUGKOPPELING,
        case_reference="ZSM-RR-2026-000042",
    )

    [marker] = response.markers
    assert marker.advice.freshness == expected
    assert marker.advice.text == ""
    assert not marker.advice.HasField("advice_date")
    assert marker.source_record_id == "pga-1"
    withheld = {w.field: w.reason for w in response.withheld}
    assert withheld["advice"] == registry_service_pb2.WITHHOLD_REASON_NO_COVENANT
    assert "advice_freshness" not in withheld


def test_advice_freshness_of_no_advice_says_so(registry: RunningRegistry, ring: KeyRing) -> None:
    registry.sync(Marking(PERSON, "pga-1", advice="", advice_date=None).upsert(ring))

    [marker] = registry.lookup(
        subject(ring, PERSON),
        party="feedback",
        purpose=purpose_pb2.PURPOSE_TERUGKOPPELING,
        case_reference="ZSM-RR-2026-000042",
    ).markers

    assert (marker.advice.freshness, marker.advice.text) == (NO_ADVICE, "")


def test_a_minors_advice_freshness_is_shown_where_his_advice_may_be_and_never_at_intake(
    advised_on_15_march: RunningRegistry, ring: KeyRing
) -> None:
    """At intake nothing of the houses is shown about a minor, not even whether an advice exists
    or how current it is; deciding his case, the OvJ sees both."""
    at_intake = advised_on_15_march.lookup(
        subject(ring, PERSON), subject_age=registry_service_pb2.SUBJECT_AGE_MINOR
    )
    assert at_intake.outcome == registry_service_pb2.LOOKUP_OUTCOME_MINOR_AT_INTAKE
    assert list(at_intake.markers) == []

    deciding = advised_on_15_march.lookup(
        subject(ring, PERSON),
        party="zsm-midden-nederland-ovj",
        purpose=purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
        case_reference="ZSM-MN-4711",
        subject_age=registry_service_pb2.SUBJECT_AGE_MINOR,
    )
    [marker] = deciding.markers
    assert marker.advice.freshness == CURRENT
    assert marker.advice.text


def test_freshness_follows_the_calendar_date_in_amsterdam(
    advised_on_15_march: RunningRegistry, ring: KeyRing
) -> None:
    registry = advised_on_15_march
    # Amsterdam is on CEST (UTC+2): 22:00 UTC on 14 September is midnight of the 15th there.
    registry.clock.advance(dt.datetime(2026, 9, 14, 21, 59, tzinfo=dt.UTC) - registry.clock.now())
    [marker] = registry.lookup(subject(ring, PERSON)).markers
    assert marker.advice.freshness == CURRENT
    registry.clock.advance(dt.timedelta(minutes=2))
    [marker] = registry.lookup(subject(ring, PERSON)).markers
    assert marker.advice.freshness == AGED


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2026, 2, 27), CURRENT),
        (dt.date(2026, 2, 28), AGED),  # 31 August + 6 months is clamped to 28 February
        (dt.date(2026, 8, 31), AGED),
        (dt.date(2026, 9, 1), EXPIRED),
    ],
)
def test_six_months_after_the_31st_of_august_is_the_end_of_february(
    registry: RunningRegistry, ring: KeyRing, today: dt.date, expected: int
) -> None:
    registry.set_today(dt.date(2025, 9, 1))
    marking = Marking(
        PERSON, "pga-1", mark_date=dt.date(2025, 8, 31), advice_date=dt.date(2025, 8, 31)
    )
    registry.sync(marking.upsert(ring))
    assert _marker_on(registry, ring, today).advice.freshness == expected


def test_a_marker_without_advice_has_no_advice_freshness(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1", advice="", advice_date=None).upsert(ring))
    for today in (dt.date(2026, 11, 28), dt.date(2030, 1, 1)):
        marker = _marker_on(registry, ring, today)
        assert marker.advice.freshness == NO_ADVICE
        assert marker.advice.text == ""
        assert not marker.advice.HasField("advice_date")


# --- the rule itself ----------------------------------------------------------------------------

RANK = {Freshness.CURRENT: 0, Freshness.AGED: 1, Freshness.EXPIRED: 2}


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2025, 8, 31), 6, dt.date(2026, 2, 28)),
        (dt.date(2027, 8, 31), 6, dt.date(2028, 2, 29)),
        (dt.date(2026, 3, 31), 6, dt.date(2026, 9, 30)),
        (dt.date(2024, 2, 29), 12, dt.date(2025, 2, 28)),
        (dt.date(2026, 7, 15), 6, dt.date(2027, 1, 15)),
        (dt.date(2026, 12, 31), 12, dt.date(2027, 12, 31)),
    ],
)
def test_adding_months_clamps_to_the_end_of_the_month(
    day: dt.date, months: int, expected: dt.date
) -> None:
    assert add_months(day, months) == expected


def test_no_advice_date_is_no_advice() -> None:
    assert freshness(None, dt.date(2026, 1, 1)) is Freshness.NO_ADVICE


@given(
    st.dates(dt.date(1950, 1, 1), dt.date(2100, 1, 1)),
    st.integers(0, 1000),
    st.integers(0, 1000),
)
def test_freshness_never_goes_back_as_time_passes(
    advice_date: dt.date, first: int, more: int
) -> None:
    earlier = advice_date + dt.timedelta(days=first)
    later = earlier + dt.timedelta(days=more)
    assert RANK[freshness(advice_date, earlier)] <= RANK[freshness(advice_date, later)]


@given(st.dates(dt.date(1950, 1, 1), dt.date(2100, 1, 1)))
def test_every_advice_is_current_then_aged_then_expired(advice_date: dt.date) -> None:
    six, twelve = add_months(advice_date, 6), add_months(advice_date, 12)
    one_day = dt.timedelta(days=1)
    assert freshness(advice_date, advice_date) is Freshness.CURRENT
    assert freshness(advice_date, six - one_day) is Freshness.CURRENT
    assert freshness(advice_date, six) is Freshness.AGED
    assert freshness(advice_date, twelve) is Freshness.AGED
    assert freshness(advice_date, twelve + one_day) is Freshness.EXPIRED
    assert (six - advice_date).days + 3 >= 181 and (twelve - advice_date).days in (365, 366)
