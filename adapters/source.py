"""What a source system is to Baken, declared once per system (adapters/gcos, adapters/amazone,
adapters/pga; collected in adapters/sources.py): its adapter's party, how its export is read and
(for the demo and tests) written, and where and how the feedback for its houses is delivered and
read back."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.records import Delivery, SourceFormat, SourceRecord


@dataclass(frozen=True, slots=True)
class SourceSystem:
    system: str  # "gcos": as the party register and the wire's SourceSystem name it
    party: str  # its adapter's party in the register ("adapter-gcos")
    export: type[SourceFormat]  # reads an export
    # A synthetic export: write_export(path, unit, records); one file per house (GCOS) or per
    # region (the unit), named "{system}-{unit}.{export_suffix}".
    write_export: Callable[[Path, str, Sequence[SourceRecord]], None]
    export_suffix: str
    export_per_house: bool
    # Where a house's deliveries go under the receiver's target directory (for humans, and as
    # a path), how one is written (True: written; False: its key is there already; ValueError:
    # the source cannot take it), and the keys of the items there, repeats included.
    delivery_layout: str
    delivery_target: Callable[[Path, str], Path]
    deliver: Callable[[Path, Delivery], bool]
    delivered_keys: Callable[[Path], list[str]]


def in_new_parent(deliver: Callable[[Path, Delivery], bool]) -> Callable[[Path, Delivery], bool]:
    """`deliver` into a file whose directory is made first when it is not there."""

    def write(path: Path, delivery: Delivery) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        return deliver(path, delivery)

    return write


def per_region(
    write: Callable[[Path, Iterable[SourceRecord]], None],
) -> Callable[[Path, str, Sequence[SourceRecord]], None]:
    """The export writer of a source that exports a whole region in one file: the unit (the
    region) names only the file."""

    def write_export(path: Path, _region: str, records: Sequence[SourceRecord]) -> None:
        write(path, records)

    return write_export
