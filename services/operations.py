"""What `baken migrate` and `baken health` do: migrate a service's database (in a schema of its
own on PostgreSQL) and ask a service's gRPC health service."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from baken.client import connect
from baken.keyring import at_rest_ring
from baken.pki import TlsFiles
from services.common import db
from services.common.at_rest import Sealer
from services.common.settings import FeedbackSettings, RegistrySettings
from services.feedback import server as feedback_server
from services.registry import repository
from services.registry import server as registry_server

SERVING = "SERVING"


# -- baken health ---------------------------------------------------------------------------------


def health_status(target: str, tls: TlsFiles, *, service: str = "", timeout: float = 5.0) -> str:
    """What the gRPC health service at `target` says of `service` ("": the server as a whole),
    asked over mTLS under `tls`: SERVING, NOT_SERVING, or the code of the call that failed
    (UNAVAILABLE: not reachable; NOT_FOUND: no such service)."""
    with connect(target, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            # The stubs of grpcio-health-checking leave the stub's methods out.
            response = stub.Check(request, timeout=timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            code = error.code()
            return code.name if code is not None else "UNKNOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


# -- baken migrate --------------------------------------------------------------------------------


def migrate(settings: RegistrySettings | FeedbackSettings) -> str:
    """Migrate the service's database to head (`baken migrate`); the revision it is at now."""
    if isinstance(settings, RegistrySettings):
        return migrate_registry(settings)
    return migrate_feedback(settings)


def migrate_registry(settings: RegistrySettings) -> str:
    """Migrate the registry's database to head, as `baken serve registry` does at start (with
    its at-rest key ring, made when absent); the revision it is at now."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    ensure_schema(url)
    engine = db.make_engine(url, pool_size=1)
    try:
        ring, made = at_rest_ring(
            settings.resolved_at_rest_key_file(),
            dt.datetime.now(dt.UTC).strftime("k%Y-%m"),
            repository.sealed_key_sample(engine),
            "markers",
        )
        if made:
            print(
                f"made the registry's at-rest key ring {settings.resolved_at_rest_key_file()}: "
                "back it up apart from the database"
            )
        return db.upgrade_to_head(registry_server.MIGRATIONS, engine, sealer=Sealer(ring))
    finally:
        engine.dispose()


def migrate_feedback(settings: FeedbackSettings) -> str:
    """Migrate the feedback service's database to head; the revision it is at now."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    ensure_schema(url)
    engine = db.make_engine(url, pool_size=1)
    try:
        return db.upgrade_to_head(feedback_server.MIGRATIONS, engine)
    finally:
        engine.dispose()


_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)")


def search_path_schema(url: str) -> str | None:
    """The schema a PostgreSQL URL puts first on its search path
    (`?options=-csearch_path%3Dbaken_registry`), if any."""
    query = urllib.parse.urlsplit(url).query
    for options in urllib.parse.parse_qs(query).get("options", []):
        found = _SEARCH_PATH.search(options)
        if found:
            return found.group(1)
    return None


def with_search_path(url: str, schema: str) -> str:
    """`url` with `schema` first on its search path: one schema per service in one database."""
    if not url.startswith(("postgresql://", "postgresql+psycopg://")):
        raise ValueError("--database-url: a PostgreSQL URL (postgresql://...)")
    if "options=" in urllib.parse.urlsplit(url).query:
        raise ValueError(
            "--database-url: give the server's URL without options=; each service gets its "
            "own schema on the search path"
        )
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def ensure_schema(url: str) -> None:
    """Create the schema first on a PostgreSQL URL's search path when it does not exist (the
    role needs CREATE on the database for that, not when the schema is there)."""
    schema = search_path_schema(url) if url.startswith("postgresql") else None
    if schema is None:
        return
    import psycopg
    from psycopg import sql

    conninfo = "postgresql://" + url.split("://", 1)[1]
    with psycopg.connect(conninfo, autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        if found is None:
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
