"""Time, injected: freshness rules and deadlines are tested to the day and second."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import structlog

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Aware UTC time."""
        ...

    def today(self) -> dt.date:
        """The calendar date in the Netherlands."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().astimezone(AMSTERDAM).date()


class FixedClock:
    """A clock that stands still until moved; for tests and the reproducible demo."""

    def __init__(self, now: dt.datetime) -> None:
        self._now = now

    def now(self) -> dt.datetime:
        return self._now

    def today(self) -> dt.date:
        return self._now.astimezone(AMSTERDAM).date()

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


CLOCK_FILE_ENV = "BAKEN_CLOCK_FILE"


class ShiftedClock:
    """System time plus an offset in seconds read from a small text file (one number, e.g.
    `691200`), for the demo only: it makes an advice request overdue (terms are 24 hours to 7
    days) by moving the services' clock ahead, without waiting a week. Production never sets
    BAKEN_CLOCK_FILE, so production services run on SystemClock.

    The file is read again whenever it changed (its inode, size or modification time), so
    `advance` moves a running service's clock; a missing file is an offset of 0. A file that
    does not hold a number raises ValueError naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._offset = dt.timedelta(0)
        self.offset()  # a bad file is said at start, not at the first call

    def offset(self) -> dt.timedelta:
        """The offset as the file says it now."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            with self._lock:
                self._seen, self._offset = None, dt.timedelta(0)
                return self._offset
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._lock:
            if signature != self._seen:
                self._offset = dt.timedelta(seconds=read_offset(self.path))
                self._seen = signature
            return self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset()

    def today(self) -> dt.date:
        return self.now().astimezone(AMSTERDAM).date()


def read_offset(path: Path) -> float:
    """The offset in seconds the clock file holds; 0 when there is no file."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return 0.0
    try:
        seconds = float(text.strip() or "0")
    except ValueError:
        raise ValueError(f"{path}: a clock file holds one number of seconds") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{path}: a clock file holds one finite number of seconds")
    return seconds


def advance(path: Path, seconds: float) -> float:
    """Add `seconds` to the clock file's offset and return the new offset. The file is
    replaced whole (a temporary file in the same directory, then a rename), so a service
    reading it never sees half a number. One writer at a time is assumed (the demo)."""
    offset = read_offset(path) + seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"{int(offset) if offset.is_integer() else offset!r}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return offset


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """ShiftedClock on the file BAKEN_CLOCK_FILE names (the demo), else SystemClock (always in
    production, which never sets it)."""
    path = (os.environ if environ is None else environ).get(CLOCK_FILE_ENV, "").strip()
    if not path:
        return SystemClock()
    structlog.get_logger().warning(
        "the clock is shifted by a clock file: for the demo only", path=path
    )
    return ShiftedClock(Path(path))
