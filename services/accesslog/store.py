"""The access log: every lookup's entry, append-only, chained by hash, with signed checkpoints.

Entry n (n = 1, 2, ... without gaps) stores its body as canonical JSON (sorted keys, no spaces,
UTF-8) and

    entry_hash(n) = SHA-256(prev_hash(n) || n as 8 bytes big-endian || body),
    prev_hash(n) = entry_hash(n - 1), and 32 zero bytes for entry 1.

The body holds the entry's time (ISO-8601 UTC, microseconds), outcome, party id, the data
subject's pseudonyms (`data_subject`, hex) and, for a review, `reviews_seq`; the columns of the
same names and the rows of access_log_subjects only repeat them for searching. The service
signs the head with Ed25519 over

    b"baken-access-log-checkpoint-v1\\0" || seq (8 bytes big-endian) || entry_hash || signed_time

(signed_time in ISO-8601 UTC with microseconds, UTF-8), so that rewriting the chain from some
entry on, or cutting off its tail, shows against a signature the database's users cannot make.

A run is the entries after a checkpoint (or from entry 1) up to and including the next one.
`append` keeps every run to at most `checkpoint_every` entries, each within
`checkpoint_seconds` of the run's first entry's time: it signs inside the appending
transaction, so a crash loses no checkpoint that its entries needed, and `verify` fails a run
that breaks the rule (its checkpoints were deleted). `checkpoint()` signs the head on request:
at shutdown, and every half `checkpoint_seconds` when the head is unsigned (services/running.py),
so that entries written just before a quiet spell or a crash stay unsigned at most that long.
The newest checkpoint leaves the database through AuditService.GetSignedHead, to the privacy
officer's witness (cli/witness.py).

Expiry (docs/RETENTION.md) removes the oldest entries a whole segment at a time: entries 1 .. N
(after the last expiry) where a checkpoint signs N and every entry up to N was written before
the period's cut-off. The service signs a boundary with the same key,

    b"baken-access-log-expiry-v1\\0" || N (8 bytes) || entry_hash(N) || before || signed_time

keeps it (access_log_expiries) and the checkpoint at N, and removes the entries, their subject
rows and the checkpoints below N. `verify` starts the chain after the newest boundary that
verifies: entry N + 1 must link to its hash. Whoever holds only the database cannot sign one,
so cutting entries and calling it expiry still shows as a deletion.

`verify` (services/accesslog/verify.py) recomputes the chain and names the first break.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import (
    Connection,
    Dialect,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    type_coerce,
)

from services.accesslog.signing import SigningKey
from services.accesslog.tables import (
    AccessLogCheckpointRow,
    AccessLogExpiryRow,
    AccessLogRow,
    AccessLogSubjectRow,
)
from services.common.db import Bulk, PerDialect, utc

entries = cast(Table, AccessLogRow.__table__)
subjects = cast(Table, AccessLogSubjectRow.__table__)
checkpoints = cast(Table, AccessLogCheckpointRow.__table__)
expiries = cast(Table, AccessLogExpiryRow.__table__)

GENESIS = bytes(32)
# Types beyond JSON's own raise, as json.dumps would, instead of being rendered by orjson.
_CANONICAL = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
CHECKPOINT_DOMAIN = b"baken-access-log-checkpoint-v1\0"
EXPIRY_DOMAIN = b"baken-access-log-expiry-v1\0"
BREAK_GLASS = "break-glass"
# Any fixed number, other than repository.SYNC_LOCK_KEY: the PostgreSQL advisory lock that
# serialises appends to the log.
APPEND_LOCK_KEY = 0x6261_6B65_6E02

_ENTRY_COLUMNS = (
    entries.c.seq,
    entries.c.entry_time,
    entries.c.party_id,
    entries.c.outcome,
    entries.c.reviews_seq,
)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(dt.UTC)


def canonical(body: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, non-ASCII as itself: for what entries hold (strings, integers,
    booleans, null, lists and objects) the very text of json.dumps(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False), which wrote the log's older entries, at a
    tenth of its cost (orjson)."""
    return orjson.dumps(body, option=_CANONICAL).decode()


def entry_hash(prev_hash: bytes, seq: int, body: str) -> bytes:
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big") + body.encode("utf-8")).digest()


def checkpoint_message(seq: int, hash_: bytes, signed_time: dt.datetime) -> bytes:
    return CHECKPOINT_DOMAIN + seq.to_bytes(8, "big") + hash_ + _iso(signed_time).encode("utf-8")


def expiry_message(seq: int, hash_: bytes, before: dt.datetime, signed_time: dt.datetime) -> bytes:
    return (
        EXPIRY_DOMAIN
        + seq.to_bytes(8, "big")
        + hash_
        + _iso(before).encode("utf-8")
        + b"\0"
        + _iso(signed_time).encode("utf-8")
    )


@dataclass(frozen=True, slots=True)
class Expired:
    """What one expiry removed: entries `first` .. `last`, all written before `before`."""

    first: int
    last: int
    before: dt.datetime

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry to append. `subject` holds the data subject's pseudonym values (32 bytes each)."""

    time: dt.datetime
    outcome: str
    party_id: str
    body: Mapping[str, Any]
    subject: tuple[bytes, ...] = ()
    reviews_seq: int | None = None

    def __post_init__(self) -> None:
        _aware(self.time, "an entry's time")
        if any(len(value) != 32 for value in self.subject):
            raise ValueError("a subject pseudonym value is 32 bytes")
        if not 0 < len(self.outcome) <= 16 or not 0 < len(self.party_id) <= 64:
            raise ValueError("an outcome is 1 to 16 characters, a party id 1 to 64")

    def canonical_body(self) -> str:
        own: dict[str, Any] = {
            "time": _iso(self.time),
            "outcome": self.outcome,
            "party_id": self.party_id,
        }
        if self.reviews_seq is not None:
            own["reviews_seq"] = self.reviews_seq
        if self.subject:
            own["data_subject"] = [v.hex() for v in dict.fromkeys(self.subject)]
        for key, value in own.items():
            if key in self.body and self.body[key] != value:
                raise ValueError(f"the body's {key!r} differs from the entry's")
        return canonical({**self.body, **own})


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    time: dt.datetime
    party_id: str
    outcome: str
    reviews_seq: int | None
    body: dict[str, Any]


_HEAD = "SELECT seq, entry_hash FROM access_log ORDER BY seq DESC LIMIT 1"


class _AppendSql:
    """An append's statements for one dialect. They run straight on the DBAPI connection, in
    the caller's transaction: through SQLAlchemy an append took 2.5 times as long on SQLite.
    On PostgreSQL, psycopg's pipeline sends the lock with the head's query, and the inserts of a
    few rows together, so a look-up's append costs two round trips; a batch's rows go as COPYs.

    On PostgreSQL the head is read after the lock by a statement of its own, so under READ
    COMMITTED (the default) it sees the appends committed meanwhile. Under REPEATABLE READ it
    would not, and the insert fails on the primary key: no entry, no answer, no broken chain."""

    def __init__(self, dialect: Dialect) -> None:
        self.postgresql = dialect.name == "postgresql"
        if self.postgresql:
            self.lock = f"SELECT pg_advisory_xact_lock({APPEND_LOCK_KEY})"
        else:
            # A write that changes nothing: SQLite then holds the write lock before the head
            # is read, instead of refusing to upgrade a stale read snapshot later.
            self.lock = "UPDATE access_log SET seq = seq WHERE 0 = 1"
        self.insert_entry = Bulk(insert(entries), dialect, (c.key for c in entries.c))
        self.insert_subject = Bulk(insert(subjects), dialect, (c.key for c in subjects.c))

    def lock_and_head(self, dbapi: Any) -> tuple[int, bytes]:
        """Take the append lock, then read the head: (seq, entry hash), (0, GENESIS) if empty."""
        if self.postgresql:
            assert isinstance(dbapi, psycopg.Connection)
            with dbapi.pipeline():
                dbapi.execute(self.lock)
                cursor = dbapi.execute(_HEAD)
            return _head_of(cursor.fetchone())
        cursor = dbapi.cursor()
        try:
            cursor.execute(self.lock)
            cursor.execute(_HEAD)
            return _head_of(cursor.fetchone())
        finally:
            cursor.close()

    def insert(
        self, dbapi: Any, entry_rows: list[dict[str, Any]], subject_rows: list[dict[str, Any]]
    ) -> None:
        if self.postgresql and len(entry_rows) + len(subject_rows) < Bulk.COPY_ROWS:
            # A few rows: both executemany's in one round trip.
            assert isinstance(dbapi, psycopg.Connection)
            with dbapi.pipeline():
                self.insert_entry.write(dbapi, entry_rows)
                self.insert_subject.write(dbapi, subject_rows)
            return
        self.insert_entry.write(dbapi, entry_rows)
        self.insert_subject.write(dbapi, subject_rows)


def _head_of(row: Sequence[Any] | None) -> tuple[int, bytes]:
    return (0, GENESIS) if row is None else (row[0], bytes(row[1]))


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """How often the head must be signed: at most `every` entries to a run, each within
    `seconds` of the run's first entry's time (the module's docstring defines a run)."""

    every: int = 1000
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if not self.seconds > 0:
            raise ValueError("checkpoint_seconds must be more than 0")

    @property
    def span(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)


@dataclass(slots=True)
class _Run:
    """The unsigned run as this process last left it: valid only while the head is still the
    entry it wrote (`head`, `head_hash`); an append by another process, or a rolled-back
    transaction, changes the head and makes the run read again."""

    head: int
    head_hash: bytes
    signed: int  # the newest checkpoint's seq
    first_time: dt.datetime | None  # the time of entry signed + 1, when head > signed


class AccessLog:
    """Appends to the log on the caller's connection, inside the caller's transaction: when
    that transaction fails, nothing of it was logged."""

    def __init__(
        self,
        signer: SigningKey,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 30.0,
    ) -> None:
        self._signer = signer
        self.policy = CheckpointPolicy(checkpoint_every, checkpoint_seconds)
        self._sql_for = PerDialect(_AppendSql)
        # By id(engine): a reused id finds a run whose head differs, which is read again.
        self._runs: dict[int, _Run] = {}

    def append(
        self, connection: Connection, entries: Sequence[Entry], now: dt.datetime
    ) -> list[int]:
        """Append the entries in order; their seqs. Signs the head before an entry that would
        make its run too long, and at the entry that fills a run."""
        if not entries:
            return []
        bodies = [e.canonical_body() for e in entries]  # before the lock: it may raise
        _aware(now, "now")
        sql = self._sql_for(connection)
        dbapi = connection.connection.dbapi_connection
        head, prev = sql.lock_and_head(dbapi)
        run = self._run(connection, head, prev)
        every, span = self.policy.every, self.policy.span
        rows: list[dict[str, Any]] = []
        subject_rows: list[dict[str, Any]] = []
        signs: list[tuple[int, bytes]] = []
        for seq, (entry, body) in enumerate(zip(entries, bodies, strict=True), head + 1):
            if run.signed < seq - 1 and (
                run.first_time is None or abs(entry.time - run.first_time) > span
            ):
                signs.append((seq - 1, prev))
                run.signed = seq - 1
            if run.signed == seq - 1:
                run.first_time = entry.time
            hash_ = entry_hash(prev, seq, body)
            rows.append(
                {
                    "seq": seq,
                    "entry_time": entry.time.astimezone(dt.UTC),
                    "party_id": entry.party_id,
                    "outcome": entry.outcome,
                    "reviews_seq": entry.reviews_seq,
                    "body": body,
                    "prev_hash": prev,
                    "entry_hash": hash_,
                }
            )
            subject_rows += [{"value": v, "seq": seq} for v in dict.fromkeys(entry.subject)]
            prev = hash_
            if seq - run.signed >= every:
                signs.append((seq, hash_))
                run.signed = seq
        sql.insert(dbapi, rows, subject_rows)
        for seq, hash_ in signs:
            # The old head may have been signed meanwhile by another process's timer.
            if seq > head or not _is_signed(connection, seq):
                self._sign(connection, seq, hash_, now)
        last = head + len(rows)
        run.head, run.head_hash = last, prev
        return list(range(head + 1, last + 1))

    def lock(self, connection: Connection) -> int:
        """Hold off every other append until the caller's transaction ends; the head's seq.
        For a check that the caller's own append must not race (a review of an entry)."""
        return self._sql_for(connection).lock_and_head(connection.connection.dbapi_connection)[0]

    def checkpoint(self, connection: Connection, now: dt.datetime) -> int | None:
        """Sign the head unless it is signed already; its seq, or None for an empty log."""
        _aware(now, "now")
        seq, hash_ = self._sql_for(connection).lock_and_head(connection.connection.dbapi_connection)
        if seq == 0:
            return None
        if not _is_signed(connection, seq):
            self._sign(connection, seq, hash_, now)
        self._runs[_key(connection)] = _Run(seq, hash_, seq, None)
        return seq

    def expire(
        self,
        connection: Connection,
        before: dt.datetime,
        now: dt.datetime,
        *,
        keep_from: int | None = None,
    ) -> Expired | None:
        """Remove the oldest entries written before `before`, up to the newest checkpoint that
        allows it, behind a signed boundary; what went, or None. Never an entry at or after
        the first one written at or after `before` (times need not rise with seqs), an
        unreviewed break-glass entry or what follows it, nor `keep_from` (an entry another
        table still names) or what follows it."""
        before, now = _aware(before, "before"), _aware(now, "now")
        head, _ = self._sql_for(connection).lock_and_head(connection.connection.dbapi_connection)
        start = expired_up_to(connection)
        young = connection.execute(
            select(func.min(entries.c.seq)).where(entries.c.entry_time >= before)
        ).scalar()
        pending = pending_reviews(connection, limit=1)
        limits = [head + 1, young, keep_from, pending[0].seq if pending else None]
        limit = min(value for value in limits if value is not None) - 1
        found = connection.execute(
            select(checkpoints.c.seq, checkpoints.c.entry_hash)
            .where(checkpoints.c.seq > start, checkpoints.c.seq <= limit)
            .order_by(checkpoints.c.seq.desc())
            .limit(1)
        ).first()
        if found is None:
            return None
        seq, hash_ = found[0], bytes(found[1])
        connection.execute(
            insert(expiries),
            {
                "seq": seq,
                "entry_hash": hash_,
                "before": before,
                "signed_time": now,
                "key_id": self._signer.key_id,
                "signature": self._signer.sign(expiry_message(seq, hash_, before, now)),
            },
        )
        connection.execute(delete(subjects).where(subjects.c.seq <= seq))
        connection.execute(delete(entries).where(entries.c.seq <= seq))
        connection.execute(delete(checkpoints).where(checkpoints.c.seq < seq))
        connection.execute(delete(expiries).where(expiries.c.seq < seq))
        return Expired(start + 1, seq, before)

    def _run(self, connection: Connection, head: int, head_hash: bytes) -> _Run:
        """The unsigned run ending at the head, from memory when this process wrote the head."""
        key = _key(connection)
        run = self._runs.get(key)
        if run is not None and (run.head, run.head_hash) == (head, head_hash):
            return run
        signed = connection.execute(
            select(func.coalesce(func.max(checkpoints.c.seq), 0)).where(checkpoints.c.seq <= head)
        ).scalar_one()
        first_time = None
        if signed < head:
            raw = connection.execute(
                select(type_coerce(entries.c.entry_time, Text)).where(entries.c.seq == signed + 1)
            ).scalar()
            first_time = raw_time(raw)
        run = self._runs[key] = _Run(head, head_hash, int(signed), first_time)
        return run

    def _sign(self, connection: Connection, seq: int, hash_: bytes, now: dt.datetime) -> None:
        connection.execute(
            insert(checkpoints),
            {
                "seq": seq,
                "entry_hash": hash_,
                "signed_time": now.astimezone(dt.UTC),
                "key_id": self._signer.key_id,
                "signature": self._signer.sign(checkpoint_message(seq, hash_, now)),
            },
        )


def expired_up_to(connection: Connection) -> int:
    """The last entry the newest expiry removed; 0 if none did."""
    return int(connection.execute(select(func.coalesce(func.max(expiries.c.seq), 0))).scalar_one())


def _is_signed(connection: Connection, seq: int) -> bool:
    found = connection.execute(select(checkpoints.c.seq).where(checkpoints.c.seq == seq))
    return found.first() is not None


def _key(connection: Connection) -> int:
    return id(connection.engine)


def raw_time(value: dt.datetime | str | None) -> dt.datetime | None:
    """A time column read as the database holds it (SQLite: text); None if it is not a time."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None if value is None else utc(value)


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A checkpoint as it leaves the database: what the witness keeps."""

    seq: int
    entry_hash: bytes
    signed_time: dt.datetime
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.seq, self.entry_hash, self.signed_time)

    def verifies(self, public_keys: Mapping[str, Ed25519PublicKey]) -> bool:
        """Whether its signature verifies with the auditor's key of its key id."""
        key = public_keys.get(self.key_id)
        if key is None:
            return False
        try:
            key.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True


def signed_head(connection: Connection, seq: int | None = None) -> SignedHead | None:
    """The checkpoint at `seq`, or the newest; None if there is none."""
    query = select(
        checkpoints.c.seq,
        checkpoints.c.entry_hash,
        checkpoints.c.signed_time,
        checkpoints.c.key_id,
        checkpoints.c.signature,
    )
    if seq is not None:
        query = query.where(checkpoints.c.seq == seq)
    row = connection.execute(query.order_by(checkpoints.c.seq.desc()).limit(1)).first()
    if row is None:
        return None
    seq, hash_, time, key_id, signature = row
    return SignedHead(seq, bytes(hash_), utc(time), key_id, bytes(signature))


def _stored(row: Sequence[Any]) -> StoredEntry:
    seq, time, party_id, outcome, reviews_seq, body = row
    return StoredEntry(seq, utc(time), party_id, outcome, reviews_seq, json.loads(body))


def search(
    connection: Connection,
    *,
    subject: Sequence[bytes] = (),
    party_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    outcome: str | None = None,
    after_seq: int = 0,
    until_seq: int | None = None,
    limit: int = 100,
) -> list[StoredEntry]:
    """Entries after `after_seq` (and up to `until_seq`) in seq order matching every given
    criterion: naming any of the subject values, by the party, with start <= time < end, with
    the outcome."""
    query = select(*_ENTRY_COLUMNS, entries.c.body).where(entries.c.seq > after_seq)
    if until_seq is not None:
        query = query.where(entries.c.seq <= until_seq)
    if subject:
        named = select(subjects.c.seq).where(subjects.c.value.in_(list(subject)))
        query = query.where(entries.c.seq.in_(named))
    if party_id is not None:
        query = query.where(entries.c.party_id == party_id)
    if start is not None:
        query = query.where(entries.c.entry_time >= _aware(start, "start"))
    if end is not None:
        query = query.where(entries.c.entry_time < _aware(end, "end"))
    if outcome is not None:
        query = query.where(entries.c.outcome == outcome)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = query.order_by(entries.c.seq).limit(limit)
    return [_stored(row) for row in connection.execute(query)]


def last_seq(connection: Connection) -> int:
    """The newest entry's seq (0 for an empty log)."""
    return int(connection.execute(select(func.coalesce(func.max(entries.c.seq), 0))).scalar_one())


def is_reviewed(connection: Connection, seq: int) -> bool:
    found = connection.execute(select(entries.c.seq).where(entries.c.reviews_seq == seq).limit(1))
    return found.first() is not None


def pending_reviews(
    connection: Connection, *, after_seq: int = 0, limit: int = 100
) -> list[StoredEntry]:
    """Break-glass entries that no entry reviews yet, in seq order."""
    reviewed = select(entries.c.reviews_seq).where(entries.c.reviews_seq.is_not(None))
    query = (
        select(*_ENTRY_COLUMNS, entries.c.body)
        .where(
            entries.c.outcome == BREAK_GLASS,
            entries.c.seq > after_seq,
            entries.c.seq.not_in(reviewed),
        )
        .order_by(entries.c.seq)
        .limit(limit)
    )
    return [_stored(row) for row in connection.execute(query)]
