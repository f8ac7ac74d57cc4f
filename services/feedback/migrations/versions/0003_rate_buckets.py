"""rate_buckets: each party's rate limit shared by every instance on this database

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 06:00:00
"""

from collections.abc import Sequence

from services.common import rate_buckets_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rate_buckets_schema.create_table()


def downgrade() -> None:
    rate_buckets_schema.drop_table()
