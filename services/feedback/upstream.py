"""The registry, as the feedback service uses it: routing lookups, and the signals of ZSM
lookups, taken over by a follower thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import grpc
import structlog

from baken import enums
from baken.backoff import Backoff
from baken.client import RETRYABLE
from baken.errors import BakenError, FailedPrecondition, Unavailable
from baken.houses import house_id_of
from baken.purposes import PURPOSES
from baken.registry.v1 import marker_pb2, registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2
from services.common.db import utc
from services.feedback.routing import Asked, Marking
from services.feedback.signals import SIGNAL_PAGE, Signals
from services.feedback.values import Freshness, Pseudonym, SignalIn

log = structlog.get_logger("baken.feedback")
DEADLINE = 5.0
# The registry's AdviceFreshness numbers, as the feedback service's tokens.
_FRESHNESS = {
    number: Freshness(word)
    for number, word in enums.tokens(marker_pb2.AdviceFreshness, "ADVICE_FRESHNESS_").items()
}
_TARGET_GROUPS = enums.tokens(marker_pb2.TargetGroup, "TARGET_GROUP_")


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _refused(error: grpc.RpcError, method: str) -> BakenError:
    return _refusal(error.code(), method)


def _refusal(code: grpc.StatusCode, method: str) -> BakenError:
    # RESOURCE_EXHAUSTED: over the service's rate or share at the registry; later it may go.
    if code in RETRYABLE or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Unavailable(
            "REGISTRY_UNAVAILABLE",
            "the registry cannot be reached for {registryMethod}",
            metadata={"registryMethod": method},
        )
    return FailedPrecondition(
        "REGISTRY_REFUSED",
        "the registry refused {registryMethod}: {registryCode}",
        metadata={"registryMethod": method, "registryCode": code.name},
    )


def _subject(subject: Sequence[Pseudonym]) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(
        pseudonyms=[
            pseudonym_pb2.Pseudonym(
                kind=pseudonym_pb2.PseudonymKind.ValueType(kind), key_id=key_id, value=value
            )
            for kind, key_id, value in subject
        ]
    )


def _markings(response: registry_service_pb2.LookupResponse) -> list[Marking]:
    return [
        Marking(house_id_of(m.house.name), m.source_record_id, _FRESHNESS.get(m.advice.freshness))
        for m in response.markers
        if m.house.name and m.source_record_id
    ]


class GrpcRegistry:
    """The registry over mTLS, under the feedback service's own certificate, with at most
    `in_flight` calls at once: the registry admits a party only so many
    (services/common/admission.py), and the feedback service speaks for every desk, so its calls
    wait here for a place rather than be refused there."""

    def __init__(self, channel: grpc.Channel, *, in_flight: int) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._places = threading.BoundedSemaphore(in_flight)

    @contextlib.contextmanager
    def _place(self, method: str) -> Iterator[None]:
        if not self._places.acquire(timeout=DEADLINE):
            raise Unavailable(
                "REGISTRY_BUSY",
                "no place for a {registryMethod} call at the registry; try later",
                metadata={"registryMethod": method},
            )
        try:
            yield
        finally:
            self._places.release()

    def markings(
        self, asked: Sequence[Asked], *, on_behalf_of: str, purpose: str
    ) -> list[list[Marking] | BakenError]:
        """One Lookup for one person, one BatchLookup message for several."""
        if len(asked) == 1:
            one = asked[0]
            request = registry_service_pb2.LookupRequest(
                subject=_subject(one.subject),
                purpose=PURPOSES[purpose],
                case_reference=one.case_reference,
                on_behalf_of=on_behalf_of,
                subject_age=registry_service_pb2.SubjectAge.ValueType(one.subject_age),
            )
            try:
                with self._place("Lookup"):
                    response = self._stub.Lookup(request, timeout=DEADLINE)
            except grpc.RpcError as error:
                raise _refused(error, "Lookup") from None
            return [_markings(response)]
        batch = registry_service_pb2.BatchLookupRequest(
            entries=[
                registry_service_pb2.BatchLookupEntry(
                    ref=str(i),
                    subject=_subject(a.subject),
                    case_reference=a.case_reference,
                    subject_age=registry_service_pb2.SubjectAge.ValueType(a.subject_age),
                )
                for i, a in enumerate(asked)
            ],
            purpose=PURPOSES[purpose],
            on_behalf_of=on_behalf_of,
        )
        try:
            with self._place("BatchLookup"):
                (answer,) = self._stub.BatchLookup(iter([batch]), timeout=DEADLINE)
        except grpc.RpcError as error:
            raise _refused(error, "BatchLookup") from None
        return [
            _markings(r.lookup)
            if r.HasField("lookup")
            else _refusal(_CODES.get(r.error.code, grpc.StatusCode.UNKNOWN), "BatchLookup")
            for r in answer.results
        ]

    def pull_signals(self, after: int, page_size: int) -> list[SignalIn]:
        try:
            with self._place("PullSignals"):
                response = self._stub.PullSignals(
                    registry_service_pb2.PullSignalsRequest(
                        after_sequence=after, page_size=page_size
                    ),
                    timeout=DEADLINE,
                )
        except grpc.RpcError as error:
            raise _refused(error, "PullSignals") from None
        return [
            SignalIn(
                s.sequence,
                house_id_of(s.house),
                s.source_record_id,
                s.case_reference,
                s.zsm_location,
                utc(s.lookup_time.ToDatetime()),
                *(
                    (house_id_of(s.other_house), _TARGET_GROUPS.get(s.other_target_group, ""))
                    if s.kind == registry_service_pb2.SIGNAL_KIND_MATCH
                    else ()
                ),
            )
            for s in response.signals
        ]


class SignalFollower:
    """Takes the registry's signals over into delivery items, page by page. The cursor is
    stored with the items; the next pull confirms it to the registry, which then forgets."""

    def __init__(self, signals: Signals, *, poll_seconds: float, page: int = SIGNAL_PAGE) -> None:
        self._signals = signals
        self._poll = poll_seconds
        # While the registry is away: twice the poll interval, doubling, up to 60 of them.
        self._retry = Backoff(2 * poll_seconds, 60 * poll_seconds, (0.8, 1.2))
        self._page = page
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signal-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def follow_once(self) -> int:
        """One page; how many signals it took over."""
        return self._signals.follow(self._page)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                taken = self.follow_once()
                failures = 0
            except Unavailable:
                failures += 1
                taken = 0
            except Exception as error:
                failures += 1
                taken = 0
                log.error("signal follower", error=type(error).__name__)
            if taken < self._page:
                self._stop.wait(self._retry.delay(failures) if failures else self._poll)
