"""access_log_expiries: signed boundaries of the access log's expired entries (retention)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 09:00:00
"""

from collections.abc import Sequence

from services.accesslog import expiry_schema

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    expiry_schema.create_table()


def downgrade() -> None:
    expiry_schema.drop_table()
