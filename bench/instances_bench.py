"""Registry capacity as instances are added (not a test): `baken serve registry --instances N`
for each N of --instances on one database, Lookup at 8 and 32 clients spread over 16
connections (the kernel spreads connections, not calls, over the instances), QPS and p99 per
instance count against N = 1 in the same run; then `baken audit verify` on the log that the
instances wrote together, so that the order and the checkpoints are shown to hold too.

    .venv/bin/python bench/instances_bench.py [--database-url URL] [--instances 1,2,4]
        [--markers 10000] [--seconds 5] [--rounds 2]

Everything else as bench/registry_bench.py: mTLS, the shipped covenants, the load in a process
of its own, the markers synced under each source's adapter certificate.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from harness import PKI_DIR_ENV, UnaryResult
from processes import ROOT, cpu_seconds, service
from registry_bench import Client, signing_key

from baken import logs, pki
from baken.clock import SystemClock
from dev.topology import free_port
from services.accesslog.signing import public_path
from services.common import covenants, db

CLIENTS = (8, 32)
CONNECTIONS = 16


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, the database's too)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def say(text: str) -> None:
    print(text, flush=True)


def measure(
    instances: int, url: str, data_dir: Path, client: Client, args: argparse.Namespace
) -> dict[int, dict[str, float]]:
    """One launcher with `instances`; Lookup QPS, p99 and the instances' CPU per client count."""
    env = {
        "BAKEN_REGISTRY_RATE_SCALE": "1000",  # capacity is measured, not the party limit
        # Room for every client at once in each instance: the admission's capacity is measured
        # in tests/test_admission.py, not here.
        "BAKEN_REGISTRY_MAX_WORKERS": str(max(CLIENTS) + 8),
        "BAKEN_REGISTRY_AUDIT_SIGNING_KEY": str(signing_key(data_dir)),
        "BAKEN_REGISTRY_DATABASE_URL": url,
    }
    port = free_port()
    found: dict[int, dict[str, float]] = {}
    with service(
        "registry",
        port,
        pki_dir=Path(os.environ[PKI_DIR_ENV]),
        data_dir=data_dir,
        log=data_dir / f"registry-{instances}.log",
        env=env,
        extra=("--instances", str(instances)),
    ) as launcher:
        pids = {str(p): p for p in children(launcher.pid)} if instances > 1 else {}
        pids = pids or {"registry": launcher.pid}
        if not args.synced:
            seconds, counts = client("sync", port)
            assert counts["rejected"] == 0, counts
            say(f"   synced {counts['created']:,} markers in {seconds:.1f} s")
            args.synced = True
        for clients in CLIENTS:
            runs: list[UnaryResult] = []
            busy: list[float] = []
            machine: list[float] = []
            for _ in range(args.rounds):
                before, all_before = sum(cpu_seconds(pids).values()), machine_busy()
                r: UnaryResult = client(
                    "unary",
                    (port, "lookup", clients, args.seconds, args.warmup, CONNECTIONS),
                )
                used = sum(cpu_seconds(pids).values()) - before
                assert r.errors == 0, f"{r.errors} failed look-ups, first {r.first_error}"
                runs.append(r)
                busy.append(used / (args.seconds + args.warmup))
                machine.append((machine_busy() - all_before) / (args.seconds + args.warmup))
                say(
                    f"   {instances} instance(s), {clients:2} clients: {r.qps:7,.0f} QPS  "
                    f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  (instances "
                    f"{busy[-1]:.2f} CPU, load {r.client_cpu:.2f} CPU, machine {machine[-1]:.2f})"
                )
            found[clients] = {
                "qps": statistics.median(r.qps for r in runs),
                "p99": statistics.median(r.p99_ms for r in runs),
                "cpu": statistics.median(busy),
                "machine": statistics.median(machine),
            }
    return found


def verify(url: str, data_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "audit", "verify", "--database-url", url,
         "--public-key", str(public_path(signing_key(data_dir)))],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL; a new schema, dropped at the end")
    parser.add_argument("--instances", default="1,2,4", help="comma-separated counts")
    parser.add_argument("--markers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    args.synced = False
    counts = [int(n) for n in args.instances.split(",")]
    logs.configure(json=True, file=open(os.devnull, "w"))  # noqa: SIM115
    say(
        f"instances bench: {os.cpu_count()} CPUs, grpcio {grpc.__version__}, database "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, {args.markers:,} markers, "
        f"Lookup over {CONNECTIONS} connections, {args.rounds} rounds of {args.seconds:g} s"
    )
    pki_dir = Path(tempfile.mkdtemp(prefix="baken-bench-pki-"))
    pki.init(pki_dir, covenants.identities(), now=dt.datetime.now(dt.UTC))
    os.environ[PKI_DIR_ENV] = str(pki_dir)
    data_dir = Path(tempfile.mkdtemp(prefix="baken-bench-"))
    client = Client()
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, signing_key(data_dir).parent, ignore_errors=True)
            url = (
                stack.enter_context(db.scratch_schema(args.database_url, "bench"))
                if args.database_url
                else db.sqlite_url(data_dir, "registry.db")
            )
            client("generate", (args.markers, SystemClock().today().isoformat()))
            results = {n: measure(n, url, data_dir, client, args) for n in counts}
            checked = verify(url, data_dir)
    finally:
        client.stop()
        shutil.rmtree(pki_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    base = results[counts[0]]
    say(
        "\n| instances | clients | Lookup QPS | p99 | instances' CPU | machine's CPU | vs "
        f"{counts[0]} |"
    )
    say("|---|---|---|---|---|---|---|")
    for n, found in results.items():
        for clients, f in found.items():
            ratio = f["qps"] / base[clients]["qps"]
            say(
                f"| {n} | {clients} | {f['qps']:,.0f}/s | {f['p99']:.1f} ms | {f['cpu']:.2f} | "
                f"{f['machine']:.2f} of {os.cpu_count()} | x{ratio:.2f} |"
            )
    say(f"\naudit verify on the log the instances wrote together: {checked}")
    say(f"(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
