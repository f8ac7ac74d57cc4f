"""A pseudonymisation service on a real port (mTLS, its own SQLite database and key file)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from harness import secure_channel
from sqlalchemy import Engine

from baken.keyring import KeyRing
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc
from services.accesslog import store as access_log
from services.common import db
from services.common.settings import PseudonymiserSettings
from services.pseudonymiser.server import create_server
from services.pseudonymiser.servicer import OprfKeys
from services.running import RunningService

KEY_ID = "k2027-01"


@dataclass
class RunningPseudonymiser:
    server: RunningService
    settings: PseudonymiserSettings
    pki_dir: Path
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def keys(self) -> OprfKeys:
        return OprfKeys(KeyRing.load(self.settings.resolved_key_file()))

    def stub_for(self, party: str) -> pb_grpc.PseudonymiserServiceStub:
        channel = self._channels.get(party)
        if channel is None:
            channel = self._channels[party] = secure_channel(self.pki_dir, self.server.port, party)
        return pb_grpc.PseudonymiserServiceStub(channel)

    def log_entries(self) -> list[access_log.StoredEntry]:
        engine: Engine = db.make_engine(self.settings.resolved_database_url())
        try:
            with engine.connect() as connection:
                return access_log.search(connection, limit=10_000)
        finally:
            engine.dispose()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self.server.stop(grace=1)


@contextlib.contextmanager
def running_pseudonymiser(
    tmp_path: Path, pki_dir: Path, **overrides: Any
) -> Iterator[RunningPseudonymiser]:
    settings = PseudonymiserSettings(
        **{
            "address": "127.0.0.1:0",
            "data_dir": tmp_path / "pseudonymiser",
            "pki_dir": pki_dir,
            "first_key_id": KEY_ID,
            **overrides,
        }
    )
    server = create_server(settings)
    server.start()
    running = RunningPseudonymiser(server, settings, pki_dir)
    try:
        yield running
    finally:
        running.close()
