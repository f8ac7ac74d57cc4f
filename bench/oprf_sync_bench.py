"""What an OPRF key costs a source adapter's sync (not a test): the same PGA export of N persons
synced under an HMAC key and under an OPRF key, each into a fresh registry with a fresh state
file, first run and rerun without change. The adapter runs in this process; the registry
(SQLite, mTLS) and the pseudonymisation service run as processes of their own (`baken serve`),
as deployed, so that each one's CPU is its own.

    .venv/bin/python -m bench.oprf_sync_bench [--persons 20000]

It prints seconds per run and per 100,000 persons, and the CPU seconds of the adapter (this
process: reading, checking, the edge's blind and finalize), the registry and the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import tempfile
import time
from pathlib import Path

import grpc

from adapters.framework import Adapter
from adapters.sources import SOURCES
from adapters.state import State
from adapters.transport import sender
from baken import logs, pki
from baken.client import connect
from baken.clock import SystemClock
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pseudonymiser_client import ServiceOprf
from bench.adapter_bench import records, write
from bench.processes import cpu_seconds, service
from services.common import covenants

SYSTEM = "pga"
KEY_ID = "k2027-01"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sync(
    kind: str, ring: KeyRing, files: list[Path], work: Path, pki_dir: Path, pid: int
) -> list[tuple[str, float, float, float, float]]:
    """(run, seconds, CPU seconds of this process, of the registry, of the service) of the
    first run and rerun."""
    mapping = SOURCES[SYSTEM].export()
    tls = pki.TlsFiles.of(pki_dir, mapping.party)
    credentials = pki.channel_credentials(tls)
    oprf = ServiceOprf(lambda a: grpc.secure_channel(a, credentials), on_behalf_of="sync")
    state = State(work / f"{kind}.state.db")
    rows = []
    port = _free_port()
    with (
        service(
            "registry",
            port,
            pki_dir=pki_dir,
            data_dir=work / f"{kind}-registry",
            log=work / f"{kind}-registry.log",
            env={},
        ) as registry,
        connect(f"127.0.0.1:{port}", tls) as channel,
    ):
        adapter = Adapter(
            mapping,
            ring=ring.served_by(oprf),
            state=state,
            houses=load_houses(),
            clock=SystemClock(),
            send=sender(channel),
        )
        pids = {"registry": registry.pid, "service": pid}
        for run in ("first run", "rerun"):
            cpu, before = time.process_time(), cpu_seconds(pids)
            started = time.perf_counter()
            report = adapter.sync(files)
            seconds = time.perf_counter() - started
            after = cpu_seconds(pids)
            rows.append(
                (
                    f"{kind} {run}",
                    seconds,
                    time.process_time() - cpu,
                    after["registry"] - before["registry"],
                    after["service"] - before["service"],
                )
            )
            assert not report.refused, report.summary()
    state.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000)
    persons = parser.parse_args().persons
    logs.configure(json=True, file=open(os.devnull, "w"))  # noqa: SIM115
    print(f"OPRF sync bench: {os.cpu_count()} CPUs, {persons:,} persons of {SYSTEM}")
    with tempfile.TemporaryDirectory(prefix="baken-oprf-sync-bench-") as tmp:
        work = Path(tmp)
        pki_dir = work / "pki"
        pki.init(pki_dir, covenants.identities(), now=dt.datetime.now(dt.UTC))
        export = work / "export"
        export.mkdir()
        batch = records(SYSTEM, persons, SystemClock().today(), seed=2)
        files = write(SYSTEM, export, batch)
        port = _free_port()
        with service(
            "pseudonymiser",
            port,
            pki_dir=pki_dir,
            data_dir=work / "pseudonymiser",
            log=work / "pseudonymiser.log",
            env={},
        ) as process:
            rows = _sync("hmac", KeyRing.generate("k1"), files, work, pki_dir, process.pid)
            rows += _sync(
                "oprf",
                KeyRing({}, {KEY_ID: f"127.0.0.1:{port}"}),
                files,
                work,
                pki_dir,
                process.pid,
            )
    per = 100_000 / persons
    print("\n| run | seconds | per 100,000 | CPU s per 100,000: adapter | registry | service |")
    print("|---|---|---|---|---|---|")
    for name, seconds, here, registry_cpu, served in rows:
        print(
            f"| {name} | {seconds:.1f} | {seconds * per:.1f} | {here * per:.1f} | "
            f"{registry_cpu * per:.1f} | {served * per:.1f} |"
        )


if __name__ == "__main__":
    main()
