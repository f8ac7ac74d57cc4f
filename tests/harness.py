"""A running registry as the tests drive it: stub, clock and a view of the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Engine, MetaData, select

from baken import pki
from baken.clock import AMSTERDAM, FixedClock
from baken.registry.v1 import marker_pb2, registry_service_pb2, registry_service_pb2_grpc
from baken.settings import RegistrySettings


def dump_tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in a stable order: for comparing states and searching them."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            name: sorted(
                (dict(row._mapping) for row in connection.execute(select(table))),
                key=lambda row: repr(sorted(row.items())),
            )
            for name, table in metadata.tables.items()
        }


@dataclass
class RunningRegistry:
    """A registry server on a real port, its channel and stub, and the clock it reads."""

    stub: registry_service_pb2_grpc.RegistryServiceStub
    channel: grpc.Channel
    clock: FixedClock
    port: int
    database_url: str
    data_dir: Path
    engine: Engine
    settings: RegistrySettings

    def sync(
        self, *changes: marker_pb2.MarkerChange, per_message: int = 5000
    ) -> registry_service_pb2.SyncMarkersResponse:
        """Send the changes as one SyncMarkers stream, `per_message` changes per message."""
        messages = [
            registry_service_pb2.SyncMarkersRequest(changes=changes[i : i + per_message])
            for i in range(0, len(changes), per_message)
        ]
        return self.sync_messages(messages)

    def sync_messages(
        self, messages: Iterable[registry_service_pb2.SyncMarkersRequest]
    ) -> registry_service_pb2.SyncMarkersResponse:
        response: registry_service_pb2.SyncMarkersResponse = self.stub.SyncMarkers(
            iter(list(messages)), timeout=30
        )
        return response

    def lookup(self, subject: Any) -> registry_service_pb2.LookupResponse:
        response: registry_service_pb2.LookupResponse = self.stub.Lookup(
            registry_service_pb2.LookupRequest(subject=subject), timeout=10
        )
        return response

    def set_today(self, day: dt.date) -> None:
        """Move the clock to noon in Amsterdam on `day`."""
        target = dt.datetime.combine(day, dt.time(12), tzinfo=AMSTERDAM)
        self.clock.advance(target - self.clock.now())

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return dump_tables(self.engine)


def secure_channel(
    pki_dir: Path, port: int, party: str = "zsm-midden-nederland-kpc"
) -> grpc.Channel:
    """A channel to a local registry under a party's certificate."""
    credentials = pki.channel_credentials(pki.TlsFiles.of(pki_dir, party))
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)
