"""access_log_expiries: signed boundaries of the access log's expired entries (retention)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20 09:00:00
"""

from collections.abc import Sequence

from services.accesslog import expiry_schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    expiry_schema.create_table()


def downgrade() -> None:
    expiry_schema.drop_table()
