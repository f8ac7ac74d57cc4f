"""markers.minor_until: a minor until this month, as the marking house's source knows him

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("markers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minor_until", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("markers", schema=None) as batch_op:
        batch_op.drop_column("minor_until")
