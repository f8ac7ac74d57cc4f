"""Writes into a source system's folder that survive a crash whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Make a new or renamed name in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_atomically(target: Path, data: bytes, temp: Path) -> None:
    """`target` holds `data`, or what it held before, never half: `data` is written to `temp`
    (in the same folder), synced, renamed over `target`, and the folder synced."""
    try:
        # The house's own user only: a delivery can hold an aanmelding (BSN, name).
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_directory(target.parent)
