"""A running registry as the tests drive it: stub, clock and a view of the database."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import Engine, MetaData, select

from baken import pki
from baken.clock import AMSTERDAM, FixedClock
from baken.registry.v1 import house_pb2, marker_pb2, registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import purpose_pb2
from services.common.settings import RegistrySettings
from services.registry.server import create_server

# Grants every field to the test desks; tests of the shipped covenants use SHIPPED_COVENANTS.
TEST_COVENANTS = Path(__file__).parent / "covenants"


# Every call spends from its party's rate bucket, valid or not (a rejected call too).
SPENT_BY_EVERY_CALL = frozenset({"rate_buckets"})


def dump_tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table but the rate buckets, in a stable order: for comparing states
    and searching them."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return {
            name: sorted(
                (dict(row._mapping) for row in connection.execute(select(table))),
                key=lambda row: repr(sorted(row.items())),
            )
            for name, table in metadata.tables.items()
            if name not in SPENT_BY_EVERY_CALL
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
    pki_dir: Path
    metrics_port: int | None = None  # when settings.metrics_address is set
    # One run of the server's expirer (docs/RETENTION.md); what went, by kind.
    expire: Callable[[], dict[str, int]] = lambda: {}

    @classmethod
    def on(
        cls,
        port: int,
        settings: RegistrySettings,
        clock: FixedClock,
        engine: Engine,
        metrics_port: int | None = None,
    ) -> RunningRegistry:
        """The registry serving on `port` with `settings`, called as the default party."""
        channel = secure_channel(settings.pki_dir, port)
        return cls(
            stub=registry_service_pb2_grpc.RegistryServiceStub(channel),
            channel=channel,
            clock=clock,
            port=port,
            database_url=settings.resolved_database_url(),
            data_dir=settings.data_dir,
            engine=engine,
            settings=settings,
            pki_dir=settings.pki_dir,
            metrics_port=metrics_port,
        )

    def stub_for(self, party: str) -> registry_service_pb2_grpc.RegistryServiceStub:
        """A stub calling under another party's certificate (closed with the registry)."""
        channel = self._channels.get(party)
        if channel is None:
            channel = self._channels[party] = secure_channel(self.pki_dir, self.port, party)
        return registry_service_pb2_grpc.RegistryServiceStub(channel)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self.channel.close()

    def __post_init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}

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
        """Each change under the certificate of its source system's adapter. A stream that
        mixes source systems goes as one stream per adapter, in order of first appearance,
        and the answers are merged (rejection indexes are positions in the whole stream)."""
        streams: dict[str, list[registry_service_pb2.SyncMarkersRequest]] = {}
        positions: dict[str, list[int]] = {}
        index = 0
        for message in messages:
            parts: dict[str, registry_service_pb2.SyncMarkersRequest] = {}
            for change in message.changes:
                record = change.upsert if change.HasField("upsert") else change.tombstone
                party = ADAPTERS.get(record.source_system, "adapter-pga")
                if party not in parts:
                    parts[party] = registry_service_pb2.SyncMarkersRequest()
                    streams.setdefault(party, []).append(parts[party])
                parts[party].changes.append(change)
                positions.setdefault(party, []).append(index)
                index += 1
            if not message.changes:  # sent as it is, to see it refused
                streams.setdefault("adapter-pga", []).append(message)
        total = registry_service_pb2.SyncMarkersResponse()
        for party, stream in (streams or {"adapter-pga": []}).items():
            response = self.stub_for(party).SyncMarkers(iter(stream), timeout=30)
            for name in ("created", "updated", "deleted", "unchanged", "rejected"):
                setattr(total, name, getattr(total, name) + getattr(response, name))
            for rejection in response.rejections:
                rejection.index = positions.get(party, [])[rejection.index]
                total.rejections.append(rejection)
        total.rejections.sort(key=lambda r: r.index)
        return total

    def lookup(self, subject: Any, **fields: Any) -> registry_service_pb2.LookupResponse:
        """Lookup as the KPC'er at intake, unless `fields` say otherwise (party=... too)."""
        stub = self.stub_for(fields.pop("party")) if "party" in fields else self.stub
        response: registry_service_pb2.LookupResponse = stub.Lookup(
            lookup_request(subject, **fields), timeout=10
        )
        return response

    def set_today(self, day: dt.date) -> None:
        """Move the clock to noon in Amsterdam on `day`."""
        target = dt.datetime.combine(day, dt.time(12), tzinfo=AMSTERDAM)
        self.clock.advance(target - self.clock.now())

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return dump_tables(self.engine)


ADAPTERS = {
    house_pb2.SOURCE_SYSTEM_GCOS: "adapter-gcos",
    house_pb2.SOURCE_SYSTEM_AMAZONE: "adapter-amazone",
    house_pb2.SOURCE_SYSTEM_PGA: "adapter-pga",
}
USER = "kpc-0042"


def lookup_request(subject: Any = None, **fields: Any) -> registry_service_pb2.LookupRequest:
    """A LookupRequest with the defaults of a KPC'er at intake: purpose, user and age set."""
    values: dict[str, Any] = {
        "purpose": purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE,
        "on_behalf_of": USER,
        "subject_age": registry_service_pb2.SUBJECT_AGE_ADULT,
        **fields,
    }
    if subject is not None:
        values["subject"] = subject
    return registry_service_pb2.LookupRequest(**values)


def batch_request(
    entries: Iterable[registry_service_pb2.BatchLookupEntry], **fields: Any
) -> registry_service_pb2.BatchLookupRequest:
    """A BatchLookupRequest at intake; entries without an age are adults."""
    entries = list(entries)
    for entry in entries:
        if not entry.subject_age:
            entry.subject_age = registry_service_pb2.SUBJECT_AGE_ADULT
    values: dict[str, Any] = {
        "purpose": purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE,
        "on_behalf_of": USER,
        **fields,
    }
    return registry_service_pb2.BatchLookupRequest(entries=entries, **values)


@contextlib.contextmanager
def running_registry(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
    covenants_dir: Path = TEST_COVENANTS,
    **overrides: Any,
) -> Iterator[RunningRegistry]:
    """A registry server on 127.0.0.1:0 (settings `overrides` given), stopped as a service
    stops: graceful, the access log's head signed, the metrics endpoint closed."""
    settings = RegistrySettings(
        **{
            "address": "127.0.0.1:0",
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "max_workers": 16,
            "covenants_dir": covenants_dir,
            "pki_dir": pki_dir,
            **overrides,
        }
    )
    server = create_server(settings, clock)
    server.start()
    running = RunningRegistry.on(
        server.port, settings, clock, engines(database_url), server.metrics_port
    )
    assert server.expirer is not None
    running.expire = server.expirer.expire
    try:
        yield running
    finally:
        running.close()
        server.stop(grace=None)


def secure_channel(
    pki_dir: Path, port: int, party: str = "zsm-midden-nederland-kpc"
) -> grpc.Channel:
    """A channel to a local registry under a party's certificate."""
    credentials = pki.channel_credentials(pki.TlsFiles.of(pki_dir, party))
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)
