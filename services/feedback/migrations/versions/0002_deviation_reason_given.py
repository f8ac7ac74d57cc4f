"""decisions.deviation_reason_given, for the management information

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ADVICE_FOLLOWED_NOT_FOLLOWED: until now a deviation was refused without its reason.
_NOT_FOLLOWED = 2


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "deviation_reason_given", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    op.execute(
        sa.text(
            "UPDATE decisions SET deviation_reason_given = :given WHERE advice_followed = :code"
        ).bindparams(given=True, code=_NOT_FOLLOWED)
    )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("deviation_reason_given")
