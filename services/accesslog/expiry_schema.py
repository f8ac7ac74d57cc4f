"""The access log's expiry boundaries, as each service's migration creates them. Frozen, like
schema.py: a change is a new migration in every service."""

import sqlalchemy as sa
from alembic import op


def create_table() -> None:
    op.create_table(
        "access_log_expiries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access_log_expiries")),
    )


def drop_table() -> None:
    op.drop_table("access_log_expiries")
