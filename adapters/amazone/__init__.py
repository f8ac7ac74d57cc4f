"""The Amazone source adapter: reads the marker export of Amazone and writes each item of
feedback as a row of the house's mutatie file (see README.md)."""

from collections.abc import Sequence
from pathlib import Path

from adapters.amazone import deliver
from adapters.amazone.export import AmazoneExport
from adapters.amazone.write import write_export
from adapters.records import SourceRecord
from adapters.source import SourceSystem, in_new_parent


def _write_region(path: Path, _region: str, records: Sequence[SourceRecord]) -> None:
    write_export(path, records)


SOURCE = SourceSystem(
    system="amazone",
    party="adapter-amazone",
    export=AmazoneExport,
    write_export=_write_region,
    export_suffix="csv",
    export_per_house=False,
    # The house's mutatie file, collected for the Amazone import.
    delivery_layout="{house}.mutaties.csv",
    delivery_target=lambda root, house: root / f"{house}.mutaties.csv",
    deliver=in_new_parent(deliver.deliver),
    delivered_keys=deliver.delivered_keys,
)

__all__ = ["SOURCE", "AmazoneExport", "write_export"]
