"""Arbitrary and adversarial requests to every RPC of every service, built from the .proto
descriptors by hypothesis: random and oversized strings and bytes, unknown enum values, out-of-
range timestamps and durations, empty and repeated fields, and streams of such messages.

Whatever comes in, the answer is never INTERNAL, UNKNOWN or DATA_LOSS; an INVALID_ARGUMENT
names at least one field and leaves every table of both services as it was. Each RPC is called
under the party that may call it, so requests get past the covenant check and reach
validation."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy
from feedback_harness import RunningFeedback
from google.protobuf import descriptor, message, message_factory
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness import secure_channel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baken.audit.v1 import audit_service_pb2
from baken.feedback.v1 import feedback_service_pb2
from baken.registry.v1 import registry_service_pb2
from baken.report.v1 import report_service_pb2

FD = descriptor.FieldDescriptor
SERVICES = [
    registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
    feedback_service_pb2.DESCRIPTOR.services_by_name["FeedbackService"],
    report_service_pb2.DESCRIPTOR.services_by_name["ReportService"],
]
# Who may call each method (else the ZSM desk's KPC).
PARTIES = {
    "SyncMarkers": "adapter-gcos",
    "PullSignals": "feedback",
    "ListAccessEntries": "privacy-auditor",
    "ListAnomalies": "privacy-auditor",
    "ListPendingReviews": "privacy-auditor",
    "ReviewBreakGlass": "privacy-auditor",
    "GetSignedHead": "privacy-auditor",
    "AnswerAdviceRequest": "adapter-gcos",
    "SubscribeDeliveries": "adapter-gcos",
    "AcknowledgeDelivery": "adapter-gcos",
    "ListDeadLetters": "operator",
    "RequeueDeadLetter": "operator",
    "GetMonthlyFigures": "landelijke-stuurgroep",
}
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
METHODS = [(s, m) for s in SERVICES for m in s.methods]
# Per RPC and database. In CI the same cases every run (derandomized); a longer run with fresh
# random cases: BAKEN_BAD_INPUT_EXAMPLES=N (docs/SECURITY.md).
LONG_RUN = os.environ.get("BAKEN_BAD_INPUT_EXAMPLES")
EXAMPLES = int(LONG_RUN or "40")

_INTS = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "houses/", "houses/vh-almere", "2026-10", "monitoring", "\x00"]),
    st.text(min_size=2_000, max_size=3_000),  # oversized
)
_BYTES = st.one_of(st.binary(max_size=40), st.binary(min_size=2_000, max_size=3_000))


def _scalar(field: FD) -> st.SearchStrategy[Any]:
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.one_of(st.integers(low, high), st.integers(-3, 30).filter(lambda n: low <= n))
    if field.type == FD.TYPE_ENUM:
        return st.integers(-3, 40)  # unknown values too
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if field.type == FD.TYPE_STRING:
        return _TEXT
    return _BYTES


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[message.Message]:
    """A message of `desc` with a random subset of its fields set to random values."""
    cls = message_factory.GetMessageClass(desc)
    fields = [f for f in desc.fields if not (f.message_type and depth >= 3)]

    def value(field: FD) -> st.SearchStrategy[Any]:
        one = (
            st.deferred(lambda: messages(field.message_type, depth + 1))
            if field.message_type
            else _scalar(field)
        )
        if field.is_repeated:
            # A batch of whole requests (RecordDecisions): at most two, more overruns hypothesis.
            whole = field.message_type is not None and field.message_type.name.endswith("Request")
            return st.lists(one, max_size=2 if whole else 3)
        return one

    @st.composite
    def build(draw: st.DrawFn) -> message.Message:
        made = cls()
        for field in fields:
            if not draw(st.booleans()):
                continue
            drawn = draw(value(field))
            target = getattr(made, field.name)
            if field.is_repeated:
                if field.message_type:
                    for item in drawn:
                        target.add().CopyFrom(item)
                else:
                    target.extend(drawn)
            elif field.message_type:
                target.CopyFrom(drawn)
            else:
                setattr(made, field.name, drawn)
        return made

    return build()


def check(error: grpc.RpcError, method: str) -> None:
    code = error.code()
    assert code not in FORBIDDEN, f"{method}: {code.name}: {error.details()}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None, f"{method}: INVALID_ARGUMENT without details"
        named = []
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                named += [v.field for v in bad.field_violations if v.field and v.description]
        assert named, f"{method}: INVALID_ARGUMENT names no field: {error.details()}"


def invoke(
    channel: grpc.Channel,
    service: descriptor.ServiceDescriptor,
    method: descriptor.MethodDescriptor,
) -> Callable[[list[message.Message]], None]:
    path = f"/{service.full_name}/{method.name}"
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": request_cls.SerializeToString,
        "response_deserializer": response_cls.FromString,
    }
    if method.client_streaming and method.server_streaming:
        bidi = channel.stream_stream(path, **kwargs)
        return lambda batch: _drain(bidi(iter(batch), timeout=5))
    if method.client_streaming:
        upload = channel.stream_unary(path, **kwargs)
        return lambda batch: upload(iter(batch), timeout=5)
    if method.server_streaming:
        stream = channel.unary_stream(path, **kwargs)
        return lambda batch: _drain(stream(batch[0], timeout=0.5), until_deadline=True)
    unary = channel.unary_unary(path, **kwargs)
    return lambda batch: unary(batch[0], timeout=5)


def _drain(responses: Iterator[Any], *, until_deadline: bool = False) -> None:
    try:
        for _ in responses:
            pass
    except grpc.RpcError as error:
        if not (until_deadline and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
            raise


REGISTRY_TABLES = ("markers", "marker_pseudonyms", "access_log", "signals")
FEEDBACK_TABLES = ("decisions", "deliveries", "advice_requests", "access_log")


def rows(feedback: RunningFeedback) -> list[int]:
    """How many rows each table of both services holds."""
    counted = []
    for engine, tables in (
        (feedback.registry.engine, REGISTRY_TABLES),
        (feedback.engine, FEEDBACK_TABLES),
    ):
        with engine.connect() as connection:
            counted += [
                connection.execute(
                    sqlalchemy.select(sqlalchemy.func.count()).select_from(sqlalchemy.table(t))
                ).scalar_one()
                for t in tables
            ]
    return counted


@pytest.mark.parametrize(
    ("service", "method"), METHODS, ids=[f"{s.name}.{m.name}" for s, m in METHODS]
)
def test_no_request_makes_a_service_fail(
    feedback: RunningFeedback,
    service: descriptor.ServiceDescriptor,
    method: descriptor.MethodDescriptor,
) -> None:
    port = feedback.server.port if service.name in ("FeedbackService",) else feedback.registry.port
    if service.name == "ReportService":
        ports = [feedback.registry.port, feedback.server.port]
    else:
        ports = [port]
    party = PARTIES.get(method.name, "zsm-midden-nederland-kpc")
    channels = [secure_channel(feedback.registry.pki_dir, p, party) for p in ports]
    calls_ = [invoke(c, service, method) for c in channels]
    many = method.client_streaming

    @settings(
        max_examples=EXAMPLES,
        derandomize=not LONG_RUN,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(messages(method.input_type), min_size=1, max_size=3 if many else 1))
    def one(batch: list[message.Message]) -> None:
        for call in calls_:
            before = rows(feedback)
            try:
                call(batch)
            except grpc.RpcError as error:
                check(error, method.name)
                # A malformed request changes nothing, not even the access log. (In a stream of
                # several, the messages before the bad one were answered, and logged.)
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(batch) == 1:
                    assert rows(feedback) == before, f"{method.name}: a rejected call wrote"

    try:
        one()
    finally:
        for channel in channels:
            channel.close()
