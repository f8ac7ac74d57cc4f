"""Lookup and BatchLookup: one nationwide answer per person, strongest match first."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from builders import HOUSES, Marking, Person, day_of, problem, problem_of_status, subject
from harness import RunningRegistry, batch_request

from baken.clock import AMSTERDAM
from baken.keyring import KeyRing
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2
from baken.type.v1 import pseudonym_pb2

pb = registry_service_pb2
HIT = pb.LOOKUP_OUTCOME_HIT
NO_HIT = pb.LOOKUP_OUTCOME_NO_HIT

# A travelling repeat offender, known in Rotterdam (PGA) and in Utrecht (GCOS).
TRAVELLER = Person(bsn="111222333", surname="Van der Berg", birth_date=dt.date(1991, 6, 14))
STRANGER = Person(bsn="123456782")
# Known without a BSN: only by surname and date of birth.
NO_BSN = Person(surname="Yılmaz", birth_date=dt.date(2001, 2, 3))


def test_a_person_marked_in_two_regions_is_found_nationwide(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    rotterdam = Marking(TRAVELLER, "pga-7781", house="vh-rotterdam-rijnmond")
    utrecht = Marking(
        TRAVELLER,
        "gcos-20931",
        house="vh-regio-utrecht-utrecht",
        target_group=marker_pb2.TARGET_GROUP_HIT,
        plan_status=marker_pb2.PLAN_STATUS_IN_PREPARATION,
    )
    registry.sync(rotterdam.upsert(ring), utrecht.upsert(ring))

    response = registry.lookup(subject(ring, Person(bsn=TRAVELLER.bsn)))

    assert response.outcome == HIT
    assert response.match_quality == marker_pb2.MATCH_QUALITY_BSN
    by_house = {m.house.name: m for m in response.markers}
    assert set(by_house) == {"houses/vh-rotterdam-rijnmond", "houses/vh-regio-utrecht-utrecht"}
    pga = by_house["houses/vh-rotterdam-rijnmond"]
    gcos = by_house["houses/vh-regio-utrecht-utrecht"]
    # The reference data, and the line that answers at the time of the look-up: NOW is a
    # Saturday, when the desk is closed and its piket answers.
    expected = HOUSES["vh-rotterdam-rijnmond"].to_proto()
    expected.contact.call_now = house_pb2.CONTACT_LINE_AFTER_HOURS
    expected.contact.call_now_phone = expected.contact.after_hours_phone
    assert pga.house == expected
    assert (pga.source_system, pga.house.region) == (
        house_pb2.SOURCE_SYSTEM_PGA,
        "rotterdam-rijnmond",
    )
    assert (gcos.source_system, gcos.house.region) == (
        house_pb2.SOURCE_SYSTEM_GCOS,
        "midden-nederland",
    )
    assert gcos.house.region_display_name == "Midden-Nederland"
    for marker in (pga, gcos):
        assert marker.house.contact.role
        assert marker.house.contact.email
        assert marker.name.startswith(f"{marker.house.name}/markers/")
    assert (gcos.target_group, gcos.plan_status) == (
        marker_pb2.TARGET_GROUP_HIT,
        marker_pb2.PLAN_STATUS_IN_PREPARATION,
    )
    assert gcos.source_record_id == "gcos-20931"


def test_a_marker_keeps_its_name_across_updates(registry: RunningRegistry, ring: KeyRing) -> None:
    marking = Marking(TRAVELLER, "pga-1")
    registry.sync(marking.upsert(ring))
    [before] = registry.lookup(subject(ring, TRAVELLER)).markers
    marking.version = 2
    registry.sync(marking.upsert(ring))
    [after] = registry.lookup(subject(ring, TRAVELLER)).markers
    assert after.name == before.name
    assert after.source_version == 2


def test_a_miss_is_a_no_hit_not_an_error(registry: RunningRegistry, ring: KeyRing) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1").upsert(ring))

    response = registry.lookup(subject(ring, STRANGER))

    assert response.outcome == NO_HIT
    assert list(response.markers) == []
    assert response.match_quality == marker_pb2.MATCH_QUALITY_UNSPECIFIED


def test_an_empty_registry_answers_no_hit(registry: RunningRegistry, ring: KeyRing) -> None:
    assert registry.lookup(subject(ring, TRAVELLER)).outcome == NO_HIT


def test_a_name_and_birth_date_match_is_weaker_and_sorts_after_a_bsn_match(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    # The name-only marker is in a house that sorts first, so the order is the match's doing.
    by_bsn = Marking(Person(bsn=TRAVELLER.bsn), "pga-1", house="vh-zuid-holland-zuid")
    by_name = Marking(
        Person(surname="van der Berg", birth_date=TRAVELLER.birth_date), "gcos-1", house="vh-almere"
    )
    registry.sync(by_name.upsert(ring), by_bsn.upsert(ring))

    response = registry.lookup(subject(ring, TRAVELLER))

    assert response.outcome == HIT
    assert response.match_quality == marker_pb2.MATCH_QUALITY_BSN
    assert [(m.house.name, m.match_quality) for m in response.markers] == [
        ("houses/vh-zuid-holland-zuid", marker_pb2.MATCH_QUALITY_BSN),
        ("houses/vh-almere", marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE),
    ]


def test_a_person_without_bsn_is_found_by_name_and_birth_date_only(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(NO_BSN, "amz-1", house="vh-twente").upsert(ring))

    # ZSM writes the name differently; normalisation makes it match.
    response = registry.lookup(
        subject(ring, Person(surname="YILMAZ", birth_date=NO_BSN.birth_date))
    )

    assert response.outcome == HIT
    assert response.match_quality == marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE
    [marker] = response.markers
    assert marker.match_quality == marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE
    other_day = Person(surname="Yılmaz", birth_date=dt.date(2001, 2, 4))
    assert registry.lookup(subject(ring, other_day)).outcome == NO_HIT


def test_a_marker_matched_by_bsn_and_name_is_listed_once_as_a_bsn_match(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1").upsert(ring))

    both = registry.lookup(subject(ring, TRAVELLER))
    name_only = registry.lookup(
        subject(ring, Person(surname=TRAVELLER.surname, birth_date=TRAVELLER.birth_date))
    )

    [marker] = both.markers
    assert marker.match_quality == marker_pb2.MATCH_QUALITY_BSN
    [weaker] = name_only.markers
    assert weaker.match_quality == marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE
    assert name_only.match_quality == marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE


def test_every_field_of_a_marker_round_trips(registry: RunningRegistry, ring: KeyRing) -> None:
    at_information = {
        "detention_history": "2024: 3 maanden PI Dordrecht",
        "antecedents": "12 antecedenten, waarvan 4 geweld",
        "open_cases": "1 openstaande zaak (winkeldiefstal)",
        "compulsory_education": "n.v.t.",
        "administrative_measures": "gebiedsverbod centrum tot 1-1-2027",
        "care_deployed": "schuldhulpverlening, ambulante ggz",
        "supervisions": "3RO toezicht lopend",
    }
    marking = Marking(
        TRAVELLER,
        "pga-42",
        version=9,
        target_group=marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD,
        plan_status=marker_pb2.PLAN_STATUS_AFTERCARE,
        mark_date=dt.date(2026, 7, 3),
        advice="dagvaarden met het doel een voorwaardelijke straf; «ä» blijft «ä» 🙂",
        advice_date=dt.date(2026, 10, 14),
        at_information=at_information,
    )
    registry.sync(marking.upsert(ring))

    [marker] = registry.lookup(subject(ring, TRAVELLER)).markers

    assert marker.source_system == house_pb2.SOURCE_SYSTEM_PGA
    assert (marker.source_record_id, marker.source_version) == ("pga-42", 9)
    assert marker.target_group == marker_pb2.TARGET_GROUP_HUISELIJK_GEWELD
    assert marker.plan_status == marker_pb2.PLAN_STATUS_AFTERCARE
    assert day_of(marker.mark_date) == dt.date(2026, 7, 3)
    assert marker.advice.text == marking.advice
    assert day_of(marker.advice.advice_date) == dt.date(2026, 10, 14)
    assert marker.advice.freshness == marker_pb2.ADVICE_FRESHNESS_CURRENT
    assert marker.at_information == marker_pb2.AtInformation(**at_information)


def test_a_marker_without_a_and_t_fields_has_no_a_and_t_information(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "gcos-1", house="vh-breda").upsert(ring))
    [marker] = registry.lookup(subject(ring, TRAVELLER)).markers
    assert not marker.HasField("at_information")


def test_some_a_and_t_fields_come_back_and_the_rest_stay_empty(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1", at_information={"open_cases": "2"}).upsert(ring))
    [marker] = registry.lookup(subject(ring, TRAVELLER)).markers
    assert marker.at_information == marker_pb2.AtInformation(open_cases="2")


# --- Whom to call: the contact point at the time of the look-up --------------------------------

WEDNESDAY = dt.date(2026, 12, 2)
OFFICE, PIKET = house_pb2.CONTACT_LINE_OFFICE, house_pb2.CONTACT_LINE_AFTER_HOURS


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=AMSTERDAM)


@pytest.mark.parametrize(
    ("moment", "line"),
    [
        (_at(WEDNESDAY, 14), OFFICE),
        (_at(WEDNESDAY, 8, 30), OFFICE),
        (_at(WEDNESDAY, 17), PIKET),
        (_at(WEDNESDAY, 2), PIKET),
        (_at(dt.date(2026, 12, 6), 14), PIKET),  # a Sunday
        (_at(dt.date(2026, 12, 25), 14), PIKET),  # Christmas Day, a Friday
    ],
    ids=["weekday-14h", "weekday-opening", "weekday-closing", "weekday-02h", "sunday", "christmas"],
)
def test_a_hit_says_which_number_answers_at_the_time_of_the_look_up(
    registry: RunningRegistry, ring: KeyRing, moment: dt.datetime, line: int
) -> None:
    registry.sync(Marking(TRAVELLER, "gcos-1", house="vh-breda").upsert(ring))
    registry.clock.advance(moment - registry.clock.now())

    [marker] = registry.lookup(subject(ring, TRAVELLER)).markers

    contact = marker.house.contact
    assert (contact.phone, contact.after_hours_phone) == ("+31 88 999 0105", "+31 88 999 0905")
    assert contact.office_hours.time_zone == "Europe/Amsterdam"
    assert contact.call_now == line
    assert contact.call_now_phone == (
        contact.phone if line == OFFICE else contact.after_hours_phone
    )


def test_a_batch_answer_says_which_number_answers_too(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "gcos-1", house="vh-breda").upsert(ring))
    registry.clock.advance(_at(WEDNESDAY, 14) - registry.clock.now())
    entry = pb.BatchLookupEntry(ref="a", subject=subject(ring, TRAVELLER))

    [by_day] = batch(registry, [entry])
    registry.clock.advance(dt.timedelta(hours=12))  # 02:00 on the Thursday
    [by_night] = batch(registry, [entry])

    assert by_day.results[0].lookup.markers[0].house.contact.call_now_phone == "+31 88 999 0105"
    assert by_night.results[0].lookup.markers[0].house.contact.call_now_phone == "+31 88 999 0905"


# --- BatchLookup --------------------------------------------------------------------------------


def batch(
    registry: RunningRegistry, *messages: list[pb.BatchLookupEntry]
) -> list[pb.BatchLookupResponse]:
    requests = [batch_request(entries) for entries in messages]
    return list(registry.stub.BatchLookup(iter(requests), timeout=10))


def test_batch_lookup_answers_every_entry_in_order_with_errors_for_the_bad_ones(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1").upsert(ring))
    short = pseudonym_pb2.Subject(
        pseudonyms=[pseudonym_pb2.Pseudonym(kind=1, key_id="k1", value=b"\x01" * 31)]
    )
    entries = [
        pb.BatchLookupEntry(ref="known", subject=subject(ring, TRAVELLER)),
        pb.BatchLookupEntry(ref="no-subject"),
        pb.BatchLookupEntry(ref="unknown", subject=subject(ring, STRANGER)),
        pb.BatchLookupEntry(ref="short", subject=short),
        pb.BatchLookupEntry(ref="", subject=subject(ring, TRAVELLER)),
        pb.BatchLookupEntry(ref="x" * 65, subject=subject(ring, TRAVELLER)),
    ]

    [response] = batch(registry, entries)

    results = response.results
    assert [r.ref for r in results] == [e.ref for e in entries]
    assert [r.WhichOneof("result") for r in results] == [
        "lookup",
        "error",
        "lookup",
        "error",
        "error",
        "error",
    ]
    assert results[0].lookup.outcome == HIT
    assert results[0].lookup.markers[0].source_record_id == "pga-1"
    assert results[2].lookup.outcome == NO_HIT
    errors = [problem_of_status(r.error) for r in results if r.HasField("error")]
    assert [(e.code, e.reason, e.domain) for e in errors] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "baken.nl")
    ] * 4
    assert [e.fields for e in errors] == [
        ["subject"],
        ["subject.pseudonyms[0].value"],
        ["ref"],
        ["ref"],
    ]


def test_batch_lookup_answers_each_message_of_the_stream(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1").upsert(ring))
    one = [pb.BatchLookupEntry(ref="a", subject=subject(ring, TRAVELLER))]
    two = [
        pb.BatchLookupEntry(ref="b", subject=subject(ring, STRANGER)),
        pb.BatchLookupEntry(ref="c", subject=subject(ring, TRAVELLER)),
    ]

    responses = batch(registry, one, two)

    assert [[(r.ref, r.lookup.outcome) for r in resp.results] for resp in responses] == [
        [("a", HIT)],
        [("b", NO_HIT), ("c", HIT)],
    ]


def test_batch_lookup_gives_the_same_answer_as_lookup(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(
        Marking(TRAVELLER, "pga-1").upsert(ring),
        Marking(TRAVELLER, "gcos-1", house="vh-zeeland").upsert(ring),
    )
    [response] = batch(registry, [pb.BatchLookupEntry(ref="a", subject=subject(ring, TRAVELLER))])
    from_batch = response.results[0].lookup
    single = registry.lookup(subject(ring, TRAVELLER))
    # Each answer has its own access-log entry; the rest is the same.
    assert single.access_log_entry == from_batch.access_log_entry + 1
    from_batch.ClearField("access_log_entry")
    single.ClearField("access_log_entry")
    assert from_batch == single


@pytest.mark.parametrize("size", [0, 1001])
def test_a_batch_message_without_entries_or_with_too_many_is_invalid_argument(
    registry: RunningRegistry, ring: KeyRing, size: int
) -> None:
    entry = pb.BatchLookupEntry(ref="a", subject=subject(ring, STRANGER))
    with pytest.raises(grpc.RpcError) as caught:
        batch(registry, [entry] * size)
    found = problem(caught.value)
    assert (found.code, found.reason, found.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["entries"],
    )


def test_a_batch_of_1000_entries_is_answered(registry: RunningRegistry, ring: KeyRing) -> None:
    registry.sync(Marking(TRAVELLER, "pga-1").upsert(ring))
    entries = [
        pb.BatchLookupEntry(
            ref=str(i), subject=subject(ring, TRAVELLER if i % 100 == 0 else STRANGER)
        )
        for i in range(1000)
    ]
    [response] = batch(registry, entries)
    hits = [r.ref for r in response.results if r.lookup.outcome == HIT]
    assert len(response.results) == 1000
    assert hits == [str(i) for i in range(0, 1000, 100)]
