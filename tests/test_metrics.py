"""The metrics endpoint of both services: RPCs counted by method and code, gauges read from the
database, served over HTTPS to an operator's certificate of the CA only, and never a person, a
pseudonym, a case, an advice, a caller or a key in what it shows."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import grpc
import pytest
from builders import NOW, Marking, Person, subject
from feedback_harness import KPC_ROTTERDAM, running_feedback
from harness import USER, RunningRegistry, running_registry
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, false, func, select
from test_no_personal_data import (
    ADVICE,
    MARKED,
    MARKED_WITHOUT_BSN,
    OPEN_CASES,
    SEALED_TEXT,
    UNKNOWN,
    forbidden_strings,
    use_the_registry,
)

from baken import pki
from baken.clock import FixedClock
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import purpose_pb2
from dev.topology import free_port
from services.accesslog.store import checkpoints
from services.accesslog.store import entries as access_log
from services.common import covenants
from services.common.db import make_engine, utc
from services.common.metrics_endpoint import DatabaseGauges, Metrics
from services.feedback.outbox import deliveries, state_counts
from services.registry.gauges import markers, registry_gauges

VERSION = metadata.version("baken")
REGISTRY = "/baken.registry.v1.RegistryService/"
FEEDBACK = "/baken.feedback.v1.FeedbackService/"
CASE = "ZSM-MN-2026-004711"
DEAD_CASE = "10-555555-26"
REASON = "Verdachte woont sinds kort bij zijn moeder in Zwolle; een dagvaarding past beter."
ROTTERDAM = "vh-rotterdam-rijnmond"  # PGA
OPERATOR = pki.Identity("operator", "Baken beheer", "operator")
UTRECHT = "vh-regio-utrecht-utrecht"  # GCOS


# -- scraping ---------------------------------------------------------------------------------


def tls_context(pki_dir: Path, party: str | None) -> ssl.SSLContext:
    """A client that verifies the service against the CA, with the party's certificate."""
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    if party is not None:
        context.load_cert_chain(pki_dir / f"{party}.pem", pki_dir / f"{party}.key")
    return context


def get(port: int, context: ssl.SSLContext | None) -> tuple[int, str]:
    """GET /metrics over HTTPS with `context` (None: plain HTTP): the status and the text."""
    connection = (
        http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if context is None
        else http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    )
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def scrape(port: int, pki_dir: Path, party: str = "operator") -> tuple[int, str]:
    """GET /metrics under the party's certificate of the CA."""
    return get(port, tls_context(pki_dir, party))


def metrics_of(port: int, pki_dir: Path) -> str:
    status, body = scrape(port, pki_dir)
    assert status == 200, body
    return body


def refused_in_the_handshake(port: int, context: ssl.SSLContext) -> ssl.SSLError:
    """Connect and read without sending a request: the server's alert ends it (in TLS 1.3 the
    client hears of its refused certificate at its first read)."""
    with (
        pytest.raises(ssl.SSLError) as refused,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.recv(1)
    return refused.value


def value(body: str, name: str, **labels: str) -> float | None:
    """The sample's value, None when the text has no such sample."""
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def foreign_context(tmp_path: Path, pki_dir: Path) -> ssl.SSLContext:
    """The operator's party, but a certificate from another CA."""
    foreign = tmp_path / "foreign"
    pki.init(
        foreign,
        [i for i in covenants.identities() if i.id == "operator"],
        now=dt.datetime.now(dt.UTC),
    )
    context = tls_context(pki_dir, None)
    context.load_cert_chain(foreign / "operator.pem", foreign / "operator.key")
    return context


def issued_context(
    tmp_path: Path, pki_dir: Path, party: pki.Identity, *, days_ago: int = 0
) -> ssl.SSLContext:
    """A certificate the CA issues for `party` now, or one valid for 10 days from `days_ago`."""
    ca = pki.Issued((pki_dir / "ca.pem").read_bytes(), (pki_dir / "ca.key").read_bytes())
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    issued = pki.issue(ca, party, now=then, days=10)
    files = pki.write(tmp_path / f"issued-{days_ago}", party.id, issued)
    context = tls_context(pki_dir, None)
    context.load_cert_chain(files.cert, files.key)
    return context


def pseudonym_forms(ring: KeyRing, *persons: Person) -> set[str]:
    """Every pseudonym the builders send for the persons, as hex and as base64."""
    found: set[str] = set()
    for person in persons:
        for pseudonym in subject(ring, person).pseudonyms:
            raw = pseudonym.value
            found |= {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
            found |= {base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return found


def assert_names_nobody(body: str, forbidden: set[str]) -> None:
    leaked = sorted(f for f in forbidden if f in body)
    assert not leaked, f"in the metrics: {leaked}"


# -- a registry with its metrics endpoint ---------------------------------------------------------


def test_the_registry_counts_its_rpcs_and_markers_and_shows_nobody(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
    ring: KeyRing,
) -> None:
    # A burst that use_the_registry's 14 look-ups and a batch of 5 leave room in, little refill;
    # a checkpoint every 10 entries.
    with running_registry(
        database_url,
        tmp_path,
        clock,
        engines,
        pki_dir,
        metrics_address="127.0.0.1:0",
        rate_scale=0.03,  # a KPC'er's burst of 1,000 scaled to 30
        checkpoint_every=10,
    ) as registry:
        port = registry.metrics_port
        assert port
        use_the_registry(registry, ring)
        looked_up = 2 * len([*MARKED, *MARKED_WITHOUT_BSN, *UNKNOWN])
        # With a case, under the purpose of the OvJ's decision.
        registry.lookup(
            subject(ring, MARKED[1]),
            purpose=purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
            case_reference=CASE,
        )
        looked_up += 1
        with pytest.raises(grpc.RpcError) as bad:
            registry.stub.Lookup(registry_service_pb2.LookupRequest(), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        limited = None
        for _ in range(30):
            try:
                registry.lookup(subject(ring, MARKED[2]), case_reference=CASE)
            except grpc.RpcError as error:
                limited = error.code()
                break
            looked_up += 1
        assert limited == grpc.StatusCode.RESOURCE_EXHAUSTED
        clock.advance(dt.timedelta(minutes=1))

        before = registry.tables()
        body = metrics_of(port, pki_dir)
        assert metrics_of(port, pki_dir)  # scraped twice
        assert registry.tables() == before  # a scrape writes nothing, not even a log entry
        with registry.engine.connect() as connection:
            held = connection.execute(
                select(func.count()).select_from(markers).where(markers.c.deleted == false())
            ).scalar()
            head = connection.execute(select(func.max(access_log.c.seq))).scalar()
            signed = connection.execute(
                select(checkpoints.c.signed_time).order_by(checkpoints.c.seq.desc())
            ).scalar()

    lookup = REGISTRY + "Lookup"
    assert value(body, "baken_rpc_total", method=lookup, code="OK") == looked_up
    assert value(body, "baken_rpc_total", method=lookup, code="INVALID_ARGUMENT") == 1
    assert value(body, "baken_rpc_total", method=lookup, code="RESOURCE_EXHAUSTED") == 1
    assert value(body, "baken_rpc_total", method=REGISTRY + "BatchLookup", code="OK") == 1
    assert value(body, "baken_rpc_duration_seconds_count", method=lookup) == looked_up + 2
    # use_the_registry marks six persons, every other one at two houses, and erases one marker.
    assert held == 3 * 1 + 3 * 2 - 1
    assert value(body, "baken_markers") == held
    assert head and value(body, "baken_access_log_entries") == head
    assert signed is not None
    age = (clock.now() - utc(signed)).total_seconds()
    assert value(body, "baken_access_log_checkpoint_age_seconds") == age == 60
    assert value(body, "baken_database_up") == 1
    assert value(body, "baken_service_info", service="registry", version=VERSION) == 1

    forbidden = forbidden_strings(ring) | pseudonym_forms(ring, *MARKED, *MARKED_WITHOUT_BSN)
    forbidden |= pseudonym_forms(ring, *UNKNOWN)
    forbidden |= {*SEALED_TEXT, ADVICE, OPEN_CASES, CASE, USER, "zsm-", "kpc", "adapter-"}
    forbidden |= {"rec-", "monitor-"}  # record ids and batch refs
    forbidden |= {secret.hex() for secret in ring.values()} | {"PRIVATE KEY", "BEGIN"}
    assert_names_nobody(body, forbidden)


def test_only_an_operators_certificate_of_the_ca_may_scrape(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
) -> None:
    with running_registry(
        database_url, tmp_path, clock, engines, pki_dir, metrics_address="127.0.0.1:0"
    ) as registry:
        port = registry.metrics_port
        assert port
        # A connection that never starts its handshake holds up nobody else.
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            assert scrape(port, pki_dir, "operator")[0] == 200
        # A certificate of the CA, but no operator's: refused by the endpoint.
        for party in ("zsm-midden-nederland-kpc", "privacy-auditor", "registry"):
            status, body = scrape(port, pki_dir, party)
            assert (status, "baken_" in body) == (403, False), party
        # No certificate, one of another CA, or an expired one: refused in the TLS handshake.
        refused_in_the_handshake(port, tls_context(pki_dir, None))
        refused_in_the_handshake(port, foreign_context(tmp_path, pki_dir))
        expired = issued_context(tmp_path, pki_dir, OPERATOR, days_ago=40)
        refused_in_the_handshake(port, expired)
        # The operator's role, but a party the register does not know.
        stranger = pki.Identity("operator-2", "Baken beheer", "operator")
        assert get(port, issued_context(tmp_path, pki_dir, stranger))[0] == 403
        assert get(port, issued_context(tmp_path, pki_dir, OPERATOR))[0] == 200
        # Plain HTTP gets no answer.
        with pytest.raises((http.client.HTTPException, OSError)):
            get(port, None)
        # Refusals cost the endpoint nothing: the operator is still answered.
        assert scrape(port, pki_dir, "operator")[0] == 200
    # Stopped with the service.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_database_out_of_reach_is_a_gauge_of_0_and_no_other_gauges(tmp_path: Path) -> None:
    for url in (
        f"sqlite:///{tmp_path / 'nowhere' / 'registry.db'}",
        "postgresql://postgres@127.0.0.1:1/test",  # no server listens on port 1
    ):
        engine = make_engine(url, pool_size=1)
        metrics = Metrics("registry")
        metrics.add(DatabaseGauges(engine, FixedClock(NOW), registry_gauges))
        try:
            body = generate_latest(metrics.registry).decode()
        finally:
            engine.dispose()
        assert value(body, "baken_database_up") == 0, url
        assert value(body, "baken_service_info", service="registry", version=VERSION) == 1
        assert "baken_markers" not in body and "baken_access_log" not in body


# -- the feedback service ---------------------------------------------------------------------


def test_the_feedback_service_counts_its_outbox_and_shows_nobody(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
    pki_dir: Path,
) -> None:
    traveller, other = MARKED[0], MARKED[1]
    shipped_registry.sync(
        *(
            Marking(person, f"{house}-{i}", house=house, advice=ADVICE).upsert(ring)
            for i, person in enumerate((traveller, other))
            for house in (ROTTERDAM, UTRECHT)
        )
    )
    with running_feedback(
        shipped_registry, ring, tmp_path, engines, metrics_address="127.0.0.1:0"
    ) as feedback:
        port = feedback.server.metrics_port
        assert port
        decided = feedback.decide(
            traveller,
            case_reference=CASE,
            advice_followed=fb.ADVICE_FOLLOWED_NOT_FOLLOWED,
            deviation_reason=REASON,
        )
        assert len(decided.items) == 2
        # Utrecht's adapter takes its item and acknowledges it; Rotterdam's waits.
        [item] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
        feedback.ack(item.key, "adapter-gcos")
        # Another decision, whose item for Utrecht GCOS cannot take: a dead letter.
        dead = feedback.decide(
            other, case_reference=DEAD_CASE, advice_followed=fb.ADVICE_FOLLOWED_FOLLOWED
        )
        dead_key = next(i.key for i in dead.items if i.house == f"houses/{UTRECHT}")
        for _ in range(3):  # max_failures
            [item] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
            assert item.key == dead_key
            feedback.ack(item.key, "adapter-gcos", failure="decision: GCOS has no code for it")
            feedback.registry.clock.advance(dt.timedelta(seconds=5))
        with pytest.raises(grpc.RpcError) as bad:
            feedback.stub_for(KPC_ROTTERDAM).RecordDecision(fb.RecordDecisionRequest(), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        feedback.registry.clock.advance(dt.timedelta(minutes=5))

        body = metrics_of(port, pki_dir)
        status, _ = scrape(port, pki_dir, "adapter-gcos")
        assert status == 403
        refused_in_the_handshake(port, tls_context(pki_dir, None))
        refused_in_the_handshake(port, foreign_context(tmp_path, pki_dir))
        with feedback.engine.connect() as connection:
            states = state_counts(connection)
            oldest = connection.execute(
                select(func.min(deliveries.c.created_time)).where(deliveries.c.state == "pending")
            ).scalar()
            head = connection.execute(select(func.max(access_log.c.seq))).scalar()

    def per_house(name: str) -> dict[str, float]:
        return {
            house: found
            for house in (ROTTERDAM, UTRECHT, "vh-twente")
            if (found := value(body, name, house=house)) is not None
        }

    # Rotterdam waits for both decisions' items; Utrecht acknowledged one, gave up on the other.
    assert per_house("baken_outbox_pending") == {ROTTERDAM: 2, UTRECHT: 0, "vh-twente": 0}
    assert per_house("baken_outbox_dead_letters") == {ROTTERDAM: 0, UTRECHT: 1, "vh-twente": 0}
    pending = sum(
        s.value
        for f in text_string_to_metric_families(body)
        if f.name == "baken_outbox_pending"
        for s in f.samples
    )
    assert (pending, states.get("dead")) == (states.get("pending"), 1)
    assert oldest is not None
    age = (shipped_registry.clock.now() - utc(oldest)).total_seconds()
    assert value(body, "baken_outbox_oldest_pending_age_seconds") == pytest.approx(age)
    assert age == 3 * 5 + 5 * 60
    assert value(body, "baken_access_log_entries") == head
    record = FEEDBACK + "RecordDecision"
    assert value(body, "baken_rpc_total", method=record, code="OK") == 2
    assert value(body, "baken_rpc_total", method=record, code="INVALID_ARGUMENT") == 1
    acks = value(body, "baken_rpc_total", method=FEEDBACK + "AcknowledgeDelivery", code="OK")
    assert acks == 4
    assert value(body, "baken_service_info", service="feedback", version=VERSION) == 1

    forbidden = forbidden_strings(ring) | pseudonym_forms(ring, traveller, other)
    forbidden |= {REASON, "Zwolle", ADVICE, CASE, DEAD_CASE, USER, "zsm-", "kpc", "adapter-"}
    forbidden |= {"GCOS has no"}  # the failure the adapter reported
    forbidden |= {item.key for item in [*decided.items, *dead.items]}
    forbidden |= {secret.hex() for secret in ring.values()} | {"PRIVATE KEY", "BEGIN"}
    assert_names_nobody(body, forbidden)


# -- baken serve ----------------------------------------------------------------------------------


def test_baken_serve_takes_a_metrics_address_and_stops_cleanly_at_sigterm(
    tmp_path: Path, pki_dir: Path
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "registry",
            "--address",
            "127.0.0.1:0",
            "--metrics-address",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "registry"),
            "--pki-dir",
            str(pki_dir),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "baken serve registry ended"
            try:
                body = metrics_of(port, pki_dir)
                break
            except OSError:
                assert time.monotonic() < deadline, "no metrics endpoint within 30 s"
                time.sleep(0.1)
        assert value(body, "baken_markers") == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
