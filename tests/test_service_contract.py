"""The service's contract on the wire: bad input, houses, deadlines, health and reflection."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest
import sqlalchemy.exc
from builders import HOUSES, Marking, Person, problem, subject
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from harness import RunningRegistry, lookup_request
from sqlalchemy import text

from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2
from services.common.grpc_server import _storage_error

pb = registry_service_pb2
SERVICE = "baken.registry.v1.RegistryService"
PERSON = Person(bsn="111222333")


def _pseudonym(**fields: object) -> pseudonym_pb2.Pseudonym:
    valid: dict[str, object] = {
        "kind": pseudonym_pb2.PSEUDONYM_KIND_BSN,
        "key_id": "k1",
        "value": b"\x01" * 32,
    }
    return pseudonym_pb2.Pseudonym(**(valid | fields))  # type: ignore[arg-type]


BAD_SUBJECTS = {
    "no-subject": (None, ["subject"]),
    "no-pseudonyms": (pseudonym_pb2.Subject(), ["subject.pseudonyms"]),
    "17-pseudonyms": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(value=bytes([i]) * 32) for i in range(17)]),
        ["subject.pseudonyms"],
    ),
    "31-bytes": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(value=b"\x01" * 31)]),
        ["subject.pseudonyms[0].value"],
    ),
    "33-bytes": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(value=b"\x01" * 33)]),
        ["subject.pseudonyms[0].value"],
    ),
    "no-kind": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(kind=0)]),
        ["subject.pseudonyms[0].kind"],
    ),
    "unknown-kind": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(kind=7)]),
        ["subject.pseudonyms[0].kind"],
    ),
    "no-key-id": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(key_id="")]),
        ["subject.pseudonyms[0].key_id"],
    ),
    "key-id-with-a-newline": (
        pseudonym_pb2.Subject(pseudonyms=[_pseudonym(key_id="k1\n")]),
        ["subject.pseudonyms[0].key_id"],
    ),
    "second-pseudonym-bad-in-two-ways": (
        pseudonym_pb2.Subject(
            pseudonyms=[_pseudonym(), _pseudonym(key_id="K2", value=b"")],
        ),
        ["subject.pseudonyms[1].key_id", "subject.pseudonyms[1].value"],
    ),
}


@pytest.mark.parametrize("case", BAD_SUBJECTS)
def test_a_lookup_with_a_bad_subject_is_invalid_argument_naming_the_fields(
    registry: RunningRegistry, case: str
) -> None:
    bad_subject, fields = BAD_SUBJECTS[case]
    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.Lookup(lookup_request(bad_subject), timeout=10)
    found = problem(caught.value)
    assert found.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (found.reason, found.domain) == ("INVALID_ARGUMENT", "baken.nl")
    assert found.fields == fields


def test_a_refused_call_carries_no_stack_trace(registry: RunningRegistry) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.Lookup(lookup_request(), timeout=10)
    error = caught.value
    assert isinstance(error, grpc.Call)
    for leak in ("Traceback", "validation.py", "InvalidArgument"):
        assert leak not in (error.details() or "")
        assert leak not in str(error)


def test_a_database_failure_is_internal_with_the_request_id_and_no_details(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(PERSON, "pga-1").upsert(ring))
    with registry.engine.begin() as connection:
        connection.execute(text("DROP TABLE marker_pseudonyms"))

    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.Lookup(
            lookup_request(subject(ring, PERSON)),
            timeout=10,
            metadata=(("x-request-id", "req-4711"),),
        )

    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert "req-4711" in details
    for leak in ("Traceback", "marker_pseudonyms", "SELECT", "sqlite", "psycopg"):
        assert leak not in details
    assert ("x-request-id", "req-4711") in tuple(error.trailing_metadata() or ())


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            "STORAGE_UNAVAILABLE",
        ),
        (sqlite3.OperationalError("database is locked"), "STORAGE_UNAVAILABLE"),
        (sqlite3.OperationalError("database or disk is full"), "STORAGE_FULL"),
        (sqlite3.OperationalError("no such table: marker_pseudonyms"), None),
        (
            sqlalchemy.exc.OperationalError("COMMIT", {}, Exception("disk I/O error")),
            "STORAGE_UNAVAILABLE",
        ),
    ],
)
def test_a_database_away_or_full_is_unavailable_from_the_driver_too(
    error: Exception, reason: str | None
) -> None:
    """The marker query, the access log's append and the bulk writes speak to the driver
    directly: a PostgreSQL failover mid-append is UNAVAILABLE, which clients retry, as it is
    through SQLAlchemy; a broken schema stays INTERNAL (the test above)."""
    mapped = _storage_error(error)
    assert (mapped.reason if mapped else None) == reason


def test_every_call_answers_with_a_request_id(registry: RunningRegistry, ring: KeyRing) -> None:
    _, call = registry.stub.Lookup.with_call(lookup_request(subject(ring, PERSON)), timeout=10)
    request_ids = [v for k, v in call.trailing_metadata() if k == "x-request-id"]
    assert len(request_ids) == 1
    assert request_ids[0]


# --- houses -------------------------------------------------------------------------------------


def test_get_house_returns_the_house_with_region_and_contact(registry: RunningRegistry) -> None:
    house = registry.stub.GetHouse(pb.GetHouseRequest(name="houses/vh-twente"), timeout=10)
    assert house == HOUSES["vh-twente"].to_proto()
    assert house.region == "oost-nederland"
    assert house.contact.email


def test_get_house_of_an_unknown_house_is_not_found(registry: RunningRegistry) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.GetHouse(pb.GetHouseRequest(name="houses/vh-nowhere"), timeout=10)
    found = problem(caught.value)
    assert (found.code, found.reason, found.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "HOUSE_NOT_FOUND",
        "baken.nl",
    )


@pytest.mark.parametrize("name", ["vh-twente", "", "houses/", "markers/x", "houses/VH-TWENTE"])
def test_get_house_by_a_name_not_of_the_house_pattern_is_invalid_argument(
    registry: RunningRegistry, name: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.GetHouse(pb.GetHouseRequest(name=name), timeout=10)
    found = problem(caught.value)
    assert (found.code, found.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["name"])


def test_list_houses_walks_all_17_houses_in_pages_of_5(registry: RunningRegistry) -> None:
    pages: list[list[str]] = []
    token = ""
    while True:
        response = registry.stub.ListHouses(
            pb.ListHousesRequest(page_size=5, page_token=token), timeout=10
        )
        pages.append([h.name for h in response.houses])
        token = response.next_page_token
        if not token:
            break
        assert len(pages) < 10, "pagination does not end"

    assert [len(p) for p in pages] == [5, 5, 5, 2]
    names = [name for page in pages for name in page]
    assert names == [h.name for h in HOUSES.values()]
    assert len(set(names)) == 17


def test_list_houses_without_a_page_size_gives_every_house_at_once(
    registry: RunningRegistry,
) -> None:
    response = registry.stub.ListHouses(pb.ListHousesRequest(), timeout=10)
    assert len(response.houses) == 17
    assert response.next_page_token == ""
    regions = {h.region for h in response.houses}
    assert regions == {
        "midden-nederland",
        "zeeland-west-brabant",
        "oost-nederland",
        "rotterdam-rijnmond",
    }


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_token": "not-a-token"}, "page_token"),
        ({"page_token": "-5"}, "page_token"),
        ({"page_token": "18"}, "page_token"),
        ({"page_size": -1}, "page_size"),
    ],
)
def test_list_houses_with_a_bad_page_token_or_size_is_invalid_argument(
    registry: RunningRegistry, request_fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        registry.stub.ListHouses(pb.ListHousesRequest(**request_fields), timeout=10)  # type: ignore[arg-type]
    found = problem(caught.value)
    assert (found.code, found.reason, found.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        [field],
    )


# --- deadlines ----------------------------------------------------------------------------------


def test_a_call_stuck_behind_a_locked_database_ends_at_its_deadline(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    change = Marking(PERSON, "pga-1").upsert(ring)
    with registry.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            connection.exec_driver_sql("LOCK TABLE markers IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            registry.stub_for("adapter-pga").SyncMarkers(
                iter([pb.SyncMarkersRequest(changes=[change])]), timeout=0.3
            )
        waited = time.monotonic() - started
        connection.rollback()

    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert waited < 3
    # Once the lock is gone the server is well: the same change lands or was already applied.
    response = registry.sync(change)
    assert response.created + response.unchanged == 1


def test_a_stalled_sync_stream_ends_at_its_deadline_instead_of_hanging(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    release = threading.Event()

    def stalling() -> Iterator[pb.SyncMarkersRequest]:
        yield pb.SyncMarkersRequest(changes=[Marking(PERSON, "pga-1").upsert(ring)])
        release.wait(10)  # an adapter that stops sending without closing the stream

    started = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            registry.stub_for("adapter-pga").SyncMarkers(stalling(), timeout=0.5)
    finally:
        release.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    # The server is still answering.
    assert registry.stub.ListHouses(pb.ListHousesRequest(), timeout=10).houses


# --- health and reflection ----------------------------------------------------------------------


@pytest.mark.parametrize("service", [SERVICE, ""])
def test_health_checking_reports_serving(registry: RunningRegistry, service: str) -> None:
    health = health_pb2_grpc.HealthStub(registry.channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_checking_does_not_know_other_services(registry: RunningRegistry) -> None:
    health = health_pb2_grpc.HealthStub(registry.channel)
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="baken.nope.v1.Nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_registry_service(registry: RunningRegistry) -> None:
    database = ProtoReflectionDescriptorDatabase(registry.channel)
    assert SERVICE in database.get_services()
    assert "grpc.health.v1.Health" in database.get_services()
    described = database.FindFileContainingSymbol(SERVICE)
    assert described.package == "baken.registry.v1"
    [service] = [s for s in described.service if s.name == "RegistryService"]
    assert {m.name for m in service.method} == {
        "Lookup",
        "BatchLookup",
        "SyncMarkers",
        "GetHouse",
        "ListHouses",
        "PullSignals",
    }


def test_reflection_answers_as_v1_and_describes_itself(registry: RunningRegistry) -> None:
    """grpcurl and newer tools ask grpc.reflection.v1; older ones v1alpha (above)."""
    from grpc_reflection.v1alpha import reflection_pb2

    info = registry.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    listed, described = info(
        iter(
            [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="grpc.reflection.v1.ServerReflection"
                ),
            ]
        ),
        timeout=10,
    )
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.reflection.v1.ServerReflection"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names
    [raw] = described.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert file.package == "grpc.reflection.v1"
    [service] = file.service
    [method] = service.method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
