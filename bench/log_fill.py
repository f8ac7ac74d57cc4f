"""Grows a registry's access log to a given length for the benchmark, through the registry's own
append (services/accesslog/store.AccessLog): the same rows, hash chain and signed
checkpoints a look-up writes, in batches of 10,000 entries a transaction.

Each new entry repeats the body of one of the look-up entries the bench's load already wrote
(hits and misses, with their `found` and decided fields), with a fresh time and fresh random
data-subject pseudonyms, so that the subject index grows as it does in use."""

from __future__ import annotations

import datetime as dt
import random
import time
from pathlib import Path

import sqlalchemy

from services.accesslog import signing
from services.accesslog import store as access_log
from services.accesslog.store import AccessLog, Entry
from services.common import db

BATCH = 10_000
# The fields an Entry sets itself; a sample's body keeps the rest.
_OWN = ("time", "outcome", "party_id", "reviews_seq", "data_subject")


def fill(url: str, signing_key: Path, target: int) -> dict[str, float]:
    """Append entries until the log holds `target`; how many were added, how fast."""
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            head = access_log.last_seq(connection)
            samples = access_log.search(connection, after_seq=max(0, head - 2000), limit=2000)
        if not samples:
            raise SystemExit("the log has no entries to model new ones on")
        appender = AccessLog(signing.load(signing_key))
        shapes = [
            (s.outcome, s.party_id, {k: v for k, v in s.body.items() if k not in _OWN},
             len(s.body.get("data_subject", [])))
            for s in samples
        ]  # fmt: skip
        rng = random.Random(head)
        started = time.perf_counter()
        added = 0
        while head + added < target:
            now = dt.datetime.now(dt.UTC)
            count = min(BATCH, target - head - added)
            entries = [
                Entry(now, outcome, party, body, tuple(rng.randbytes(32) for _ in range(n)))
                for outcome, party, body, n in rng.choices(shapes, k=count)
            ]
            with engine.begin() as connection:
                appender.append(connection, entries, now)
            added += count
        seconds = time.perf_counter() - started
        if engine.dialect.name == "postgresql":
            # What autovacuum would do after the growth (it is off on this test server).
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text("ANALYZE access_log"))
                connection.execute(sqlalchemy.text("ANALYZE access_log_subjects"))
        return {"added": added, "per_second": added / seconds if seconds else 0.0}
    finally:
        engine.dispose()


def database_bytes(url: str, data_dir: Path) -> int:
    """The registry's database on disk: SQLite's files, or PostgreSQL's relations in its schema."""
    if not url.startswith("postgresql"):
        return sum(f.stat().st_size for f in data_dir.glob("registry.db*"))
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            size = connection.execute(
                sqlalchemy.text(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                )
            )
            return int(size.scalar_one())
    finally:
        engine.dispose()
