"""A pseudonymisation service on a real port (mTLS, its own SQLite database and key file)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from harness import secure_channel
from sqlalchemy import Engine

from baken.keyring import KeyRing, OprfEvaluator
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc
from baken.pseudonymiser_client import ServiceOprf
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
    _channels: dict[tuple[int, str], grpc.Channel] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def keys(self) -> OprfKeys:
        return OprfKeys(KeyRing.load(self.settings.resolved_key_file()))

    def _channel(self, party: str, port: int | None = None) -> grpc.Channel:
        """`party`'s channel to this service, or to another local one at `port`; kept open
        until close()."""
        port = port or self.server.port
        channel = self._channels.get((port, party))
        if channel is None:
            channel = self._channels[port, party] = secure_channel(self.pki_dir, port, party)
        return channel

    def stub_for(self, party: str) -> pb_grpc.PseudonymiserServiceStub:
        return pb_grpc.PseudonymiserServiceStub(self._channel(party))

    def ring(
        self, key_id: str, party: str, user: str, remembered: dict[bytes, bytes] | None = None
    ) -> KeyRing:
        """An edge's ring of this service's key `key_id`, served as `party` for `user` (its
        client reaches any local service the ring names). Its calls take turns: a test's many
        threads must not spend the party's allowance of calls in flight. With `remembered`,
        the edge keeps each output it was given there (input -> output) and asks the service
        for new inputs only, as an adapter's state file does."""
        oprf = ServiceOprf(
            lambda address: self._channel(party, int(address.rsplit(":", 1)[1])),
            on_behalf_of=user,
        )
        return KeyRing({}, {key_id: self.address}).served_by(_OneAtATime(oprf, remembered))

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


@dataclass
class _OneAtATime:
    evaluator: OprfEvaluator
    remembered: dict[bytes, bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outputs(self, key_id: str, service: str, inputs: Sequence[bytes]) -> list[bytes]:
        with self.lock:
            if self.remembered is None:
                return self.evaluator.outputs(key_id, service, inputs)
            known = self.remembered
            new = list(dict.fromkeys(i for i in inputs if i not in known))
            if new:
                known.update(zip(new, self.evaluator.outputs(key_id, service, new), strict=True))
            return [known[i] for i in inputs]


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
