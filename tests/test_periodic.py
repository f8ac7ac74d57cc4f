"""A service's own timers (the checkpointer, the expirer) outlive a database that is away or
busy: the run fails, is logged, and the next one goes."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from services.common.periodic import Periodic


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        # The access log's append speaks to the driver directly: its errors come unwrapped.
        sqlite3.OperationalError("database is locked"),
        psycopg.OperationalError("the connection is lost"),
    ],
    ids=["sqlalchemy", "sqlite3", "psycopg"],
)
def test_a_failed_run_is_followed_by_the_next(error: Exception) -> None:
    runs: list[int] = []
    again = threading.Event()

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise error
        again.set()

    timer = Periodic("test", job, lambda: 0.01, at_start=True)
    timer.start()
    try:
        assert again.wait(10), "the timer stopped after the failed run"
    finally:
        timer.stop()
    assert len(runs) >= 2
