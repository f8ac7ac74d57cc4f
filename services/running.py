"""A service's running parts, as both services have them: the gRPC server on its port, its health
service, the access log it signs while it runs and when it stops, and its metrics endpoint when
it has one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

import grpc
import structlog
from grpc_health.v1 import health
from sqlalchemy import Engine

from baken import pki
from baken.clock import Clock
from baken.errors import ListenError
from services.accesslog import signing
from services.accesslog.expiry import Expirer
from services.accesslog.store import AccessLog
from services.common import db
from services.common.access import AccessPolicy
from services.common.admission import ROLE_ALLOWANCES, Admission, Allowance
from services.common.metrics_endpoint import Metrics, MetricsServer
from services.common.periodic import Periodic
from services.common.settings import ServiceSettings
from services.common.shared_rates import SharedRates

log = structlog.get_logger("baken.access_log")


class Capacity(Protocol):
    """What a service's settings say of its capacity (services.common.settings)."""

    max_workers: int
    rate_scale: float
    first_message_seconds: float


def service_access_log(settings: ServiceSettings, clock: Clock) -> AccessLog:
    """The service's access log, its checkpoints signed with the service's own key (made on
    first start under a key id of the month; never in the data dir)."""
    signer = signing.load_for_service(
        settings.resolved_audit_signing_key(),
        settings.data_dir,
        clock.now().strftime("k%Y-%m"),
        env_prefix=str(settings.model_config["env_prefix"]),
        allow_in_data_dir=settings.allow_signing_key_in_data_dir,
    )
    return AccessLog(
        signer,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_seconds=settings.checkpoint_seconds,
    )


def admission(
    settings: Capacity,
    policy: AccessPolicy,
    engine: Engine,
    on_unknown: Callable[[grpc.ServicerContext, str], None] | None = None,
    roles: Mapping[str, Allowance] = ROLE_ALLOWANCES,
) -> Admission:
    """Who may call the service and how much, under the party register (each role's allowance
    from `roles`), with the parties' rate buckets in the service's database
    (services/common/shared_rates.py)."""
    return Admission(
        policy.covenants.parties,
        policy.houses,
        capacity=settings.max_workers,
        scale=settings.rate_scale,
        first_message_seconds=settings.first_message_seconds,
        rates=SharedRates(engine),
        on_unknown=on_unknown,
        roles=roles,
    )


def bind(
    server: grpc.Server,
    address: str,
    tls: pki.TlsFiles,
    metrics_address: str,
    metrics: Metrics,
    policy: AccessPolicy,
) -> tuple[int, MetricsServer | None]:
    """Bind the server to `address` with mTLS, and make the metrics endpoint when
    `metrics_address` is set: the port bound, and the endpoint."""
    try:
        port = server.add_secure_port(address, pki.server_credentials(tls))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {address} (in use, or not an address here)")
    if not metrics_address:
        return port, None
    return port, MetricsServer(metrics_address, metrics, tls, policy)


class Checkpointer:
    """Signs the access log's head every half `checkpoint_seconds` when it is unsigned, so that
    entries written before a quiet spell, or before a kill -9, stay unsigned at most that long.
    Each checkpoint is a transaction of its own; AccessLog.append signs the others."""

    def __init__(self, engine: Engine, access_log: AccessLog, clock: Clock) -> None:
        self._engine = engine
        self._log = access_log
        self._clock = clock
        self._timer = Periodic(
            "checkpointer", self.sign, lambda: access_log.policy.seconds / 2, at_start=False
        )

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def sign(self) -> None:
        # In the writers' queue: on SQLite a plain transaction would wait for the lock in the
        # busy handler's sleeps, behind writers that never let it in under load.
        with db.write_transaction(self._engine) as connection:
            self._log.checkpoint(connection, self._clock.now())


class RunningService:
    """start() serves; stop() ends it all."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        engine: Engine,
        access_log: AccessLog,
        clock: Clock,
        metrics_server: MetricsServer | None,
        expirer: Expirer | None = None,
    ) -> None:
        self.server = server
        self.expirer = expirer
        self.port = port
        self._health = health_servicer
        self._engine = engine
        self._log = access_log
        self._clock = clock
        self._metrics = metrics_server
        self._checkpointer = Checkpointer(engine, access_log, clock)

    @property
    def metrics_port(self) -> int | None:
        return None if self._metrics is None else self._metrics.port

    def start(self) -> None:
        self.server.start()
        self._checkpointer.start()
        if self.expirer is not None:
            self.expirer.start()
        if self._metrics is not None:
            self._metrics.start()

    def settle(self) -> None:
        """Write what the service still holds for the access log, before its head is signed."""

    def run_until_signalled(self, name: str) -> None:
        """Serve until SIGINT or SIGTERM, then stop() with 5 s for the calls in flight. The
        handlers come first: a signal as soon as the service answers must stop it cleanly."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        stop.wait()
        self.stop(grace=5)
        structlog.get_logger(f"baken.{name}").info(f"{name} stopped")

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING to health checks, so load balancers stop sending; finish the calls
        in flight (up to `grace` seconds); sign the access log's head, so that nothing after the
        last checkpoint can go unseen; close the metrics endpoint."""
        self._health.enter_graceful_shutdown()
        self.server.stop(grace=grace).wait()
        self.settle()
        if self.expirer is not None:
            self.expirer.stop()
        self._checkpointer.stop()
        self._checkpointer.sign()
        if self._metrics is not None:
            self._metrics.stop()
