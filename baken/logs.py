"""Structured logs: JSON when not on a terminal, readable on one. Never personal data or keys."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def configure(
    *, json: bool | None = None, level: int = logging.INFO, file: TextIO | None = None
) -> None:
    """Log to `file` (default stderr): JSON unless it is a terminal."""
    file = file or sys.stderr
    if json is None:
        json = not file.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=file),
        cache_logger_on_first_use=False,
    )
