"""The load generator: runs in its own process, so its Python does not share the server's GIL.

One harness for every unary method (the echo baseline and Lookup alike): pre-serialised request
bytes go out through a bytes-in/bytes-out multicallable, closed loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from baken import pki
from baken.registry.v1 import registry_service_pb2

SERVICE = "/baken.registry.v1.RegistryService/"
ECHO_METHOD = "/bench.Echo/Echo"
DEADLINE = 10.0
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class UnaryResult:
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu: float  # cores the load process used while measuring
    first_error: str = ""  # the status code of the first failed call

    @property
    def qps(self) -> float:
        return self.calls / self.seconds


PKI_DIR_ENV = "BAKEN_BENCH_PKI_DIR"  # set by registry_bench.py; the load process inherits it
PARTY = "zsm-midden-nederland-kpc"  # looks up; the sync goes under each adapter's certificate
# The closed loop's clients call from the four regions' desks in turn: one desk may hold only so
# many calls at once (services/common/admission.py).
DESKS = (
    PARTY,
    "zsm-oost-nederland-kpc",
    "zsm-zeeland-west-brabant-kpc",
    "zsm-rotterdam-rijnmond-kpc",
)


def credentials(party: str = PARTY) -> grpc.ChannelCredentials:
    """mTLS as every Baken client: the bench's development PKI, a party's certificate (by
    default the ZSM Midden-Nederland KPC'er, who checks every suspect)."""
    return pki.channel_credentials(pki.TlsFiles.of(Path(os.environ[PKI_DIR_ENV]), party))


def _channel(port: int, party: str = PARTY) -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials(party), options=CHANNEL_OPTIONS)


def closed_loop(
    port: int,
    method: str,
    requests: list[bytes],
    clients: int,
    seconds: float,
    warmup: float,
    connections: int = 0,
) -> UnaryResult:
    """`clients` concurrent callers (asyncio tasks: the cheapest Python client here) on one
    channel per desk of DESKS (or `connections` channels, the desks in turn), each calling
    again as soon as its previous call returned."""
    cpu = time.process_time()
    result = asyncio.run(
        _closed_loop(port, method, requests, clients, seconds, warmup, connections)
    )
    result.client_cpu = (time.process_time() - cpu) / (seconds + warmup)
    return result


async def _closed_loop(
    port: int,
    method: str,
    requests: list[bytes],
    clients: int,
    seconds: float,
    warmup: float,
    connections: int,
) -> UnaryResult:
    count = min(clients, connections or len(DESKS))
    # A channel option of its own per channel: channels with equal options share a connection.
    channels = [
        grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            credentials(DESKS[i % len(DESKS)]),
            options=[*CHANNEL_OPTIONS, ("baken.bench.connection", i)],
        )
        for i in range(max(1, count))
    ]
    try:
        calls = [
            channel.unary_unary(
                method, request_serializer=_identity, response_deserializer=_identity
            )
            for channel in channels
        ]
        for call in calls:
            await call(requests[0], timeout=DEADLINE)
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + seconds
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        first_error: list[str] = []

        async def client(i: int) -> None:
            call = calls[i % len(calls)]
            mine = latencies[i]
            n = i * 7919
            size = len(requests)
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(requests[n % size], timeout=DEADLINE)
                except grpc.RpcError as error:
                    errors[i] += 1
                    if not first_error:
                        first_error.append(f"{error.code().name}: {error.details()}")
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    mine.append(t1 - t0)
                n += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        for channel in channels:
            await channel.close()
    samples = sorted(x for mine in latencies for x in mine)
    return UnaryResult(
        calls=len(samples),
        errors=sum(errors),
        seconds=seconds,
        p50_ms=_percentile(samples, 0.50) * 1000,
        p99_ms=_percentile(samples, 0.99) * 1000,
        client_cpu=0.0,
        first_error=first_error[0] if first_error else "",
    )


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def batch_lookup(
    port: int, subjects: list[bytes], streams: int, per_message: int, seconds: float
) -> tuple[float, int]:
    """`streams` BatchLookup streams, each with one message of `per_message` entries in flight.

    Each message asks as the LookupRequests do (purpose, on behalf of, the suspect's age).
    Returns (subjects/s, error results)."""
    asked = [registry_service_pb2.LookupRequest.FromString(s) for s in subjects]
    entries = [
        registry_service_pb2.BatchLookupEntry(
            ref=f"r{i}", subject=request.subject, subject_age=request.subject_age
        )
        for i, request in enumerate(asked)
    ]
    messages = [
        registry_service_pb2.BatchLookupRequest(
            purpose=asked[0].purpose,
            on_behalf_of=asked[0].on_behalf_of,
            entries=entries[i : i + per_message],
        ).SerializeToString()
        for i in range(0, len(entries) - per_message + 1, per_message)
    ]
    with _channel(port) as channel:
        call = channel.stream_stream(
            SERVICE + "BatchLookup",
            request_serializer=_identity,
            response_deserializer=registry_service_pb2.BatchLookupResponse.FromString,
        )
        done = [0] * streams
        errors = [0] * streams
        start = time.perf_counter()
        stop_at = start + seconds

        def stream(i: int) -> None:
            ready = threading.Semaphore(1)

            def requests() -> Iterator[bytes]:
                n = i
                while True:
                    ready.acquire()
                    if time.perf_counter() >= stop_at:
                        return
                    yield messages[n % len(messages)]
                    n += streams

            for response in call(requests(), timeout=seconds + DEADLINE):
                done[i] += len(response.results)
                errors[i] += sum(1 for r in response.results if r.HasField("error"))
                ready.release()

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    return sum(done) / elapsed, sum(errors)


def sync_markers(port: int, messages: dict[str, list[bytes]]) -> tuple[float, dict[str, int]]:
    """Per source adapter, one SyncMarkers stream with its system's messages, under its own
    certificate; one adapter after the other (the registry serialises syncs anyway).

    The channels are connected (TLS handshake done) before the clock starts. Returns (seconds
    for all streams, the responses' counts summed)."""
    counts = dict.fromkeys(("created", "updated", "deleted", "unchanged", "rejected"), 0)
    with contextlib.ExitStack() as stack:
        calls = []
        for adapter, mine in messages.items():
            channel = stack.enter_context(_channel(port, adapter))
            grpc.channel_ready_future(channel).result(timeout=DEADLINE)
            call = channel.stream_unary(
                SERVICE + "SyncMarkers",
                request_serializer=_identity,
                response_deserializer=registry_service_pb2.SyncMarkersResponse.FromString,
            )
            calls.append((call, mine))
        start = time.perf_counter()
        for call, mine in calls:
            response = call(iter(mine), timeout=3600)
            for name in counts:
                counts[name] += getattr(response, name)
        elapsed = time.perf_counter() - start
    return elapsed, counts


def worker(conn: multiprocessing.connection.Connection) -> None:
    """Serve the benchmark's commands until told to stop; holds the generated workload."""
    from workload import make_workload  # the bench folder is on the spawned process's path

    workload: Any = None
    while True:
        command, args = conn.recv()
        if command == "stop":
            return
        if command == "generate":
            markers, today = args
            started = time.perf_counter()
            workload = make_workload(markers, dt.date.fromisoformat(today))
            conn.send(time.perf_counter() - started)
        elif command == "samples":
            conn.send((workload.hit_requests[0], workload.miss_requests[0]))
        elif command == "sync":
            conn.send(sync_markers(args, workload.sync_messages))
        elif command == "unary":
            port, method, clients, seconds, warmup, *connections = args
            # The same requests for both: the echo server answers with the request's bytes.
            requests = workload.lookup_requests(20_000)
            path = SERVICE + "Lookup" if method == "lookup" else ECHO_METHOD
            conn.send(closed_loop(port, path, requests, clients, seconds, warmup, *connections))
        elif command == "batch":
            port, streams, per_message, seconds = args
            conn.send(
                batch_lookup(port, workload.lookup_requests(20_000), streams, per_message, seconds)
            )
        else:
            raise ValueError(command)
