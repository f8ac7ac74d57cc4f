"""Every source system Baken takes markers from and feeds back to, by name."""

from __future__ import annotations

from collections.abc import Mapping

from adapters import amazone, gcos, pga
from adapters.source import SourceSystem

SOURCES: Mapping[str, SourceSystem] = {
    s.system: s for s in (gcos.SOURCE, amazone.SOURCE, pga.SOURCE)
}
