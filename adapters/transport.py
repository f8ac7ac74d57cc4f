"""How an adapter calls the services, under its own certificate: SyncMarkers batches to the
registry, retried while it is unreachable, and AnswerAdviceRequest to the feedback service."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc

from baken.backoff import Backoff
from baken.client import RETRYABLE
from baken.feedback.v1 import feedback_service_pb2, feedback_service_pb2_grpc
from baken.registry.v1 import marker_pb2, registry_service_pb2, registry_service_pb2_grpc

ATTEMPTS = 6
SEND_BACKOFF = Backoff(0.25, 10.0, (0.5, 1.5))


Send = Callable[[Sequence[marker_pb2.MarkerChange]], registry_service_pb2.SyncMarkersResponse]


def sender(
    channel: grpc.Channel, *, timeout_s: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> Send:
    """One SyncMarkers call per batch, retried with exponential backoff and jitter while the
    registry is unreachable; any other error ends the sync (what was confirmed stays)."""
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)

    def send(
        changes: Sequence[marker_pb2.MarkerChange],
    ) -> registry_service_pb2.SyncMarkersResponse:
        request = registry_service_pb2.SyncMarkersRequest(changes=changes)
        for attempt in range(ATTEMPTS):
            try:
                response: registry_service_pb2.SyncMarkersResponse = stub.SyncMarkers(
                    iter([request]), timeout=timeout_s
                )
                return response
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or attempt == ATTEMPTS - 1:
                    raise
                sleep(SEND_BACKOFF.delay(attempt + 1))
        raise AssertionError("unreachable")

    return send


Answer = Callable[[str], None]
"""Tells the feedback service the house answered the advice request of this name
("adviceRequests/{id}", as its delivery item carried it)."""


def answerer(channel: grpc.Channel, *, timeout_s: float = 10.0) -> Answer:
    """AnswerAdviceRequest on the feedback service, under the adapter's own certificate; raises
    grpc.RpcError (the sync keeps the request and tries again next run)."""
    stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)

    def answer(name: str) -> None:
        stub.AnswerAdviceRequest(
            feedback_service_pb2.AnswerAdviceRequestRequest(name=name), timeout=timeout_s
        )

    return answer
