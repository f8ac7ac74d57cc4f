"""Registry benchmark (not a test): Lookup against an echo baseline, BatchLookup and SyncMarkers,
as the markers grow and as the access log grows.

    .venv/bin/python bench/registry_bench.py [--markers 10000,1000000]
        [--log-entries 1000000,10000000] [--database-url URL] [--profile SECONDS] [--quick]

Everything runs over real gRPC on loopback, in one run: the echo baselines (a plain echo server,
and the same echo on the project's server stack) in this process, the registry as a process of
its own (`baken serve registry`, as in production, so its memory can be read), and the load in a
separate process (bench/harness.py) so that the client's Python shares no GIL with a server. The
same client harness drives echo and Lookup. Per marker count the registry starts on a fresh
database: a new SQLite data directory, or, with --database-url, a new PostgreSQL schema that is
dropped at the end. At the largest marker count the access log is then grown (bench/log_fill.py)
to each --log-entries length and the look-ups measured again.

As in production, everything speaks mTLS and the registry runs with the shipped covenants
(covenants/): each source system's markers are synced under its own adapter's certificate, and
the load looks up as the KPC'er of ZSM Midden-Nederland at intake-en-selectie (the that-signal
nationwide, the advice for Midden-Nederland's houses). Every Lookup and BatchLookup writes its
access-log entries (hash chain, signed checkpoints) in the same transaction, and that is
measured. Results and method: docs/PERFORMANCE.md; the whole picture: bench/all.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import log_fill
import sampling
import sqlalchemy
from echo import create_echo_server, create_stack_echo_server
from harness import PARTY, PKI_DIR_ENV, UnaryResult, credentials, worker
from log_fill import database_bytes
from processes import cpu_seconds, memory, service

from baken import logs, pki
from baken.clock import SystemClock
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from dev.topology import free_port
from services.common import covenants, db
from services.common.settings import RegistrySettings

CLIENTS = (1, 8, 32)
BATCH_STREAMS = 4
BATCH_ENTRIES = 100
# Room for every client at once: the admission refuses calls beyond the server's threads
# (UNAVAILABLE, tests/test_admission.py), which is not what this bench measures.
WORKERS = max(RegistrySettings().max_workers, max(CLIENTS) + 8)


class Client:
    """The load-generating process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=worker, args=(child,), daemon=True)
        self._process.start()

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def __call__(self, command: str, args: Any = None) -> Any:
        self._conn.send((command, args))
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send(("stop", None))
        self._process.join(10)


class ForeignLoad:
    """CPU used on the machine by processes other than this run's two (the machine is shared:
    a test suite running beside the benchmark skews every figure)."""

    def __init__(self, pids: tuple[int, ...], *, with_postgres: bool) -> None:
        self._pids = (os.getpid(), *pids)
        self._with_postgres = with_postgres  # the database server is part of what is measured
        self._start = self._sample()

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = f.readline().split()[1:9]
        return sum(int(v) for v in (user, nice, system, irq, softirq, steal))

    def _sample(self) -> tuple[float, int, int]:
        pids = list(self._pids)
        if self._with_postgres:
            pids += [
                int(p.parent.name) for p in Path("/proc").glob("[0-9]*/comm") if _is_postgres(p)
            ]
        ours = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            ours += int(fields[11]) + int(fields[12])
        return time.monotonic(), self._busy(), ours

    def cores(self) -> float:
        """Cores used by others since the previous call."""
        (t0, busy0, ours0), (t1, busy1, ours1) = self._start, self._sample()
        self._start = (t1, busy1, ours1)
        return max(0.0, (busy1 - busy0 - (ours1 - ours0)) / os.sysconf("SC_CLK_TCK") / (t1 - t0))


def _is_postgres(comm: Path) -> bool:
    try:
        return comm.read_text().startswith("postgres")
    except OSError:
        return False


def analyze(url: str) -> None:
    engine = sqlalchemy.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("ANALYZE markers"))
        connection.execute(sqlalchemy.text("ANALYZE marker_pseudonyms"))
    engine.dispose()


def check_answers(port: int, client: Client) -> None:
    """A hit must hit and a miss must miss, or the figures mean nothing."""
    hit, miss = client("samples")
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials()) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        pb = registry_service_pb2
        found = stub.Lookup(pb.LookupRequest.FromString(hit), timeout=10)
        missed = stub.Lookup(pb.LookupRequest.FromString(miss), timeout=10)
    assert found.outcome == pb.LOOKUP_OUTCOME_HIT and found.markers, "a known person did not hit"
    assert missed.outcome == pb.LOOKUP_OUTCOME_NO_HIT, "an unknown person hit"
    assert 0 < found.access_log_entry < missed.access_log_entry, "the lookups were not logged"


def run_scale(
    markers: int,
    args: argparse.Namespace,
    client: Client,
    echo_ports: dict[str, int],
    log_targets: list[int],
    profile: float,
) -> dict[str, Any]:
    say(f"== {markers:,} markers: generating")
    generated = client("generate", (markers, SystemClock().today().isoformat()))
    say(f"   generated in {generated:.1f} s")
    data_dir = Path(tempfile.mkdtemp(prefix="baken-bench-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        stack.callback(shutil.rmtree, signing_key(data_dir).parent, ignore_errors=True)
        url = (
            stack.enter_context(db.scratch_schema(args.database_url, "bench"))
            if args.database_url
            else None
        )
        env = {
            "BAKEN_REGISTRY_MAX_WORKERS": str(args.workers),
            "BAKEN_REGISTRY_RATE_SCALE": "1000",  # capacity is measured, not the party limit
            # Outside the data dir, as the registry insists; inside the bench's temporary dir.
            "BAKEN_REGISTRY_AUDIT_SIGNING_KEY": str(signing_key(data_dir)),
        }
        if url:
            env["BAKEN_REGISTRY_DATABASE_URL"] = url
        port = free_port()
        registry = stack.enter_context(
            service(
                "registry",
                port,
                pki_dir=Path(os.environ[PKI_DIR_ENV]),
                data_dir=data_dir,
                log=data_dir / "registry.log",
                env=env,
            )
        )
        run = Run(args, client, echo_ports, port, registry.pid, data_dir, url)
        result = run.load(markers)
        result.update(run.lookups())
        result["access_log_entries"] = run.log_entries()
        say(f"   access log: {result['access_log_entries']:,} entries written")
        result["memory"] = memory(registry.pid)
        result["db_bytes"] = database_bytes(run.url, data_dir)
        result["growth"] = [run.grow(target) for target in log_targets]
        if profile:
            result["profile"] = run.profile(profile)
        result["foreign_max"] = run.foreign_max
        return result


def signing_key(data_dir: Path) -> Path:
    """The registry's audit signing key in a bench run: beside its data dir, not in it."""
    return data_dir.with_name(data_dir.name + "-keys") / "registry-audit-signing.key"


@dataclass
class Run:
    """One marker count's measurements against one registry process."""

    args: argparse.Namespace
    client: Client
    echo_ports: dict[str, int]
    port: int
    pid: int
    data_dir: Path
    schema_url: str | None
    foreign_max: float = 0.0

    def __post_init__(self) -> None:
        self.foreign = ForeignLoad(
            (self.client.pid, self.pid), with_postgres=self.schema_url is not None
        )

    @property
    def url(self) -> str:
        return self.schema_url or db.sqlite_url(self.data_dir, "registry.db")

    def _others(self) -> float:
        others = self.foreign.cores()
        self.foreign_max = max(self.foreign_max, others)
        return others

    def load(self, markers: int) -> dict[str, Any]:
        """SyncMarkers: the initial load, then the same stream again (nothing changed)."""
        result: dict[str, Any] = {"markers": markers}
        self.foreign.cores()  # from here on
        seconds, counts = self.client("sync", self.port)
        assert counts["created"] == markers and counts["rejected"] == 0, counts
        result["sync_load"] = markers / seconds
        self._others()
        say(f"   SyncMarkers initial load: {seconds:.1f} s, {markers / seconds:,.0f} markers/s")
        seconds, counts = self.client("sync", self.port)
        assert counts["unchanged"] == markers, counts
        result["sync_resync"] = markers / seconds
        result["resync_seconds"] = seconds
        self._others()
        say(f"   SyncMarkers resync:       {seconds:.1f} s, {markers / seconds:,.0f} markers/s")
        if self.schema_url is not None:
            # What autovacuum does after a bulk load (this machine's test server runs without
            # it); without statistics the planner picks parallel scans for point lookups.
            analyze(self.schema_url)
        check_answers(self.port, self.client)
        return result

    def lookups(self) -> dict[str, Any]:
        """Echo, echo on the stack and Lookup at each client count, taking turns, so drift on
        a shared machine hits all alike; then BatchLookup."""
        result: dict[str, Any] = {}
        for clients in CLIENTS:
            targets = {**self.echo_ports, "lookup": self.port}
            rounds: dict[str, list[UnaryResult]] = {name: [] for name in targets}
            for _ in range(self.args.rounds):
                for name, target in targets.items():
                    self.foreign.cores()  # from here on
                    cpu = cpu_seconds({"registry": self.pid})["registry"]
                    r: UnaryResult = self.client(
                        "unary", (target, name, clients, self.args.seconds, self.args.warmup)
                    )
                    busy = cpu_seconds({"registry": self.pid})["registry"] - cpu
                    others = self._others()
                    assert r.errors == 0, f"{r.errors} failed {name} calls"
                    rounds[name].append(r)
                    say(
                        f"   {name:6} x{clients:<2}: {r.qps:8,.0f} QPS  p50 {r.p50_ms:6.2f} ms  "
                        f"p99 {r.p99_ms:6.2f} ms  (load process {r.client_cpu:.2f} CPU, "
                        + (
                            f"registry {busy / (self.args.seconds + self.args.warmup):.2f} CPU, "
                            if name == "lookup"
                            else ""
                        )
                        + f"other processes {others:.2f} CPU)"
                    )
            for name, runs in rounds.items():
                result[f"{name}_{clients}"] = {
                    "qps": statistics.median(r.qps for r in runs),
                    "p50": statistics.median(r.p50_ms for r in runs),
                    "p99": statistics.median(r.p99_ms for r in runs),
                    "rounds": [round(r.qps) for r in runs],
                }
        self.foreign.cores()  # from here on
        rate, errors = self.client(
            "batch", (self.port, BATCH_STREAMS, BATCH_ENTRIES, self.args.seconds)
        )
        self._others()
        assert errors == 0, f"{errors} failed batch entries"
        result["batch"] = rate
        say(f"   BatchLookup {BATCH_STREAMS}x{BATCH_ENTRIES}: {rate:,.0f} subjects/s")
        return result

    def log_entries(self) -> int:
        engine = db.make_engine(self.url, pool_size=1)
        try:
            with engine.connect() as connection:
                count = connection.execute(sqlalchemy.text("SELECT count(*) FROM access_log"))
                return int(count.scalar_one())
        finally:
            engine.dispose()

    def profile(self, seconds: float) -> str:
        """Where the registry's CPU goes during Lookup at 8 clients, sampled by py-spy."""
        say(f"-- profile: Lookup x8 for {seconds:g} s, sampled by py-spy")
        raw = self.data_dir / "profile.txt"
        spy = sampling.record(self.pid, seconds, raw)
        self.client("unary", (self.port, "lookup", 8, seconds, 0.5))
        spy.wait(seconds + 60)
        text = sampling.summary(raw)
        say(text)
        return text

    def grow(self, target: int) -> dict[str, Any]:
        """The access log grown to `target` entries, then the look-ups again."""
        say(f"-- access log to {target:,} entries")
        filled = log_fill.fill(self.url, signing_key(self.data_dir), target)
        self.foreign.cores()  # from here on (the fill is ours)
        say(f"   appended {filled['added']:,.0f} entries, {filled['per_second']:,.0f}/s")
        result: dict[str, Any] = {"target": target, "fill_per_second": filled["per_second"]}
        result.update(self.lookups())
        result["access_log_entries"] = self.log_entries()
        result["memory"] = memory(self.pid)
        result["db_bytes"] = database_bytes(self.url, self.data_dir)
        return result


def say(text: str) -> None:
    print(text, flush=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| markers | clients | echo QPS | echo on stack QPS | Lookup QPS | Lookup / echo | "
        "Lookup / echo on stack | echo p50 / p99 ms | Lookup p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for c in CLIENTS:
            e, s, lk = r[f"echo_{c}"], r[f"stack_{c}"], r[f"lookup_{c}"]
            lines.append(
                f"| {r['markers']:,} | {c} | {e['qps']:,.0f} | {s['qps']:,.0f} | "
                f"{lk['qps']:,.0f} | {lk['qps'] / e['qps']:.0%} | {lk['qps'] / s['qps']:.0%} | "
                f"{e['p50']:.2f} / {e['p99']:.2f} | {lk['p50']:.2f} / {lk['p99']:.2f} |"
            )
    lines += ["", "| markers | SyncMarkers load /s | resync /s (s) | BatchLookup subjects/s |"]
    lines.append("|---|---|---|---|")
    for r in results:
        lines.append(
            f"| {r['markers']:,} | {r['sync_load']:,.0f} | "
            f"{r['sync_resync']:,.0f} ({r['resync_seconds']:.1f} s) | {r['batch']:,.0f} |"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        lines += ["", f"Lookup cost {large['markers']:,} vs {small['markers']:,} markers:"]
        for c in CLIENTS:
            qps = large[f"lookup_{c}"]["qps"] / small[f"lookup_{c}"]["qps"]
            p50 = large[f"lookup_{c}"]["p50"] / small[f"lookup_{c}"]["p50"]
            lines.append(f"- {c} client{'s' if c > 1 else ''}: QPS x{qps:.2f}, p50 x{p50:.2f}")
        rate = large["batch"] / small["batch"]
        lines.append(f"- BatchLookup subjects/s x{rate:.2f}")
    return "\n".join(lines)


def targets(results: list[dict[str, Any]], database_url: str | None) -> str:
    lines = []
    for r in results:
        m = f"{r['markers']:,}"
        ratio = r["lookup_8"]["qps"] / r["echo_8"]["qps"]
        p99 = r["lookup_8"]["p99"]
        lines.append(
            f"- {m}: Lookup at 8 clients {ratio:.0%} of echo (>= 50%) and p99 {p99:.2f} ms "
            f"(<= 10 ms): {'MET' if ratio >= 0.5 and p99 <= 10 else 'NOT MET'}"
        )
        lines.append(
            f"- {m}: BatchLookup {r['batch']:,.0f} subjects/s (>= 30,000): "
            f"{'MET' if r['batch'] >= 30_000 else 'NOT MET'}"
        )
        if database_url is None:
            ok = min(r["sync_load"], r["sync_resync"]) >= 50_000
            lines.append(
                f"- {m}: SyncMarkers {r['sync_load']:,.0f} (load) / {r['sync_resync']:,.0f} "
                f"(resync) markers/s (>= 50,000): {'MET' if ok else 'NOT MET'}"
            )
            if r["markers"] >= 1_000_000:
                s = r["resync_seconds"] * 1_000_000 / r["markers"]
                lines.append(
                    f"- full resync of 1M markers in {s:.1f} s (<= 30 s): "
                    f"{'MET' if s <= 30 else 'NOT MET'}"
                )
    return "\n".join(lines)


def growth_table(result: dict[str, Any]) -> str:
    """Look-ups as the access log grows, each point against the echo measured beside it."""
    points = [result, *result["growth"]]
    lines = [
        f"Access-log growth at {result['markers']:,} markers:",
        "",
        "| log entries | clients | echo QPS | Lookup QPS | Lookup / echo | Lookup p50 / p99 ms "
        "| QPS vs first | BatchLookup subjects/s | appended /s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    first = points[0]
    for p in points:
        # BatchLookup and the append rate once per point, on its first row.
        batch = f"{p['batch']:,.0f}"
        fill = f"{p['fill_per_second']:,.0f}" if "fill_per_second" in p else ""
        for c in CLIENTS:
            e, lk = p[f"echo_{c}"], p[f"lookup_{c}"]
            lines.append(
                f"| {p['access_log_entries']:,} | {c} | {e['qps']:,.0f} | {lk['qps']:,.0f} | "
                f"{lk['qps'] / e['qps']:.0%} | {lk['p50']:.2f} / {lk['p99']:.2f} | "
                f"x{lk['qps'] / first[f'lookup_{c}']['qps']:.2f} | {batch} | {fill} |"
            )
            batch = fill = ""
    return "\n".join(lines)


def memory_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| markers | log entries | registry resident / peak MiB | of which own / mapped file "
        "MiB | database on disk MiB |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for p in [r, *r["growth"]]:
            m = p["memory"]
            lines.append(
                f"| {r['markers']:,} | {p['access_log_entries']:,} | "
                f"{m['rss'] / 2**20:,.0f} / {m['hwm'] / 2**20:,.0f} | "
                f"{m['anon'] / 2**20:,.0f} / {m['file'] / 2**20:,.0f} | "
                f"{p['db_bytes'] / 2**20:,.0f} |"
            )
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markers", default="10000,1000000", help="comma-separated counts")
    parser.add_argument(
        "--log-entries",
        default="1000000,10000000",
        help="at the largest marker count, grow the access log to each of these and measure "
        "the look-ups again (comma-separated; empty for none)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="10k and 100k markers, log to 100k and 300k"
    )
    parser.add_argument(
        "--database-url", help="a PostgreSQL URL; each run uses a new schema, dropped at the end"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per round")
    parser.add_argument("--rounds", type=int, default=3, help="echo/Lookup rounds per point")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per round")
    parser.add_argument("--workers", type=int, default=WORKERS, help="server threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="at the end, sample the registry with py-spy during Lookup at 8 clients",
    )
    args = parser.parse_args()
    counts = [10_000, 100_000] if args.quick else [int(m) for m in args.markers.split(",")]
    log_targets = [100_000, 300_000] if args.quick else _counts(args.log_entries)

    # Production's JSON log line per RPC is rendered, then thrown away.
    logs.configure(json=True, file=open(os.devnull, "w"))  # noqa: SIM115
    say(
        f"registry bench: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"grpcio {grpc.__version__}, database {args.database_url or 'SQLite'}, "
        f"{args.workers} server threads, {args.rounds} rounds of {args.seconds:g} s per point"
    )
    say(
        f"mTLS on (every server), access log on (an entry per Lookup/BatchLookup subject); "
        f"lookups as {PARTY} at intake-en-selectie, sync by each source's adapter"
    )
    # Everything speaks mTLS, as in production: one development PKI for the run.
    pki_dir = Path(tempfile.mkdtemp(prefix="baken-bench-pki-"))
    pki.init(pki_dir, covenants.identities(), now=dt.datetime.now(dt.UTC))
    os.environ[PKI_DIR_ENV] = str(pki_dir)
    echo, echo_port = create_echo_server(args.workers, pki_dir)
    stack, stack_port = create_stack_echo_server(args.workers, pki_dir)
    echo.start()
    stack.start()
    client = Client()
    started = time.perf_counter()
    try:
        ports = {"echo": echo_port, "stack": stack_port}
        results = [
            run_scale(
                m,
                args,
                client,
                ports,
                log_targets if m == counts[-1] else [],
                args.profile if m == counts[-1] else 0,
            )
            for m in counts
        ]
    finally:
        client.stop()
        echo.stop(None)
        stack.stop(None)
        shutil.rmtree(pki_dir, ignore_errors=True)
    say(f"\n{table(results)}\n\n{growth_table(results[-1])}\n\n{memory_table(results)}")
    say(f"\nTargets:\n{targets(results, args.database_url)}")
    busiest = max(r["foreign_max"] for r in results)
    say(f"\nOther processes used up to {busiest:.2f} CPU during a measurement.")
    if busiest > 0.2:
        say("WARNING: the machine was not quiet; these figures are skewed.")
    say(f"(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
