"""The ZSM inflow adapter: the desk's suspects monitor (verdachtenmonitor) into Baken. Each new
suspect is looked up once and recorded in the feedback service's inflow; each decision in the
monitor is recorded as `baken decide` would (README.md)."""

from adapters.zsm.export import ZsmExport
from adapters.zsm.inflow import Inflow, InflowReport, request_key
from adapters.zsm.state import InflowState
from adapters.zsm.write import export_bytes, shift, write_export

__all__ = [
    "Inflow",
    "InflowReport",
    "InflowState",
    "ZsmExport",
    "export_bytes",
    "request_key",
    "shift",
    "write_export",
]
