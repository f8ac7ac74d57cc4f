"""decision_advice: a decision's advice line per marking house

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_advice",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("house_id", sa.String(length=64), nullable=False),
        sa.Column("advice_followed", sa.SmallInteger(), nullable=False),
        sa.Column("deviation_reason_given", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", "house_id", name=op.f("pk_decision_advice")),
    )


def downgrade() -> None:
    op.drop_table("decision_advice")
