"""Feedback benchmark (not a test): decisions/s and decision-to-source latency.

    .venv/bin/python bench/feedback_bench.py [--persons 2000] [--seconds 10] [--clients 8]
        [--rate 20] [--batch 1] [--database-url URL]

The whole path runs as in production, over real gRPC with mTLS, each service in its own
process: the registry (`baken serve registry`), the feedback service (`baken serve feedback`),
the load (a spawned process with --clients threads, each calling RecordDecision, or
RecordDecisions with --batch decisions, as the KPC'er of ZSM Rotterdam-Rijnmond), and the
receiving adapters in this process (adapter-pga for the Rotterdam house, adapter-gcos for the
Utrecht house, writing each item into the house's source files and acknowledging it). Every
person is marked by both houses, so every decision makes one routing lookup in the registry
and two delivery items.

Figures:
- baseline: registry Lookup/s at the same concurrency, from the same load process, for the
  purpose terugkoppeling (every decision needs one such lookup);
- decisions/s under load, and its ratio to the baseline;
- latency from the RecordDecision call to the acknowledged write-back in both sources, at a
  paced --rate per second (after the backlog of the load phase has drained): p50, p95, p99.
Results and method: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sampling  # noqa: E402
from processes import cpu_seconds, memory, service  # noqa: E402

from adapters.receive import Receiver  # noqa: E402
from baken import logs, pki, sealed  # noqa: E402
from baken.client import connect  # noqa: E402
from baken.feedback.v1 import feedback_service_pb2 as pb  # noqa: E402
from baken.feedback.v1 import feedback_service_pb2_grpc  # noqa: E402
from baken.houses import load_houses  # noqa: E402
from baken.keyring import KeyRing  # noqa: E402
from baken.pseudonym import person_pseudonyms  # noqa: E402
from baken.registry.v1 import (  # noqa: E402
    house_pb2,
    marker_pb2,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from baken.type.v1 import pseudonym_pb2, purpose_pb2  # noqa: E402
from dev.topology import free_port  # noqa: E402
from services.common import covenants, db  # noqa: E402

ROTTERDAM, UTRECHT = "vh-rotterdam-rijnmond", "vh-regio-utrecht-utrecht"
KPC = "zsm-rotterdam-rijnmond-kpc"


def subject(ring: KeyRing, n: int) -> pseudonym_pb2.Subject:
    return pseudonym_pb2.Subject(
        pseudonyms=[
            pseudonym_pb2.Pseudonym(kind=p.kind, key_id=p.key_id, value=p.value)
            for p in person_pseudonyms(
                ring,
                bsn=None,
                surname=f"Bench{n}",
                birth_date=dt.date(1980, 1, 1) + dt.timedelta(days=n % 9000),
                today=dt.date.today(),
            )
        ]
    )


def mark(registry: str, pki_dir: Path, ring: KeyRing, persons: int) -> None:
    """Both houses mark every person (advice older than a year: no advice to weigh)."""
    houses = load_houses()
    old = dt.date.today() - dt.timedelta(days=400)
    for house, party in ((ROTTERDAM, "adapter-pga"), (UTRECHT, "adapter-gcos")):
        with connect(registry, pki.TlsFiles.of(pki_dir, party)) as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            changes = [
                marker_pb2.MarkerChange(
                    upsert=marker_pb2.MarkerRecord(
                        source_system=houses[house].source_system,
                        source_record_id=f"r{n}",
                        source_version=1,
                        house=f"houses/{house}",
                        subject=subject(ring, n),
                        target_group=marker_pb2.TARGET_GROUP_VEELPLEGER,
                        plan_status=marker_pb2.PLAN_STATUS_ACTIVE,
                        mark_date=_date(old),
                        advice="dagvaarden",
                        advice_date=_date(old),
                    )
                )
                for n in range(persons)
            ]
            for i in range(0, len(changes), 5000):
                stub.SyncMarkers(
                    iter([registry_service_pb2.SyncMarkersRequest(changes=changes[i : i + 5000])]),
                    timeout=120,
                )
    assert house_pb2  # the source systems above come from houses.toml


def _date(day: dt.date) -> Any:
    from google.type import date_pb2

    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def decision(ring: KeyRing, n: int, case: str) -> pb.RecordDecisionRequest:
    return pb.RecordDecisionRequest(
        case_reference=case,
        subject=subject(ring, n),
        code=pb.DECISION_CODE_STRAFBESCHIKKING,
        stage=pb.DECISION_STAGE_FINAL,
        subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        on_behalf_of="kpc-bench",
        request_key=case,
    )


# -- the load process ------------------------------------------------------------------------------


def load(args: dict[str, Any]) -> dict[str, float]:
    """Run in a spawned process: `clients` threads for `seconds`, Lookup or RecordDecision."""
    ring = KeyRing.load(Path(args["ring"]))
    tls = pki.TlsFiles.of(Path(args["pki"]), KPC)
    stop = time.monotonic() + args["seconds"]
    done: list[int] = []
    errors: list[str] = []

    def client(i: int) -> None:
        count = 0
        with connect(args["target"], tls) as channel:
            if args["what"] == "lookup":
                stub: Any = registry_service_pb2_grpc.RegistryServiceStub(channel)
            else:
                stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
            while time.monotonic() < stop:
                n = (i * 7919 + count) % args["persons"]
                case = f"B-{args['run'].upper()}-{i}-{count}"
                try:
                    if args["batch"] > 1 and args["what"] == "decide":
                        response = stub.RecordDecisions(
                            pb.RecordDecisionsRequest(
                                requests=[
                                    decision(ring, (n + k) % args["persons"], f"{case}-{k}")
                                    for k in range(args["batch"])
                                ]
                            ),
                            timeout=30,
                        )
                        errors.extend(
                            r.error.message for r in response.results if r.HasField("error")
                        )
                        count += args["batch"]
                        continue
                    if args["what"] == "lookup":
                        stub.Lookup(
                            registry_service_pb2.LookupRequest(
                                subject=subject(ring, n),
                                purpose=purpose_pb2.PURPOSE_TERUGKOPPELING,
                                case_reference=case,
                                on_behalf_of="kpc-bench",
                            ),
                            timeout=10,
                        )
                    else:
                        stub.RecordDecision(decision(ring, n, case), timeout=10)
                    count += 1
                except grpc.RpcError as error:
                    errors.append(error.code().name)
        done.append(count)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args["clients"])]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"per_second": sum(done) / elapsed, "calls": sum(done), "errors": len(errors)}


def run_load(**args: Any) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, float] = pool.apply(load, (args,))
    return result


# -- latency ---------------------------------------------------------------------------------------


def drain(engine: sqlalchemy.Engine, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as c:
            pending = c.exec_driver_sql(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"
            ).scalar()
        if not pending:
            return
        time.sleep(0.2)
    raise SystemExit("the receivers did not drain the backlog")


def latencies(
    target: str, pki_dir: Path, ring: KeyRing, engine: sqlalchemy.Engine, rate: float, count: int
) -> list[float]:
    """Seconds from each paced RecordDecision call to the last acknowledgement of its items."""
    started: dict[str, float] = {}
    with connect(target, pki.TlsFiles.of(pki_dir, KPC)) as channel:
        stub = feedback_service_pb2_grpc.FeedbackServiceStub(channel)
        for i in range(count):
            at = time.time()
            case = f"L-{uuid.uuid4().int % 10**15:015d}"  # never nine digits alone
            response = stub.RecordDecision(decision(ring, i, case), timeout=10)
            started[response.name.removeprefix("decisions/")] = at
            time.sleep(max(0.0, at + 1 / rate - time.time()))
    drain(engine)
    with engine.connect() as c:
        rows = c.exec_driver_sql(
            "SELECT decision_id, acked_time FROM deliveries WHERE decision_id IS NOT NULL"
        ).all()
    last: dict[str, dt.datetime] = {}
    for decision_id, acked in rows:
        if decision_id in started:
            acked = acked if isinstance(acked, dt.datetime) else dt.datetime.fromisoformat(acked)
            acked = acked.replace(tzinfo=dt.UTC) if acked.tzinfo is None else acked
            last[decision_id] = max(last.get(decision_id, acked), acked)
    return [last[d].timestamp() - started[d] for d in started if d in last]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0, help="paced decisions/s for latency")
    parser.add_argument("--latency-count", type=int, default=200)
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="decisions per call: RecordDecisions with this many (1: RecordDecision)",
    )
    parser.add_argument("--database-url", help="PostgreSQL base URL (a fresh schema per service)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the feedback service with py-spy during the RecordDecision load",
    )
    args = parser.parse_args()
    # The adapters here log as in production, a line per item, rendered and thrown away.
    logs.configure(json=True, file=open(os.devnull, "w"))  # noqa: SIM115

    with tempfile.TemporaryDirectory(prefix="baken-feedback-bench-") as tmp:
        work = Path(tmp)
        pki.init(work / "pki", covenants.identities(), now=dt.datetime.now(dt.UTC))
        sealed.init_house_keys(work / "pki" / "houses", load_houses(), now=dt.datetime.now(dt.UTC))
        ring = KeyRing.generate("k1")
        ring.save(work / "ring.json")
        registry_port, feedback_port = free_port(), free_port()
        registry, feedback = f"127.0.0.1:{registry_port}", f"127.0.0.1:{feedback_port}"

        with contextlib.ExitStack() as stack:
            # Capacity is measured here, not the per-party limits.
            env_registry = {"BAKEN_REGISTRY_RATE_SCALE": "1000"}
            env_feedback = {
                "BAKEN_FEEDBACK_REGISTRY": registry,
                "BAKEN_FEEDBACK_REDELIVERY_BASE_SECONDS": "1.0",
                "BAKEN_FEEDBACK_RATE_SCALE": "1000",
            }
            feedback_url = db.sqlite_url(work / "feedback", "feedback.db")
            if args.database_url:
                registry_url = stack.enter_context(db.scratch_schema(args.database_url, "bench"))
                feedback_url = stack.enter_context(db.scratch_schema(args.database_url, "bench"))
                env_registry["BAKEN_REGISTRY_DATABASE_URL"] = registry_url
                env_feedback["BAKEN_FEEDBACK_DATABASE_URL"] = feedback_url
            registry_process = stack.enter_context(
                service(
                    "registry",
                    registry_port,
                    env=env_registry,
                    pki_dir=work / "pki",
                    data_dir=work / "registry",
                    log=work / "registry.log",
                )
            )
            print(f"marking {args.persons} persons at two houses ...", flush=True)
            mark(registry, work / "pki", ring, args.persons)
            feedback_process = stack.enter_context(
                service(
                    "feedback",
                    feedback_port,
                    env=env_feedback,
                    pki_dir=work / "pki",
                    data_dir=work / "feedback",
                    log=work / "feedback.log",
                )
            )
            processes = {
                "registry": registry_process.pid,
                "feedback": feedback_process.pid,
                "adapters": os.getpid(),
            }
            engine = db.make_engine(feedback_url, pool_size=2)
            stack.callback(engine.dispose)
            receivers: list[Receiver] = []
            for system, house in (("pga", ROTTERDAM), ("gcos", UTRECHT)):
                channel = connect(feedback, pki.TlsFiles.of(work / "pki", f"adapter-{system}"))
                stack.callback(channel.close)
                receiver = Receiver(
                    channel,
                    system,
                    [house],
                    target=work / "sources" / system,
                    state_path=work / f"{system}-state.db",
                )
                receiver.start()
                stack.callback(receiver.stop)
                receivers.append(receiver)

            common = {
                "ring": str(work / "ring.json"),
                "pki": str(work / "pki"),
                "persons": args.persons,
                "clients": args.clients,
                "seconds": args.seconds,
                "batch": args.batch,
            }
            print("baseline: registry Lookup (terugkoppeling) ...", flush=True)
            base = run_load(what="lookup", target=registry, run="lookup", **common)
            print("load: RecordDecision ...", flush=True)
            before = cpu_seconds(processes)
            spy = (
                sampling.record(feedback_process.pid, args.seconds, work / "profile.txt")
                if args.profile
                else None
            )
            decided = run_load(what="decide", target=feedback, run="decide", **common)
            used = {k: v - before[k] for k, v in cpu_seconds(processes).items()}
            if spy is not None:
                spy.wait(args.seconds + 60)
                profile = sampling.summary(work / "profile.txt", top=40)
                print(profile, flush=True)
            print(
                f"  {decided['per_second']:.0f} decisions/s ({decided['errors']:.0f} errors); "
                "draining the deliveries ...",
                flush=True,
            )
            drained = time.monotonic()
            drain(engine)
            print(f"  drained in {time.monotonic() - drained:.1f} s", flush=True)
            print(f"latency: {args.latency_count} decisions at {args.rate:g}/s ...", flush=True)
            duplicates = sum(r.counts()["already applied"] for r in receivers)
            seconds = latencies(feedback, work / "pki", ring, engine, args.rate, args.latency_count)
            memories = {
                "registry": memory(registry_process.pid),
                "feedback": memory(feedback_process.pid),
            }

    kind = "PostgreSQL" if args.database_url else "SQLite"
    ratio = decided["per_second"] / base["per_second"]
    print()
    print(f"feedback benchmark, {kind}, {args.clients} clients, {args.persons} persons x 2 houses")
    print(f"  baseline Lookup (terugkoppeling)   {base['per_second']:8.0f} /s")
    method = f"RecordDecisions x{args.batch}" if args.batch > 1 else "RecordDecision"
    print(
        f"  {method:<35}{decided['per_second']:8.0f} /s"
        f"   = {ratio:.0%} of the baseline ({decided['errors']:.0f} errors)"
    )
    print(
        f"  decision -> acknowledged in both sources, at {args.rate:g}/s "
        f"(n={len(seconds)}): p50 {1000 * statistics.median(seconds):.1f} ms,"
        f" p95 {1000 * percentile(seconds, 95):.1f} ms, p99 {1000 * percentile(seconds, 99):.1f} ms"
    )
    calls = decided["calls"]
    print(f"  items delivered again and skipped by the adapters during the load: {duplicates}")
    print(
        "  CPU per decision under load: "
        + ", ".join(f"{k} {1000 * v / calls:.2f} ms" for k, v in used.items())
    )
    print(
        "  memory (resident now / peak): "
        + ", ".join(
            f"{k} {m['rss'] / 2**20:.0f} / {m['hwm'] / 2**20:.0f} MiB" for k, m in memories.items()
        )
    )
    print("  targets: >= 1,000 decisions/s on SQLite; p50 <= 50 ms; p99 <= 1 s")
    if args.json:
        figures = {
            "database": kind,
            "clients": args.clients,
            "batch": args.batch,
            "baseline_per_second": base["per_second"],
            "decisions_per_second": decided["per_second"],
            "errors": decided["errors"],
            "latency_ms": {
                "p50": 1000 * statistics.median(seconds),
                "p95": 1000 * percentile(seconds, 95),
                "p99": 1000 * percentile(seconds, 99),
                "n": len(seconds),
            },
            "duplicates_skipped": duplicates,
            "cpu_ms_per_decision": {k: 1000 * v / calls for k, v in used.items()},
            "memory": memories,
        }
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
