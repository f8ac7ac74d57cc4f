"""The access log's tables, as migration 0002 of the registry created them; the feedback service's
first migration creates the same in its own database. Frozen: a change to the log's tables is a
new migration in both services, not an edit here."""

import sqlalchemy as sa
from alembic import op


def create_tables() -> None:
    op.create_table(
        "access_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("party_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reviews_seq", sa.BigInteger(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access_log")),
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.create_index("ix_access_log_entry_time", ["entry_time"], unique=False)
        batch_op.create_index(
            "ix_access_log_break_glass",
            ["seq"],
            unique=False,
            sqlite_where=sa.text("outcome = 'break-glass'"),
            postgresql_where=sa.text("outcome = 'break-glass'"),
        )
        batch_op.create_index(
            "ix_access_log_reviews_seq",
            ["reviews_seq"],
            unique=True,
            sqlite_where=sa.text("reviews_seq IS NOT NULL"),
            postgresql_where=sa.text("reviews_seq IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_access_log_party_id_entry_time", ["party_id", "entry_time"], unique=False
        )

    op.create_table(
        "access_log_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_access_log_checkpoints")),
    )
    op.create_table(
        "access_log_subjects",
        sa.Column("value", sa.LargeBinary(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["access_log.seq"], name=op.f("fk_access_log_subjects_seq_access_log")
        ),
        sa.PrimaryKeyConstraint("value", "seq", name=op.f("pk_access_log_subjects")),
        sqlite_with_rowid=False,
    )


def drop_tables() -> None:
    op.drop_table("access_log_subjects")
    op.drop_table("access_log_checkpoints")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_index("ix_access_log_party_id_entry_time")
        batch_op.drop_index("ix_access_log_reviews_seq")
        batch_op.drop_index("ix_access_log_break_glass")
        batch_op.drop_index("ix_access_log_entry_time")

    op.drop_table("access_log")
