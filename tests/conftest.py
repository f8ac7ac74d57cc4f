"""Fixtures: a database per test (SQLite always, PostgreSQL when BAKEN_TEST_DATABASE_URL is set),
and a real registry gRPC server on 127.0.0.1:0 with a clock the test moves."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from builders import NOW
from harness import TEST_COVENANTS, RunningRegistry, running_registry
from pseudonymiser_harness import RunningPseudonymiser, running_pseudonymiser
from sqlalchemy import Engine

import services.common.db
from baken import logs, pki
from baken.clock import FixedClock
from baken.keyring import KeyRing
from services.common import covenants

PG_ENV = "BAKEN_TEST_DATABASE_URL"
RING_KEY_ID = "k1"
SHIPPED_COVENANTS = covenants.DEFAULT_DIR


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file under the test's data dir, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        yield services.common.db.sqlite_url(data_dir, "registry.db")
        return
    base_url = os.environ.get(PG_ENV)
    if not base_url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql://postgres@127.0.0.1/test")
    with services.common.db.scratch_schema(base_url) as url:
        yield url


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Engine]]:
    """Makes engines (ours and the server's, through services.common.db.make_engine) and
    disposes them all at the end, so no connection outlives its test or keeps a PostgreSQL
    schema busy."""
    made: list[Engine] = []
    real_make_engine = services.common.db.make_engine

    def make_engine(url: str, **kwargs: Any) -> Engine:
        engine = real_make_engine(url, **kwargs)
        made.append(engine)
        return engine

    monkeypatch.setattr(services.common.db, "make_engine", make_engine)
    yield make_engine
    for engine in made:
        engine.dispose()


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One development PKI for the whole run (certificates are slow to make)."""
    directory = tmp_path_factory.mktemp("pki")
    pki.init(directory, covenants.identities(), now=dt.datetime.now(dt.UTC))
    return directory


@pytest.fixture(autouse=True)
def _registry_pki(pki_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registry a test builds serves mTLS with the run's PKI."""
    monkeypatch.setenv("BAKEN_REGISTRY_PKI_DIR", str(pki_dir))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def registry(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
) -> Iterator[RunningRegistry]:
    with running_registry(
        database_url, tmp_path, clock, engines, pki_dir, TEST_COVENANTS
    ) as running:
        yield running


@pytest.fixture
def shipped_registry(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    engines: Callable[[str], Engine],
    pki_dir: Path,
) -> Iterator[RunningRegistry]:
    """A registry that enforces the covenants shipped in covenants/."""
    with running_registry(
        database_url, tmp_path, clock, engines, pki_dir, SHIPPED_COVENANTS
    ) as running:
        yield running


@pytest.fixture(scope="session")
def pseudonymiser(
    tmp_path_factory: pytest.TempPathFactory, pki_dir: Path
) -> Iterator[RunningPseudonymiser]:
    """One pseudonymisation service for the run, holding key k1: the tests' edges, like the
    real ones, hold no pseudonym key."""
    directory = tmp_path_factory.mktemp("pseudonymiser")
    with running_pseudonymiser(directory, pki_dir, first_key_id=RING_KEY_ID) as running:
        yield running


@pytest.fixture(scope="session")
def _remembered() -> dict[bytes, bytes]:
    return {}


@pytest.fixture
def ring(pseudonymiser: RunningPseudonymiser, _remembered: dict[bytes, bytes]) -> KeyRing:
    """The test's pseudonym key ring: one OPRF key, k1, of the run's pseudonymisation service,
    evaluated through the GCOS adapter's certificate (its allowance covers the whole run). The
    run's edges remember the pseudonyms they were given (one key, one service: the output of
    an input never changes) and ask the service for new persons only."""
    return pseudonymiser.ring(RING_KEY_ID, "adapter-gcos", "test", _remembered)


@pytest.fixture
def json_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Production log configuration (JSON on stderr); returns a reader of everything written to
    stdout and stderr since. Request it before `registry` to see the server's start-up line."""
    logs.configure(json=True)
    seen: list[str] = []

    def read() -> str:
        out, err = capfd.readouterr()
        seen.append(out + err)
        return "".join(seen)

    try:
        yield read
    finally:
        structlog.reset_defaults()


@pytest.fixture
def feedback(
    shipped_registry: RunningRegistry,
    ring: KeyRing,
    tmp_path: Path,
    engines: Callable[[str], Engine],
) -> Iterator[Any]:
    """A feedback service (shipped covenants, fast redelivery: 0.2 s base, 3 attempts) in front
    of `shipped_registry`, with its own database of the same kind. Signals are taken over
    when a test calls `feedback.server.follower.follow_once()`."""
    from feedback_harness import running_feedback

    with running_feedback(shipped_registry, ring, tmp_path, engines) as running:
        yield running


@pytest.fixture(scope="session")
def house_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An X25519 key pair per house (baken/sealed.py), for aanmeldingen."""
    from baken import sealed
    from baken.houses import load_houses

    directory = tmp_path_factory.mktemp("house-keys")
    sealed.init_house_keys(directory, load_houses(), now=dt.datetime.now(dt.UTC))
    return directory
