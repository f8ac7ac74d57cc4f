"""The ZSM client library: pseudonymise locally, then ask the registry.

No BSN or name leaves this process; only pseudonyms do.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_status import rpc_status

from baken.age import claimed_minor
from baken.clock import Clock, SystemClock
from baken.keyring import KeyRing
from baken.pki import TlsFiles, channel_credentials
from baken.pseudonym import Pseudonym, person_pseudonyms
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2, purpose_pb2

DEFAULT_TIMEOUT_S = 5.0
INTAKE = purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE

# Codes after which the same call may go again: the service was not reached or did not answer
# in time. Every other code is an answer, and sending the call again would get the same one.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# The calls gRPC itself sends again on UNAVAILABLE (at most 4 attempts, exponential backoff
# from 0.1 s to 1 s with jitter, within the call's deadline): those that change nothing, or
# change it once whatever the number of attempts (RecordDecision by its request key,
# RecordInflow by desk and case, an acknowledgement or an answer by its item's key, a
# cancellation by its request's name). Not here: RequestAdvice (a second request would be a
# second request), BatchLookup (each look-up is logged), the streams (the adapters reconnect
# with their own backoff).
_IDEMPOTENT = {
    "baken.registry.v1.RegistryService": ["Lookup", "GetHouse", "ListHouses", "PullSignals"],
    "baken.audit.v1.AuditService": [
        "ListAccessEntries",
        "ListAnomalies",
        "ListPendingReviews",
        "GetSignedHead",
    ],
    "baken.feedback.v1.FeedbackService": [
        "RecordDecision",
        "RecordInflow",
        "AnswerAdviceRequest",
        "CancelAdviceRequest",
        "ListAdviceRequests",
        "AcknowledgeDelivery",
        "ListDeadLetters",
    ],
    "baken.report.v1.ReportService": ["GetMonthlyFigures"],
}
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in _IDEMPOTENT.items()
                    for method in methods
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def connect(target: str, tls: TlsFiles) -> grpc.Channel:
    """An mTLS channel under the party's certificate that sends idempotent calls again on
    UNAVAILABLE (see _IDEMPOTENT) and keeps idle connections alive (a ping a minute)."""
    return grpc.secure_channel(
        target,
        channel_credentials(tls),
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ],
    )


def date_proto(day: dt.date | None) -> date_pb2.Date | None:
    """A calendar date as google.type.Date (None stays unset)."""
    return date_pb2.Date(year=day.year, month=day.month, day=day.day) if day else None


def subject_proto(pseudonyms: Iterable[Pseudonym]) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(
        pseudonyms=[
            pseudonym_pb2.Pseudonym(kind=p.kind, key_id=p.key_id, value=p.value) for p in pseudonyms
        ]
    )


def subject_age(minor: bool | None) -> registry_service_pb2.SubjectAge.ValueType:
    if minor is None:
        return registry_service_pb2.SUBJECT_AGE_UNSPECIFIED
    return (
        registry_service_pb2.SUBJECT_AGE_MINOR if minor else registry_service_pb2.SUBJECT_AGE_ADULT
    )


def error_reason(error: grpc.RpcError) -> str | None:
    """The ErrorInfo reason of a refused call (e.g. PURPOSE_NOT_GRANTED), if it carries one."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason) or None
    return None


@dataclass(frozen=True, slots=True)
class Suspect:
    """One suspect of a BatchLookup: the caller's ref, his pseudonyms, case and age."""

    ref: str
    subject: pseudonym_pb2.Subject
    case_reference: str = ""
    minor: bool | None = None


class RegistryClient:
    """What ZSM calls: lookup(bsn=...) or lookup(surname=..., birth_date=...), for a purpose.
    The ring's OPRF keys are evaluated through its evaluator (baken/pseudonymiser_client.py).

    `on_behalf_of` is the user at the desk (an employee number): the access log records it as
    the responsible user, next to the party of the channel's certificate."""

    def __init__(
        self,
        channel: grpc.Channel,
        ring: KeyRing,
        *,
        on_behalf_of: str,
        clock: Clock | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._ring = ring
        self._user = on_behalf_of
        self._clock = clock or SystemClock()
        self._timeout_s = timeout_s

    def subject(
        self,
        *,
        bsn: str | None = None,
        surname: str | None = None,
        birth_date: dt.date | None = None,
    ) -> pseudonym_pb2.Subject:
        """Pseudonyms under every key of the ring; raises InvalidIdentifier on a bad BSN or name."""
        today = self._clock.today()
        pseudonyms = person_pseudonyms(
            self._ring,
            bsn=bsn,
            surname=surname,
            birth_date=birth_date,
            today=today,
        )
        return subject_proto(pseudonyms)

    def lookup(
        self,
        *,
        bsn: str | None = None,
        surname: str | None = None,
        birth_date: dt.date | None = None,
        purpose: purpose_pb2.Purpose.ValueType = INTAKE,
        case_reference: str = "",
        minor: bool | None = None,
        break_glass_reason: str = "",
    ) -> registry_service_pb2.LookupResponse:
        """`minor` defaults to what the birth date says, when given; a `minor` the birth date
        contradicts is a ValueError (baken.age.claimed_minor)."""
        minor = claimed_minor(minor, birth_date, self._clock.today())
        return self.lookup_subject(
            self.subject(bsn=bsn, surname=surname, birth_date=birth_date),
            purpose=purpose,
            case_reference=case_reference,
            minor=minor,
            break_glass_reason=break_glass_reason,
        )

    def lookup_subject(
        self,
        subject: pseudonym_pb2.Subject,
        *,
        purpose: purpose_pb2.Purpose.ValueType = INTAKE,
        case_reference: str = "",
        minor: bool | None = None,
        break_glass_reason: str = "",
    ) -> registry_service_pb2.LookupResponse:
        request = registry_service_pb2.LookupRequest(
            subject=subject,
            purpose=purpose,
            case_reference=case_reference,
            on_behalf_of=self._user,
            subject_age=subject_age(minor),
            break_glass_reason=break_glass_reason,
        )
        return self._stub.Lookup(request, timeout=self._timeout_s)

    def batch_lookup(
        self,
        suspects: Sequence[Suspect],
        *,
        purpose: purpose_pb2.Purpose.ValueType = INTAKE,
        per_message: int = 100,
    ) -> Iterator[registry_service_pb2.BatchLookupResult]:
        """Look up a whole suspects monitor, answered in order."""

        def requests() -> Iterator[registry_service_pb2.BatchLookupRequest]:
            for start in range(0, len(suspects), per_message):
                yield registry_service_pb2.BatchLookupRequest(
                    purpose=purpose,
                    on_behalf_of=self._user,
                    entries=[
                        registry_service_pb2.BatchLookupEntry(
                            ref=s.ref,
                            subject=s.subject,
                            case_reference=s.case_reference,
                            subject_age=subject_age(s.minor),
                        )
                        for s in suspects[start : start + per_message]
                    ],
                )

        for response in self._stub.BatchLookup(requests(), timeout=self._timeout_s * 12):
            yield from response.results
