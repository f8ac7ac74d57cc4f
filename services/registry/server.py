"""Build and run the registry's gRPC server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import structlog
from sqlalchemy import Connection, Engine, Table, func, select

from baken import pki
from baken.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from baken.clock import Clock, clock_from_env
from baken.houses import load_houses
from baken.keyring import KeyRing, at_rest_ring
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.report.v1 import report_service_pb2_grpc
from services import report as monitoring
from services.accesslog.audit import Audit
from services.accesslog.audit_servicer import AuditServicer
from services.accesslog.expiry import Expirer
from services.accesslog.inquiry import unknown_party
from services.accesslog.signed_heads import SignedHeads
from services.accesslog.store import AccessLog
from services.common import covenants, db
from services.common.access import AccessPolicy
from services.common.at_rest import Sealer
from services.common.grpc_server import create_grpc_server
from services.common.metrics_endpoint import DatabaseGauges, Metrics
from services.common.settings import RegistrySettings, RetentionSettings
from services.registry import repository, retention
from services.registry.denials import Denials
from services.registry.figures import RegistryFigures
from services.registry.gauges import registry_gauges
from services.registry.lookup import Lookups
from services.registry.marker_sync import MarkerSync
from services.registry.models import SignalRow
from services.registry.servicer import RegistryServicer
from services.registry.signals import Signals
from services.running import RunningService, admission, bind, service_access_log

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
AUDIT_SERVICE_NAME = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
log = structlog.get_logger("baken.registry")


class RegistryServer(RunningService):
    """The registry's running parts (services/running.py), and the count of repeated denials,
    written when it stops."""

    def __init__(self, *parts: Any, denials: Denials) -> None:
        super().__init__(*parts)
        self._denials = denials
        self._stopping = threading.Event()
        self._counter = threading.Thread(target=self._count_denials, name="denials", daemon=True)

    def start(self) -> None:
        super().start()
        self._counter.start()

    def settle(self) -> None:
        self._stopping.set()
        if self._counter.is_alive():
            self._counter.join()
        self._denials.flush(everything=True)

    def _count_denials(self) -> None:
        """Write the counts of repeated denials as their intervals end."""
        while not self._stopping.wait(self._denials.interval.total_seconds() / 4):
            try:
                self._denials.flush()
            except Exception as exc:  # the database away: the next round writes them
                log.warning("repeated denials not yet written", error=type(exc).__name__)


def create_server(settings: RegistrySettings, clock: Clock | None = None) -> RegistryServer:
    """Migrate the database, then build the server and bind it with mTLS, and the metrics
    endpoint when settings.metrics_address is set; call start() to serve.

    Only callers with a certificate from the same CA get past the TLS handshake."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or clock_from_env()
    houses = load_houses()
    policy = AccessPolicy(covenants.load(settings.covenants_dir, houses), houses)
    engine = db.make_engine(settings.resolved_database_url(), pool_size=settings.max_workers)
    sealer, access_log, revision = _made(settings, engine, clock)
    sync = MarkerSync(engine, houses, clock, policy=policy, sealer=sealer, log=access_log)
    denials = Denials(engine, access_log, clock)
    lookups = Lookups(engine, clock, policy=policy, sealer=sealer, log=access_log, denials=denials)
    audit = Audit(engine, clock, policy=policy, log=access_log)
    signals = Signals(engine, clock, policy=policy, log=access_log)
    metrics = Metrics("registry")
    metrics.add(DatabaseGauges(engine, clock, registry_gauges))
    server, health_servicer = create_grpc_server(
        settings.max_workers,
        [SERVICE_NAME, AUDIT_SERVICE_NAME, monitoring.SERVICE_NAME],
        max_message_bytes=settings.max_message_bytes,
        admission=admission(
            settings,
            policy,
            engine,
            on_unknown=lambda context, method: denials.write(
                [unknown_party(context, method, clock.now())]
            ),
        ),
        metrics=metrics,
        # The feedback service polls every second: ~86,000 log lines a day that say nothing.
        routine=[f"/{SERVICE_NAME}/PullSignals"],
        reuse_port=settings.reuse_port,
    )
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(sync, lookups, signals, register=policy.covenants), server
    )
    heads = SignedHeads(engine, clock, policy=policy)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
        AuditServicer(audit, heads, register=policy.covenants), server
    )
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
    tls = pki.TlsFiles.of(settings.pki_dir, settings.party)
    port, metrics_server = bind(
        server, settings.address, tls, settings.metrics_address, metrics, policy
    )
    log.info(
        "registry ready",
        port=port,
        metrics_port=metrics_server.port if metrics_server else None,
        schema=revision,
        dialect=engine.dialect.name,
    )
    running = RegistryServer(
        server, port, health_servicer, engine, access_log, clock, metrics_server, denials=denials
    )
    running.expirer = Expirer(
        engine,
        access_log,
        clock,
        RetentionSettings(),
        party_id=settings.party,
        kinds=retention.expire,
        keeps=_first_signalled,
    )
    return running


def _first_signalled(connection: Connection) -> int | None:
    """The first access-log entry a signal still names: the log keeps it and what follows."""
    signals = cast(Table, SignalRow.__table__)
    return connection.execute(select(func.min(signals.c.access_log_seq))).scalar()


def _key_id(clock: Clock) -> str:
    return clock.now().strftime("k%Y-%m")


def _at_rest_keys(path: Path, clock: Clock, engine: Engine) -> KeyRing:
    ring, made = at_rest_ring(path, _key_id(clock), repository.sealed_key_sample(engine), "markers")
    if made:
        log.warning(
            "created a new at-rest key ring; back it up apart from the database", path=str(path)
        )
    return ring


def prepare(settings: RegistrySettings) -> None:
    """What create_server makes when it is absent, made once: the at-rest keys, the signing
    key and the schema. Instances that start together would race to make them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.resolved_database_url(), pool_size=1)
    try:
        _made(settings, engine, clock_from_env())
    finally:
        engine.dispose()


def _made(
    settings: RegistrySettings, engine: Engine, clock: Clock
) -> tuple[Sealer, AccessLog, str]:
    """The at-rest keys and the access log's signing key, each made when absent, and the
    schema at head: what the registry needs before it serves."""
    sealer = Sealer(_at_rest_keys(settings.resolved_at_rest_key_file(), clock, engine))
    access_log = service_access_log(settings, clock)
    return sealer, access_log, db.upgrade_to_head(MIGRATIONS, engine, sealer=sealer)


def serve(settings: RegistrySettings) -> None:
    create_server(settings).run_until_signalled("registry")
