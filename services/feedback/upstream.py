"""The registry, as the feedback service uses it: routing lookups, and the signals of ZSM
lookups, taken over by a follower thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc
import structlog

from baken.backoff import Backoff
from baken.client import RETRYABLE
from baken.errors import FailedPrecondition, Unavailable
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2
from services.feedback.feedback import SIGNAL_PAGE, Feedback, SignalIn
from services.feedback.routing import Marking
from services.registry.access_log import utc

log = structlog.get_logger("baken.feedback")
DEADLINE = 5.0


def _refused(error: grpc.RpcError, what: str) -> Exception:
    code = error.code()
    if code in RETRYABLE:
        return Unavailable("REGISTRY_UNAVAILABLE", f"the registry cannot be reached for {what}")
    return FailedPrecondition("REGISTRY_REFUSED", f"the registry refused {what}: {code.name}")


class GrpcRegistry:
    """The registry over mTLS, under the feedback service's own certificate."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel)

    def markings(
        self,
        subject: Sequence[tuple[int, str, bytes]],
        *,
        case_reference: str,
        subject_age: int,
        on_behalf_of: str,
        purpose: int,
    ) -> list[Marking]:
        request = registry_service_pb2.LookupRequest(
            subject=pseudonym_pb2.Subject(
                pseudonyms=[
                    pseudonym_pb2.Pseudonym(kind=kind, key_id=key_id, value=value)  # type: ignore[arg-type]
                    for kind, key_id, value in subject
                ]
            ),
            purpose=purpose,  # type: ignore[arg-type]
            case_reference=case_reference,
            on_behalf_of=on_behalf_of,
            subject_age=subject_age,  # type: ignore[arg-type]
        )
        try:
            response = self._stub.Lookup(request, timeout=DEADLINE)
        except grpc.RpcError as error:
            raise _refused(error, "the routing lookup") from None
        return [
            Marking(m.house.name.removeprefix("houses/"), m.source_record_id, m.advice.freshness)
            for m in response.markers
            if m.house.name and m.source_record_id
        ]

    def pull_signals(self, after: int, page_size: int) -> list[SignalIn]:
        try:
            response = self._stub.PullSignals(
                registry_service_pb2.PullSignalsRequest(after_sequence=after, page_size=page_size),
                timeout=DEADLINE,
            )
        except grpc.RpcError as error:
            raise _refused(error, "signals") from None
        return [
            SignalIn(
                s.sequence,
                s.house.removeprefix("houses/"),
                s.source_record_id,
                s.case_reference,
                s.zsm_location,
                utc(s.lookup_time.ToDatetime()),
            )
            for s in response.signals
        ]


class SignalFollower:
    """Takes the registry's signals over into delivery items, page by page. The cursor is
    stored with the items; the next pull confirms it to the registry, which then forgets."""

    def __init__(self, feedback: Feedback, *, poll_seconds: float, page: int = SIGNAL_PAGE) -> None:
        self._feedback = feedback
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
        return self._feedback.follow_signals(self._page)

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
