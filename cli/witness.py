"""The privacy officer's witness: the signed heads of a service's access log, kept outside the
service's database, so that neither a copy of that database nor the signing key can rewrite or
cut the log unseen up to the newest head the witness saw.

`baken audit witness` asks the service for its newest signed head (AuditService.GetSignedHead,
under the privacy auditor's certificate) every few seconds, checks its signature with the
auditor's own copy of the public key, and keeps every head it had not seen in its store: the
SQLite file `witness.db` (0600) in a directory of its own (0700). It warns when the service's
head goes back below one it saw (a cut tail, or a restore), or when one sequence comes with two
hashes (a rewrite re-signed with the signing key). `baken audit verify --witness DIR` then
names either in the log itself (services/accesslog/verify.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from baken.audit.v1 import audit_service_pb2
from baken.errors import UserError
from services.accesslog.store import SignedHead

FILE = "witness.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (
    service TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry_hash BLOB NOT NULL,
    signed_time TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    seen_time TEXT NOT NULL,
    PRIMARY KEY (service, seq, entry_hash)
)
"""


class WitnessError(UserError):
    """The store cannot be used, or a head the service gave does not verify; the message says
    which, without key material."""


def head_of(message: audit_service_pb2.SignedHead) -> SignedHead | None:
    """The head as the service sent it; None when it has signed nothing yet."""
    if not message.sequence:
        return None
    return SignedHead(
        message.sequence,
        bytes(message.entry_hash),
        message.signed_time.ToDatetime(tzinfo=dt.UTC),
        message.key_id,
        bytes(message.signature),
    )


def check(head: SignedHead, public_keys: Mapping[str, Ed25519PublicKey]) -> None:
    """WitnessError unless the head's signature verifies with the auditor's public keys."""
    if not head.verifies(public_keys):
        raise WitnessError(
            f"the head at #{head.seq} does not verify with the given public keys "
            f"(key {head.key_id!r}); not kept"
        )


class WitnessStore:
    """The heads the witness saw, per service ("registry", "feedback")."""

    def __init__(self, directory: Path, *, create: bool = False) -> None:
        self.path = directory / FILE
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        elif not self.path.is_file():
            raise WitnessError(f"{self.path}: no witness store")
        uri = f"file:{self.path}" + ("" if create else "?mode=ro")
        try:
            self._db = sqlite3.connect(uri, uri=True, timeout=10)
            if create:
                with self._db:
                    self._db.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise WitnessError(f"{self.path}: not a witness store ({error})") from None

    def close(self) -> None:
        self._db.close()

    def add(self, service: str, head: SignedHead, seen: dt.datetime) -> bool:
        """Keep the head; False when it was kept already."""
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO heads VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    service,
                    head.seq,
                    head.entry_hash,
                    head.signed_time.astimezone(dt.UTC).isoformat(timespec="microseconds"),
                    head.key_id,
                    head.signature,
                    seen.astimezone(dt.UTC).isoformat(timespec="microseconds"),
                ),
            )
        return cursor.rowcount == 1

    def heads(self, service: str) -> list[SignedHead]:
        """Every head kept for the service, by sequence."""
        try:
            rows = self._db.execute(
                "SELECT seq, entry_hash, signed_time, key_id, signature FROM heads"
                " WHERE service = ? ORDER BY seq, seen_time",
                (service,),
            ).fetchall()
        except sqlite3.Error as error:
            raise WitnessError(f"{self.path}: not a witness store ({error})") from None
        return [
            SignedHead(seq, bytes(h), dt.datetime.fromisoformat(t), k, bytes(s))
            for seq, h, t, k, s in rows
        ]

    def conflict(self, service: str, head: SignedHead, label: str | None = None) -> str | None:
        """What is wrong with the service's newest head given the heads kept before, if
        anything: a sequence below the newest kept, or a hash other than the one kept. `label`
        names the service in the message."""
        label = label or f"the {service}"
        row = self._db.execute(
            "SELECT max(seq) FROM heads WHERE service = ?", (service,)
        ).fetchone()
        newest = row[0] if row else None
        if newest is not None and head.seq < newest:
            return (
                f"{label}'s newest signed head is #{head.seq}, but the witness saw #{newest}:"
                " the log was cut, or its database restored from a backup"
            )
        other = self._db.execute(
            "SELECT 1 FROM heads WHERE service = ? AND seq = ? AND entry_hash != ?",
            (service, head.seq, head.entry_hash),
        ).fetchone()
        if other is not None:
            return (
                f"{label}'s signed head at #{head.seq} has another hash than the one the "
                "witness saw: the log was rewritten and re-signed with its signing key"
            )
        return None


@contextlib.contextmanager
def opened(directory: Path, *, create: bool = False) -> Iterator[WitnessStore]:
    store = WitnessStore(directory, create=create)
    try:
        yield store
    finally:
        store.close()
