"""The feedback service killed (SIGKILL) between commit and delivery, and between delivery and
acknowledgement: the item still arrives in the source, exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from builders import Marking, Person
from feedback_harness import KPC_ROTTERDAM, decision_request, second_database
from harness import RunningRegistry, secure_channel

from adapters.receive import Applier, Receiver
from adapters.sources import SOURCES
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.keyring import KeyRing
from dev.topology import free_port

ROOT = Path(__file__).resolve().parent.parent
PERSON = Person(bsn="111222333")
ROTTERDAM, UTRECHT = "vh-rotterdam-rijnmond", "vh-regio-utrecht-utrecht"
FOLLOWED = pb.ADVICE_FOLLOWED_FOLLOWED


class FeedbackProcess:
    """`baken serve feedback` as a process of its own, on a fixed port and database."""

    def __init__(self, registry: RunningRegistry, database_url: str, work: Path) -> None:
        self.port = free_port()
        self._registry = registry
        self._work = work
        self._env = {
            **os.environ,
            "BAKEN_FEEDBACK_DATABASE_URL": database_url,
            "BAKEN_FEEDBACK_REGISTRY": f"127.0.0.1:{registry.port}",
            "BAKEN_FEEDBACK_REDELIVERY_BASE_SECONDS": "0.3",
            "BAKEN_FEEDBACK_POLL_SECONDS": "0.2",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self._work / "feedback.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "serve",
                "feedback",
                "--address",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self._work / "feedback"),
                "--pki-dir",
                str(self._registry.pki_dir),
                "--covenants-dir",
                str(self._registry.settings.covenants_dir),
            ],
            env=self._env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        with secure_channel(self._registry.pki_dir, self.port, "operator") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@contextlib.contextmanager
def feedback_process(registry: RunningRegistry, tmp_path: Path) -> Iterator[FeedbackProcess]:
    with second_database(registry.database_url, tmp_path) as url:
        running = FeedbackProcess(registry, url, tmp_path)
        running.start()
        try:
            yield running
        finally:
            running.stop()


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not within time")
        time.sleep(0.05)


def _gcos_files(target: Path) -> list[Path]:
    return sorted((target / "gcos" / UTRECHT).glob("terugkoppeling-*.xml"))


def _pga_lines(target: Path) -> list[str]:
    path = target / "pga" / f"{ROTTERDAM}.beslissingen.jsonl"
    return path.read_text("utf-8").splitlines() if path.exists() else []


def test_killed_between_commit_and_delivery_the_item_arrives_exactly_once(
    shipped_registry: RunningRegistry, ring: KeyRing, tmp_path: Path
) -> None:
    registry = shipped_registry
    registry.sync(
        Marking(PERSON, "r1", house=ROTTERDAM).upsert(ring),
        Marking(PERSON, "g1", house=UTRECHT).upsert(ring),
    )
    target = tmp_path / "sources"
    with feedback_process(registry, tmp_path) as feedback:
        with secure_channel(registry.pki_dir, feedback.port, KPC_ROTTERDAM) as channel:
            stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
            first = stub.RecordDecision(
                decision_request(ring, PERSON, advice_followed=FOLLOWED), timeout=10
            )
        # Committed, not yet delivered to anyone: killed.
        feedback.kill()
        feedback.start()

        # Delivered to the GCOS adapter and written, but killed before the acknowledgement.
        with secure_channel(registry.pki_dir, feedback.port, KPC_ROTTERDAM) as channel:
            stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
            second = stub.RecordDecision(
                decision_request(
                    ring, PERSON, case_reference="10-654321-26", advice_followed=FOLLOWED
                ),
                timeout=10,
            )
        with secure_channel(registry.pki_dir, feedback.port, "adapter-gcos") as channel:
            stream = feedback_service_pb2_grpc.FeedbackServiceStub(channel).SubscribeDeliveries(
                pb.SubscribeDeliveriesRequest(house=f"houses/{UTRECHT}"), timeout=10
            )
            written = []
            applier = Applier(
                SOURCES["gcos"], target / "gcos", tmp_path / "gcos-state.db", house_keys=None
            )
            for item in stream:
                written.append(applier.apply(item, UTRECHT))
                break  # the person's second item waits for this one's acknowledgement
            stream.cancel()
            applier.close()
        assert len(_gcos_files(target)) == 1
        feedback.kill()
        feedback.start()

        receivers = []
        channels = []
        for system, house in (("gcos", UTRECHT), ("pga", ROTTERDAM)):
            channel = secure_channel(registry.pki_dir, feedback.port, f"adapter-{system}")
            channels.append(channel)
            receiver = Receiver(
                channel,
                system,
                [house],
                target=target / system,
                state_path=tmp_path / f"{system}-state.db",
            )
            receiver.start()
            receivers.append(receiver)
        try:
            # Two decisions each, and the matchingsmelding of the two houses marking the person
            # (tests/test_matching.py), whenever the follower took its signal over.
            _wait_for(lambda: len(_pga_lines(target)) == 3)
            _wait_for(lambda: len(_gcos_files(target)) == 3)
            time.sleep(1.0)  # redeliveries, had anything stayed unacknowledged
        finally:
            for receiver in receivers:
                receiver.stop()
            for channel in channels:
                channel.close()

    keys = {item.key for item in [*first.items, *second.items]}
    gcos = [f.read_text("utf-8") for f in _gcos_files(target)]
    assert len(gcos) == 3
    assert sum(key in text for text in gcos for key in keys) == 2
    assert sum("<soort>matching</soort>" in text for text in gcos) == 1
    pga = _pga_lines(target)
    assert len(pga) == 3 and sum(key in line for line in pga for key in keys) == 2
    assert sum('"soort": "matching"' in line for line in pga) == 1
    # The GCOS item written before the kill came again and was acknowledged without writing.
    assert receivers[0].counts()["already applied"] >= 1
    assert receivers[0].counts()["applied"] == 2
