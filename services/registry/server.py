"""Build and run the registry's gRPC server."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health
from sqlalchemy import Engine

from baken import covenants, db, pki, signing
from baken.access import AccessPolicy
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.clock import Clock, clock_from_env
from baken.grpc_server import ListenError, create_grpc_server
from baken.houses import load_houses
from baken.keyring import KeyRing, at_rest_ring
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.report.v1 import report_service_pb2_grpc
from baken.settings import RegistrySettings
from services import monitoring
from services.registry import repository
from services.registry.access_log import AccessLog
from services.registry.at_rest import Sealer
from services.registry.audit import Audit
from services.registry.audit_servicer import AuditServicer
from services.registry.figures import RegistryFigures
from services.registry.lookup import Lookups
from services.registry.registry import Registry
from services.registry.servicer import RegistryServicer
from services.registry.signals import Signals

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
AUDIT_SERVICE_NAME = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
log = structlog.get_logger("baken.registry")


def create_server(
    settings: RegistrySettings, clock: Clock | None = None
) -> tuple[grpc.Server, int]:
    """Migrate the database, then build the server and bind it with mTLS; call start() to serve.

    Only callers with a certificate from the same CA get past the TLS handshake."""
    server, port, _running = _create(settings, clock)
    return server, port


def _create(settings: RegistrySettings, clock: Clock | None) -> tuple[grpc.Server, int, Running]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or clock_from_env()
    houses = load_houses()
    policy = AccessPolicy(covenants.load(settings.covenants_dir, houses), houses)
    engine = db.make_engine(settings.resolved_database_url(), pool_size=settings.max_workers)
    sealer = Sealer(_at_rest_keys(settings.resolved_at_rest_key_file(), clock, engine))
    access_log = AccessLog(
        signing.load_or_create(settings.resolved_audit_signing_key(), _key_id(clock)),
        checkpoint_every=settings.checkpoint_every,
    )
    revision = db.upgrade_to_head(MIGRATIONS, engine, sealer=sealer)
    registry = Registry(engine, houses, clock, policy=policy, sealer=sealer)
    lookups = Lookups(engine, clock, policy=policy, sealer=sealer, log=access_log)
    audit = Audit(engine, clock, policy=policy, log=access_log)
    signals = Signals(engine, clock, policy=policy, log=access_log)
    server, health_servicer = create_grpc_server(
        settings.max_workers,
        [SERVICE_NAME, AUDIT_SERVICE_NAME, monitoring.SERVICE_NAME],
        limits=settings.limits(),
    )
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry, lookups, signals), server
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(audit), server)
    report_service_pb2_grpc.add_ReportServiceServicer_to_server(
        monitoring.ReportServicer(
            RegistryFigures(engine, policy.covenants.parties, houses),
            engine=engine,
            policy=policy,
            log=access_log,
            clock=clock,
        ),
        server,
    )
    credentials = pki.server_credentials(pki.TlsFiles.of(settings.pki_dir, settings.party))
    try:
        port = server.add_secure_port(settings.address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {settings.address} (in use, or not an address here)")
    log.info("registry ready", port=port, schema=revision, dialect=engine.dialect.name)
    return server, port, Running(health_servicer, engine, access_log, clock)


@dataclass(frozen=True, slots=True)
class Running:
    """What serve() needs at shutdown."""

    health: health.HealthServicer
    engine: Engine
    access_log: AccessLog
    clock: Clock

    def checkpoint(self) -> None:
        """Sign the access log's head, so that nothing after the last checkpoint can go unseen."""
        with self.engine.begin() as connection:
            self.access_log.checkpoint(connection, self.clock.now())


def _key_id(clock: Clock) -> str:
    return clock.now().strftime("k%Y-%m")


def _at_rest_keys(path: Path, clock: Clock, engine: Engine) -> KeyRing:
    ring, made = at_rest_ring(path, _key_id(clock), repository.sealed_key_sample(engine), "markers")
    if made:
        log.warning(
            "created a new at-rest key ring; back it up apart from the database", path=str(path)
        )
    return ring


def serve(settings: RegistrySettings) -> None:
    """Run until SIGINT or SIGTERM; then report NOT_SERVING to health checks, so load balancers
    stop sending, and finish the calls in flight (up to 5 s)."""
    server, _port, running = _create(settings, None)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    running.health.enter_graceful_shutdown()
    server.stop(grace=5).wait()
    running.checkpoint()
    log.info("registry stopped")
