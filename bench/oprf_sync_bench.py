"""What an OPRF key costs a source adapter's sync (not a test): the same PGA export of N persons
synced under an HMAC key and under an OPRF key, each into a fresh registry (in this process,
SQLite, mTLS) with a fresh state file, first run and rerun without change. The pseudonymisation
service runs as a process of its own (`baken serve pseudonymiser`), as deployed.

    .venv/bin/python -m bench.oprf_sync_bench [--persons 20000]

It prints seconds per run and per 100,000 persons, and this process's CPU seconds (the edge's
blind and finalize, the registry's ingest) beside the service's.
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
from bench.adapter_bench import records, registry, write
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
) -> list[tuple[str, float, float, float]]:
    """(run, seconds, CPU seconds of this process, of the service) of the first run and rerun."""
    mapping = SOURCES[SYSTEM].export()
    tls = pki.TlsFiles.of(pki_dir, mapping.party)
    credentials = pki.channel_credentials(tls)
    oprf = ServiceOprf(lambda a: grpc.secure_channel(a, credentials), on_behalf_of="sync")
    state = State(work / f"{kind}.state.db")
    rows = []
    with (
        registry(pki_dir, work / f"{kind}-registry", None) as port,
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
        for run in ("first run", "rerun"):
            cpu, served = time.process_time(), cpu_seconds({"s": pid})["s"]
            started = time.perf_counter()
            report = adapter.sync(files)
            seconds = time.perf_counter() - started
            rows.append(
                (
                    f"{kind} {run}",
                    seconds,
                    time.process_time() - cpu,
                    cpu_seconds({"s": pid})["s"] - served,
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
    print("\n| run | seconds | per 100,000 | CPU s here | CPU s service | per 100,000 |")
    print("|---|---|---|---|---|---|")
    for name, seconds, here, served in rows:
        print(
            f"| {name} | {seconds:.1f} | {seconds * per:.1f} | {here:.1f} | {served:.1f} "
            f"| {(here + served) * per:.1f} CPU s |"
        )


if __name__ == "__main__":
    main()
