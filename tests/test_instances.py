"""`baken serve registry --instances N`: processes sharing one address and one database. Both
instances answer, the access log stays one chain in order and verifies, a stop stops them all,
and one instance's death stops the rest rather than leave a half service. On SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import Marking, Person, subject, valid_bsns
from harness import lookup_request, secure_channel
from sqlalchemy import Engine, text
from test_faults import ROOT, RegistryProcess
from test_metrics import metrics_of, value

from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from dev.topology import free_ports

LOOKUP = "/baken.registry.v1.RegistryService/Lookup"
PEOPLE = [Person(bsn=b) for b, _ in zip(valid_bsns(16_180_339), range(3), strict=False)]


def _two_free_in_a_row() -> int:
    """A port p with p + 1 free too, for the two instances' metrics endpoints."""
    for base in free_ports(20):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
            return base
    raise AssertionError("no two free ports in a row")


class Instances(RegistryProcess):
    """The launcher with two instances, its metrics endpoints at `metrics` and `metrics + 1`."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.metrics = _two_free_in_a_row()

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve", "registry", "--instances", "2",
                 "--address", self.target, "--data-dir", str(self.data_dir),
                 "--pki-dir", str(self.pki_dir),
                 "--metrics-address", f"127.0.0.1:{self.metrics}"],
                env={**os.environ, "BAKEN_REGISTRY_DATABASE_URL": self.database_url,
                     "BAKEN_REGISTRY_RATE_SCALE": "1000"},
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        for port in (self.port, self.metrics, self.metrics + 1):
            _wait_for(port)

    def children(self) -> list[int]:
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def instances(database_url: str, tmp_path: Path, pki_dir: Path) -> Iterator[Instances]:
    process = Instances(tmp_path / "registry", database_url, pki_dir, tmp_path / "reg.log")
    try:
        yield process
    finally:
        process.stop()
        print((tmp_path / "reg.log").read_text(errors="replace")[-4000:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_two_instances_share_the_address_and_the_log_stays_one_chain(
    instances: Instances, ring: KeyRing, engines: object
) -> None:
    instances.start()
    assert len(instances.children()) == 2
    markings = [Marking(p, f"pga-{i}") for i, p in enumerate(PEOPLE)]
    with secure_channel(instances.pki_dir, instances.port, "adapter-pga") as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        request = registry_service_pb2.SyncMarkersRequest(
            changes=[m.upsert(ring) for m in markings]
        )
        assert stub.SyncMarkers(iter([request]), timeout=30).created == len(PEOPLE)

    # Every look-up on a connection of its own: the kernel spreads connections, not calls.
    requests = [lookup_request(subject(ring, p)) for p in PEOPLE]
    looked_up = 40
    for i in range(looked_up):
        with secure_channel(instances.pki_dir, instances.port) as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            answer = stub.Lookup(requests[i % len(requests)], timeout=30)
            assert answer.outcome == registry_service_pb2.LOOKUP_OUTCOME_HIT

    served = [
        value(metrics_of(port, instances.pki_dir), "baken_rpc_total", method=LOOKUP, code="OK")
        for port in (instances.metrics, instances.metrics + 1)
    ]
    assert all(served) and sum(served) == looked_up, served  # type: ignore[arg-type]

    engine: Engine = engines(instances.database_url)  # type: ignore[operator]
    with engine.connect() as connection:
        seqs = list(connection.execute(text("SELECT seq FROM access_log ORDER BY seq")).scalars())
        outcomes = connection.execute(
            text("SELECT count(*) FROM access_log WHERE outcome = 'hit'")
        ).scalar()
    assert seqs == list(range(1, len(seqs) + 1))
    assert outcomes == looked_up
    children = instances.children()
    instances.stop()
    assert instances.process is not None and instances.process.returncode == 0
    assert not [pid for pid in children if _alive(pid)]
    instances.verify()  # one chain, every checkpoint signed, across both writers


def test_one_instance_dying_stops_the_other_and_the_launcher_says_so(
    instances: Instances,
) -> None:
    instances.start()
    first, second = instances.children()
    os.kill(first, signal.SIGKILL)
    assert instances.process is not None
    assert instances.process.wait(timeout=30) != 0
    assert not _alive(second)


def test_instances_need_a_port_to_share(tmp_path: Path, pki_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "registry", "--instances", "2",
         "--address", "127.0.0.1:0", "--data-dir", str(tmp_path), "--pki-dir", str(pki_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--instances needs a fixed port" in done.stderr and "Traceback" not in done.stderr


def test_a_second_server_on_a_used_port_still_fails(instances: Instances) -> None:
    """SO_REUSEPORT is for the instances alone: a plain `baken serve` on their port does not
    silently join them."""
    instances.start()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "registry", "--address", instances.target,
         "--data-dir", str(instances.data_dir), "--pki-dir", str(instances.pki_dir)],
        env={**os.environ, "BAKEN_REGISTRY_DATABASE_URL": instances.database_url},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
