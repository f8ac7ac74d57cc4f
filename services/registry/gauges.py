"""What the registry's metrics endpoint reads from its database at a scrape
(services/common/metrics_endpoint.py): counts and ages, never a row's content."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import cast

from prometheus_client.core import Metric
from sqlalchemy import Connection, Table, false, func, select

from services.accesslog.gauges import access_log_gauges
from services.common.metrics_endpoint import gauge
from services.registry.models import MarkerRow, SignalRow

markers = cast(Table, MarkerRow.__table__)
signals = cast(Table, SignalRow.__table__)


def registry_gauges(connection: Connection, now: dt.datetime) -> Iterator[Metric]:
    held = connection.execute(
        select(func.count()).select_from(markers).where(markers.c.deleted == false())
    ).scalar()
    yield gauge("baken_markers", "Markers held (tombstones not counted).", held or 0)
    waiting = connection.execute(select(func.count()).select_from(signals)).scalar()
    yield gauge(
        "baken_signals_waiting",
        "Signals of ZSM look-ups the feedback service has not taken over yet.",
        waiting or 0,
    )
    yield from access_log_gauges(connection, now)
