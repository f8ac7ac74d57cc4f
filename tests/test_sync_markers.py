"""SyncMarkers: counts, idempotent replay, versions, per-item rejections and tombstones."""

from __future__ import annotations

import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from builders import (
    HOUSES,
    TODAY,
    Marking,
    Person,
    date_pb,
    problem,
    subject,
    tombstone,
    upsert,
    valid_bsns,
)
from google.type import date_pb2
from harness import RunningRegistry, secure_channel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baken.keyring import KeyRing
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2
from services.registry.server import create_server

HIT = registry_service_pb2.LOOKUP_OUTCOME_HIT
NO_HIT = registry_service_pb2.LOOKUP_OUTCOME_NO_HIT


def counts(response: registry_service_pb2.SyncMarkersResponse) -> dict[str, int]:
    return {
        "created": response.created,
        "updated": response.updated,
        "deleted": response.deleted,
        "unchanged": response.unchanged,
        "rejected": response.rejected,
    }


def nothing_but(**expected: int) -> dict[str, int]:
    return {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "rejected": 0} | expected


def markings(n: int, **fields: object) -> list[Marking]:
    bsns = valid_bsns()
    return [
        Marking(Person(bsn=next(bsns)), record_id=f"pga-{i}", **fields)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_a_stream_reports_created_updated_deleted_unchanged_and_rejected(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    a, b, c, d = markings(4)
    first = registry.sync(a.upsert(ring), b.upsert(ring), c.upsert(ring))
    assert counts(first) == nothing_but(created=3)

    b.version, b.plan_status = 2, marker_pb2.PLAN_STATUS_AFTERCARE
    bad = Marking(d.person, record_id="pga-bad", house="vh-nowhere")
    second = registry.sync_messages(
        [
            registry_service_pb2.SyncMarkersRequest(changes=[a.upsert(ring), b.upsert(ring)]),
            registry_service_pb2.SyncMarkersRequest(
                changes=[c.tombstone(), d.upsert(ring), bad.upsert(ring)]
            ),
        ]
    )
    assert counts(second) == nothing_but(created=1, updated=1, deleted=1, unchanged=1, rejected=1)
    [rejection] = second.rejections
    # The index counts over the whole stream, across messages.
    assert rejection.index == 4
    assert rejection.reason == "INVALID_MARKER"
    assert rejection.house == "houses/vh-nowhere"
    assert rejection.source_record_id == "pga-bad"
    assert [v.field for v in rejection.field_violations] == ["upsert.house"]


def test_replaying_a_stream_changes_nothing(registry: RunningRegistry, ring: KeyRing) -> None:
    live = markings(6)
    live[1].advice, live[1].advice_date = "", None
    live[2].at_information = {"antecedents": "inbraak 2025", "open_cases": "1 zaak"}
    stream = [
        *(m.upsert(ring) for m in live),
        live[3].tombstone(),
        tombstone("vh-zuid-holland-zuid", "never-seen", 4),
    ]
    first = registry.sync(*stream, per_message=3)
    assert counts(first) == nothing_but(created=6, deleted=1, unchanged=1)
    before = registry.tables()

    registry.clock.advance(dt.timedelta(days=3))
    replay = registry.sync(*stream, per_message=3)

    assert counts(replay) == nothing_but(unchanged=len(stream))
    assert registry.tables() == before


def test_a_higher_version_updates_the_marker(registry: RunningRegistry, ring: KeyRing) -> None:
    [marking] = markings(1)
    registry.sync(marking.upsert(ring))
    marking.version = 7
    marking.plan_status = marker_pb2.PLAN_STATUS_CLOSED
    marking.advice = "geen nieuwe afspraken; sepot overwegen"
    marking.advice_date = dt.date(2026, 11, 1)

    assert counts(registry.sync(marking.upsert(ring))) == nothing_but(updated=1)

    [marker] = registry.lookup(subject(ring, marking.person)).markers
    assert marker.source_version == 7
    assert marker.plan_status == marker_pb2.PLAN_STATUS_CLOSED
    assert marker.advice.text == "geen nieuwe afspraken; sepot overwegen"


def test_a_lower_version_is_a_stale_replay_that_changes_nothing(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    marking.version = 5
    registry.sync(marking.upsert(ring))
    before = registry.tables()
    marking.version = 4
    marking.advice = "ouder advies"

    assert counts(registry.sync(marking.upsert(ring))) == nothing_but(unchanged=1)

    assert registry.tables() == before
    [marker] = registry.lookup(subject(ring, marking.person)).markers
    assert marker.source_version == 5
    assert marker.advice.text != "ouder advies"


def test_the_same_version_with_other_content_is_refused_while_the_rest_lands(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    reused, other = markings(2)
    registry.sync(reused.upsert(ring))
    reused.advice = "stilletjes gewijzigd zonder nieuwe versie"

    response = registry.sync(other.upsert(ring), reused.upsert(ring))

    assert counts(response) == nothing_but(created=1, rejected=1)
    [rejection] = response.rejections
    assert rejection.index == 1
    assert rejection.reason == "VERSION_REUSED"
    assert rejection.source_system == house_pb2.SOURCE_SYSTEM_PGA
    assert [v.field for v in rejection.field_violations] == ["upsert.source_version"]
    assert registry.lookup(subject(ring, other.person)).outcome == HIT
    [marker] = registry.lookup(subject(ring, reused.person)).markers
    assert marker.advice.text != "stilletjes gewijzigd zonder nieuwe versie"


def test_the_same_record_id_in_two_houses_is_two_markers(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    dordrecht = Marking(marking.person, marking.record_id, house="vh-zuid-holland-zuid")
    response = registry.sync(marking.upsert(ring), dordrecht.upsert(ring))
    assert counts(response) == nothing_but(created=2)
    assert len(registry.lookup(subject(ring, marking.person)).markers) == 2


def _with(record: marker_pb2.MarkerRecord, **fields: object) -> marker_pb2.MarkerRecord:
    changed = marker_pb2.MarkerRecord()
    changed.CopyFrom(record)
    for name, value in fields.items():
        if value is None:
            changed.ClearField(name)
        elif isinstance(value, str | int):
            setattr(changed, name, value)
        else:
            getattr(changed, name).CopyFrom(value)
    return changed


def _short_pseudonym(record: marker_pb2.MarkerRecord) -> marker_pb2.MarkerRecord:
    changed = _with(record)
    changed.subject.pseudonyms[0].value = changed.subject.pseudonyms[0].value[:31]
    return changed


def _pseudonym_without_kind(record: marker_pb2.MarkerRecord) -> marker_pb2.MarkerRecord:
    changed = _with(record)
    changed.subject.pseudonyms[0].kind = pseudonym_pb2.PSEUDONYM_KIND_UNSPECIFIED
    return changed


def _upper_case_key_id(record: marker_pb2.MarkerRecord) -> marker_pb2.MarkerRecord:
    changed = _with(record)
    changed.subject.pseudonyms[0].key_id = "K1"
    return changed


BAD_RECORDS = {
    "unknown-house": (lambda r: _with(r, house="houses/vh-nowhere"), ["upsert.house"]),
    "house-of-another-source-system": (
        lambda r: _with(r, house="houses/vh-regio-utrecht-utrecht"),
        ["upsert.house"],
    ),
    "no-source-system": (lambda r: _with(r, source_system=0), ["upsert.source_system"]),
    "unknown-source-system": (lambda r: _with(r, source_system=9), ["upsert.source_system"]),
    "missing-pseudonyms": (lambda r: _with(r, subject=None), ["upsert.subject"]),
    "31-byte-pseudonym": (_short_pseudonym, ["upsert.subject.pseudonyms[0].value"]),
    "pseudonym-without-kind": (_pseudonym_without_kind, ["upsert.subject.pseudonyms[0].kind"]),
    "upper-case-key-id": (_upper_case_key_id, ["upsert.subject.pseudonyms[0].key_id"]),
    "future-mark-date": (
        lambda r: _with(r, mark_date=date_pb(TODAY + dt.timedelta(days=1))),
        ["upsert.mark_date"],
    ),
    "no-mark-date": (lambda r: _with(r, mark_date=None), ["upsert.mark_date"]),
    "mark-date-before-1900": (
        lambda r: _with(r, mark_date=date_pb(dt.date(1899, 12, 31))),
        ["upsert.mark_date"],
    ),
    "impossible-mark-date": (
        lambda r: _with(r, mark_date=date_pb2.Date(year=2026, month=2, day=30)),
        ["upsert.mark_date"],
    ),
    "future-advice-date": (
        lambda r: _with(r, advice_date=date_pb(TODAY + dt.timedelta(days=1))),
        ["upsert.advice_date"],
    ),
    "advice-without-advice-date": (lambda r: _with(r, advice_date=None), ["upsert.advice_date"]),
    "advice-date-without-advice": (lambda r: _with(r, advice=""), ["upsert.advice_date"]),
    "nul-in-advice": (lambda r: _with(r, advice="dagvaarden\x00"), ["upsert.advice"]),
    "advice-too-long": (lambda r: _with(r, advice="x" * 2001), ["upsert.advice"]),
    "nul-in-at-field": (
        lambda r: _with(r, at_information=marker_pb2.AtInformation(antecedents="a\x00b")),
        ["upsert.at_information.antecedents"],
    ),
    "empty-record-id": (lambda r: _with(r, source_record_id=""), ["upsert.source_record_id"]),
    "nul-in-record-id": (lambda r: _with(r, source_record_id="r\x00"), ["upsert.source_record_id"]),
    "newline-ending-record-id": (
        lambda r: _with(r, source_record_id="pga-1\n"),
        ["upsert.source_record_id"],
    ),
    "record-id-too-long": (
        lambda r: _with(r, source_record_id="r" * 129),
        ["upsert.source_record_id"],
    ),
    "zero-version": (lambda r: _with(r, source_version=0), ["upsert.source_version"]),
    "negative-version": (lambda r: _with(r, source_version=-3), ["upsert.source_version"]),
    "no-target-group": (lambda r: _with(r, target_group=0), ["upsert.target_group"]),
    "no-plan-status": (lambda r: _with(r, plan_status=0), ["upsert.plan_status"]),
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_one_bad_item_is_rejected_naming_the_field_and_the_rest_lands(
    registry: RunningRegistry, ring: KeyRing, case: str
) -> None:
    spoil, fields = BAD_RECORDS[case]
    before, spoilt, after = markings(3)
    response = registry.sync(
        before.upsert(ring), upsert(spoil(spoilt.record(ring))), after.upsert(ring)
    )

    assert counts(response) == nothing_but(created=2, rejected=1)
    [rejection] = response.rejections
    assert rejection.index == 1
    assert rejection.reason == "INVALID_MARKER"
    assert [v.field for v in rejection.field_violations] == fields
    assert all(v.description for v in rejection.field_violations)
    assert registry.lookup(subject(ring, before.person)).outcome == HIT
    assert registry.lookup(subject(ring, after.person)).outcome == HIT
    assert registry.lookup(subject(ring, spoilt.person)).outcome == NO_HIT


def test_a_record_with_many_faults_gets_one_violation_per_field(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    record = marker_pb2.MarkerRecord(source_record_id="pga-x", advice="zonder datum")
    response = registry.sync(upsert(record))
    [rejection] = response.rejections
    assert [v.field for v in rejection.field_violations] == [
        "upsert.source_system",
        "upsert.source_version",
        "upsert.house",
        "upsert.subject",
        "upsert.target_group",
        "upsert.plan_status",
        "upsert.mark_date",
        "upsert.advice_date",
    ]


def test_a_change_without_upsert_or_tombstone_is_rejected(registry: RunningRegistry) -> None:
    response = registry.sync(marker_pb2.MarkerChange())
    [rejection] = response.rejections
    assert rejection.reason == "INVALID_MARKER"
    assert [v.field for v in rejection.field_violations] == ["change"]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        (tombstone("vh-rotterdam-rijnmond", "", 1), ["tombstone.source_record_id"]),
        (tombstone("vh-rotterdam-rijnmond", "pga-0", 0), ["tombstone.source_version"]),
        (
            marker_pb2.MarkerChange(
                tombstone=marker_pb2.MarkerTombstone(
                    source_system=house_pb2.SOURCE_SYSTEM_GCOS,
                    source_record_id="pga-0",
                    source_version=2,
                    house="houses/vh-rotterdam-rijnmond",
                )
            ),
            ["tombstone.house"],
        ),
    ],
)
def test_a_bad_tombstone_is_rejected_and_deletes_nothing(
    registry: RunningRegistry, ring: KeyRing, change: marker_pb2.MarkerChange, fields: list[str]
) -> None:
    [marking] = markings(1)
    registry.sync(marking.upsert(ring))
    response = registry.sync(change)
    assert counts(response) == nothing_but(rejected=1)
    assert [v.field for v in response.rejections[0].field_violations] == fields
    assert registry.lookup(subject(ring, marking.person)).outcome == HIT


def _marker_row(registry: RunningRegistry, record_id: str) -> dict[str, object]:
    [row] = [r for r in registry.tables()["markers"] if r["source_record_id"] == record_id]
    return row


def test_a_tombstone_deletes_the_marker_and_erases_its_content(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    marking.at_information = {"detention_history": "2x kort arrest"}
    registry.sync(marking.upsert(ring))

    response = registry.sync(marking.tombstone(version=2))

    assert counts(response) == nothing_but(deleted=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == NO_HIT
    row = _marker_row(registry, marking.record_id)
    assert row["deleted"]
    assert row["source_version"] == 2
    for erased in ("advice", "advice_date", "at_information", "target_group", "mark_date"):
        assert row[erased] is None
    assert registry.tables()["marker_pseudonyms"] == []


def test_a_tombstone_of_the_last_synced_version_deletes(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    registry.sync(marking.upsert(ring))
    assert counts(registry.sync(marking.tombstone())) == nothing_but(deleted=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == NO_HIT


def test_a_tombstone_older_than_the_record_deletes_nothing(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    marking.version = 3
    registry.sync(marking.upsert(ring))
    assert counts(registry.sync(marking.tombstone(version=2))) == nothing_but(unchanged=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == HIT


def test_an_older_upsert_replayed_after_the_tombstone_does_not_resurrect(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    registry.sync(marking.upsert(ring))
    registry.sync(marking.tombstone(version=2))

    replay = registry.sync(marking.upsert(ring))  # version 1 again
    marking.version = 2
    same_version = registry.sync(marking.upsert(ring))

    assert counts(replay) == nothing_but(unchanged=1)
    assert counts(same_version) == nothing_but(unchanged=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == NO_HIT
    assert registry.tables()["marker_pseudonyms"] == []


def test_a_newer_upsert_after_the_tombstone_marks_the_person_again(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    registry.sync(marking.upsert(ring))
    registry.sync(marking.tombstone(version=2))
    marking.version = 3
    assert counts(registry.sync(marking.upsert(ring))) == nothing_but(created=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == HIT


def test_a_tombstone_for_a_never_seen_record_blocks_a_later_older_replay(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    marking.version = 4

    first = registry.sync(marking.tombstone(version=5))
    older = registry.sync(marking.upsert(ring))

    assert counts(first) == nothing_but(unchanged=1)
    assert counts(older) == nothing_but(unchanged=1)
    assert registry.lookup(subject(ring, marking.person)).outcome == NO_HIT


def test_changes_to_one_record_within_one_message_apply_in_order(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [marking] = markings(1)
    v1 = marking.upsert(ring)
    marking.version, marking.advice = 2, "tweede advies"
    v2 = marking.upsert(ring)

    response = registry.sync(v1, v2, v1)

    assert counts(response) == nothing_but(created=1, updated=1, unchanged=1)
    [marker] = registry.lookup(subject(ring, marking.person)).markers
    assert (marker.source_version, marker.advice.text) == (2, "tweede advies")
    assert len(registry.tables()["markers"]) == 1


def test_a_message_without_changes_is_invalid_argument(registry: RunningRegistry) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        registry.sync_messages([registry_service_pb2.SyncMarkersRequest()])
    found = problem(caught.value)
    assert (found.code, found.reason, found.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["changes"],
    )


def test_a_message_with_more_than_5000_changes_is_invalid_argument(
    registry: RunningRegistry,
) -> None:
    change = tombstone("vh-rotterdam-rijnmond", "pga-0", 1)
    with pytest.raises(grpc.RpcError) as caught:
        registry.sync_messages([registry_service_pb2.SyncMarkersRequest(changes=[change] * 5001)])
    found = problem(caught.value)
    assert (found.code, found.reason, found.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["changes"],
    )
    assert registry.tables()["markers"] == []


def test_a_stream_reports_the_first_1000_rejections_and_counts_them_all(
    registry: RunningRegistry,
) -> None:
    bad = [tombstone("vh-nowhere", f"x-{i}", 1) for i in range(1001)]
    response = registry.sync(*bad)
    assert counts(response) == nothing_but(rejected=1001)
    assert [r.index for r in response.rejections] == list(range(1000))


def test_a_message_of_exactly_5000_changes_lands(registry: RunningRegistry, ring: KeyRing) -> None:
    changes = [tombstone("vh-twente", f"amz-{i}", 1) for i in range(4999)]
    [marking] = markings(1)
    response = registry.sync(*changes, marking.upsert(ring))
    assert counts(response) == nothing_but(created=1, unchanged=4999)


# --- properties ---------------------------------------------------------------------------------

_record_ids = itertools.count()


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=max_size)


def _dates() -> st.SearchStrategy[date_pb2.Date]:
    return st.one_of(
        st.dates(dt.date(1890, 1, 1), TODAY + dt.timedelta(days=3)).map(
            lambda d: date_pb2.Date(year=d.year, month=d.month, day=d.day)
        ),
        st.builds(
            date_pb2.Date,
            year=st.integers(0, 10_000),
            month=st.integers(0, 13),
            day=st.integers(0, 32),
        ),
    )


@st.composite
def arbitrary_records(draw: st.DrawFn, ring: KeyRing) -> marker_pb2.MarkerRecord:
    """Any record an adapter might send, valid or not; record ids unique within the test."""
    house = draw(
        st.sampled_from(
            [*(f"houses/{h}" for h in HOUSES), "houses/vh-nowhere", "vh-rotterdam-rijnmond", ""]
        )
    )
    bsn = draw(st.sampled_from(["111222333", "123456782", "999999990"]))
    pseudonyms = subject(ring, Person(bsn=bsn)).pseudonyms
    extra = draw(
        st.lists(
            st.builds(
                pseudonym_pb2.Pseudonym,
                kind=st.integers(0, 3),
                key_id=st.sampled_from(["k1", "k-2", "", "K1", "x" * 33]),
                value=st.binary(min_size=30, max_size=34),
            ),
            max_size=2,
        )
    )
    return marker_pb2.MarkerRecord(
        source_system=draw(st.integers(0, 4)),
        source_record_id=draw(st.one_of(_text(130), st.just(""))) + f"#{next(_record_ids)}",
        source_version=draw(st.integers(-1, 2**63 - 1)),
        house=house,
        subject=pseudonym_pb2.Subject(pseudonyms=[*pseudonyms, *extra]),
        target_group=draw(st.integers(0, 7)),
        plan_status=draw(st.integers(0, 5)),
        mark_date=draw(_dates()),
        advice=draw(_text(30)),
        advice_date=draw(st.one_of(st.none(), _dates())),
        at_information=marker_pb2.AtInformation(antecedents=draw(_text(10))),
    )


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_stream_is_answered_with_counts_and_replaying_it_changes_nothing(
    registry: RunningRegistry, ring: KeyRing, data: st.DataObject
) -> None:
    records = data.draw(st.lists(arbitrary_records(ring), min_size=1, max_size=8))
    stream = [upsert(r) for r in records]

    first = registry.sync(*stream)
    before = registry.tables()
    replay = registry.sync(*stream)

    assert first.created + first.rejected == len(stream)
    assert all(r.reason == "INVALID_MARKER" and r.field_violations for r in first.rejections)
    assert counts(replay) == nothing_but(unchanged=first.created, rejected=first.rejected)
    assert registry.tables() == before


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_replays_of_one_stream_create_each_marker_once(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    # An adapter that retries a stream while the first attempt is still running.
    stream = [m.upsert(ring) for m in markings(100)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: registry.sync(*stream, per_message=10), range(6)))

    assert sum(r.created for r in responses) == 100
    assert sum(r.unchanged for r in responses) == 500
    assert len(registry.tables()["markers"]) == 100


def test_concurrent_streams_never_lower_a_version_or_resurrect_a_marker(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    people = markings(40)
    registry.sync(*(m.upsert(ring) for m in people))

    def stream(version: int) -> list[marker_pb2.MarkerChange]:
        if version == 9:
            return [m.tombstone(version=9) for m in people]
        for m in people:
            m.version = version
        return [m.upsert(ring) for m in people]

    streams = [stream(v) for v in range(2, 10)]
    # As many at once as one adapter may hold (services/common/admission.py).
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda changes: registry.sync(*changes, per_message=5), streams))

    rows = registry.tables()["markers"]
    assert {(r["source_version"], r["deleted"]) for r in rows} == {(9, True)}
    assert registry.tables()["marker_pseudonyms"] == []


def test_two_registries_on_one_database_sync_the_same_records_without_conflict(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    # Scale-out: a second registry process on the same database (here: a second server).
    second = create_server(registry.settings, registry.clock)
    port = second.port
    second.start()
    try:
        with secure_channel(registry.settings.pki_dir, port, "adapter-pga") as channel:
            other = registry_service_pb2_grpc.RegistryServiceStub(channel)
            stream = [m.upsert(ring) for m in markings(60)]
            requests = [
                registry_service_pb2.SyncMarkersRequest(changes=stream[i : i + 10])
                for i in range(0, 60, 10)
            ]
            stubs = [registry.stub_for("adapter-pga"), other] * 3
            with ThreadPoolExecutor(max_workers=6) as pool:
                responses = list(
                    pool.map(lambda stub: stub.SyncMarkers(iter(requests), timeout=30), stubs)
                )
    finally:
        second.server.stop(grace=None).wait()

    assert sum(r.created for r in responses) == 60
    assert sum(r.unchanged for r in responses) == 300
    assert len(registry.tables()["markers"]) == 60
