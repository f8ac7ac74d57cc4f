"""`baken up` and its Topology: every process up and healthy, an export synced, a killed
adapter restarted by the supervisor, and Ctrl-C stopping everything with nothing left behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from test_metrics import metrics_of, value

from adapters.sources import SOURCES
from adapters.synth import population, write_exports
from baken.houses import load_houses
from baken.pki import TlsFiles
from dev.shift import REGIONS
from dev.topology import Endpoints, Topology
from services.operations import SERVING, health_status

ROOT = Path(__file__).resolve().parent.parent
PG_ENV = "BAKEN_TEST_DATABASE_URL"
PROCESSES = {
    "registry",
    "feedback",
    "pseudonymiser",
    *(f"adapter-{system}-{half}" for system in SOURCES for half in ("watch", "receive")),
    "witness-registry",
    "witness-feedback",
    "desk",
    *(f"adapter-zsm-{region}-watch" for region in REGIONS),
}


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """A process with this pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _assert_healthy(endpoints: Endpoints) -> None:
    tls = TlsFiles.of(endpoints.pki_dir, "operator")
    assert health_status(endpoints.registry, tls) == SERVING
    assert health_status(endpoints.feedback, tls) == SERVING
    assert health_status(endpoints.pseudonymiser, tls) == SERVING
    assert health_status(endpoints.registry, tls, service="baken.registry.v1.RegistryService") == (
        SERVING
    )
    assert health_status(endpoints.feedback, tls, service="baken.feedback.v1.FeedbackService") == (
        SERVING
    )
    for service in ("registry", "feedback"):
        port = int(endpoints.metrics[service].rsplit(":", 1)[1])
        body = metrics_of(port, endpoints.pki_dir)  # as the operator
        assert value(body, "baken_database_up") == 1
        assert f'baken_service_info{{service="{service}"' in body


def _log(topology: Topology, name: str) -> str:
    return (topology.log_dir / f"{name}.log").read_text("utf-8", errors="replace")


def test_every_process_runs_and_a_killed_adapter_is_restarted(tmp_path: Path) -> None:
    said: list[str] = []
    with Topology(tmp_path / "up", say=said.append) as topology:
        endpoints = topology.endpoints
        assert set(topology.processes) == PROCESSES
        assert all(p.running() for p in topology.processes.values())
        _assert_healthy(endpoints)
        for path in (endpoints.pseudonym_key_file, endpoints.pki_dir / "ca.pem"):
            assert path.is_file()
        # The edges' key file names the pseudonymisation service and holds no secret.
        (entry,) = json.loads(endpoints.pseudonym_key_file.read_text())["keys"]
        assert entry == {"id": entry["id"], "kind": "oprf", "service": endpoints.pseudonymiser}
        assert any(endpoints.house_keys_dir.glob("*.x25519.key"))
        assert endpoints.clock_file is None
        # Each adapter receives for its houses.
        for name in (f"adapter-{system}-receive" for system in SOURCES):
            _wait_for(lambda: "feedback stream subscribed" in _log(topology, name), name)  # noqa: B023
        # The privacy officer's witnesses ask each service for its signed head.
        for name in ("witness-registry", "witness-feedback"):
            _wait_for(lambda: "signed" in _log(topology, name), name)  # noqa: B023

        # An export put into the PGA source directory is synced into the registry.
        houses = load_houses()
        people = population(houses, dt.date.today(), seed=7, scale=0.02)
        records = [r for r in people.records if houses[r.house_id].region == "rotterdam-rijnmond"]
        (export,) = write_exports(tmp_path / "export", houses, records, today=dt.date.today())[
            "pga"
        ]
        os.replace(export, endpoints.sources["pga"] / export.name)
        _wait_for(
            lambda: f"{export.name}: new " in _log(topology, "adapter-pga-watch"), "PGA synced"
        )

        watch = topology.processes["adapter-gcos-watch"]
        killed = watch.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: watch.restarts == 1 and watch.running(), "adapter-gcos-watch restarted")
        assert watch.pid != killed
        died = [m for m in said if m.startswith("adapter-gcos-watch (pid")]
        assert len(died) == 1 and "SIGKILL" in died[0] and "adapter-gcos-watch.log" in died[0]
        assert topology.processes["registry"].restarts == 0
        pids = [p.pid for p in topology.processes.values() if p.pid is not None]

    assert not [pid for pid in pids if _alive(pid)]


@pytest.fixture
def baken_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`baken up` as a process of its own on free ports, and the lines it printed so far."""
    ports = ["--registry-port", "0", "--feedback-port", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--run-dir", str(tmp_path / "up"), *ports],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        left = _children(process.pid)
        if process.poll() is None:
            process.kill()
        for pid in left:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)
        reader.join(10)
        process.stdout.close()


def test_sigint_stops_baken_up_with_nothing_left(
    baken_up: tuple[subprocess.Popen[str], list[str]],
) -> None:
    process, lines = baken_up
    _wait_for(lambda: "Ctrl-C stops.\n" in lines or process.poll() is not None, "baken up", 60)
    assert process.poll() is None, "".join(lines)
    children = _children(process.pid)
    assert len(children) == len(PROCESSES)

    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    _wait_for(lambda: bool(lines) and lines[-1].startswith("baken up: stopped"), "the last line")
    output = "".join(lines)
    assert "/metrics (registry)" in output and "/metrics (feedback)" in output
    assert "Traceback" not in output
    assert "exited unexpectedly" not in output
    assert not [pid for pid in children if _alive(pid)]


def test_on_postgresql_each_service_has_its_own_schema(tmp_path: Path) -> None:
    base_url = os.environ.get(PG_ENV)
    if not base_url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql://postgres@127.0.0.1/test")
    prefix = f"up_{uuid.uuid4().hex[:12]}"
    schemas = [f"{prefix}_registry", f"{prefix}_feedback"]
    try:
        with Topology(tmp_path / "up", database_url=base_url, schema_prefix=prefix) as topology:
            assert all(p.running() for p in topology.processes.values())
            _assert_healthy(topology.endpoints)
            with psycopg.connect(base_url) as connection:
                versions = {
                    schema: connection.execute(
                        sql.SQL("SELECT version_num FROM {}.alembic_version").format(
                            sql.Identifier(schema)
                        )
                    ).fetchone()
                    for schema in schemas
                }
            assert all(versions.values()), versions
            assert not (tmp_path / "up" / "registry" / "registry.db").exists()
    finally:
        with psycopg.connect(base_url, autocommit=True) as connection:
            for schema in schemas:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
