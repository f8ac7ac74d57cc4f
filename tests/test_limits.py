"""What one call may cost: the per-party rate limit (no desk sweeps the registry) and the size
of a message, both refused with a clear RESOURCE_EXHAUSTED."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from builders import Person, problem, subject
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness import batch_request, lookup_request, secure_channel

from baken import pki
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from baken.type.v1 import pseudonym_pb2
from services.common.ratelimit import RateLimiter
from services.common.settings import RegistrySettings
from services.registry.server import create_server

KPC = "zsm-midden-nederland-kpc"
PERSON = Person(bsn="111222333")


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(clock=ticks)
    assert [limiter.take("a", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 2.0, 3) == pytest.approx(0.5)  # one unit at 2 a second
    assert limiter.take("b", 2.0, 3) == 0.0  # every party its own bucket
    ticks.now += 0.5
    assert limiter.take("a", 2.0, 3) == 0.0
    assert limiter.take("a", 2.0, 3, cost=2) == pytest.approx(1.0)  # nothing spent on a refusal
    ticks.now += 10
    assert limiter.take("a", 2.0, 3, cost=50) == 0.0  # a batch above the burst costs the burst
    assert limiter.take("a", 2.0, 3) > 0
    with pytest.raises(ValueError, match="positive rate"):
        limiter.take("a", 0, 1)


@pytest.fixture
def small_registry(tmp_path: Path, pki_dir: Path) -> Iterator[int]:
    settings = RegistrySettings(
        address="127.0.0.1:0",
        data_dir=tmp_path / "registry",
        pki_dir=pki_dir,
        # A KPC'er's 50 calls a second and bursts of 1,000 (its role's), scaled to 0.15 and 3.
        rate_scale=0.003,
        max_message_bytes=64 * 1024,
    )
    running = create_server(settings)
    running.start()
    try:
        yield running.port
    finally:
        running.server.stop(None).wait()


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, float]:
    """Code, ErrorInfo reason and RetryInfo delay of a refusal."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, delay = "", 0.0
    for detail in status.details if status else ():
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry):
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return error.code(), reason, delay


def test_a_party_over_its_rate_is_told_when_to_come_back(
    small_registry: int, pki_dir: Path, ring: KeyRing
) -> None:
    request = lookup_request(subject(ring, PERSON))
    with secure_channel(pki_dir, small_registry, KPC) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        for _ in range(3):
            stub.Lookup(request, timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Lookup(request, timeout=10)
        code, reason, delay = refusal(caught.value)
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert 0 < delay <= 1 / 0.15
        assert "over its limit of 0.15 calls a second" in (caught.value.details() or "")
        # Who, at what rate and how long to wait, without parsing the message (AIP-193).
        metadata = problem(caught.value).metadata
        assert metadata.keys() == {"party", "callsPerSecond", "retryAfterSeconds"}
        assert (metadata["party"], metadata["callsPerSecond"]) == (KPC, "0.15")
        assert delay <= float(metadata["retryAfterSeconds"]) <= delay + 0.1  # rounded up
        assert f"retry after {metadata['retryAfterSeconds']} s" in (caught.value.details() or "")
    # Another desk has a bucket of its own; a batch spends one unit per subject.
    with secure_channel(pki_dir, small_registry, "zsm-oost-nederland-kpc") as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        entries = [
            registry_service_pb2.BatchLookupEntry(ref=f"s{i}", subject=subject(ring, PERSON))
            for i in range(3)
        ]
        answers = list(stub.BatchLookup(iter([batch_request(entries)]), timeout=10))
        assert len(answers[0].results) == 3
        with pytest.raises(grpc.RpcError) as caught:
            stub.Lookup(request, timeout=10)
        assert refusal(caught.value)[:2] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")


def test_an_oversized_message_is_refused_and_the_service_goes_on(
    small_registry: int, pki_dir: Path, ring: KeyRing
) -> None:
    huge = pseudonym_pb2.Subject(
        pseudonyms=[pseudonym_pb2.Pseudonym(kind=1, key_id="k1", value=b"\x00" * 100_000)]
    )
    options = [("grpc.max_send_message_length", 1 << 24)]  # the client would refuse it itself
    credentials = pki.channel_credentials(pki.TlsFiles.of(pki_dir, "zsm-rotterdam-rijnmond-kpc"))
    with grpc.secure_channel(f"127.0.0.1:{small_registry}", credentials, options) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Lookup(lookup_request(huge), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        answer = stub.Lookup(lookup_request(subject(ring, PERSON)), timeout=10)
        assert answer.access_log_entry > 0
