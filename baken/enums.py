"""Wire enums as words: TARGET_GROUP_HUISELIJK_GEWELD -> "huiselijk_geweld" (how the services
store them), "huiselijk-geweld" (how the CLI and the sources spell them), "huiselijk geweld" (how
a screen shows them). The one place of that conversion."""

from __future__ import annotations

import functools
from typing import Any


def token(enum: Any, value: int, prefix: str, separator: str = "_") -> str:
    """The value's name without `prefix`, in lowercase, words joined by `separator`; a value the
    enum does not define raises ValueError."""
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", separator)


@functools.cache
def tokens(enum: Any, prefix: str, separator: str = "_") -> dict[int, str]:
    """Number -> token for every defined value but UNSPECIFIED (0)."""
    return {
        v.number: token(enum, v.number, prefix, separator)
        for v in enum.DESCRIPTOR.values
        if v.number
    }


@functools.cache
def numbers(enum: Any, prefix: str, separator: str = "_") -> dict[str, int]:
    """Token -> number for every defined value but UNSPECIFIED (0)."""
    return {word: number for number, word in tokens(enum, prefix, separator).items()}
