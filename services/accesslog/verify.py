"""Verification of the access log's hash chain and signed checkpoints (format: store.py).

`verify` walks the log in seq order and reports the first break, with the entry it concerns:

- deleted: a seq is missing (also at the start); or entry n's hash recomputes only with a higher
  seq n + k and its prev_hash names no entry: k entries before it were deleted and the rest
  renumbered to close the gap.
- inserted: an entry spliced in. With a free seq this needs renumbering the entries after it,
  which changes their seqs and so their hashes: entry n then recomputes with seq m < n and links
  to entry m - 1, which makes entries m .. n-1 the inserted ones, reported at m. An inserted
  entry that does not fit at all (bad hash or link) is named when the entry after it links
  straight to the entry before it; so is an entry with a seq below 1.
- reordered: entries moved between seqs (rows swapped, with their hashes): entry n links to an
  entry other than n - 1, or an entry other than n + 1 links to it.
- altered: entry n's hash does not recompute (its body, prev_hash or entry_hash changed, and
  no other explanation above fits), or its search columns disagree with its body. An entry
  changed and then re-hashed still fits; the entry after it does not link to it any more and
  names a hash no entry has: reported as the earlier entry, altered.
- truncated: a validly signed checkpoint, or a head the witness saw, names a seq beyond the last
  entry.
- checkpoint: a checkpoint with an unknown key id or a bad signature, or whose hash differs from
  its entry's. An attacker who re-hashes the whole chain after a change shows only here: the
  change lies at or before that checkpoint's seq.
- unsigned: a checkpoint was due and is missing (checkpoints were deleted): a run (store.py)
  holds more than `policy.every` entries, or an entry more than `policy.seconds` from its run's
  first entry's time. The writer keeps both rules exactly, so there is no grace.
- rewritten: the entry at a head the witness saw has another hash now: the chain up to it was
  rewritten, re-hashed and, with the signing key, re-signed.
- witness: a head in the witness's store does not verify with the auditor's public keys.

After an expiry (store.py) the chain starts at the newest boundary whose signature holds: entry
N + 1 must link to the hash it signs, and checkpoints and witness heads at or below N are
checked for their signatures only (at N: against the boundary's hash too). A boundary that does
not verify is a `checkpoint` break, and the chain is then walked from entry 1.

Without a witness the chain cannot show a rewrite or cut of the last run only (at most
`policy.every` entries and `policy.seconds`, the unverifiable tail), nor a cut at a checkpoint
together with the checkpoints after it, nor a rewrite re-signed with the signing key itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Text, make_url, select, type_coerce

from services.accesslog import signing
from services.accesslog.store import (
    GENESIS,
    CheckpointPolicy,
    SignedHead,
    checkpoint_message,
    checkpoints,
    entries,
    entry_hash,
    expiries,
    expiry_message,
    raw_time,
    subjects,
)
from services.common import db
from services.common.db import utc

VERIFY_CHUNK = 5000
DEFAULT_POLICY = CheckpointPolicy()
# How far from its seq `verify` looks for the seq an entry's hash was made with (renumbering).
RENUMBER_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class Break:
    """Where the log was tampered with first: the entry (or checkpoint) seq and what was done."""

    seq: int
    # altered, deleted, inserted, reordered, truncated, checkpoint, unsigned, rewritten, witness
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    checkpoints: int
    last_signed_seq: int  # the highest checkpoint whose signature and hash both hold; 0 if none
    first_break: Break | None
    last_seq: int = 0  # the newest entry's seq
    witnessed_seq: int = 0  # the newest head of the witness that the chain still leads to
    expired_seq: int = 0  # entries up to it were removed behind a valid boundary
    expired_before: dt.datetime | None = None  # and were written before this time

    @property
    def ok(self) -> bool:
        return self.first_break is None


# --- verification ---------------------------------------------------------------------------

# entry_time as the database holds it: on SQLite text, which someone may have made unreadable.
_VERIFY_COLUMNS = (
    entries.c.seq,
    type_coerce(entries.c.entry_time, Text),
    entries.c.party_id,
    entries.c.outcome,
    entries.c.reviews_seq,
    entries.c.body,
    entries.c.prev_hash,
    entries.c.entry_hash,
)


@dataclass(frozen=True, slots=True)
class _Stored:
    seq: int
    time: dt.datetime | None  # None: not a time
    party_id: str
    outcome: str
    reviews_seq: int | None
    body: str
    prev_hash: bytes
    entry_hash: bytes
    # The entry's rows in access_log_subjects, as hex: what `baken audit subject` finds it by.
    subjects: frozenset[str]

    @classmethod
    def of(cls, row: Sequence[Any], subjects: frozenset[str]) -> _Stored:
        seq, time, party, outcome, reviews, body, prev, hash_ = row
        return cls(
            seq, raw_time(time), party, outcome, reviews, body, bytes(prev), bytes(hash_), subjects
        )

    def recomputes(self, seq: int) -> bool:
        return entry_hash(self.prev_hash, seq, self.body) == self.entry_hash


def _entries(connection: Connection) -> Iterator[_Stored]:
    query = select(*_VERIFY_COLUMNS).order_by(entries.c.seq).limit(VERIFY_CHUNK)
    rows = connection.execute(query).all()  # from the lowest seq, even one below 1
    while True:
        named: dict[int, set[str]] = {}
        if rows:
            for value, seq in connection.execute(
                select(subjects.c.value, subjects.c.seq).where(
                    subjects.c.seq.between(rows[0][0], rows[-1][0])
                )
            ):
                named.setdefault(seq, set()).add(bytes(value).hex())
        for row in rows:
            yield _Stored.of(row, frozenset(named.get(row[0], ())))
        if len(rows) < VERIFY_CHUNK:
            return
        rows = connection.execute(query.where(entries.c.seq > rows[-1][0])).all()


def _column_mismatch(entry: _Stored) -> str | None:
    """The first search column that disagrees with the entry's body, if one does."""
    try:
        body = json.loads(entry.body)
        time = dt.datetime.fromisoformat(body["time"])
    except (ValueError, TypeError, KeyError):
        return "body"
    if not isinstance(body, dict) or time.tzinfo is None or utc(time) != entry.time:
        return "entry_time"
    for column in ("party_id", "outcome", "reviews_seq"):
        if body.get(column) != getattr(entry, column):
            return column
    if set(body.get("data_subject", ())) != entry.subjects:
        return "access_log_subjects"
    return None


def entries_text(first: int, last: int) -> str:
    """'entry 4' or 'entries 4 to 9'."""
    return f"entry {first}" if first == last else f"entries {first} to {last}"


def entries_are(first: int, last: int) -> str:
    """'entry 4 is' or 'entries 4 to 9 are'."""
    return entries_text(first, last) + (" is" if first == last else " are")


def _seq_of(connection: Connection, column: Any, value: bytes, *where: Any) -> int | None:
    """The first seq whose `column` holds `value` (a scan: used once, at a break)."""
    return connection.execute(
        select(entries.c.seq).where(column == value, *where).order_by(entries.c.seq).limit(1)
    ).scalar()


class _Walker:
    """Follows the chain entry by entry; names the first break."""

    def __init__(self, connection: Connection, start: _Boundary | None) -> None:
        self._connection = connection
        self.expected = 1 if start is None else start.seq + 1
        self.last_hash = GENESIS if start is None else start.entry_hash

    def step(self, entry: _Stored) -> Break | None:
        s = entry.seq
        if s < self.expected:  # only before the first: seqs come in order, each once
            where = "the first entry" if self.expected == 1 else "the expiry boundary"
            return Break(s, "inserted", f"entry {s} comes before {where}")
        if s != self.expected:
            return Break(self.expected, "deleted", f"{entries_are(self.expected, s - 1)} missing")
        if entry.recomputes(s) and entry.prev_hash == self.last_hash:
            column = _column_mismatch(entry)
            if column is not None:
                return Break(
                    s, "altered", f"entry {s}: the {column} column disagrees with its body"
                )
            self.expected, self.last_hash = s + 1, entry.entry_hash
            return None
        return self._classify(entry)

    def _original_seq(self, entry: _Stored) -> int | None:
        """The seq the entry's hash was made with, near its own."""
        for distance in range(RENUMBER_WINDOW + 1):
            for seq in {entry.seq - distance, entry.seq + distance}:
                if seq >= 1 and entry.recomputes(seq):
                    return seq
        return None

    def _classify(self, entry: _Stored) -> Break:
        s, connection = entry.seq, self._connection
        original = self._original_seq(entry)
        if entry.prev_hash == self.last_hash:
            linked: int | None = s - 1
        elif entry.prev_hash == GENESIS:
            linked = 0
        else:
            linked = _seq_of(connection, entries.c.entry_hash, entry.prev_hash, entries.c.seq != s)
        if linked is not None and linked < s - 1 and original == linked + 1:
            return Break(
                original,
                "inserted",
                f"{entries_are(original, s - 1)} not part of the chain: "
                f"entry {s} was written as entry {original}, after entry {linked}",
            )
        if linked is not None and linked != s - 1:
            return Break(
                s,
                "reordered",
                f"entry {s} is out of place: it links to entry {linked}, not to entry {s - 1}",
            )
        skip = _seq_of(connection, entries.c.prev_hash, self.last_hash, entries.c.seq > s)
        if skip is not None:
            return Break(
                s,
                "inserted",
                f"{entries_are(s, skip - 1)} not part of the chain: "
                f"entry {skip} follows entry {s - 1}",
            )
        follower = _seq_of(
            connection, entries.c.prev_hash, entry.entry_hash, entries.c.seq != s + 1
        )
        if follower is not None:
            return Break(s, "reordered", f"entry {s} is out of place: entry {follower} links to it")
        if linked is None:
            if original is not None and original > s:
                return Break(
                    s,
                    "deleted",
                    f"entry {s} was written as entry {original}: entries before it were "
                    "deleted and the later ones renumbered",
                )
            if original == s and s > 1:
                return Break(
                    s - 1,
                    "altered",
                    f"entry {s - 1} was changed and its hash recomputed: "
                    f"entry {s} follows a different entry {s - 1}",
                )
        return Break(s, "altered", f"entry {s} does not match its hash")


def _signature_problem(
    row: Sequence[Any], public_keys: Mapping[str, Ed25519PublicKey]
) -> Break | None:
    seq, signed_hash, signed_time, key_id, signature = row
    key = public_keys.get(key_id)
    if key is None:
        return Break(seq, "checkpoint", f"checkpoint {seq} is signed by unknown key {key_id!r}")
    time = raw_time(signed_time)
    try:
        if time is None:
            raise InvalidSignature
        key.verify(bytes(signature), checkpoint_message(seq, bytes(signed_hash), time))
    except InvalidSignature:
        return Break(seq, "checkpoint", f"checkpoint {seq}: the signature of {key_id!r} is bad")
    return None


def _checkpoint_problem(
    row: Sequence[Any], hash_: bytes, public_keys: Mapping[str, Ed25519PublicKey]
) -> Break | None:
    """What is wrong with a checkpoint, given the hash of the entry at its seq."""
    problem = _signature_problem(row, public_keys)
    if problem is None and hash_ != bytes(row[1]):
        seq = row[0]
        return Break(
            seq,
            "checkpoint",
            f"checkpoint {seq}: entry {seq} differs from the signed one; "
            f"entries up to {seq} were rewritten after signing",
        )
    return problem


class _Runs:
    """Checks that no checkpoint that was due is missing: each run holds at most `every`
    entries, each within `seconds` of the run's first entry (as AccessLog.append signs)."""

    def __init__(self, policy: CheckpointPolicy, start: int) -> None:
        self._policy = policy
        self._boundary = start  # the seq of the checkpoint that ended the previous run
        self._first: _Stored | None = None  # the run's first entry
        self._previous = 0

    def step(self, entry: _Stored, checkpointed: bool) -> Break | None:
        every, s, first = self._policy.every, entry.seq, self._first
        problem = None
        if s - self._boundary > every:
            due = self._boundary + every
            problem = Break(
                due,
                "unsigned",
                f"no checkpoint signs {entries_text(self._boundary + 1, s)}: one is due every "
                f"{every} entries, at entry {due} at the latest; checkpoints were deleted",
            )
        elif first is None or entry.time is None or first.time is None:
            self._first = entry
        elif abs(entry.time - first.time) > self._policy.span:
            apart = abs(entry.time - first.time).total_seconds()
            problem = Break(
                self._previous,
                "unsigned",
                f"no checkpoint between {entries_text(first.seq, self._previous)} and entry {s}, "
                f"written {apart:g} s apart: one is due within {self._policy.seconds:g} s of a "
                "run's first entry; checkpoints were deleted",
            )
        if checkpointed:
            self._boundary, self._first = s, None
        self._previous = s
        return problem


class _Witnessed:
    """The heads the witness saw, checked against the chain as verify walks it."""

    def __init__(
        self, heads: Sequence[SignedHead], public_keys: Mapping[str, Ed25519PublicKey]
    ) -> None:
        self.breaks: list[Break] = []
        self.matched = 0  # the newest head the chain still leads to
        self._heads: dict[int, list[SignedHead]] = {}
        for head in heads:
            if not head.verifies(public_keys):
                self.breaks.append(
                    Break(
                        head.seq,
                        "witness",
                        f"the witness's head at #{head.seq} does not verify with the given "
                        f"public keys (key {head.key_id!r})",
                    )
                )
                continue
            self._heads.setdefault(head.seq, []).append(head)

    def expired(self, boundary: _Boundary) -> None:
        """Heads at or below the boundary: their entries went; the one at it must match."""
        for seq in [seq for seq in self._heads if seq <= boundary.seq]:
            for head in self._heads.pop(seq):
                if seq < boundary.seq or head.entry_hash == boundary.entry_hash:
                    self.matched = max(self.matched, seq)
                    continue
                self.breaks.append(
                    Break(
                        seq,
                        "rewritten",
                        f"the expiry boundary at #{seq} names another hash than the head the "
                        f"witness saw there: the chain up to #{seq} was rewritten",
                    )
                )

    def step(self, entry: _Stored) -> None:
        for head in self._heads.pop(entry.seq, ()):
            if head.entry_hash == entry.entry_hash:
                self.matched = max(self.matched, entry.seq)
                continue
            since = (
                f" after #{self.matched}, the last head the witness saw that still matches"
                if self.matched
                else ""
            )
            self.breaks.append(
                Break(
                    entry.seq,
                    "rewritten",
                    f"entry #{entry.seq}'s hash differs from the head the witness saw at "
                    f"{head.signed_time.isoformat(timespec='seconds')}: the chain up to "
                    f"#{entry.seq} was rewritten{since}",
                )
            )

    def finish(self, last_seq: int) -> None:
        """The heads at seqs without an entry: inside the log, or beyond its end."""
        inside = [seq for seq in self._heads if seq <= last_seq]
        if inside:
            seq = min(inside)
            self.breaks.append(
                Break(
                    seq,
                    "rewritten",
                    f"the witness saw a signed head at #{seq}; entry {seq} is gone",
                )
            )
        beyond = [seq for seq in self._heads if seq > last_seq]
        if beyond:
            seq = max(beyond)
            time = self._heads[seq][0].signed_time.isoformat(timespec="seconds")
            self.breaks.append(
                Break(
                    last_seq + 1,
                    "truncated",
                    f"the log ends at #{last_seq} but the witness saw a signed head at #{seq} "
                    f"({time}): {entries_text(last_seq + 1, seq)} were cut off",
                )
            )


@dataclass(frozen=True, slots=True)
class _Boundary:
    seq: int
    entry_hash: bytes
    before: dt.datetime


def _boundary(
    connection: Connection, public_keys: Mapping[str, Ed25519PublicKey]
) -> tuple[_Boundary | None, list[Break]]:
    """The newest expiry boundary whose signature holds, and a break for each that does not."""
    rows = connection.execute(
        select(
            expiries.c.seq,
            expiries.c.entry_hash,
            type_coerce(expiries.c.before, Text),
            type_coerce(expiries.c.signed_time, Text),
            expiries.c.key_id,
            expiries.c.signature,
        ).order_by(expiries.c.seq)
    ).all()
    valid: _Boundary | None = None
    breaks: list[Break] = []
    for seq, hash_, raw_before, raw_signed, key_id, signature in rows:
        before, signed_time = raw_time(raw_before), raw_time(raw_signed)
        key = public_keys.get(key_id)
        try:
            if key is None or before is None or signed_time is None:
                raise InvalidSignature
            message = expiry_message(seq, bytes(hash_), before, signed_time)
            key.verify(bytes(signature), message)
        except InvalidSignature:
            breaks.append(
                Break(
                    seq,
                    "checkpoint",
                    f"the expiry boundary at #{seq} is not signed by a given key: "
                    "entries up to it were removed without an expiry",
                )
            )
            continue
        valid = _Boundary(seq, bytes(hash_), before)
    return valid, breaks


# At one seq, a break in the entries explains more than one in the checkpoints.
_RANK = {"truncated": 1, "rewritten": 2, "checkpoint": 3, "unsigned": 4, "witness": 5}


def verify(
    connection: Connection,
    public_keys: Mapping[str, Ed25519PublicKey],
    policy: CheckpointPolicy = DEFAULT_POLICY,
    witnessed: Sequence[SignedHead] = (),
) -> Verification:
    """Walk the whole log (in chunks) and its checkpoints, and compare the heads the witness
    saw; the first break, if any."""
    signed: dict[int, Sequence[Any]] = {
        row[0]: row
        for row in connection.execute(
            select(
                checkpoints.c.seq,
                checkpoints.c.entry_hash,
                type_coerce(checkpoints.c.signed_time, Text),
                checkpoints.c.key_id,
                checkpoints.c.signature,
            )
        )
    }
    count = len(signed)
    start, breaks = _boundary(connection, public_keys)
    if breaks:
        start = None
    walker = _Walker(connection, start)
    runs = _Runs(policy, 0 if start is None else start.seq)
    witness = _Witnessed(witnessed, public_keys)
    if start is not None:
        witness.expired(start)
    chain_break: Break | None = None
    run_break: Break | None = None
    entries = last_seq = last_signed = 0
    for entry in _entries(connection):
        entries, last_seq = entries + 1, entry.seq
        if chain_break is None:
            chain_break = walker.step(entry)
        row = signed.pop(entry.seq, None)
        if run_break is None and chain_break is None:  # times are known good up to a break
            run_break = runs.step(entry, row is not None)
        witness.step(entry)
        if row is not None:
            problem = _checkpoint_problem(row, entry.entry_hash, public_keys)
            if problem is None:
                last_signed = entry.seq
            else:
                breaks.append(problem)
    breaks += [b for b in (chain_break, run_break) if b is not None]
    if start is not None:
        last_seq = max(last_seq, start.seq)
    for seq in sorted(signed):  # checkpoints without an entry at their seq
        problem = _signature_problem(signed[seq], public_keys)
        if start is not None and seq <= start.seq:
            if problem is None and seq == start.seq and bytes(signed[seq][1]) != start.entry_hash:
                problem = Break(
                    seq, "checkpoint", f"checkpoint {seq} differs from the expiry boundary there"
                )
            if problem is None:
                last_signed = max(last_signed, seq)
        elif problem is None and seq > last_seq:
            problem = Break(
                last_seq + 1,
                "truncated",
                f"the log ends at #{last_seq} but checkpoint {seq} was signed: "
                f"{entries_text(last_seq + 1, seq)} and any after were cut off",
            )
        elif problem is None:
            problem = Break(seq, "checkpoint", f"checkpoint {seq}: entry {seq} is missing")
        if problem is not None:
            breaks.append(problem)
    witness.finish(last_seq)
    breaks += witness.breaks
    first = min(breaks, key=lambda b: (b.seq, _RANK.get(b.kind, 0)), default=None)
    return Verification(
        entries,
        count,
        last_signed,
        first,
        last_seq,
        witness.matched,
        0 if start is None else start.seq,
        None if start is None else start.before,
    )


def verify_database(
    database_url: str,
    public_key_paths: Sequence[Path],
    policy: CheckpointPolicy = DEFAULT_POLICY,
    witnessed: Sequence[SignedHead] = (),
) -> Verification:
    """`verify` the log in the registry database at `database_url` against the checkpoint keys'
    public files, the checkpoint policy the service signed under and the heads its witness
    saw, read-only: a SQLite file is opened read-only and never created (an absent one
    raises FileNotFoundError); PostgreSQL is read in read-only transactions."""
    url, parsed = database_url, make_url(database_url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or not path.is_file():
            raise FileNotFoundError(f"{path}: no registry database")
        # SQLite's URI filename: mode=ro needs no write access and never creates the file.
        query = {**parsed.query, "mode": "ro", "uri": "true"}
        read_only = parsed.set(database=f"file:{quote(str(path))}", query=query)
        url = read_only.render_as_string(hide_password=False)
    keys = signing.load_public_keys(public_key_paths)
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(postgresql_readonly=True)
            return verify(connection, keys, policy, witnessed)
    finally:
        engine.dispose()
