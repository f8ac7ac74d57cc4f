"""advice_requests.cancelled_time and source_record_id: ZSM may withdraw an advice request

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("advice_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("source_record_id", sa.String(200), nullable=True))
    # The record an earlier request went to, from its item's person key ("record:{id}"), which
    # the outbox keeps after acknowledgement.
    op.execute(
        sa.text(
            "UPDATE advice_requests SET source_record_id = ("
            "SELECT substr(d.person_key, 8) FROM deliveries d "
            "WHERE d.key = advice_requests.delivery_key AND d.person_key LIKE 'record:%')"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("advice_requests", schema=None) as batch_op:
        batch_op.drop_column("source_record_id")
        batch_op.drop_column("cancelled_time")
