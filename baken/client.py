"""The ZSM client library: pseudonymise locally, then ask the registry.

No BSN or name leaves this process; only pseudonyms do.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence

import grpc
from google.type import date_pb2

from baken.clock import Clock, SystemClock
from baken.keyring import KeyRing
from baken.pki import TlsFiles, channel_credentials
from baken.pseudonym import Pseudonym, person_pseudonyms
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2

DEFAULT_TIMEOUT_S = 5.0

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "baken.registry.v1.RegistryService", "method": "Lookup"}],
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
    """An mTLS channel under the party's certificate that retries lookups on UNAVAILABLE and
    keeps idle connections alive."""
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


class RegistryClient:
    """What ZSM calls: lookup(bsn=...) or lookup(surname=..., birth_date=...)."""

    def __init__(
        self,
        channel: grpc.Channel,
        ring: KeyRing,
        *,
        clock: Clock | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._ring = ring
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
            self._ring, bsn=bsn, surname=surname, birth_date=birth_date, today=today
        )
        return subject_proto(pseudonyms)

    def lookup(
        self,
        *,
        bsn: str | None = None,
        surname: str | None = None,
        birth_date: dt.date | None = None,
    ) -> registry_service_pb2.LookupResponse:
        return self.lookup_subject(self.subject(bsn=bsn, surname=surname, birth_date=birth_date))

    def lookup_subject(self, subject: pseudonym_pb2.Subject) -> registry_service_pb2.LookupResponse:
        return self._stub.Lookup(
            registry_service_pb2.LookupRequest(subject=subject), timeout=self._timeout_s
        )

    def batch_lookup(
        self, subjects: Sequence[tuple[str, pseudonym_pb2.Subject]], *, per_message: int = 100
    ) -> Iterator[registry_service_pb2.BatchLookupResult]:
        """Look up a whole suspects monitor: (ref, subject) pairs, answered in order."""

        def requests() -> Iterator[registry_service_pb2.BatchLookupRequest]:
            for start in range(0, len(subjects), per_message):
                yield registry_service_pb2.BatchLookupRequest(
                    entries=[
                        registry_service_pb2.BatchLookupEntry(ref=ref, subject=subject)
                        for ref, subject in subjects[start : start + per_message]
                    ]
                )

        for response in self._stub.BatchLookup(requests(), timeout=self._timeout_s * 12):
            yield from response.results
