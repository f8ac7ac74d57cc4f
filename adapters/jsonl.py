"""JSON as the adapters read it from a JSON Lines file: an object with a key twice is refused,
not read as its last value, so no line can say two things at once."""

from __future__ import annotations

import json
import re
from typing import Any

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


class DuplicateKey(ValueError):
    """An object of the line holds `key` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def reason(self) -> str:
        """For a report: the key when it reads as a field name, never a longer or odd text."""
        if _FIELD_NAME.fullmatch(self.key):
            return f"duplicate key: {self.key!r} appears twice in one object"
        return "duplicate key: a key (not a field name) appears twice in one object"


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def loads(text: str | bytes) -> Any:
    """json.loads, raising DuplicateKey for an object with a key twice (at any depth)."""
    return json.loads(text, object_pairs_hook=_unique)
