"""Faults the registry must survive without losing or duplicating anything, its access log
intact, back by itself or by a restart: SIGKILL during a sync stream and during a burst of
look-ups, the disk of its SQLite data dir full, PostgreSQL restarted under load.

The registry runs as `baken serve registry`, a process of its own (the feedback service's kill
tests are tests/test_feedback_crash.py; an adapter killed mid-sync, tests/test_pga_adapter.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import Marking, Person, subject, valid_bsns
from feedback_harness import RunningFeedback, running_feedback
from harness import RunningRegistry, lookup_request, secure_channel
from sqlalchemy import Engine, text

from adapters.synth import population, write_exports
from baken.client import connect
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.registry.v1 import registry_service_pb2_grpc
from cli.adapter import running_adapter
from dev.topology import free_port
from services.accesslog.signing import public_path
from services.common import db
from services.common.settings import default_signing_key

ROOT = Path(__file__).resolve().parent.parent
KPC = "zsm-rotterdam-rijnmond-kpc"


class RegistryProcess:
    """`baken serve registry` on a fixed port, data dir and database, killed and started at will."""

    def __init__(self, data_dir: Path, database_url: str, pki_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.data_dir, self.database_url, self.pki_dir = data_dir, database_url, pki_dir
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve", "registry",
                 "--address", self.target, "--data-dir", str(self.data_dir),
                 "--pki-dir", str(self.pki_dir)],
                env={**os.environ, "BAKEN_REGISTRY_DATABASE_URL": self.database_url,
                     "BAKEN_REGISTRY_RATE_SCALE": "1000"},
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        with secure_channel(self.pki_dir, self.port, "operator") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def verify(self) -> None:
        """`baken audit verify`, a process of its own, on the registry's database."""
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "audit", "verify",
             "--database-url", self.database_url,
             "--public-key",
             str(public_path(default_signing_key(self.data_dir, "registry")))],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OK" in done.stdout


@pytest.fixture
def registry_process(database_url: str, tmp_path: Path, pki_dir: Path) -> Iterator[RegistryProcess]:
    process = RegistryProcess(tmp_path / "registry", database_url, pki_dir, tmp_path / "reg.log")
    try:
        yield process
    finally:
        process.stop()


def _pga_export(work: Path) -> tuple[list[Path], set[tuple[str, str]]]:
    """Rotterdam-Rijnmond's PGA export at the pilots' volume: its files and (house, record)."""
    houses = load_houses()
    today = dt.date.today()
    people = population(houses, today, seed=11, scale=1.0)
    files = write_exports(work / "sources", houses, people.records, today=today, bad_share=0.0)
    records = {
        (r.house_id, r.record_id)
        for r in people.records
        if houses[r.house_id].source_system_token == "pga"
    }
    return files["pga"], records


def _markers(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT house_id, source_record_id FROM markers "
                "WHERE source_system = 'pga' AND NOT deleted"
            )
        )
        return [(h, r) for h, r in rows]


def test_killed_during_a_sync_stream_the_next_sync_loses_and_doubles_nothing(
    registry_process: RegistryProcess, tmp_path: Path, engines: object, ring: KeyRing
) -> None:
    files, records = _pga_export(tmp_path)
    assert len(records) > 1000
    registry_process.start()
    failed: list[BaseException] = []

    def sync() -> None:
        try:
            with running_adapter(
                "pga", registry_process.target, registry_process.pki_dir, ring, tmp_path, batch=50
            ) as adapter:
                adapter.sync(files)
        except BaseException as error:
            failed.append(error)

    syncing = threading.Thread(target=sync)
    syncing.start()
    engine = engines(registry_process.database_url)  # type: ignore[operator]
    deadline = time.monotonic() + 30
    while len(_markers(engine)) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    registry_process.kill()
    syncing.join(timeout=120)
    half = _markers(engine)
    assert failed and 100 <= len(half) < len(records), "the kill came mid-stream"

    registry_process.start()
    with running_adapter(
        "pga", registry_process.target, registry_process.pki_dir, ring, tmp_path
    ) as adapter:
        report = adapter.sync(files)
    assert not report.problems
    after = _markers(engine)
    assert len(after) == len(set(after)) == len(records)
    assert set(after) == records
    registry_process.verify()


def test_killed_during_a_burst_of_look_ups_every_answer_has_its_entry(
    registry_process: RegistryProcess, engines: object, ring: KeyRing
) -> None:
    registry_process.start()
    bsns = valid_bsns(40_000_000)
    persons = [Person(bsn=next(bsns)) for _ in range(20)]
    with secure_channel(registry_process.pki_dir, registry_process.port, "adapter-pga") as channel:
        from baken.registry.v1 import registry_service_pb2

        registry_service_pb2_grpc.RegistryServiceStub(channel).SyncMarkers(
            iter(
                [
                    registry_service_pb2.SyncMarkersRequest(
                        changes=[Marking(p, f"r-{p.bsn}").upsert(ring) for p in persons[:5]]
                    )
                ]
            ),
            timeout=30,
        )
    answered: list[int] = []
    stop = threading.Event()

    def burst(index: int) -> None:
        tls = TlsFiles.of(registry_process.pki_dir, KPC)
        with connect(registry_process.target, tls) as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            n = index
            while not stop.is_set():
                person = persons[n % len(persons)]
                n += 1
                try:
                    response = stub.Lookup(
                        lookup_request(subject(ring, person), case_reference="10-000001-26"),
                        timeout=2,
                    )
                except grpc.RpcError:
                    continue
                answered.append(response.access_log_entry)

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    registry_process.kill()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    registry_process.start()
    engine = engines(registry_process.database_url)  # type: ignore[operator]
    with engine.connect() as connection:
        logged = {seq for (seq,) in connection.execute(text("SELECT seq FROM access_log"))}
    assert len(answered) >= 200
    assert set(answered) <= logged, "an answer without its access-log entry"
    registry_process.verify()


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_refuses_writes_plainly_and_they_go_on_once_there_is_room(
    tmp_path: Path, pki_dir: Path, engines: object, ring: KeyRing
) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        url = db.sqlite_url(disk / "registry", "registry.db")
        registry = RegistryProcess(disk / "registry", url, pki_dir, tmp_path / "reg.log")
        registry.start()
        try:
            filler = disk / "filler"
            free = shutil.disk_usage(disk).free
            filler.write_bytes(b"\0" * max(0, free - 64 * 1024))
            bsns = valid_bsns(50_000_000)
            batch = [Marking(Person(bsn=next(bsns)), f"full-{i}").upsert(ring) for i in range(400)]
            from baken.registry.v1 import registry_service_pb2

            with secure_channel(pki_dir, registry.port, "adapter-pga") as channel:
                stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
                request = registry_service_pb2.SyncMarkersRequest(changes=batch)
                refused: grpc.RpcError | None = None
                for round_ in range(40):  # until the disk is full
                    try:
                        stub.SyncMarkers(iter([request]), timeout=30)
                    except grpc.RpcError as error:
                        refused = error
                        break
                    request = registry_service_pb2.SyncMarkersRequest(
                        changes=[
                            Marking(Person(bsn=next(bsns)), f"full-{round_}-{n}").upsert(ring)
                            for n in range(400)
                        ]
                    )
                assert refused is not None, "the disk never filled"
                assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused.details()
                assert "no space left" in (refused.details() or "")
                filler.unlink()
                # Room again: the same service takes the same sync, without a restart.
                response = stub.SyncMarkers(iter([request]), timeout=30)
                assert response.created + response.updated + response.unchanged == 400
            registry.verify()
        finally:
            registry.stop()


@pytest.mark.alone
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_restarted_under_load_the_registry_comes_back_by_itself(
    registry_process: RegistryProcess, engines: object, ring: KeyRing
) -> None:
    registry_process.start()
    person = Person(bsn="111222333")
    codes: list[grpc.StatusCode] = []
    answered: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with connect(registry_process.target, TlsFiles.of(registry_process.pki_dir, KPC)) as ch:
            stub = registry_service_pb2_grpc.RegistryServiceStub(ch)
            while not stop.is_set():
                try:
                    response = stub.Lookup(
                        lookup_request(subject(ring, person), case_reference="10-000002-26"),
                        timeout=3,
                    )
                except grpc.RpcError as error:
                    codes.append(error.code())
                    time.sleep(0.05)
                    continue
                codes.append(grpc.StatusCode.OK)
                answered.append(response.access_log_entry)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before = len(answered)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=60,
    )
    restarted = len(codes)
    deadline = time.monotonic() + 20
    while not any(c == grpc.StatusCode.OK for c in codes[restarted:]):
        assert time.monotonic() < deadline, "no answer after the restart"
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert before > 0
    assert set(codes) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }, set(codes)
    engine = engines(registry_process.database_url)  # type: ignore[operator]
    with engine.connect() as connection:
        logged = {seq for (seq,) in connection.execute(text("SELECT seq FROM access_log"))}
    assert set(answered) <= logged
    registry_process.verify()


def test_an_adapter_killed_again_and_again_while_it_writes_applies_each_item_once(
    shipped_registry: RunningRegistry, ring: KeyRing, tmp_path: Path, engines: Any
) -> None:
    """`baken adapter pga receive` SIGKILLed at random moments while it writes a backlog of
    items into the house's PGA file, started again each time: every item once, no line cut.
    Items sent to a killed adapter go again after their backoff: the test moves the services'
    clock on, and allows enough attempts that none becomes a dead letter."""
    with running_feedback(shipped_registry, ring, tmp_path, engines, max_attempts=100) as fb:
        _kill_while_writing(fb, tmp_path)


def _kill_while_writing(feedback: RunningFeedback, tmp_path: Path) -> None:
    house = "vh-rotterdam-rijnmond"
    bsns = valid_bsns(70_000_000)
    persons = [Person(bsn=next(bsns)) for _ in range(300)]
    feedback.registry.sync(*(Marking(p, f"kill-{p.bsn}", house=house).upsert(feedback.ring)
                             for p in persons))  # fmt: skip
    keys: set[str] = set()
    for n, person in enumerate(persons):
        response = feedback.decide(
            person,
            party="zsm-rotterdam-rijnmond-kpc",
            case_reference=f"10-{800000 + n}-26",
            advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED,
        )
        keys.update(i.key for i in response.items)
    target = tmp_path / "pga"
    command = [
        sys.executable, "-m", "cli.main", "adapter", "pga", "receive",
        "--feedback", f"127.0.0.1:{feedback.server.port}", "--target", str(target),
        "--house", house, "--pki-dir", str(feedback.registry.pki_dir),
        "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    rng = random.Random(7)
    log = (tmp_path / "adapter.log").open("ab")
    try:
        interrupted = 0  # kills that came while items were still waiting
        for _ in range(10):
            waiting = _pending(feedback, house)
            if not waiting:
                break
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            # Once it writes (an item acknowledged), kill it a moment later: in mid-backlog,
            # however fast this machine writes.
            started = time.monotonic()
            while _pending(feedback, house) >= waiting and time.monotonic() - started < 30:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            interrupted += _pending(feedback, house) > 0
            feedback.registry.clock.advance(dt.timedelta(seconds=5))  # past every backoff
        assert interrupted >= 3, "the kills came after the work was done"
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while _pending(feedback, house) and time.monotonic() < deadline:
                feedback.registry.clock.advance(dt.timedelta(seconds=1))
                time.sleep(0.2)
            assert not _pending(feedback, house), "items never acknowledged"
        finally:
            process.terminate()
            process.wait(timeout=15)
    finally:
        log.close()
    lines = (target / f"{house}.beslissingen.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file ends in a cut-off line"
    written = [json.loads(line.removeprefix(b"\xef\xbb\xbf"))["kenmerk"] for line in lines[:-1]]
    assert sorted(written) == sorted(set(written)), "an item written twice"
    assert keys <= set(written)


def _pending(feedback: RunningFeedback, house: str) -> int:
    with feedback.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM deliveries WHERE house_id = :h AND state = 'pending'"),
                {"h": house},
            ).scalar_one()
        )
