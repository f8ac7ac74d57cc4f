"""Domain errors and their one mapping to gRPC status with google.rpc details (AIP-193)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "baken.nl"
NO_METADATA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One offending field: a path such as "subject.pseudonyms[0].value", and what is wrong."""

    field: str
    description: str

    def to_proto(self) -> error_details_pb2.BadRequest.FieldViolation:
        return error_details_pb2.BadRequest.FieldViolation(
            field=self.field, description=self.description
        )


class BakenError(Exception):
    """An error a caller can act on. Messages never carry personal data, and neither does
    metadata.

    Every dynamic value of the message is in `metadata` too, which goes into ErrorInfo.metadata
    under a lowerCamelCase key (AIP-193), so that a client never parses a message. With
    metadata, `message` is a template whose `{key}` fields are filled from it
    (`str.format_map`): the message shows what the metadata says and cannot drift from it. Without
    metadata the message is taken as it is."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(
        self, reason: str, message: str, *, metadata: Mapping[str, str] = NO_METADATA
    ) -> None:
        self.reason = reason
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata))
        self.message = message.format_map(self.metadata) if self.metadata else message
        super().__init__(self.message)

    def details(self) -> list[any_pb2.Any]:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        return [info]

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(
            code=self.code.value[0], message=self.message, details=self.details()
        )


class InvalidArgument(BakenError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self, violations: Iterable[FieldViolation], reason: str = "INVALID_ARGUMENT"
    ) -> None:
        self.violations = list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(reason, f"invalid request: {fields}")

    def details(self) -> list[any_pb2.Any]:
        bad_request = any_pb2.Any()
        bad_request.Pack(
            error_details_pb2.BadRequest(field_violations=[v.to_proto() for v in self.violations])
        )
        return [*super().details(), bad_request]


class NotFound(BakenError):
    code = grpc.StatusCode.NOT_FOUND


class RateLimited(BakenError):
    """The calling party spent its rate limit; RetryInfo says when it may call again."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, party: str, per_second: float, retry_after: float) -> None:
        super().__init__(
            "RATE_LIMITED",
            "party {party} is over its limit of {callsPerSecond} calls a second "
            "(a batch counts each entry); retry after {retryAfterSeconds} s",
            metadata={
                "party": party,
                "callsPerSecond": f"{per_second:g}",
                # Rounded up: a client that waits this long is not refused again for it.
                "retryAfterSeconds": f"{math.ceil(retry_after * 10) / 10:.1f}",
            },
        )
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromTimedelta(dt.timedelta(seconds=self.retry_after))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return [*super().details(), retry]


class TooManyCalls(BakenError):
    """The calling party holds as many calls at once as it may; one must end first."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, party: str, limit: int) -> None:
        super().__init__(
            "TOO_MANY_CALLS",
            "party {party} holds {inFlightLimit} calls at once, as many as it may; end one first",
            metadata={"party": party, "inFlightLimit": str(limit)},
        )


class DeadlineExceeded(BakenError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UserError(Exception):
    """Something a CLI user can fix; printed as one line, without a traceback."""


def internal_status(request_id: str) -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error; quote request id {request_id}"
    )


class PermissionDenied(BakenError):
    """The caller may not do this: no covenant in force grants it, or the certificate's party is
    not in the register. Raised before anything about the data is looked at."""

    code = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(BakenError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(BakenError):
    """A service this one needs cannot be reached now; the call may be retried as it is."""

    code = grpc.StatusCode.UNAVAILABLE


class ListenError(Exception):
    """A server (a service, its metrics endpoint) cannot listen on the address it was given."""
