"""A job a service runs by itself on a daemon thread, every so many seconds, until stopped."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger("baken.periodic")


class Periodic:
    """Calls `job` every `interval()` seconds (first at once when `at_start`). A database that
    is away fails one run only: it is logged, and the next run tries again."""

    def __init__(
        self, name: str, job: Callable[[], object], interval: Callable[[], float], *, at_start: bool
    ) -> None:
        self._name = name
        self._job = job
        self._interval = interval
        self._at_start = at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"baken-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        wait = 0.0 if self._at_start else self._interval()
        while not self._stop.wait(wait):
            wait = self._interval()
            try:
                self._job()
            # The database is away or busy (the access log's append speaks to the driver
            # directly, so its errors come unwrapped): try again next time.
            except (SQLAlchemyError, sqlite3.Error, psycopg.Error) as error:
                log.warning(f"{self._name}: the database is away", error=type(error).__name__)
