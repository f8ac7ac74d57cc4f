"""The GCOS source adapter: reads the per-house XML export of GCOS (see README.md)."""

from adapters.gcos.export import GcosExport
from adapters.gcos.write import write_export

__all__ = ["GcosExport", "write_export"]
