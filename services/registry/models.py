"""The registry's tables. Alembic migrations under migrations/ are the schema's source of truth."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.accesslog.tables import AccessLogCheckpointRow, AccessLogRow, AccessLogSubjectRow
from services.common.db import Base, Digest, Id, KeyedDigest, UtcTime
from services.common.shared_rates import RateBucketRow

# Declared where they are kept, on the same metadata: the access log's tables and the shared
# rate buckets are this database's too.
__all__ = ["AccessLogCheckpointRow", "AccessLogRow", "AccessLogSubjectRow", "RateBucketRow"]


class MarkerRow(Base):
    """One source record of a house. A tombstone keeps only its key and version, so an older
    replay cannot bring the person back; all dat- and waarom-informatie is erased."""

    __tablename__ = "markers"
    # The record id leads the key's index: a sync looks records up by house with a list of ids
    # (record_id IN (...)), which then is the index's own condition on every database, even
    # where PostgreSQL has no statistics yet (during a first bulk load).
    __table_args__ = (UniqueConstraint("source_record_id", "house_id", "source_system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    source_system: Mapped[str] = mapped_column(String(16))
    house_id: Mapped[Id]
    source_record_id: Mapped[str] = mapped_column(String(128))
    source_version: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean)
    target_group: Mapped[str | None] = mapped_column(String(32))
    plan_status: Mapped[str | None] = mapped_column(String(32))
    mark_date: Mapped[dt.date | None] = mapped_column(Date)
    # waarom-informatie, sealed at rest (services/common/at_rest.py): AES-GCM under the
    # at-rest key ring, bound to this marker's uid and the column's name.
    advice: Mapped[bytes | None] = mapped_column(LargeBinary)
    advice_date: Mapped[dt.date | None] = mapped_column(Date)
    # The A&T fields as a JSON object of field -> text, sealed like advice.
    at_information: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A minor until this day as the source knows him: the first of the month after his 18th
    # birthday (month-precise: never a date of birth).
    minor_until: Mapped[dt.date | None] = mapped_column(Date)
    # Keyed digest of the marker's content (at_rest.Sealer.digest: it covers the advice), and
    # SHA-256 of its sorted pseudonyms (themselves keyed hashes): replays compare these.
    content_digest: Mapped[KeyedDigest]
    pseudonyms_digest: Mapped[Digest]
    # Keyed digest of the MarkerRecord exactly as last applied: a byte-identical replay is
    # recognised as unchanged without being validated again. Empty until then.
    record_digest: Mapped[KeyedDigest]
    synced_time: Mapped[UtcTime]


class MarkerPseudonymRow(Base):
    """The pseudonyms a marker is found by: one row per (kind, key) the adapter derived."""

    __tablename__ = "marker_pseudonyms"
    # On SQLite the primary key is the table (WITHOUT ROWID): a lookup by value reads its row
    # from the one B-tree it searches, and a sync writes one B-tree less per pseudonym.
    __table_args__ = (
        Index("ix_marker_pseudonyms_marker_id", "marker_id"),
        {"sqlite_with_rowid": False},
    )

    value: Mapped[Digest] = mapped_column(primary_key=True)
    marker_id: Mapped[int] = mapped_column(
        ForeignKey("markers.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[int] = mapped_column(SmallInteger)
    key_id: Mapped[str] = mapped_column(String(32))


class SignalRow(Base):
    """A ZSM lookup found a house's marker: the house is to hear that its person flowed in.

    An outbox: written in the lookup's transaction, next to its access-log entry; the feedback
    service pulls the signals in seq order and the registry forgets those it confirms
    (services/registry/signals.py). seq never repeats, also after the table was emptied: a
    sequence on PostgreSQL, AUTOINCREMENT on SQLite."""

    __tablename__ = "signals"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    house_id: Mapped[Id]
    source_record_id: Mapped[str] = mapped_column(String(128))
    # Empty at intake before a case exists.
    case_reference: Mapped[str | None] = mapped_column(String(64))
    zsm_location: Mapped[str] = mapped_column(String(128))
    lookup_time: Mapped[UtcTime]
    access_log_seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("access_log.seq"))
    # 1 flowed in (a ZSM lookup hit the marker), 2 match (another house marks the person:
    # services/registry/matches.py), as baken.registry.v1.SignalKind numbers them.
    kind: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    # A match: the other house and its target group. Never its record id or pseudonyms.
    other_house_id: Mapped[str | None] = mapped_column(String(64))
    other_target_group: Mapped[str | None] = mapped_column(String(32))


class MatchRow(Base):
    """Two live markers of two houses carry the same BSN pseudonym: both houses were told of
    each other once (a pair of MATCH signals). A tombstone of either marker deletes the row, so
    the pair is told again when the marker returns (services/registry/matches.py)."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("marker_low", "marker_high"),
        Index("ix_matches_marker_high", "marker_high"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The pair's marker ids, the lower first.
    marker_low: Mapped[int] = mapped_column(ForeignKey("markers.id", ondelete="CASCADE"))
    marker_high: Mapped[int] = mapped_column(ForeignKey("markers.id", ondelete="CASCADE"))
    matched_time: Mapped[UtcTime]
