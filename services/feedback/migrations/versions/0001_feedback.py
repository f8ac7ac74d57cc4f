"""decisions, delivery outbox, advice requests, signal cursor, access log

Revision ID: 0001
Revises:
Create Date: 2026-11-28 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.accesslog import schema as access_log_schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("request_key", sa.String(length=160), nullable=True),
        sa.Column("case_reference", sa.String(length=64), nullable=False),
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_time", _TIME, nullable=False),
        sa.Column("code", sa.SmallInteger(), nullable=False),
        sa.Column("stage", sa.SmallInteger(), nullable=False),
        sa.Column("minor", sa.Boolean(), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("advice_current", sa.Boolean(), nullable=False),
        sa.Column("advice_followed", sa.SmallInteger(), nullable=False),
        sa.Column("complex_problems", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("request_key", name=op.f("uq_decisions_request_key")),
    )
    op.create_index("ix_decisions_case_reference", "decisions", ["case_reference"])
    op.create_table(
        "deliveries",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("house_id", sa.String(length=64), nullable=False),
        sa.Column("person_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("case_reference", sa.String(length=64), nullable=True),
        sa.Column("decision_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_time", _TIME, nullable=False),
        sa.Column("next_attempt_time", _TIME, nullable=False),
        sa.Column("last_attempt_time", _TIME, nullable=True),
        sa.Column("acked_time", _TIME, nullable=True),
        sa.Column("last_failure", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("key", name=op.f("uq_deliveries_key")),
    )
    pending = sa.text("state = 'pending'")
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["house_id", "next_attempt_time"],
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index(
        "ix_deliveries_person",
        "deliveries",
        ["house_id", "person_key", "seq"],
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index("ix_deliveries_case_reference", "deliveries", ["case_reference"])
    dead = sa.text("state = 'dead'")
    op.create_index(
        "ix_deliveries_dead", "deliveries", ["house_id"], sqlite_where=dead, postgresql_where=dead
    )
    op.create_table(
        "advice_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("case_reference", sa.String(length=64), nullable=False),
        sa.Column("house_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_key", sa.String(length=128), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_time", _TIME, nullable=False),
        sa.Column("due_time", _TIME, nullable=False),
        sa.Column("answered_time", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advice_requests")),
        sa.UniqueConstraint("delivery_key", name=op.f("uq_advice_requests_delivery_key")),
    )
    op.create_index("ix_advice_requests_case_reference", "advice_requests", ["case_reference"])
    unanswered = sa.text("answered_time IS NULL")
    op.create_index(
        "ix_advice_requests_open",
        "advice_requests",
        ["due_time"],
        sqlite_where=unanswered,
        postgresql_where=unanswered,
    )
    op.create_table(
        "signal_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("after_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_cursor")),
    )
    access_log_schema.create_tables()


def downgrade() -> None:
    access_log_schema.drop_tables()
    op.drop_table("signal_cursor")
    op.drop_table("advice_requests")
    op.drop_table("deliveries")
    op.drop_table("decisions")
