"""A feedback service on a real port, in front of a real registry, and what tests do with it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from builders import Person, subject
from harness import RunningRegistry, dump_tables, secure_channel
from sqlalchemy import Engine

import services.common.db
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2
from services.common.settings import FeedbackSettings
from services.feedback.server import FeedbackServer, create_server

PG_ENV = "BAKEN_TEST_DATABASE_URL"
KPC_ROTTERDAM = "zsm-rotterdam-rijnmond-kpc"
KPC_UTRECHT = "zsm-midden-nederland-kpc"
USER = "kpc-0042"


@contextlib.contextmanager
def second_database(registry_url: str, tmp_path: Path) -> Iterator[str]:
    """The feedback service's own database, of the same kind as the registry's."""
    if registry_url.startswith("sqlite"):
        directory = tmp_path / "feedback-db"
        directory.mkdir(exist_ok=True)
        yield services.common.db.sqlite_url(directory, "feedback.db")
        return
    with services.common.db.scratch_schema(os.environ[PG_ENV], "f") as url:
        yield url


def feedback_settings(
    registry: RunningRegistry, database_url: str, tmp_path: Path, **overrides: Any
) -> FeedbackSettings:
    values: dict[str, Any] = {
        "address": "127.0.0.1:0",
        "database_url": database_url,
        "data_dir": tmp_path / "feedback",
        "max_workers": 16,
        "pki_dir": registry.pki_dir,
        "covenants_dir": registry.settings.covenants_dir,
        "registry": f"127.0.0.1:{registry.port}",
        "redelivery_base_seconds": 0.2,
        "redelivery_cap_seconds": 1.0,
        "max_attempts": 3,
        "poll_seconds": 0.1,
        "signal_poll_seconds": 0.1,
        **overrides,
    }
    return FeedbackSettings(**values)


@dataclass
class RunningFeedback:
    """The feedback server, its database, the registry behind it, and channels per party."""

    server: FeedbackServer
    registry: RunningRegistry
    engine: Engine
    settings: FeedbackSettings
    ring: KeyRing
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def stub_for(self, party: str) -> feedback_service_pb2_grpc.FeedbackServiceStub:
        channel = self._channels.get(party)
        if channel is None:
            channel = self._channels[party] = secure_channel(
                self.registry.pki_dir, self.server.port, party
            )
        return feedback_service_pb2_grpc.FeedbackServiceStub(channel)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def decide(
        self, person: Person, party: str = KPC_ROTTERDAM, **fields: Any
    ) -> pb.RecordDecisionResponse:
        """RecordDecision with the defaults of a final dagvaarding about an adult."""
        response: pb.RecordDecisionResponse = self.stub_for(party).RecordDecision(
            decision_request(self.ring, person, **fields), timeout=10
        )
        return response

    def receive(
        self, house: str, *, count: int, party: str, timeout: float = 5.0
    ) -> list[pb.Delivery]:
        """The first `count` items the house's stream sends (unacknowledged)."""
        stream = self.stub_for(party).SubscribeDeliveries(
            pb.SubscribeDeliveriesRequest(house=f"houses/{house}"), timeout=timeout
        )
        got: list[pb.Delivery] = []
        try:
            for delivery in stream:
                got.append(delivery)
                if len(got) == count:
                    break
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            stream.cancel()
            # Until the server's end of the stream has gone too: a stream that lingers would
            # take (and count) the next attempt of an item the test waits for.
            deadline = time.monotonic() + 5
            while self.server.outbox.streams(house) and time.monotonic() < deadline:
                time.sleep(0.01)
        return got

    def ack(self, key: str, party: str, failure: str = "") -> None:
        self.stub_for(party).AcknowledgeDelivery(
            pb.AcknowledgeDeliveryRequest(key=key, failure=failure), timeout=5
        )

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return dump_tables(self.engine)

    def stored(self, row: dict[str, Any]) -> pb.Delivery:
        """A delivery row's content, opened with the service's at-rest keys."""
        return pb.Delivery.FromString(self.server.outbox.opened(row["key"], row["payload"]))


def decision_request(ring: KeyRing, person: Person, **fields: Any) -> pb.RecordDecisionRequest:
    values: dict[str, Any] = {
        "case_reference": "10-123456-26",
        "subject": subject(ring, person),
        "code": pb.DECISION_CODE_DAGVAARDING,
        "stage": pb.DECISION_STAGE_FINAL,
        "subject_age": registry_service_pb2.SUBJECT_AGE_ADULT,
        "on_behalf_of": USER,
        **fields,
    }
    return pb.RecordDecisionRequest(**values)


@contextlib.contextmanager
def running_feedback(
    registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
    **overrides: Any,
) -> Iterator[RunningFeedback]:
    with second_database(registry.database_url, tmp_path) as url:
        settings = feedback_settings(registry, url, tmp_path, **overrides)
        server = create_server(settings, registry.clock)
        server.start(follow_signals=False)
        running = RunningFeedback(server, registry, engines(url), settings, ring)
        try:
            yield running
        finally:
            running.close()
            server.stop(grace=None)
