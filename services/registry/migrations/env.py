"""Alembic environment of the registry's database."""

from services.common.db import Base, run_migrations
from services.registry import models  # noqa: F401  (registers the tables on Base.metadata)

run_migrations(Base.metadata)
