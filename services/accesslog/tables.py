"""The access log's tables, kept by every service that discloses: the registry's metadata holds
them, and the feedback service copies them into its own database. Alembic migrations are the
schema's source of truth (services/accesslog/schema.py creates them in each service's)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from services.common.db import Base, Digest, Id, UtcTime


class AccessLogRow(Base):
    """One entry of the access log: append-only, chained by hash (services/accesslog/store.py).

    `body` (canonical JSON) is the entry; the other columns repeat parts of it for searching
    and are checked against it by `baken audit verify`."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_party_id_entry_time", "party_id", "entry_time"),
        Index("ix_access_log_entry_time", "entry_time"),
        # Partial indexes: an entry's commit writes every index page it touches, and nearly no
        # entry is a break-glass or a review.
        Index(
            "ix_access_log_break_glass",
            "seq",
            sqlite_where=text("outcome = 'break-glass'"),
            postgresql_where=text("outcome = 'break-glass'"),
        ),
        Index(
            "ix_access_log_reviews_seq",
            "reviews_seq",
            unique=True,
            sqlite_where=text("reviews_seq IS NOT NULL"),
            postgresql_where=text("reviews_seq IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_time: Mapped[UtcTime]
    party_id: Mapped[Id]
    outcome: Mapped[str] = mapped_column(String(16))
    # For a review entry: the break-glass entry it reviews.
    reviews_seq: Mapped[int | None] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[Digest]
    entry_hash: Mapped[Digest]


class AccessLogSubjectRow(Base):
    """Which entries name a subject pseudonym: the index behind `baken audit subject`."""

    __tablename__ = "access_log_subjects"
    __table_args__ = ({"sqlite_with_rowid": False},)

    value: Mapped[Digest] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("access_log.seq"), primary_key=True)


class AccessLogCheckpointRow(Base):
    """A signed statement of the chain's head: Ed25519 over (seq, entry_hash, signed_time)."""

    __tablename__ = "access_log_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_hash: Mapped[Digest]
    signed_time: Mapped[UtcTime]
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AccessLogExpiryRow(Base):
    """A signed boundary: the entries up to `seq` were removed when their period ended
    (services/accesslog/store.py, docs/RETENTION.md); entry seq + 1 links to `entry_hash`."""

    __tablename__ = "access_log_expiries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_hash: Mapped[Digest]
    # Every removed entry was written before this time.
    before: Mapped[UtcTime]
    signed_time: Mapped[UtcTime]
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
