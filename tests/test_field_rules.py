"""The wire contract's field rules: declared in the .proto files, so that a client in any
language reads them (from the files or by reflection), and held once, for every RPC, before a
servicer runs (services/common/field_rules.py)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pb2
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from harness import RunningRegistry, lookup_request
from sqlalchemy import text

from baken.audit.v1 import audit_service_pb2
from baken.feedback.v1 import feedback_service_pb2
from baken.registry.v1 import registry_service_pb2
from baken.report.v1 import report_service_pb2
from baken.type.v1 import pseudonym_pb2
from buf.validate import validate_pb2
from services.common import field_rules

SERVICES = [
    registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    feedback_service_pb2.DESCRIPTOR.services_by_name["FeedbackService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
    report_service_pb2.DESCRIPTOR.services_by_name["ReportService"],
]
REQUIRED = field_behavior_pb2.REQUIRED
# Fields a client must set whose absence the service answers itself, and why.
ANSWERED_BY_THE_SERVICE = {
    # A look-up without a purpose still asks about a person: denied (PURPOSE_REQUIRED) and
    # written to the access log, which a field rule, refusing before the service, would not.
    "baken.registry.v1.LookupRequest.purpose",
    "baken.registry.v1.BatchLookupRequest.purpose",
}


def _request_messages() -> Iterator[descriptor.Descriptor]:
    """Every message a request can carry, from the methods' input types down."""
    seen: set[str] = set()
    todo = [m.input_type for s in SERVICES for m in s.methods]
    while todo:
        message = todo.pop()
        if message.full_name in seen or not message.full_name.startswith("baken."):
            continue
        seen.add(message.full_name)
        yield message
        todo += [f.message_type for f in message.fields if f.message_type is not None]


def _behaviour(field: descriptor.FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _rules(field: descriptor.FieldDescriptor) -> validate_pb2.FieldRules:
    return field.GetOptions().Extensions[validate_pb2.field]


def test_every_request_field_says_whether_it_is_required() -> None:
    unsaid = [
        f.full_name
        for m in _request_messages()
        if m.full_name.endswith("Request")
        for f in m.fields
        if not _behaviour(f)
    ]
    assert unsaid == []


def test_a_field_declared_required_is_refused_when_missing_and_only_such_a_field() -> None:
    declared = {
        f.full_name for m in _request_messages() for f in m.fields if REQUIRED in _behaviour(f)
    }
    enforced = {f.full_name for m in _request_messages() for f in m.fields if _rules(f).required}
    assert enforced == declared - ANSWERED_BY_THE_SERVICE
    assert declared >= ANSWERED_BY_THE_SERVICE


def test_every_list_call_refuses_a_negative_page_size_in_its_contract() -> None:
    pages = [
        m.input_type.fields_by_name["page_size"]
        for s in SERVICES
        for m in s.methods
        if "page_size" in m.input_type.fields_by_name
    ]
    assert len(pages) >= 6
    assert all(_rules(f).int32.gte == 0 and _rules(f).int32.HasField("gte") for f in pages)


def test_violations_name_the_field_as_aip_193_spells_paths() -> None:
    good = pseudonym_pb2.Pseudonym(
        kind=pseudonym_pb2.PSEUDONYM_KIND_BSN, key_id="k1", value=b"\x01" * 32
    )
    bad = pseudonym_pb2.Pseudonym(kind=7, key_id="K 1", value=b"\x01" * 31)
    found = field_rules.violations(
        pseudonym_pb2.Subject(pseudonyms=[good, bad]), prefix="entries[3].subject."
    )
    assert [v.field for v in found] == [
        "entries[3].subject.pseudonyms[1].kind",
        "entries[3].subject.pseudonyms[1].key_id",
        "entries[3].subject.pseudonyms[1].value",
    ]
    assert all(v.description for v in found)
    assert field_rules.violations(pseudonym_pb2.Subject(pseudonyms=[good])) == []


def _bad_request(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            return [v.field for v in found.field_violations]
    raise AssertionError("no BadRequest")


def _access_entries(registry: RunningRegistry) -> int:
    with registry.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM access_log")).scalar_one())


def test_a_request_breaking_a_declared_rule_is_refused_before_the_service_runs(
    registry: RunningRegistry,
) -> None:
    request = lookup_request(pseudonym_pb2.Subject(), on_behalf_of="x" * 65)
    before = _access_entries(registry)
    with pytest.raises(grpc.RpcError) as raised:
        registry.stub.Lookup(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(_bad_request(raised.value)) == ["on_behalf_of", "subject.pseudonyms"]
    assert _access_entries(registry) == before


def test_a_stream_message_breaking_a_rule_ends_the_stream_as_invalid_argument(
    registry: RunningRegistry,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        registry.stub_for("adapter-gcos").SyncMarkers(
            iter([registry_service_pb2.SyncMarkersRequest()])
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _bad_request(raised.value) == ["changes"]


def test_clients_read_the_rules_by_reflection(registry: RunningRegistry) -> None:
    database = ProtoReflectionDescriptorDatabase(registry.channel)
    file = database.FindFileContainingSymbol("baken.type.v1.Pseudonym")
    [pseudonym] = [m for m in file.message_type if m.name == "Pseudonym"]
    [value] = [f for f in pseudonym.field if f.name == "value"]
    options = descriptor_pb2.FieldOptions()
    options.MergeFromString(value.options.SerializeToString())
    assert options.Extensions[validate_pb2.field].bytes.len == 32
    assert list(options.Extensions[field_behavior_pb2.field_behavior]) == [REQUIRED]


def test_a_refusal_by_a_field_rule_never_echoes_the_value(registry: RunningRegistry) -> None:
    """The rules' messages describe the rule, not what was sent: a BSN or a name in a field
    that breaks one reaches neither the status message nor a field violation."""
    sent = "Jansen 111222333 " * 5  # too long for a user id, and personal data
    request = lookup_request(pseudonym_pb2.Subject(), on_behalf_of=sent)
    with pytest.raises(grpc.RpcError) as raised:
        registry.stub.Lookup(request)
    status = rpc_status.from_call(raised.value)  # type: ignore[arg-type]
    assert status is not None
    shown = status.message + "".join(str(d) for d in status.details)
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            found = error_details_pb2.BadRequest()
            detail.Unpack(found)
            shown += "".join(v.description for v in found.field_violations)
    assert "111222333" not in shown and "Jansen" not in shown
