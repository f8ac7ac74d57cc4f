"""Prometheus metrics of a service, for the operator on call; served over HTTPS with mutual TLS.

What is measured never names a person, a case or a caller: RPCs by gRPC method and status code
(fed by `services.common.grpc_server.ErrorAndLogInterceptor`), the process, and gauges a
service reads from its own database at each scrape (`DatabaseGauges`: counts and ages, read
only). The endpoint answers only a client certificate of the Baken CA (anything else is
refused in the TLS handshake) whose party is in the party register with the role operator
(HTTP 403 otherwise).
"""

from __future__ import annotations

import datetime as dt
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from baken import pki
from baken.clock import Clock
from baken.errors import ListenError, PermissionDenied
from services.common.access import AccessPolicy

log = structlog.get_logger("baken.metrics")

# Who may scrape: a party of the register with one of these roles.
SCRAPER_ROLES = frozenset({"operator"})
# Seconds a connection may take for its handshake and its request.
TIMEOUT_S = 10.0
# A look-up takes milliseconds; streams (SyncMarkers, SubscribeDeliveries) take minutes.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PEER_CERT = "baken.peer_certificate"

# Reads a service's gauges from its database (a read-only transaction) at a moment.
Gauges = Callable[[Connection, dt.datetime], Iterable[Metric]]


def _version() -> str:
    try:
        return metadata.version("baken")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """One service's metrics, in a registry of its own (never prometheus_client's global one:
    a process may hold several servers, as the tests do)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        Info("baken_service", "The service and Baken's version.", registry=self.registry).info(
            {"service": service, "version": _version()}
        )
        self._calls = Counter(
            "baken_rpc",
            "RPCs handled, by gRPC method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self._durations = Histogram(
            "baken_rpc_duration_seconds",
            "How long RPCs took, by gRPC method.",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def observe(self, method: str, code: str, seconds: float) -> None:
        """One RPC: its full gRPC method name and its status code's name, nothing else."""
        self._calls.labels(method, code).inc()
        self._durations.labels(method).observe(seconds)

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def labelled_gauge(
    name: str, documentation: str, label: str, values: Mapping[str, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


class DatabaseGauges:
    """A collector that reads `gauges` from the service's database at each scrape, in a
    transaction that writes nothing (read only on PostgreSQL, at most 5 s a statement) and is
    rolled back. While the database cannot be read, `baken_database_up` is 0 and the other
    gauges are left out."""

    def __init__(self, engine: Engine, clock: Clock, gauges: Gauges) -> None:
        self._engine = engine
        self._clock = clock
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        found: list[Metric]
        try:
            with self._engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    connection.exec_driver_sql("SET LOCAL statement_timeout = 5000")
                found = list(self._gauges(connection, self._clock.now()))
                up = 1
        except DBAPIError as error:
            # The type only: a driver's message may quote the database URL.
            log.warning("metrics: cannot read the database", error=type(error).__name__)
            up, found = 0, []
        yield gauge("baken_database_up", "1 when the service's database could be read.", up)
        yield from found


class MetricsServer:
    """The metrics endpoint of one service: bound when made (port 0 picks a free one: see
    `port`), serving from start(), closed by stop(). Each connection is handled in a thread of
    its own, its handshake included, so a client that stalls holds up only itself."""

    def __init__(
        self, address: str, metrics: Metrics, tls: pki.TlsFiles, policy: AccessPolicy
    ) -> None:
        host, port = _host_port(address)
        tls.read()  # a readable certificate, key and CA, or PkiError naming the file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(tls.ca))
        context.load_cert_chain(str(tls.cert), str(tls.key))
        app = _operators_only(make_wsgi_app(metrics.registry), policy)
        try:
            family, _, _, _, where = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            self._server = _Server(family, (str(where[0]), int(where[1])), context, app)
        except OSError as error:
            raise ListenError(
                f"cannot serve metrics on {address} ({error.strerror or 'not an address here'})"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()  # waits for serve_forever, so only once it runs
            self._thread.join()
            self._thread = None
        self._server.server_close()


def _host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"metrics address {address!r}: give host:port (port 0: a free one)")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _operators_only(app: WSGIApplication, policy: AccessPolicy) -> WSGIApplication:
    """`app` for a party of the register with a scraper's role; 403 for any other."""

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        party = _party(environ.get(_PEER_CERT))
        if party is not None and party.role in SCRAPER_ROLES:
            try:
                policy.check_party(party)
            except PermissionDenied:
                party = None
            else:
                return app(environ, start_response)
        log.info("metrics: refused a scrape", party=party.id if party else "?")
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"metrics are for an operator's certificate\n"]

    return guarded


def _party(der: bytes | None) -> pki.Identity | None:
    if not der:
        return None
    try:
        return pki.party_of(ssl.DER_cert_to_PEM_cert(der).encode())
    except (pki.PkiError, ValueError):
        return None


class _Handler(WSGIRequestHandler):
    def get_environ(self) -> WSGIEnvironment:
        environ = super().get_environ()
        environ[_PEER_CERT] = cast(ssl.SSLSocket, self.connection).getpeercert(binary_form=True)
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(
        self,
        family: socket.AddressFamily,
        address: tuple[str, int],
        context: ssl.SSLContext,
        app: WSGIApplication,
    ) -> None:
        self.address_family = family
        self._context = context
        super().__init__(address, _Handler)
        self.set_app(app)

    def server_bind(self) -> None:
        # HTTPServer's would look the host's name up in DNS first; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])
        self.setup_environ()

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, peer = self.socket.accept()
        connection.settimeout(TIMEOUT_S)
        tls = self._context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return tls, peer

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the handshake, then the request."""
        try:
            request.do_handshake()
        except OSError as error:  # no certificate, another CA's, expired, not TLS, too slow
            reason = getattr(error, "reason", None) or type(error).__name__
            log.info("metrics: refused in the TLS handshake", reason=reason)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("metrics: a scrape failed", error=type(sys.exc_info()[1]).__name__)
