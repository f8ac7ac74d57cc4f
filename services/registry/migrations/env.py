"""Alembic environment: the engine comes from the caller (baken.db.upgrade_to_head or the tests)."""

from __future__ import annotations

from alembic import context

from baken.db import Base
from services.registry import models  # noqa: F401  (registers the tables on Base.metadata)

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
