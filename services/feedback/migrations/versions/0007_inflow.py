"""inflow: every suspect of a ZSM desk's inflow, the coverage figures' denominator

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inflow",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("case_reference", sa.String(length=64), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("arrest_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minor", sa.Boolean(), nullable=False),
        sa.Column("offence_category", sa.String(length=64), nullable=False),
        sa.Column("checked_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("held_decision", sa.Text(), nullable=True),
        sa.Column("decision_id", sa.String(length=32), nullable=True),
        sa.Column("decision_stage", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inflow")),
        sa.UniqueConstraint(
            "region", "case_reference", name=op.f("uq_inflow_region_case_reference")
        ),
    )
    op.create_index("ix_inflow_region_arrest", "inflow", ["region", "arrest_time"])
    op.create_index("ix_inflow_case_reference", "inflow", ["case_reference"])


def downgrade() -> None:
    op.drop_index("ix_inflow_case_reference", table_name="inflow")
    op.drop_index("ix_inflow_region_arrest", table_name="inflow")
    op.drop_table("inflow")
