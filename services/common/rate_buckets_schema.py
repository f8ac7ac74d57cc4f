"""The rate buckets' table, as the registry's migration 0004 and the feedback service's 0003
create it in each service's own database. Frozen: a change is a new migration in both
services, not an edit here."""

import sqlalchemy as sa
from alembic import op


def create_table() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("party_id", name=op.f("pk_rate_buckets")),
    )


def drop_table() -> None:
    op.drop_table("rate_buckets")
