"""The PGA/A&T source adapter: reads the A&T module's JSON Lines export and appends each item of
feedback as a beslisrecord to the house's JSON Lines file (see README.md)."""

from adapters.pga import deliver
from adapters.pga.export import PgaExport
from adapters.pga.write import write_export
from adapters.source import SourceSystem, in_new_parent, per_region

SOURCE = SourceSystem(
    system="pga",
    party="adapter-pga",
    export=PgaExport,
    write_export=per_region(write_export),
    export_suffix="jsonl",
    export_per_house=False,
    # The A&T beslisrecords the house's PGA imports (JSON lines).
    delivery_layout="{house}.beslissingen.jsonl",
    delivery_target=lambda root, house: root / f"{house}.beslissingen.jsonl",
    deliver=in_new_parent(deliver.deliver),
    delivered_keys=deliver.delivered_keys,
)

__all__ = ["SOURCE", "PgaExport", "write_export"]
