"""The Amazone source adapter: reads the marker export of Amazone (see README.md)."""

from adapters.amazone.export import AmazoneExport
from adapters.amazone.write import write_export

__all__ = ["AmazoneExport", "write_export"]
