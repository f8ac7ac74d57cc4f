"""access log and rate buckets

Revision ID: 0001
Revises:
Create Date: 2027-01-04 09:00:00
"""

from collections.abc import Sequence

from services.accesslog import schema as access_log_schema
from services.common import rate_buckets_schema

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    access_log_schema.create_tables()
    rate_buckets_schema.create_table()


def downgrade() -> None:
    rate_buckets_schema.drop_table()
    access_log_schema.drop_tables()
