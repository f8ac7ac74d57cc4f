"""purged_cases: a keyed hash of each case closed by a technisch sepot 01, and when

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purged_cases",
        sa.Column("case_digest", sa.LargeBinary(length=64), nullable=False),
        sa.Column("purged_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_digest", name=op.f("pk_purged_cases")),
    )


def downgrade() -> None:
    op.drop_table("purged_cases")
