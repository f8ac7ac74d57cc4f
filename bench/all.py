"""The whole performance picture in one command (not a test), on SQLite and on PostgreSQL.

    .venv/bin/python bench/all.py [--quick] [--database-url URL | --sqlite-only] [--out DIR]

Runs, one after the other and each against its baseline measured in the same run:

- bench/registry_bench.py: Lookup and BatchLookup against the echo baseline at 1/8/32 clients,
  mTLS and the access log on, at 10k and 1M markers; then at 1M markers the access log grown to
  1M and to 10M entries and the look-ups again; SyncMarkers load and resync; the registry
  process's memory at each point;
- bench/adapter_bench.py: sync markers/s of each source adapter against the registry's own
  ingest of the same markers;
- bench/feedback_bench.py: decisions/s against the registry's Lookup, decision-to-source
  latency, and each service process's memory;

first on SQLite, then on PostgreSQL (default postgresql://postgres@127.0.0.1:5432/test, a fresh
schema per service). Each bench's own report and figures go to --out; at the end this prints
one table. --quick: 10k and 100k markers, the log to 100k and 300k entries, smaller loads.
A full run takes about an hour and needs ~70 GB of free disk for the 10M-entry logs.
Results and method: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
DEFAULT_POSTGRESQL = "postgresql://postgres@127.0.0.1:5432/test"
CLIENTS = (1, 8, 32)


def run(script: str, args: list[str], out: Path, name: str) -> Any:
    """One bench as a process of its own; its report to the terminal and to out/name.txt."""
    figures = out / f"{name}.json"
    command = [sys.executable, str(HERE / script), *args, "--json", str(figures)]
    print(f"\n### {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    with (out / f"{name}.txt").open("w") as report:
        process = subprocess.Popen(
            command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            report.write(line)
        if process.wait():
            raise SystemExit(f"{name} failed (exit {process.returncode}); see {report.name}")
    print(f"### {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads(figures.read_text())


def one_database(database_url: str | None, quick: bool, out: Path) -> dict[str, Any]:
    label = "postgresql" if database_url else "sqlite"
    on = ["--database-url", database_url] if database_url else []
    registry = run(
        "registry_bench.py",
        [*on, "--profile", "10", *(["--quick"] if quick else [])],
        out,
        f"registry-{label}",
    )
    adapters = run(
        "adapter_bench.py",
        [*on, "--persons", "20000" if quick else "100000"],
        out,
        f"adapters-{label}",
    )
    feedback = run(
        "feedback_bench.py",
        [*on, *(["--persons", "500", "--seconds", "5", "--latency-count", "100"] if quick else [])],
        out,
        f"feedback-{label}",
    )
    return {"registry": registry, "adapters": adapters, "feedback": feedback}


def _clients(count: int) -> str:
    return f"{count} client{'s' if count > 1 else ''}"


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def summary(name: str, figures: dict[str, Any]) -> str:
    registry, adapters, feedback = figures["registry"], figures["adapters"], figures["feedback"]
    small, large = registry[0], registry[-1]
    lines = [
        f"## {name}",
        "",
        "| what | figure | baseline in the same run | ratio |",
        "|---|---|---|---|",
    ]

    def row(what: str, figure: str, baseline: str, ratio: float | str) -> None:
        text = ratio if isinstance(ratio, str) else f"{ratio:.0%}"
        lines.append(f"| {what} | {figure} | {baseline} | {text} |")

    for r in registry:
        for c in CLIENTS:
            lk, echo = r[f"lookup_{c}"], r[f"echo_{c}"]
            row(
                f"Lookup, {r['markers']:,} markers, {_clients(c)}",
                f"{lk['qps']:,.0f}/s, p50 {lk['p50']:.2f} ms, p99 {lk['p99']:.2f} ms",
                f"echo {echo['qps']:,.0f}/s, p50 {echo['p50']:.2f} ms",
                lk["qps"] / echo["qps"],
            )
        row(
            f"BatchLookup (4 streams x 100), {r['markers']:,} markers",
            f"{r['batch']:,.0f} subjects/s",
            f"echo at 8 clients {r['echo_8']['qps']:,.0f} calls/s",
            f"x{r['batch'] / r['echo_8']['qps']:.1f}",
        )
    for c in CLIENTS:
        row(
            f"Lookup cost, {large['markers']:,} vs {small['markers']:,} markers, {_clients(c)}",
            f"{large[f'lookup_{c}']['qps']:,.0f}/s",
            f"{small[f'lookup_{c}']['qps']:,.0f}/s",
            f"x{large[f'lookup_{c}']['qps'] / small[f'lookup_{c}']['qps']:.2f}",
        )
    growth = large["growth"]
    if len(growth) >= 2:
        first, last = growth[0], growth[-1]
        for c in CLIENTS:
            a, b = first[f"lookup_{c}"], last[f"lookup_{c}"]
            row(
                f"Lookup cost, log {last['access_log_entries']:,} vs "
                f"{first['access_log_entries']:,} entries, {_clients(c)}",
                f"{b['qps']:,.0f}/s, p50 {b['p50']:.2f} ms",
                f"{a['qps']:,.0f}/s, p50 {a['p50']:.2f} ms",
                f"x{b['qps'] / a['qps']:.2f}",
            )
        row(
            "BatchLookup, log grown the same",
            f"{last['batch']:,.0f} subjects/s",
            f"{first['batch']:,.0f} subjects/s",
            f"x{last['batch'] / first['batch']:.2f}",
        )
    for system, f in adapters.items():
        row(
            f"sync, adapter {system} ({f['records']:,.0f} records)",
            f"{f['first']:,.0f} markers/s (rerun unchanged {f['rerun']:,.0f}/s)",
            f"registry ingest alone {f['baseline']:,.0f}/s",
            f["first"] / f["baseline"],
        )
    row(
        f"SyncMarkers straight, {large['markers']:,} markers",
        f"load {large['sync_load']:,.0f}/s, resync {large['sync_resync']:,.0f}/s",
        "",
        "",
    )
    latency = feedback["latency_ms"]
    row(
        f"RecordDecision, {feedback['clients']} clients",
        f"{feedback['decisions_per_second']:,.0f} decisions/s",
        f"registry Lookup (terugkoppeling) {feedback['baseline_per_second']:,.0f}/s",
        feedback["decisions_per_second"] / feedback["baseline_per_second"],
    )
    row(
        "decision to acknowledged write-back in both sources",
        f"p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms, p99 {latency['p99']:.0f} ms "
        f"(n={latency['n']})",
        "",
        "",
    )
    points = [large, *growth]
    for p in points:
        m = p["memory"]
        row(
            f"registry memory, {large['markers']:,} markers, "
            f"{p['access_log_entries']:,} log entries",
            f"{_mib(m['rss'])} resident ({_mib(m['anon'])} own, {_mib(m['file'])} mapped files: "
            f"libraries, and on SQLite the database), peak {_mib(m['hwm'])}",
            f"database {_mib(p['db_bytes'])} on disk",
            "",
        )
    for service, m in feedback["memory"].items():
        row(
            f"{service} memory after the feedback load",
            f"{_mib(m['rss'])} resident, peak {_mib(m['hwm'])}",
            "",
            "",
        )
    if "profile" in large:
        log = (growth[-1] if growth else large)["access_log_entries"]
        lines += [
            "",
            f"Where the registry's CPU goes: Lookup at 8 clients, {large['markers']:,} markers, "
            f"{log:,} log entries (py-spy):",
            "",
            large["profile"],
        ]
    return "\n".join(lines)


def postgresql_reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url", default=DEFAULT_POSTGRESQL)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--out", type=Path, help="default: bench-results/<UTC time>")
    args = parser.parse_args()
    out = args.out or Path("bench-results") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    databases: list[tuple[str, str | None]] = [("SQLite", None)]
    if not args.sqlite_only:
        if not postgresql_reachable(args.database_url):
            raise SystemExit(f"PostgreSQL is not reachable at {args.database_url} (--sqlite-only?)")
        databases.append(("PostgreSQL", args.database_url))
    started = time.perf_counter()
    results = {name: one_database(url, args.quick, out) for name, url in databases}
    (out / "all.json").write_text(json.dumps(results, indent=2))
    text = "\n\n".join(summary(name, figures) for name, figures in results.items())
    header = (
        f"Baken, whole-picture benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'} run in {time.perf_counter() - started:.0f} s"
    )
    (out / "summary.md").write_text(f"{header}\n\n{text}\n")
    print(f"\n{header}\n\n{text}\n\n(reports and figures in {out})")


if __name__ == "__main__":
    main()
