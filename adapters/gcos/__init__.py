"""The GCOS source adapter: reads the per-house XML export of GCOS and delivers each item of
feedback as a terugkoppeling file into the house's import folder (see README.md)."""

from pathlib import Path

from adapters.gcos import deliver
from adapters.gcos.export import GcosExport
from adapters.gcos.write import write_export
from adapters.records import Delivery
from adapters.source import SourceSystem


def _deliver(directory: Path, delivery: Delivery) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    return deliver.deliver(directory, delivery) is not None


SOURCE = SourceSystem(
    system="gcos",
    party="adapter-gcos",
    export=GcosExport,
    write_export=write_export,
    export_suffix="xml",
    export_per_house=True,
    # The house's GCOS import folder: one terugkoppeling-{kenmerk}.xml per item.
    delivery_layout="{house}/",
    delivery_target=lambda root, house: root / house,
    deliver=_deliver,
    delivered_keys=deliver.delivered_keys,
)

__all__ = ["SOURCE", "GcosExport", "write_export"]
