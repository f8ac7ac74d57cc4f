"""The feedback service's tables. Alembic migrations under migrations/ are the schema's source of
truth. The access log's tables (services/accesslog/tables.py) are copied into this service's own
database: one log format, verified by the same `baken audit verify`."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.accesslog.tables import (
    AccessLogCheckpointRow,
    AccessLogExpiryRow,
    AccessLogRow,
    AccessLogSubjectRow,
)
from services.common.db import NAMING_CONVENTION, Id, UtcTime
from services.common.shared_rates import RateBucketRow


class Base(DeclarativeBase):
    """The feedback database's own tables (not the registry's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The access log's tables and the shared rate buckets in this database too.
_SHARED = (AccessLogRow, AccessLogSubjectRow, AccessLogCheckpointRow, AccessLogExpiryRow)
for _row in (*_SHARED, RateBucketRow):
    cast(Table, _row.__table__).to_metadata(Base.metadata)


class DecisionRow(Base):
    """A recorded ZSM decision: what management information counts, never who or why.
    The decision's content travels only in its delivery items."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_case_reference", "case_reference"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The caller's retry key (RecordDecisionRequest.request_key), per party.
    request_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    case_reference: Mapped[str] = mapped_column(String(64))
    party_id: Mapped[Id]
    recorded_time: Mapped[UtcTime]
    code: Mapped[int] = mapped_column(SmallInteger)
    stage: Mapped[int] = mapped_column(SmallInteger)
    minor: Mapped[bool] = mapped_column(Boolean)
    # Was the person known at any house; did a CURRENT or AGED advice exist; was it followed.
    known: Mapped[bool] = mapped_column(Boolean)
    advice_current: Mapped[bool] = mapped_column(Boolean)
    advice_followed: Mapped[int] = mapped_column(SmallInteger)
    complex_problems: Mapped[bool] = mapped_column(Boolean)
    # Not followed, with a deviation_reason (the reason itself travels only to the houses).
    deviation_reason_given: Mapped[bool] = mapped_column(Boolean, server_default=false())


class DecisionAdviceRow(Base):
    """One house's advice line of a decision: whether ZSM followed it, and whether a reason
    was given (the reason itself travels only to that house). Management information counts
    deviations per house from these."""

    __tablename__ = "decision_advice"

    decision_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    house_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    advice_followed: Mapped[int] = mapped_column(SmallInteger)
    deviation_reason_given: Mapped[bool] = mapped_column(Boolean)


class DeliveryRow(Base):
    """One item for one house: the outbox. `payload` is the serialised baken.feedback.v1.Delivery
    (without `attempt`); it is dropped once the house acknowledged the item."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_pending",
            "house_id",
            "next_attempt_time",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        # A take walks a house's queue in order (services/feedback/outbox.py).
        Index(
            "ix_deliveries_pending_order",
            "house_id",
            "seq",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        Index(
            "ix_deliveries_person",
            "house_id",
            "person_key",
            "seq",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_deliveries_case_reference", "case_reference"),
        Index(
            "ix_deliveries_dead",
            "house_id",
            sqlite_where=text("state = 'dead'"),
            postgresql_where=text("state = 'dead'"),
        ),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    house_id: Mapped[Id]
    # Items with the same person key reach the house in the order they were made.
    person_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[int] = mapped_column(SmallInteger)
    case_reference: Mapped[str | None] = mapped_column(String(64))
    decision_id: Mapped[str | None] = mapped_column(String(32))
    # "pending", "acked" or "dead".
    state: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer)
    # Failures the adapter reported (the source cannot take the item).
    failures: Mapped[int] = mapped_column(Integer)
    created_time: Mapped[UtcTime]
    next_attempt_time: Mapped[UtcTime]
    last_attempt_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    acked_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The adapter's last failure: a field name and what is wrong, never a value.
    last_failure: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)


class AdviceRequestRow(Base):
    """Advies op aanvraag: asked of one house, answered (or not) within its term."""

    __tablename__ = "advice_requests"
    __table_args__ = (
        Index("ix_advice_requests_case_reference", "case_reference"),
        Index(
            "ix_advice_requests_open",
            "due_time",
            sqlite_where=text("answered_time IS NULL"),
            postgresql_where=text("answered_time IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_reference: Mapped[str] = mapped_column(String(64))
    house_id: Mapped[Id]
    delivery_key: Mapped[str] = mapped_column(String(128), unique=True)
    requested_by: Mapped[Id]
    requested_time: Mapped[UtcTime]
    due_time: Mapped[UtcTime]
    answered_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Withdrawn by the requesting party: no longer holds up a decision.
    cancelled_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The house's record of the person (what the request's item carried), for the cancellation.
    source_record_id: Mapped[str | None] = mapped_column(String(200))


class SignalCursorRow(Base):
    """How far the registry's signals were taken over (one row)."""

    __tablename__ = "signal_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    after_sequence: Mapped[int] = mapped_column(BigInteger)


class PurgedCaseRow(Base):
    """A case closed by a technisch sepot 01: only a keyed hash of its reference (HMAC-SHA256
    under the service's at-rest key ring, tagged with the key id), never the reference itself,
    and when. A later signal under the case is dropped, a later decision refused."""

    __tablename__ = "purged_cases"

    case_digest: Mapped[bytes] = mapped_column(LargeBinary(64), primary_key=True)
    purged_time: Mapped[UtcTime]


class InflowRow(Base):
    """One suspect in a ZSM desk's inflow (instroom), as the desk's case system registered him:
    the denominator of the coverage figures. The pseudonyms are kept only while the desk works
    the case (until a final decision, or 14 days), for its screen's look-ups and decisions;
    after that the row is a count."""

    __tablename__ = "inflow"
    __table_args__ = (
        UniqueConstraint("region", "case_reference"),
        Index("ix_inflow_region_arrest", "region", "arrest_time"),
        Index("ix_inflow_case_reference", "case_reference"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    region: Mapped[Id]
    case_reference: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[Id]
    recorded_time: Mapped[UtcTime]
    # JSON: [[kind, key_id, value (hex)], ...]; NULL once erased.
    subject: Mapped[str | None] = mapped_column(Text)
    arrest_time: Mapped[UtcTime]
    minor: Mapped[bool] = mapped_column(Boolean)
    offence_category: Mapped[str] = mapped_column(String(64))
    checked_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    known: Mapped[bool] = mapped_column(Boolean)
    # JSON of the decision the inflow adapter could not take over; NULL when none.
    held_decision: Mapped[str | None] = mapped_column(Text)
    decision_id: Mapped[str | None] = mapped_column(String(32))
    decision_stage: Mapped[int | None] = mapped_column(SmallInteger)
