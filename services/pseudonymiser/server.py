"""Build and run the pseudonymisation service's gRPC server: its own process, its own key file,
its own database (access log and rate buckets), on the same stack as the registry."""

from __future__ import annotations

from pathlib import Path

import structlog

from baken import pki
from baken.clock import Clock, clock_from_env
from baken.houses import load_houses
from baken.keyring import KeyFileError, KeyRing
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc
from services.accesslog.expiry import Expirer
from services.common import covenants, db
from services.common.access import AccessPolicy
from services.common.grpc_server import create_grpc_server
from services.common.metrics_endpoint import Metrics
from services.common.settings import PseudonymiserSettings, RetentionSettings
from services.pseudonymiser.servicer import ALLOWANCES, SERVICE, OprfKeys, PseudonymiserServicer
from services.running import RunningService, admission, bind, service_access_log

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = SERVICE.strip("/")
log = structlog.get_logger("baken.pseudonymiser")


def load_keys(path: Path, first_key_id: str) -> KeyRing:
    """The service's key ring; a new one (0600) when the file is absent. Losing it changes every
    pseudonym of its keys: the adapters must resync under a new key."""
    if not path.exists():
        KeyRing.generate(first_key_id).save(path)
        log.warning("created a new OPRF key file; back it up apart from everything", path=str(path))
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path}: readable by others than its owner (chmod 600)")
    return KeyRing.load(path)


def create_server(settings: PseudonymiserSettings, clock: Clock | None = None) -> RunningService:
    """Migrate the database, then build the server and bind it with mTLS; start() serves."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or clock_from_env()
    houses = load_houses()
    policy = AccessPolicy(covenants.load(settings.covenants_dir, houses), houses)
    keys = OprfKeys(load_keys(settings.resolved_key_file(), settings.first_key_id))
    engine = db.make_engine(settings.resolved_database_url(), pool_size=settings.max_workers)
    access_log = service_access_log(settings, clock)
    revision = db.upgrade_to_head(MIGRATIONS, engine)

    metrics = Metrics("pseudonymiser")
    server, health_servicer = create_grpc_server(
        settings.max_workers,
        [SERVICE_NAME],
        max_message_bytes=settings.max_message_bytes,
        admission=admission(settings, policy, engine, roles=ALLOWANCES),
        metrics=metrics,
    )
    pb_grpc.add_PseudonymiserServiceServicer_to_server(
        PseudonymiserServicer(
            keys, engine=engine, log=access_log, clock=clock, register=policy.covenants
        ),
        server,
    )
    tls = pki.TlsFiles.of(settings.pki_dir, settings.party)
    port, metrics_server = bind(
        server, settings.address, tls, settings.metrics_address, metrics, policy
    )
    log.info("pseudonymiser ready", port=port, keys=keys.ids(), schema=revision)
    # The service keeps nothing but its access log.
    expirer = Expirer(engine, access_log, clock, RetentionSettings(), party_id=settings.party)
    return RunningService(
        server, port, health_servicer, engine, access_log, clock, metrics_server, expirer
    )


def serve(settings: PseudonymiserSettings) -> None:
    create_server(settings).run_until_signalled("pseudonymiser")
