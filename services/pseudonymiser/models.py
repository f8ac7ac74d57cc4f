"""The pseudonymisation service's database: only the access log's tables and the shared rate
buckets (it stores nothing else; its keys are in its key file)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

from services.accesslog.tables import (
    AccessLogCheckpointRow,
    AccessLogExpiryRow,
    AccessLogRow,
    AccessLogSubjectRow,
)
from services.common.db import NAMING_CONVENTION
from services.common.shared_rates import RateBucketRow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_SHARED = (AccessLogRow, AccessLogSubjectRow, AccessLogCheckpointRow, AccessLogExpiryRow)
for _row in (*_SHARED, RateBucketRow):
    cast(Table, _row.__table__).to_metadata(Base.metadata)
