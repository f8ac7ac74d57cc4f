"""Alembic environment of the pseudonymisation service's database."""

from services.common.db import run_migrations
from services.pseudonymiser.models import Base

run_migrations(Base.metadata)
