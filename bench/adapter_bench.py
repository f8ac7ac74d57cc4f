"""Adapter benchmark (not a test): sync throughput of each source adapter on a large export.

For each source system (GCOS, Amazone, PGA) the bench writes an export of N synthetic persons in
that source's format, then, against a fresh registry on SQLite over mTLS (in this process):

- baseline: the same markers, already built as MarkerChanges, straight into SyncMarkers under
  the adapter's certificate (the registry's own ingest rate, measured in the same run);
- adapter, first run: read + check + pseudonymise + plan + send, into a second fresh registry;
- adapter, rerun with no source change: read + fingerprint, nothing sent.

It prints records/s for each and the adapter's first run as a ratio of the baseline.

    .venv/bin/python bench/adapter_bench.py              # 100,000 persons per source
    .venv/bin/python bench/adapter_bench.py --persons 20000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from adapters.framework import SYSTEMS as SOURCE_SYSTEMS
from adapters.framework import Adapter
from adapters.records import SourceRecord
from adapters.sources import SOURCES
from adapters.state import State
from adapters.synth import ADVICE, AT_INFORMATION, make_person
from adapters.transport import sender
from baken import logs, pki
from baken.client import connect
from baken.clock import SystemClock
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from cli.adapter import running_adapter
from services.common import covenants, db
from services.common.settings import RegistrySettings
from services.registry.server import create_server

SYSTEMS = ("gcos", "amazone", "pga")


def records(system: str, persons: int, today: dt.date, seed: int) -> list[SourceRecord]:
    rng = random.Random(seed)
    houses = [h for h in load_houses().values() if h.source_system == SOURCE_SYSTEMS[system]]
    out = []
    for n in range(persons):
        house = houses[n % len(houses)]
        person = make_person(rng, today, with_bsn=rng.random() >= 0.05)
        out.append(
            SourceRecord(
                record_id=f"{system}-{n:07d}",
                house_id=house.id,
                person=person,
                target_group="veelpleger",
                plan_status="active",
                mark_date=today - dt.timedelta(days=rng.randrange(30, 700)),
                advice=rng.choice(ADVICE),
                advice_date=today - dt.timedelta(days=rng.randrange(0, 30)),
                at_information=dict(AT_INFORMATION) if system == "pga" else {},
            )
        )
    return out


def write(system: str, directory: Path, batch: list[SourceRecord]) -> list[Path]:
    """The export: one file for the region, or one per house where the source exports so."""
    source = SOURCES[system]
    units = sorted({r.house_id for r in batch}) if source.export_per_house else [system]
    paths = []
    for unit in units:
        path = directory / f"{system}-{unit}.{source.export_suffix}"
        source.write_export(path, unit, [r for r in batch if unit in (system, r.house_id)])
        paths.append(path)
    return paths


@contextmanager
def registry(pki_dir: Path, data_dir: Path, database_url: str | None) -> Iterator[int]:
    """A fresh registry in this process: SQLite in data_dir, or a new PostgreSQL schema."""
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(db.scratch_schema(database_url, "bench")) if database_url else None
        )
        settings = RegistrySettings(
            address="127.0.0.1:0", data_dir=data_dir, database_url=url, pki_dir=pki_dir
        )
        running = create_server(settings)
        running.start()
        stack.callback(lambda: running.server.stop(grace=None).wait())
        yield running.port


def run(
    system: str, persons: int, work: Path, pki_dir: Path, ring: KeyRing, url: str | None
) -> dict[str, float]:
    today = SystemClock().today()
    batch = records(system, persons, today, seed=SYSTEMS.index(system))
    export_dir = work / f"{system}-export"
    export_dir.mkdir()
    files = write(system, export_dir, batch)
    mapping = SOURCES[system].export()
    party = TlsFiles.of(pki_dir, mapping.party)
    result: dict[str, float] = {"records": len(batch)}

    # Baseline: the registry's own ingest of the same markers, prepared in advance.
    with registry(pki_dir, work / f"{system}-baseline", url) as port:
        state = State(work / f"{system}-prepare.db")
        planned: list[object] = []

        def keep(changes: object) -> object:
            planned.append(changes)
            raise _Prepared

        with contextlib.suppress(_Prepared):
            Adapter(
                mapping,
                ring=ring,
                state=state,
                houses=load_houses(),
                clock=SystemClock(),
                send=keep,  # type: ignore[arg-type]
                batch=len(batch) + 1,
            ).sync(files)
        state.close()
        changes = list(planned[0])  # type: ignore[call-overload]
        with connect(f"127.0.0.1:{port}", party) as channel:
            send = sender(channel)
            started = time.perf_counter()
            for start in range(0, len(changes), 1000):
                send(changes[start : start + 1000])
            result["baseline"] = len(changes) / (time.perf_counter() - started)

    with (
        registry(pki_dir, work / f"{system}-registry", url) as port,
        running_adapter(
            system, f"127.0.0.1:{port}", pki_dir, ring, work / f"{system}-state"
        ) as adapter,
    ):
        started = time.perf_counter()
        first = adapter.sync(files)
        result["first"] = len(batch) / (time.perf_counter() - started)
        started = time.perf_counter()
        again = adapter.sync(files)
        result["rerun"] = len(batch) / (time.perf_counter() - started)
    assert first.new + first.rejected == len(batch), first.summary()
    assert again.unchanged == first.new, again.summary()
    result["rejected"] = first.rejected
    return result


class _Prepared(Exception):
    """Stops the adapter after it planned the changes: the baseline sends them itself."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--database-url", help="the registry on PostgreSQL (a schema per run)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    # The production log configuration, each RPC's line rendered and written to /dev/null.
    logs.configure(json=True, file=open(os.devnull, "w"))  # noqa: SIM115
    print(
        f"adapter bench: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, registry in process on {args.database_url or 'SQLite'}, mTLS, "
        f"{args.persons:,} persons"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="baken-adapter-bench-") as tmp:
        work = Path(tmp)
        pki_dir = work / "pki"
        pki.init(pki_dir, covenants.identities(), now=dt.datetime.now(dt.UTC))
        ring = KeyRing.generate("k1")
        rows = []
        for system in args.systems.split(","):
            figures = run(system, args.persons, work, pki_dir, ring, args.database_url)
            rows.append((system, figures))
            print(
                f"   {system:<8} baseline {figures['baseline']:>8,.0f}/s  adapter first run "
                f"{figures['first']:>8,.0f}/s  rerun {figures['rerun']:>8,.0f}/s",
                flush=True,
            )
    print("\n| source | records | registry ingest alone /s | adapter first run /s | ratio | "
          "adapter rerun, unchanged /s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for system, f in rows:
        print(
            f"| {system} | {f['records']:,.0f} | {f['baseline']:,.0f} | {f['first']:,.0f} | "
            f"{f['first'] / f['baseline']:.0%} | {f['rerun']:,.0f} |"
        )
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
    main()
