"""matches: two houses mark the same person (matchingsmelding); signals of kind MATCH

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 09:00:00
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
        "matches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("marker_low", sa.Integer(), nullable=False),
        sa.Column("marker_high", sa.Integer(), nullable=False),
        sa.Column("matched_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["marker_low"],
            ["markers.id"],
            name=op.f("fk_matches_marker_low_markers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["marker_high"],
            ["markers.id"],
            name=op.f("fk_matches_marker_high_markers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matches")),
        sa.UniqueConstraint(
            "marker_low", "marker_high", name=op.f("uq_matches_marker_low_marker_high")
        ),
    )
    op.create_index("ix_matches_marker_high", "matches", ["marker_high"])
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.SmallInteger(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("other_house_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("other_target_group", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_column("other_target_group")
        batch_op.drop_column("other_house_id")
        batch_op.drop_column("kind")
    op.drop_index("ix_matches_marker_high", table_name="matches")
    op.drop_table("matches")
