"""The adapter's state file (SQLite): per record what was sent and whether the registry confirmed
it, the feedback items the receiver applied, and the advice requests it wrote into the source
that are still open (adapters/framework.py says how a sync uses it). No BSN or name; under an
OPRF key, per record also its pseudonyms and a salted hash of its person's identifiers (`Sent`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from baken.registry.v1 import marker_pb2


@dataclass(frozen=True, slots=True)
class Planned:
    """A change of one record as a run plans it, written here before it is sent."""

    key: str
    kind: str  # "new", "changed" or "deleted"
    version: int
    fingerprint: bytes
    change: marker_pb2.MarkerChange
    where: str
    record_id: str
    person: bytes = b""  # see Sent
    subject: bytes = b""

    @property
    def cache(self) -> tuple[bytes, bytes]:
        return self.person, self.subject


class Sent(NamedTuple):
    """What the state file says was sent for one record."""

    record_id: str
    version: int  # the highest version sent
    fingerprint: bytes  # of the record sent; empty for a tombstone
    deleted: bool
    confirmed: bool  # the registry answered for it
    # Under an OPRF key: a hash of the person's identifiers (salted per state file, with the
    # record's key), and the pseudonyms they had (a serialized Subject), so an unchanged person
    # is not sent to the pseudonymisation service again. Empty otherwise.
    person: bytes = b""
    subject: bytes = b""


class OpenAdviceRequest(NamedTuple):
    """An advice request written into the source and not answered yet (no personal data)."""

    name: str  # "adviceRequests/{id}", as the feedback item carried it: what is answered
    house_id: str
    record_id: str  # the house's own record of the person
    requested: dt.date  # the day ZSM asked, in the Netherlands


class StateFile:
    """An adapter's state file: SQLite in autocommit (each statement, or an explicit BEGIN, is
    a transaction), WAL, and synced to disk at every commit, so a kill loses no commit. It
    holds a random salt of its own (`salt`) for the hashes it keeps."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    def _make_salt(self) -> None:
        """The file's salt, made once; call within the transaction that makes the schema."""
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB)")
        self._db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('salt', ?)",
            (secrets.token_bytes(32),),
        )
        (salt,) = self._db.execute("SELECT value FROM meta WHERE name = 'salt'").fetchone()
        self.salt: bytes = bytes(salt)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on an error so the connection stays usable
        (the receiver goes on after a locked or failing state file)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


class State(StateFile):
    """The adapter's memory of what it sent: per record, the highest version sent, the
    fingerprint of that content, whether it is a tombstone, and whether the registry confirmed
    it. Also the feedback items the receiver applied (by key) and the advice requests still
    open. A SQLite file next to nothing else; it holds no personal data (fingerprints are hashes
    of the pseudonymised record). Sync and receiver may use it at once, each with its own
    State (one per thread)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # One process at a time: the sync and the receiver open the same file at once, and both
        # would otherwise add the columns a state file from before lacks.
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record_id TEXT"
                " NOT NULL, version INTEGER NOT NULL, fingerprint BLOB NOT NULL, deleted INTEGER"
                " NOT NULL, confirmed INTEGER NOT NULL, person BLOB NOT NULL DEFAULT x'',"
                " subject BLOB NOT NULL DEFAULT x'')"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
            for column in ("person", "subject"):  # a state file from before has neither
                if column not in columns:
                    self._db.execute(
                        f"ALTER TABLE records ADD COLUMN {column} BLOB NOT NULL DEFAULT x''"
                    )
            self._make_salt()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS received (key TEXT PRIMARY KEY, house_id TEXT NOT NULL,"
            " applied_time TEXT NOT NULL)"
        )
        # By name (what AnswerAdviceRequest takes). A state file from before also holds
        # `advice_requests`, by delivery key: no longer read, as those cannot be answered.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS open_advice_requests (name TEXT PRIMARY KEY,"
            " house_id TEXT NOT NULL, record_id TEXT NOT NULL, requested TEXT NOT NULL)"
        )

    def load(self) -> dict[str, Sent]:
        rows = self._db.execute(
            "SELECT key, record_id, version, fingerprint, deleted, confirmed, person, subject"
            " FROM records"
        )
        return {
            key: Sent(record_id, version, bytes(fp), bool(deleted), bool(confirmed))._replace(
                person=bytes(person), subject=bytes(subject)
            )
            for key, record_id, version, fp, deleted, confirmed, person, subject in rows
        }

    def plan(self, planned: Sequence[Planned]) -> None:
        """Write the plan before anything is sent (one transaction)."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO records (key, record_id, version, fingerprint, deleted, confirmed,"
            " person, subject) VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " version = excluded.version, fingerprint = excluded.fingerprint,"
            " deleted = excluded.deleted, confirmed = 0, person = excluded.person,"
            " subject = excluded.subject",
            [
                (p.key, p.record_id, p.version, p.fingerprint, p.kind == "deleted", *p.cache)
                for p in planned
            ],
        )
        self._db.execute("COMMIT")

    def remember(self, pseudonymised: Iterable[tuple[str, bytes, bytes]]) -> None:
        """(key, person, subject) of records whose pseudonyms were made this run and that are
        unchanged, so not planned (a state file from before, or after a key was added)."""
        with self._transaction():
            self._db.executemany(
                "UPDATE records SET person = ?, subject = ? WHERE key = ?",
                [(person, subject, key) for key, person, subject in pseudonymised],
            )

    def confirm(self, keys: Iterable[str]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("UPDATE records SET confirmed = 1 WHERE key = ?", [(k,) for k in keys])
        self._db.execute("COMMIT")

    # -- feedback items and advice requests (adapters/receive.py) ------------------------------

    def was_received(self, key: str) -> bool:
        """The feedback item with this idempotency key was applied in the source already."""
        row = self._db.execute("SELECT 1 FROM received WHERE key = ?", (key,)).fetchone()
        return row is not None

    def received(
        self,
        key: str,
        house_id: str,
        now: dt.datetime,
        advice_request: OpenAdviceRequest | None = None,
    ) -> None:
        """The item is in the source (and, for an advice request, open): one transaction."""
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO received (key, house_id, applied_time) VALUES (?, ?, ?)",
                (key, house_id, now.isoformat()),
            )
            if advice_request is not None:
                r = advice_request
                self._db.execute(
                    "INSERT OR IGNORE INTO open_advice_requests (name, house_id, record_id,"
                    " requested) VALUES (?, ?, ?, ?)",
                    (r.name, r.house_id, r.record_id, r.requested.isoformat()),
                )

    def forget_received(self, before: dt.datetime) -> int:
        """Drop receipts older than `before` (long after any redelivery of their items)."""
        with self._transaction():
            count = self._db.execute(
                "DELETE FROM received WHERE applied_time < ?", (before.isoformat(),)
            ).rowcount
        return int(count)

    def open_advice_requests(self) -> list[OpenAdviceRequest]:
        return [
            OpenAdviceRequest(name, house_id, record_id, dt.date.fromisoformat(requested))
            for name, house_id, record_id, requested in self._db.execute(
                "SELECT name, house_id, record_id, requested FROM open_advice_requests"
                " ORDER BY requested, name"
            )
        ]

    def forget_advice_requests(self, names: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany(
                "DELETE FROM open_advice_requests WHERE name = ?", [(n,) for n in names]
            )
