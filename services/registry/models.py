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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from baken.db import Base, Digest, Id, UtcTime


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
    advice: Mapped[str | None] = mapped_column(Text)
    advice_date: Mapped[dt.date | None] = mapped_column(Date)
    # The A&T fields as a JSON object of field -> text.
    at_information: Mapped[str | None] = mapped_column(Text)
    # SHA-256 over the marker's content, and over its sorted pseudonyms: replays compare these.
    content_digest: Mapped[Digest]
    pseudonyms_digest: Mapped[Digest]
    # SHA-256 of the MarkerRecord exactly as last applied: a byte-identical replay is recognised
    # as unchanged without being validated again.
    record_digest: Mapped[Digest]
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
