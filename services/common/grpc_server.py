"""What every Baken gRPC server shares: error mapping, one log line per RPC, health, reflection."""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent import futures
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import psycopg
import sqlalchemy.exc
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from baken import pki
from baken.errors import (
    BakenError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    internal_status,
)
from baken.pseudonym import looks_like_bsn
from services.common import field_rules

if TYPE_CHECKING:
    from services.common.admission import Admission
    from services.common.metrics_endpoint import Metrics

log = structlog.get_logger("baken.rpc")

REQUEST_ID_KEY = "x-request-id"
TRACEPARENT_KEY = "traceparent"
_TOKEN = re.compile(r"[A-Za-z0-9.:_-]{1,64}")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}\Z")
_request_id: ContextVar[str] = ContextVar("request_id", default="")


def current_request_id() -> str:
    """The request id of the RPC this thread is handling (set by ErrorAndLogInterceptor)."""
    return _request_id.get()


@functools.lru_cache(maxsize=4096)
def _identity(pem: bytes) -> pki.Identity:
    return pki.party_of(pem)


def caller_of(context: grpc.ServicerContext) -> pki.Identity:
    """The calling party as its verified certificate names it; never from a request field."""
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        raise PermissionDenied("NO_CERTIFICATE", "call with a client certificate (mTLS)")
    try:
        return _identity(bytes(certs[0]))
    except pki.PkiError:
        raise PermissionDenied(
            "CERTIFICATE_NOT_A_PARTY", "the certificate names no party, organisation and role"
        ) from None


def trace_id_of(context: grpc.ServicerContext) -> str:
    """The W3C trace id from the caller's traceparent header, or a fresh one."""
    for key, value in context.invocation_metadata():
        if key == TRACEPARENT_KEY and isinstance(value, str):
            found = _TRACEPARENT.match(value)
            if found:
                return found.group(1)
    return uuid.uuid4().hex


def _request_id_of(context: grpc.ServicerContext) -> tuple[str, InvalidArgument | None]:
    """The caller's `x-request-id`, or a fresh one when it sent none. One that is not a token
    of 1 to 64 letters, digits and ".:_-", or that holds nine digits passing the 11-proef,
    is replaced by a fresh one and comes with the refusal that ends the call (never echoed):
    the id goes into the log and the access log, and free text or a BSN must not."""
    for key, value in context.invocation_metadata():
        if key != REQUEST_ID_KEY:
            continue
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            fault = "a token of 1 to 64 letters, digits and '.:_-'"
        elif looks_like_bsn(value):
            fault = "looks like a BSN (nine digits passing the 11-proef): no personal data here"
        else:
            return value, None
        return uuid.uuid4().hex, InvalidArgument([FieldViolation(REQUEST_ID_KEY, fault)])
    return uuid.uuid4().hex, None


class ErrorAndLogInterceptor(grpc.ServerInterceptor):
    """Maps domain errors to status + details, hides everything else behind INTERNAL, and writes
    one log line per RPC with method, code, duration and request id; `metrics`, when given,
    count the RPC by method and code and time it.

    With `admission`, every call of the service's own methods is admitted first (the party
    register, the party's calls in flight and its rate; services/common/admission.py), before a
    message of a stream is read, and charged: one unit a call or a streamed message, or one an
    entry of a batch (BatchLookup, RecordDecisions, AcknowledgeDeliveries) or an element to
    pseudonymise (Evaluate). Every request message, charged or not, is then held to the
    contract's field rules (services/common/field_rules.py) before the servicer sees it.

    The request id is the caller's `x-request-id` or a fresh one; it is logged and quoted in
    INTERNAL errors. Wrapped handlers are built once per method. A successful call of a method
    in `routine` (a poll every second) is logged at debug, not info; its errors are not.
    """

    def __init__(
        self,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
        routine: Collection[str] = (),
    ) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._admission = admission
        self._metrics = metrics
        self._routine = frozenset(routine)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or method.startswith("/grpc."):
            return handler
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        assert handler.unary_stream is not None
        return grpc.unary_stream_rpc_method_handler(
            self._streaming(method, handler.unary_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _unary(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call.begin(method, context, self._metrics, method in self._routine)
            try:
                call.check()
                with self._admitted(method, context) as admitted:
                    response = behaviour(admitted(request), context)
            except BaseException as exc:
                call.fail(exc, context)
            call.end(context)
            return response

        return wrapped

    def _streaming(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call.begin(method, context, self._metrics, method in self._routine)
            try:
                call.check()
                with self._admitted(method, context) as admitted:
                    yield from behaviour(admitted(request), context)
            except BaseException as exc:
                call.fail(exc, context)
            call.end(context)

        return wrapped

    @contextlib.contextmanager
    def _admitted(
        self, method: str, context: grpc.ServicerContext
    ) -> Iterator[Callable[[Any], Any]]:
        """Admit the call and hold its place while it runs; yields what turns the request (or
        the request stream) into the charged and checked one: every message is charged, then
        held to the contract's field rules (services/common/field_rules.py)."""
        admission = self._admission
        if admission is None:
            yield functools.partial(_each, field_rules.check)
            return
        caller = caller_of(context)
        ticket = admission.admit(caller, method, context)
        # A cancelled stream may never resume its handler: the end of the RPC releases too.
        context.add_callback(ticket.release)

        def charge_and_check(message: Any) -> None:
            admission.charge(caller.id, _cost(message))
            field_rules.check(message)

        try:
            yield lambda request: _each(charge_and_check, request, admission.first_message)
        finally:
            ticket.release()


# The repeated fields whose every item is charged as a call: BatchLookup's entries, the
# pseudonymiser's blinded elements, RecordDecisions' decisions, AcknowledgeDeliveries' items.
_CHARGED_ITEMS = ("entries", "blinded_elements", "requests", "acknowledgements")


def _cost(message: Any) -> int:
    name = _charged_items(message.DESCRIPTOR)
    return len(getattr(message, name)) if name else 1


@functools.cache
def _charged_items(descriptor: Descriptor) -> str | None:
    """The message type's repeated field whose items are charged, if it has one."""
    for name in _CHARGED_ITEMS:
        found = descriptor.fields_by_name.get(name)
        if found is not None and found.is_repeated:
            return name
    return None


def _each(
    apply: Callable[[Any], None],
    request: Any,
    first_message: Callable[[Iterator[Any]], Iterator[Any]] = iter,
) -> Any:
    """`request` with `apply` run on it, or on each message of a request stream as it is read
    (`first_message` wraps the stream: the admission's deadline for the first message)."""
    if not isinstance(request, Iterator):
        apply(request)
        return request

    def stream() -> Iterator[Any]:
        for message in first_message(request):
            apply(message)
            yield message

    return stream()


@dataclass(frozen=True, slots=True)
class _Call:
    """One RPC as the log sees it: method, request id, the calling party, when it started; and
    the metrics that count it (by method and code only)."""

    method: str
    request_id: str
    party: str
    started: float
    metrics: Metrics | None
    # A routine call (a poll): logged at debug when it succeeds.
    routine: bool = False
    # A request id not fit for the log: the call ends with it, under a fresh id.
    refusal: InvalidArgument | None = None

    @classmethod
    def begin(
        cls,
        method: str,
        context: grpc.ServicerContext,
        metrics: Metrics | None = None,
        routine: bool = False,
    ) -> _Call:
        request_id, refusal = _request_id_of(context)
        _request_id.set(request_id)
        # Trailing metadata rides on the status; initial metadata would cost a write of its own.
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        # The TLS layer verified the certificate; its common name is the party id.
        names = context.auth_context().get("x509_common_name")
        party = bytes(names[0]).decode(errors="replace") if names else "?"
        return cls(method, request_id, party, time.perf_counter(), metrics, routine, refusal)

    def check(self) -> None:
        if self.refusal is not None:
            raise self.refusal

    def end(self, context: grpc.ServicerContext) -> None:
        # A stream the caller cancelled can end without an exception (its requests just stop).
        ended = grpc.StatusCode.OK if context.is_active() else grpc.StatusCode.CANCELLED
        self.log(context.code() or ended)  # type: ignore[attr-defined]

    def log(self, code: grpc.StatusCode, **extra: Any) -> None:
        seconds = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.observe(self.method, code.name, seconds)
        write = log.debug if self.routine and code == grpc.StatusCode.OK else log.info
        write(
            "rpc",
            method=self.method,
            code=code.name,
            duration_ms=round(seconds * 1000, 3),
            request_id=self.request_id,
            party=self.party,
            **extra,
        )

    def fail(self, exc: BaseException, context: grpc.ServicerContext) -> None:
        exc = _storage_error(exc) or exc
        if isinstance(exc, BakenError):
            status = exc.to_status()
            self.log(exc.code, reason=exc.reason)
        elif (
            context.code() is not None  # type: ignore[attr-defined]
            or not isinstance(exc, Exception)
            or not context.is_active()
        ):
            # context.abort() and cancellation travel as exceptions (a cancelled stream's
            # request iterator raises one): let gRPC finish them.
            self.log(context.code() or grpc.StatusCode.CANCELLED)  # type: ignore[attr-defined]
            raise exc
        else:
            status = internal_status(self.request_id)
            # The exception type only: a message could carry request data.
            self.log(grpc.StatusCode.INTERNAL, error=type(exc).__name__)
        grpc_status = rpc_status.to_status(status)
        context.abort_with_status(
            _Status(
                grpc_status.code,
                grpc_status.details,
                (*grpc_status.trailing_metadata, (REQUEST_ID_KEY, self.request_id)),
            )
        )


def _storage_error(exc: BaseException) -> Unavailable | None:
    """The database away (a PostgreSQL restart, a failover) or full (SQLite's disk): the call
    changed nothing (its transaction rolled back) and may go again as it is, so UNAVAILABLE,
    which clients retry, rather than INTERNAL. The hot paths (the marker query, the access
    log's append, the bulk writes) speak to the driver directly: its own operational errors
    count the same as SQLAlchemy's."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        text = str(exc.orig).lower()
        away = exc.connection_invalidated or isinstance(exc, sqlalchemy.exc.OperationalError)
    elif isinstance(exc, psycopg.OperationalError):
        text, away = str(exc).lower(), True
    elif isinstance(exc, sqlite3.OperationalError):  # also a missing table: that is INTERNAL
        text = str(exc).lower()
        away = "database is locked" in text
    else:
        return None
    if "disk is full" in text or "no space left" in text:
        return Unavailable("STORAGE_FULL", "the service's database has no space left; try later")
    if away:
        return Unavailable("STORAGE_UNAVAILABLE", "the service's database cannot be reached now")
    return None


@dataclass(frozen=True, slots=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


# Threads beyond the parties' share (max_workers): health checks, reflection and refusals find
# one free whatever the parties hold.
RESERVED_WORKERS = 4
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def create_grpc_server(
    max_workers: int,
    service_names: list[str],
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    admission: Admission | None = None,
    options: list[tuple[str, Any]] | None = None,
    metrics: Metrics | None = None,
    routine: Collection[str] = (),
    reuse_port: bool = False,
) -> tuple[grpc.Server, health.HealthServicer]:
    """A sync server with the interceptor, health checking and reflection for service_names.
    A message over the size limit is refused by gRPC itself (RESOURCE_EXHAUSTED); `admission`
    admits every call of the services' own methods (services/common/admission.py) to at most
    `max_workers` at once, while RESERVED_WORKERS more threads answer everything else. `metrics`
    count every RPC of the services (not of health and reflection) by method and code. A
    successful call of a `routine` method (full name) is logged at debug only."""
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers + RESERVED_WORKERS, thread_name_prefix="rpc"
        ),
        interceptors=[ErrorAndLogInterceptor(admission, metrics, routine)],
        # SO_REUSEPORT only for instances that share the address on purpose: otherwise a
        # second server on a port in use must fail, not silently share it. Clients ping idle
        # connections (baken.client.connect, every 60 s): allow it, or the server answers a
        # long-lived stream's pings with GOAWAY "too_many_pings".
        options=[
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *(options or []),
        ],
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _serve_reflection(server, [*service_names, health.SERVICE_NAME])
    return server, health_servicer


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _serve_reflection(server: grpc.Server, service_names: Sequence[str]) -> None:
    """Server reflection as grpc.reflection.v1 and as v1alpha, which older tools still ask.
    v1 is v1alpha under another package name, message for message, and grpcio-reflection
    serves only v1alpha in Python: one servicer answers both paths, and the v1 file (v1alpha's
    descriptor renamed) joins the pool so that v1 describes itself too."""
    _add_reflection_v1_file()
    servicer = reflection.ReflectionServicer(
        [*service_names, reflection.SERVICE_NAME, REFLECTION_V1]
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


def _add_reflection_v1_file() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(REFLECTION_V1)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", ".grpc.reflection.v1."
    file.name, file.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(file)
