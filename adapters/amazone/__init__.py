"""The Amazone source adapter: reads the marker export of Amazone and writes each item of
feedback as a row of the house's mutatie file (see README.md)."""

from adapters.amazone import deliver
from adapters.amazone.export import AmazoneExport
from adapters.amazone.write import write_export
from adapters.source import SourceSystem, in_new_parent, per_region

SOURCE = SourceSystem(
    system="amazone",
    party="adapter-amazone",
    export=AmazoneExport,
    write_export=per_region(write_export),
    export_suffix="csv",
    export_per_house=False,
    # The house's mutatie file, collected for the Amazone import.
    delivery_layout="{house}.mutaties.csv",
    delivery_target=lambda root, house: root / f"{house}.mutaties.csv",
    deliver=in_new_parent(deliver.deliver),
    delivered_keys=deliver.delivered_keys,
)

__all__ = ["SOURCE", "AmazoneExport", "write_export"]
