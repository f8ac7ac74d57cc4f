"""The demo's shift against running services: the clock file that makes an advice request
overdue; one whole shift against a registry and a feedback service in this process (on the
clock file) and the three adapters as `baken adapter ... watch|receive` processes. The same
shift against `baken up`'s Topology is tests/test_end_to_end.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from pseudonymiser_harness import KEY_ID, running_pseudonymiser

from adapters.sources import SOURCES
from baken import sealed
from baken.client import connect
from baken.clock import (
    CLOCK_FILE_ENV,
    ShiftedClock,
    SystemClock,
    advance,
    clock_from_env,
    read_offset,
)
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from dev.shift import (
    ADVANCE_S,
    REGIONS,
    SHOWCASE,
    Endpoints,
    ShiftError,
    ShiftResult,
    delivered_keys,
    play_shift,
)
from dev.topology import MOVED_CLOCK_RETENTION, zsm_desks
from services.common import covenants
from services.common.settings import FeedbackSettings, RegistrySettings
from services.feedback.server import create_server as create_feedback
from services.registry.server import create_server as create_registry

ROOT = Path(__file__).resolve().parent.parent
DAY = 24 * 3600

# -- the clock file -------------------------------------------------------------------------------


def _close(a: dt.datetime, b: dt.datetime) -> bool:
    return abs((a - b).total_seconds()) < 5


def test_a_missing_clock_file_is_system_time(tmp_path: Path) -> None:
    clock = ShiftedClock(tmp_path / "clock")
    assert clock.offset() == dt.timedelta(0)
    assert _close(clock.now(), dt.datetime.now(dt.UTC))
    assert clock.now().tzinfo is not None
    assert clock.today() == SystemClock().today()


def test_advance_moves_a_running_clock_ahead(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "clock"
    clock = ShiftedClock(path)
    assert advance(path, 8 * DAY) == 8 * DAY
    assert clock.offset() == dt.timedelta(days=8)
    assert _close(clock.now(), dt.datetime.now(dt.UTC) + dt.timedelta(days=8))
    assert clock.today() == SystemClock().today() + dt.timedelta(days=8)
    # Added, not set; a fraction of a second survives the file.
    assert advance(path, 1.5) == 8 * DAY + 1.5
    assert clock.offset() == dt.timedelta(days=8, seconds=1.5)
    assert read_offset(path) == 8 * DAY + 1.5
    # No temporary file is left next to it.
    assert [p.name for p in path.parent.iterdir()] == ["clock"]


def test_the_file_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("60\n")
    clock = ShiftedClock(path)
    reads = 0
    real = Path.read_text

    def counting(self: Path, *args: object, **kwargs: object) -> str:
        nonlocal reads
        reads += 1
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_text", counting)
        for _ in range(100):
            assert clock.offset() == dt.timedelta(seconds=60)
        assert reads == 0
        advance(path, 60)
        assert clock.offset() == dt.timedelta(seconds=120)
        assert reads == 2  # advance read it once, the clock once
    path.unlink()
    assert clock.offset() == dt.timedelta(0)


def test_a_clock_file_without_a_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("eight days\n")
    with pytest.raises(ValueError, match="one number of seconds"):
        ShiftedClock(path)
    path.write_text("nan\n")
    with pytest.raises(ValueError, match="finite"):
        read_offset(path)


def test_readers_never_see_half_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    clock = ShiftedClock(path)
    stop = threading.Event()
    seen: list[float] = []
    errors: list[Exception] = []

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(clock.offset().total_seconds())
            except Exception as error:  # pragma: no cover - the failure being tested for
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(200):
            advance(path, 1234567)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert all(s % 1234567 == 0 for s in seen)
    assert read_offset(path) == 200 * 1234567


def test_only_the_clock_file_variable_shifts_the_clock(tmp_path: Path) -> None:
    assert isinstance(clock_from_env({}), SystemClock)
    assert isinstance(clock_from_env({CLOCK_FILE_ENV: " "}), SystemClock)
    clock = clock_from_env({CLOCK_FILE_ENV: str(tmp_path / "clock")})
    assert isinstance(clock, ShiftedClock) and clock.path == tmp_path / "clock"


# -- a whole shift --------------------------------------------------------------------------------


class Adapters:
    """The three adapters as `baken up` runs them: per source system `watch` (the export
    directory, answering advice requests) and `receive`, processes sharing a state dir."""

    def __init__(self, endpoints: Endpoints, state_dir: Path, logs: Path) -> None:
        self._endpoints = endpoints
        self._state_dir = state_dir
        self._logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        e = self._endpoints
        common = ["--pki-dir", str(e.pki_dir), "--state-dir", str(self._state_dir)]
        for system in SOURCES:
            watch = [
                *("watch", "--source", str(e.sources[system]), "--interval", "0.5"),
                *("--registry", e.registry, "--feedback", e.feedback),
                *("--key-file", str(e.pseudonym_key_file)),
            ]
            receive = [
                *("receive", "--feedback", e.feedback, "--target", str(e.deliveries[system])),
                *("--house-keys", str(e.house_keys_dir)),
            ]
            for action in (watch, receive):
                self._spawn(f"{system}-{action[0]}", ["adapter", system, *action, *common])
        for kpc in zsm_desks():
            assert kpc.region is not None
            watch = [
                *("watch", "--source", str(e.inflow[kpc.region]), "--interval", "0.5"),
                *("--registry", e.registry, "--feedback", e.feedback, "--party", kpc.id),
                *("--key-file", str(e.pseudonym_key_file)),
            ]
            self._spawn(f"zsm-{kpc.region}-watch", ["adapter", "zsm", *watch, *common])

    def _spawn(self, name: str, args: list[str]) -> None:
        with (self._logs / f"{name}.log").open("ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", *args],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def running(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextlib.contextmanager
def running_services(tmp_path: Path, pki_dir: Path) -> Iterator[Endpoints]:
    """The pseudonymisation service, the registry and the feedback service in this process,
    the latter two on the clock file and its retention schedule (as `baken up` runs them with
    BAKEN_CLOCK_FILE), and the adapters as processes of their own."""
    houses_dir = tmp_path / "houses"
    sealed.init_house_keys(houses_dir, load_houses(), now=dt.datetime.now(dt.UTC))
    key_file = tmp_path / "edge-keys.json"
    clock_file = tmp_path / "clock"
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, MOVED_CLOCK_RETENTION))
        service = stack.enter_context(running_pseudonymiser(tmp_path, pki_dir))
        KeyRing({}, {KEY_ID: service.address}).save(key_file)
        registry = create_registry(
            RegistrySettings(
                address="127.0.0.1:0",
                data_dir=tmp_path / "registry",
                pki_dir=pki_dir,
                covenants_dir=covenants.DEFAULT_DIR,
                max_workers=16,
            ),
            ShiftedClock(clock_file),
        )
        port = registry.port
        registry.start()
        stack.callback(lambda: registry.server.stop(grace=None).wait())
        feedback = create_feedback(
            FeedbackSettings(
                address="127.0.0.1:0",
                data_dir=tmp_path / "feedback",
                pki_dir=pki_dir,
                covenants_dir=covenants.DEFAULT_DIR,
                registry=f"127.0.0.1:{port}",
                max_workers=32,
                poll_seconds=0.2,
                signal_poll_seconds=0.2,
            ),
            ShiftedClock(clock_file),
        )
        feedback.start()
        stack.callback(feedback.stop, None)
        endpoints = Endpoints(
            registry=f"127.0.0.1:{port}",
            feedback=f"127.0.0.1:{feedback.port}",
            pki_dir=pki_dir,
            pseudonym_key_file=key_file,
            house_keys_dir=houses_dir,
            sources={s: tmp_path / "sources" / s for s in SOURCES},
            deliveries={s: tmp_path / "deliveries" / s for s in SOURCES},
            clock_file=clock_file,
            inflow={d.region: tmp_path / "inflow" / d.region for d in zsm_desks() if d.region},
        )
        folders = (*endpoints.sources.values(), *endpoints.deliveries.values())
        for directory in (*folders, *endpoints.inflow.values()):
            directory.mkdir(parents=True)
        (tmp_path / "logs").mkdir()
        adapters = Adapters(endpoints, tmp_path / "adapters", tmp_path / "logs")
        stack.callback(adapters.stop)
        adapters.start()
        yield endpoints
        assert adapters.running(), f"an adapter ended early; see {tmp_path / 'logs'}"


def listed(endpoints: Endpoints, *, overdue_only: bool) -> list[fb.AdviceRequest]:
    tls = TlsFiles.of(endpoints.pki_dir, "zsm-oost-nederland-kpc")
    with connect(endpoints.feedback, tls) as channel:
        stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        request = fb.ListAdviceRequestsRequest(overdue_only=overdue_only)
        return list(stub.ListAdviceRequests(request, timeout=10).advice_requests)


def played(endpoints: Endpoints) -> tuple[ShiftResult, str]:
    out = io.StringIO()
    try:
        result = play_shift(endpoints, out, seed=2014)
    finally:
        print(out.getvalue())
    return result, out.getvalue()


def check_numbers(result: ShiftResult, *, overdue: bool) -> None:
    regions = set(REGIONS)
    assert set(result.lookups) == set(result.known_persons) == regions
    for region, (_code, suspects, known) in REGIONS.items():
        # Each suspect looked up once by the desk's inflow adapter; at ZSM Midden-Nederland
        # the screen looked up the showcase and a stranger once more.
        shown = len(SHOWCASE) if region == "midden-nederland" else 0
        assert result.persons[region] == suspects and result.known_persons[region] == known
        assert result.lookups[region] == suspects + shown + (shown > 0)
        assert result.hits[region] == known + shown
        assert 0.04 <= known / suspects <= 0.20
    # The travelling offender, marked in Amersfoort and Rotterdam, arrested in Utrecht.
    assert result.travelling_hits["midden-nederland"] >= 1
    # A decision about every known person but the technisch sepot 01 (and, while the term
    # runs, the overdue case), and the aanmelding's.
    assert result.technisch_sepot_01 == 1 and sum(result.purged.values()) >= 1
    late = 1 if overdue else 0
    assert sum(result.decisions.values()) == sum(result.known_persons.values()) - 1 - 1 + late + 1
    assert result.late_decisions == ({"oost-nederland": 1} if overdue else {})
    assert result.deviations["midden-nederland"] >= 1
    assert result.aanmeldingen == {"vh-rotterdam-rijnmond": 1}
    assert sum(result.advice_requested.values()) == 2
    assert len(result.advice_answered) == 1 and len(result.advice_overdue) == late
    assert result.clock_advanced_s == ADVANCE_S
    assert result.markers_lapsed == late  # the demo's schedule: a day after the plan ended
    assert result.sync_checks >= sum(result.known_persons.values())
    kinds: Counter[str] = Counter()
    for per_kind in result.items.values():
        kinds.update(per_kind)
    known = sum(result.known_persons.values())
    # Every hit signalled every house that marked the person (the traveller: two); the
    # technisch sepot 01's signal was retracted: its sources hold the retraction instead.
    assert kinds["signal"] + kinds["retraction"] > known
    assert kinds["retraction"] == sum(result.purged.values()) >= 1
    assert kinds["referral"] == 1 and kinds["advice-request"] == 2
    # The traveller's houses (Amersfoort, Rotterdam) hear of each other: a match each, at least.
    assert kinds["match"] >= 2 and kinds["match"] % 2 == 0
    assert result.items["vh-regio-utrecht-amersfoort"].get("match", 0) >= 1
    assert result.items["vh-rotterdam-rijnmond"].get("match", 0) >= 1
    assert kinds["decision"] >= known - 1 - 1 + late
    houses = load_houses()
    assert {houses[h].source_system_token for h in result.items} == set(SOURCES)
    assert {houses[h].region for h in result.items} == regions


def check_sources(endpoints: Endpoints, result: ShiftResult) -> None:
    """Each source holds exactly the items the shift produced, each once."""
    for house in load_houses().values():
        keys = delivered_keys(endpoints.deliveries, house)
        assert [k for k, n in Counter(keys).items() if n > 1] == [], house.id
        assert len(keys) == result.items_per_house().get(house.id, 0), house.id
        assert set(result.keys.get(house.id, [])) <= set(keys), house.id


def test_a_shift_against_running_services_arrives_in_every_source_once(
    tmp_path: Path, pki_dir: Path
) -> None:
    started = time.monotonic()
    with running_services(tmp_path, pki_dir) as endpoints:
        result, text = played(endpoints)
        took = time.monotonic() - started
        time.sleep(1.0)  # a redelivery, had anything stayed unacknowledged
        overdue = listed(endpoints, overdue_only=True)
        everything = listed(endpoints, overdue_only=False)
        check_sources(endpoints, result)
    print(f"services, adapters and shift: {took:.1f} s")

    check_numbers(result, overdue=True)
    # The overdue request is listed as overdue; the answered one is not listed at all.
    assert [(r.name, r.state) for r in overdue] == [
        (result.advice_overdue[0], fb.ADVICE_REQUEST_STATE_OVERDUE)
    ]
    assert [r.name for r in everything] == result.advice_overdue
    for heading in ("a. ", "b. ", "c. ", "d. ", "e. "):
        assert f"\n{heading}" in f"\n{text}"
    assert "HIT: known at 2 Safety Houses" in text and "NO HIT" in text
    assert "`baken advice list --overdue`" in text and " overdue  case " in text
    assert took < 40


def test_the_shift_refuses_services_whose_clock_was_moved(tmp_path: Path, pki_dir: Path) -> None:
    clock_file = tmp_path / "clock"
    advance(clock_file, 8 * DAY)
    endpoints = Endpoints(
        registry="127.0.0.1:1",
        feedback="127.0.0.1:1",
        pki_dir=pki_dir,
        pseudonym_key_file=tmp_path / "keys.json",
        house_keys_dir=tmp_path / "houses",
        sources={s: tmp_path / "sources" / s for s in SOURCES},
        deliveries={s: tmp_path / "deliveries" / s for s in SOURCES},
        clock_file=clock_file,
    )
    KeyRing({}, {KEY_ID: "127.0.0.1:1"}).save(endpoints.pseudonym_key_file)
    with pytest.raises(ShiftError, match="clock was moved already"):
        play_shift(endpoints, io.StringIO())
    assert not (tmp_path / "sources").exists()
