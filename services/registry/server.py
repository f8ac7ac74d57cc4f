"""Build and run the registry's gRPC server."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health

from baken import db, pki
from baken.clock import Clock, SystemClock
from baken.grpc_server import ListenError, create_grpc_server
from baken.houses import load_houses
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.settings import RegistrySettings
from services.registry.registry import Registry
from services.registry.servicer import RegistryServicer

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
log = structlog.get_logger("baken.registry")


def create_server(
    settings: RegistrySettings, clock: Clock | None = None
) -> tuple[grpc.Server, int]:
    """Migrate the database, then build the server and bind it with mTLS; call start() to serve.

    Only callers with a certificate from the same CA get past the TLS handshake."""
    server, port, _health = _create(settings, clock)
    return server, port


def _create(
    settings: RegistrySettings, clock: Clock | None
) -> tuple[grpc.Server, int, health.HealthServicer]:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.resolved_database_url(), pool_size=settings.max_workers)
    revision = db.upgrade_to_head(MIGRATIONS, engine)
    registry = Registry(engine, load_houses(), clock or SystemClock())
    server, health_servicer = create_grpc_server(settings.max_workers, [SERVICE_NAME])
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry), server
    )
    credentials = pki.server_credentials(pki.TlsFiles.of(settings.pki_dir, settings.party))
    try:
        port = server.add_secure_port(settings.address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {settings.address} (in use, or not an address here)")
    log.info("registry ready", port=port, schema=revision, dialect=engine.dialect.name)
    return server, port, health_servicer


def serve(settings: RegistrySettings) -> None:
    """Run until SIGINT or SIGTERM; then report NOT_SERVING to health checks, so load balancers
    stop sending, and finish the calls in flight (up to 5 s)."""
    server, _port, health_servicer = _create(settings, None)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=5).wait()
    log.info("registry stopped")
