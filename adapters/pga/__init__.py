"""The PGA/A&T source adapter: reads the A&T module's JSON Lines export (see README.md)."""

from adapters.pga.export import PgaExport

__all__ = ["PgaExport"]
