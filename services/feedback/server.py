"""Build and run the feedback service: its gRPC server, the outbox and the signal follower."""

from __future__ import annotations

from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health
from sqlalchemy import Engine, text

from baken import pki
from baken.audit.v1 import audit_service_pb2_grpc
from baken.backoff import Backoff
from baken.client import connect
from baken.clock import Clock, clock_from_env
from baken.feedback.v1 import feedback_service_pb2, feedback_service_pb2_grpc
from baken.houses import load_houses, load_municipalities
from baken.keyring import KeyRing, at_rest_ring
from baken.report.v1 import report_service_pb2_grpc
from services import report as monitoring
from services.accesslog.audit import Audit
from services.accesslog.audit_servicer import EntriesServicer
from services.accesslog.expiry import Expirer
from services.accesslog.signed_heads import SignedHeads
from services.accesslog.store import AccessLog
from services.common import covenants, db
from services.common.access import AccessPolicy
from services.common.at_rest import Sealer
from services.common.grpc_server import create_grpc_server
from services.common.metrics_endpoint import DatabaseGauges, Metrics, MetricsServer
from services.common.settings import FeedbackSettings, RetentionSettings
from services.feedback import retention
from services.feedback.advice import Advice
from services.feedback.context import Context
from services.feedback.decisions import Decisions
from services.feedback.figures import FeedbackFigures
from services.feedback.gauges import feedback_gauges
from services.feedback.inflow import Inflow
from services.feedback.outbox import Outbox
from services.feedback.servicer import FeedbackServicer
from services.feedback.signals import Signals
from services.feedback.upstream import GrpcRegistry, SignalFollower
from services.running import RunningService, admission, bind, service_access_log

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = feedback_service_pb2.DESCRIPTOR.services_by_name["FeedbackService"].full_name
log = structlog.get_logger("baken.feedback")


class FeedbackServer(RunningService):
    """The feedback service's running parts (services/running.py), and the signal follower:
    start() serves and follows signals, stop() ends them all."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        follower: SignalFollower,
        outbox: Outbox,
        channel: grpc.Channel,
        engine: Engine,
        access_log: AccessLog,
        clock: Clock,
        metrics_server: MetricsServer | None = None,
    ) -> None:
        super().__init__(server, port, health_servicer, engine, access_log, clock, metrics_server)
        self.follower = follower
        self.outbox = outbox
        self._channel = channel

    def start(self, *, follow_signals: bool = True) -> None:
        super().start()
        if follow_signals:
            self.follower.start()

    def stop(self, grace: float | None = None) -> None:
        self.follower.stop()
        super().stop(grace)
        self._channel.close()


def create_server(settings: FeedbackSettings, clock: Clock | None = None) -> FeedbackServer:
    """Migrate the database, then build the server and bind it with mTLS; call start()."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or clock_from_env()
    houses = load_houses()
    policy = AccessPolicy(covenants.load(settings.covenants_dir, houses), houses)
    identity = policy.covenants.parties[settings.party].identity
    engine = db.make_engine(settings.resolved_database_url(), pool_size=settings.max_workers)
    access_log = service_access_log(settings, clock)
    revision = db.upgrade_to_head(MIGRATIONS, engine)
    sealer = Sealer(
        _at_rest_keys(settings.resolved_at_rest_key_file(), clock, engine), "deliveries"
    )
    tls = pki.TlsFiles.of(settings.pki_dir, settings.party)
    channel = connect(settings.registry, tls)
    registry = GrpcRegistry(channel, in_flight=settings.registry_calls_in_flight)
    outbox = Outbox(
        engine,
        clock,
        sealer=sealer,
        # +-20 %: spreads the redeliveries of items that failed together.
        backoff=Backoff(
            settings.redelivery_base_seconds, settings.redelivery_cap_seconds, (0.8, 1.2)
        ),
        max_attempts=settings.max_attempts,
        max_failures=settings.max_failures,
        window=settings.delivery_window,
    )
    context = Context(
        engine,
        clock,
        policy=policy,
        houses=houses,
        registry=registry,
        outbox=outbox,
        log=access_log,
    )
    signals = Signals(context, identity=identity)
    decisions = Decisions(context, signals, municipalities=load_municipalities(houses))
    metrics = Metrics("feedback")
    metrics.add(DatabaseGauges(engine, clock, feedback_gauges(houses)))
    server, health_servicer = create_grpc_server(
        settings.max_workers,
        [SERVICE_NAME, monitoring.SERVICE_NAME],
        max_message_bytes=settings.max_message_bytes,
        admission=admission(settings, policy, engine),
        metrics=metrics,
    )
    feedback_service_pb2_grpc.add_FeedbackServiceServicer_to_server(
        FeedbackServicer(
            context,
            decisions,
            Advice(context),
            Inflow(context),
            poll_seconds=settings.poll_seconds,
            register=policy.covenants,
        ),
        server,
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
        EntriesServicer(
            Audit(engine, clock, policy=policy, log=access_log),
            SignedHeads(engine, clock, policy=policy),
            register=policy.covenants,
        ),
        server,
    )
    report_service_pb2_grpc.add_ReportServiceServicer_to_server(
        monitoring.ReportServicer(
            FeedbackFigures(engine, policy.covenants.parties, houses, clock),
            engine=engine,
            policy=policy,
            log=access_log,
            clock=clock,
        ),
        server,
    )
    port, metrics_server = bind(
        server, settings.address, tls, settings.metrics_address, metrics, policy
    )
    follower = SignalFollower(signals, poll_seconds=settings.signal_poll_seconds)
    log.info(
        "feedback ready",
        port=port,
        metrics_port=metrics_server.port if metrics_server else None,
        schema=revision,
        dialect=engine.dialect.name,
    )
    running = FeedbackServer(
        server,
        port,
        health_servicer,
        follower,
        outbox,
        channel,
        engine,
        access_log,
        clock,
        metrics_server,
    )
    running.expirer = Expirer(
        engine,
        access_log,
        clock,
        RetentionSettings(),
        party_id=settings.party,
        kinds=retention.expire,
    )
    return running


def _at_rest_keys(path: Path, clock: Clock, engine: Engine) -> KeyRing:
    with engine.connect() as connection:
        payload = connection.execute(
            text("SELECT payload FROM deliveries WHERE payload IS NOT NULL LIMIT 1")
        ).scalar()
    sample = None if payload is None else Sealer.key_of(bytes(payload))
    ring, made = at_rest_ring(path, clock.now().strftime("k%Y-%m"), sample, "delivery items")
    if made:
        log.warning(
            "created a new at-rest key ring; back it up apart from the database", path=str(path)
        )
    return ring


def serve(settings: FeedbackSettings) -> None:
    create_server(settings).run_until_signalled("feedback")
