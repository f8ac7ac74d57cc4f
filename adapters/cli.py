"""`baken adapter <source> sync|watch`: one source's export into the registry."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adapters.framework import BATCH, Adapter, State, SyncReport, sender
from adapters.records import SourceFormat
from baken.client import connect
from baken.clock import SystemClock
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles


def formats() -> dict[str, type[SourceFormat]]:
    from adapters.amazone.export import AmazoneExport
    from adapters.gcos.export import GcosExport
    from adapters.pga.export import PgaExport

    return {"amazone": AmazoneExport, "gcos": GcosExport, "pga": PgaExport}


@contextlib.contextmanager
def running_adapter(
    system: str,
    target: str,
    pki_dir: Path,
    ring: KeyRing,
    state_dir: Path,
    *,
    batch: int = BATCH,
) -> Iterator[Adapter]:
    """The adapter of `system`, calling the registry at `target` under its own certificate,
    with its state file in `state_dir`; closed on exit."""
    mapping = formats()[system]()
    state = State(state_dir / f"{mapping.source_system}.state.db")
    try:
        with connect(target, TlsFiles.of(pki_dir, mapping.party)) as channel:
            yield Adapter(
                mapping,
                ring=ring,
                state=state,
                houses=load_houses(),
                clock=SystemClock(),
                send=sender(channel),
                batch=batch,
            )
    finally:
        state.close()


def _run(args: argparse.Namespace) -> None:
    from baken.cli import _key_file

    ring = KeyRing.load(_key_file(args))
    with running_adapter(
        args.source_system, args.registry, args.pki_dir, ring, args.state_dir, batch=args.batch
    ) as adapter:
        while True:
            print_report(args.source, adapter.sync(args.source))
            if args.action != "watch":
                return
            time.sleep(args.interval)


def print_report(sources: list[Path], report: SyncReport) -> None:
    for bad in report.problems:
        where = f"{bad.where} ({bad.record_id})" if bad.record_id else bad.where
        print(f"{where}: {bad.reason}")
    print(f"{', '.join(s.name for s in sources)}: {report.summary()}", flush=True)


def add_parser(sub: Any, key_file_env: str, pki_dir_env: str, target_env: str) -> None:
    adapter = sub.add_parser("adapter", help="sync a Safety House source system's export")
    adapter.add_argument("source_system", choices=sorted(formats()))
    adapter.add_argument("action", choices=["sync", "watch"])
    adapter.add_argument(
        "--source",
        type=Path,
        nargs="+",
        required=True,
        help="the export: one file, or one per house; what is not in it has left the source",
    )
    adapter.add_argument("--registry", default=os.environ.get(target_env, "127.0.0.1:50051"))
    adapter.add_argument(
        "--pki-dir", type=Path, default=Path(os.environ.get(pki_dir_env, "var/pki"))
    )
    adapter.add_argument(
        "--key-file", help=f"the adapter's pseudonym key file (env {key_file_env})"
    )
    adapter.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("BAKEN_ADAPTER_STATE_DIR", "var/adapters")),
        help="what was sent and confirmed (env BAKEN_ADAPTER_STATE_DIR)",
    )
    adapter.add_argument("--interval", type=float, default=60.0, help="seconds between watch runs")
    adapter.add_argument("--batch", type=int, default=1000, help="changes per SyncMarkers call")
    adapter.set_defaults(run=_run)


def _synth(args: argparse.Namespace) -> None:
    from adapters.synth import population, write_exports

    houses = load_houses()
    today = SystemClock().today()
    people = population(houses, today, seed=args.seed, scale=args.scale)
    regions = {h.region for h in houses.values()} if args.region == "all" else {args.region}
    records = [r for r in people.records if houses[r.house_id].region in regions]
    written = write_exports(args.out, houses, records, today=today, seed=args.seed)
    for system, paths in written.items():
        for path in paths:
            print(f"{system:<8} {path}")
    persons = len({r.person for r in records})
    print(f"{len(records)} markers of {persons} persons in {len(regions)} region(s)")


def add_synth_parser(sub: Any) -> None:
    regions = sorted({h.region for h in load_houses().values()})
    synth = sub.add_parser(
        "synth", help="write synthetic source exports (GCOS, Amazone, PGA) for the pilot regions"
    )
    synth.add_argument("--region", choices=["all", *regions], default="all")
    synth.add_argument("--seed", type=int, default=2014)
    synth.add_argument("--scale", type=float, default=1.0, help="x the pilots' volumes")
    synth.add_argument("--out", type=Path, default=Path("var/sources"))
    synth.set_defaults(run=_synth)
