"""Clients send a call again only when that is safe and useful: an idempotent call after
UNAVAILABLE, within its deadline; never after an answer such as INVALID_ARGUMENT, and never a
call that would act twice (RequestAdvice). Against a stand-in server that fails on purpose."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from baken import pki
from baken.client import connect
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.registry.v1 import house_pb2, registry_service_pb2, registry_service_pb2_grpc


class Flaky(
    registry_service_pb2_grpc.RegistryServiceServicer,
    feedback_service_pb2_grpc.FeedbackServiceServicer,
):
    """GetHouse: UNAVAILABLE twice, then an answer. ListHouses: INVALID_ARGUMENT. RequestAdvice
    and ListAdviceRequests: always UNAVAILABLE."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, name: str) -> int:
        with self._lock:
            self.calls[name] += 1
            return self.calls[name]

    def GetHouse(
        self, request: registry_service_pb2.GetHouseRequest, context: grpc.ServicerContext
    ) -> house_pb2.House:
        if self._count("GetHouse") <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "starting")
        return house_pb2.House(name=request.name)

    def ListHouses(
        self, request: registry_service_pb2.ListHousesRequest, context: grpc.ServicerContext
    ) -> registry_service_pb2.ListHousesResponse:
        self._count("ListHouses")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size: bad")

    def RequestAdvice(
        self, request: fb.RequestAdviceRequest, context: grpc.ServicerContext
    ) -> fb.AdviceRequest:
        self._count("RequestAdvice")
        context.abort(grpc.StatusCode.UNAVAILABLE, "away")

    def ListAdviceRequests(
        self, request: fb.ListAdviceRequestsRequest, context: grpc.ServicerContext
    ) -> fb.ListAdviceRequestsResponse:
        self._count("ListAdviceRequests")
        context.abort(grpc.StatusCode.UNAVAILABLE, "away")


@pytest.fixture
def flaky(pki_dir: Path) -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server)
    feedback_service_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, server)
    port = server.add_secure_port(
        "127.0.0.1:0", pki.server_credentials(pki.TlsFiles.of(pki_dir, "registry"))
    )
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_an_idempotent_call_goes_again_after_unavailable(
    flaky: tuple[Flaky, str], pki_dir: Path
) -> None:
    servicer, target = flaky
    with connect(target, pki.TlsFiles.of(pki_dir, "zsm-midden-nederland-kpc")) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        house = stub.GetHouse(registry_service_pb2.GetHouseRequest(name="houses/x"), timeout=5)
        assert house.name == "houses/x" and servicer.calls["GetHouse"] == 3

        with pytest.raises(grpc.RpcError) as caught:
            stub.ListHouses(registry_service_pb2.ListHousesRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert servicer.calls["ListHouses"] == 1  # an answer is not asked again

        feedback = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            feedback.RequestAdvice(fb.RequestAdviceRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls["RequestAdvice"] == 1  # a second request would be a second one

        with pytest.raises(grpc.RpcError) as caught:
            feedback.ListAdviceRequests(fb.ListAdviceRequestsRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert servicer.calls["ListAdviceRequests"] == 4  # every attempt, then the truth
