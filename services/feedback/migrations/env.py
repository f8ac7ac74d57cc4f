"""Alembic environment of the feedback service's database."""

from services.common.db import run_migrations
from services.feedback.models import Base

run_migrations(Base.metadata)
