"""Reference data: the Safety Houses, their regions and contact points (houses.toml)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from baken import enums
from baken.registry.v1 import house_pb2

HOUSES = "houses/"


def house_name(house_id: str) -> str:
    """A house's resource name on the wire: "houses/{house}"."""
    return HOUSES + house_id


def house_id_of(name: str) -> str:
    """The id in a house's resource name, "houses/{house}"; empty when `name` is not one."""
    return name.removeprefix(HOUSES) if name.startswith(HOUSES) else ""


@dataclass(frozen=True, slots=True)
class House:
    id: str
    display_name: str
    region: str
    region_display_name: str
    location: str
    source_system: house_pb2.SourceSystem.ValueType
    contact_role: str
    contact_email: str

    @property
    def source_system_token(self) -> str:
        """ "gcos", "amazone" or "pga": as the party register names an adapter's system."""
        return enums.token(house_pb2.SourceSystem, self.source_system, "SOURCE_SYSTEM_")

    @property
    def name(self) -> str:
        return HOUSES + self.id

    def to_proto(self) -> house_pb2.House:
        return house_pb2.House(
            name=self.name,
            display_name=self.display_name,
            region=self.region,
            region_display_name=self.region_display_name,
            location=self.location,
            source_system=self.source_system,
            contact=house_pb2.ContactPoint(role=self.contact_role, email=self.contact_email),
        )


def load_houses() -> Mapping[str, House]:
    """All houses by id, in the order of houses.toml."""
    data = tomllib.loads(resources.files("baken").joinpath("houses.toml").read_text("utf-8"))
    regions = data["regions"]
    return {
        house_id: House(
            id=house_id,
            display_name=h["display_name"],
            region=h["region"],
            region_display_name=regions[h["region"]]["display_name"],
            location=h["location"],
            source_system=house_pb2.SourceSystem.Value(f"SOURCE_SYSTEM_{h['source_system']}"),
            contact_role=h["contact_role"],
            contact_email=h["contact_email"],
        )
        for house_id, h in data["houses"].items()
    }


def load_municipalities(houses: Mapping[str, House]) -> Mapping[str, str]:
    """Residence municipality (as CBS spells it, compared case-insensitively: lowercase keys)
    -> the id of the house that covers it (municipalities.toml)."""
    data = tomllib.loads(
        resources.files("baken").joinpath("municipalities.toml").read_text("utf-8")
    )
    covered = {name.casefold(): house_id for name, house_id in data["municipalities"].items()}
    unknown = set(covered.values()) - houses.keys()
    if unknown:
        raise ValueError(f"municipalities.toml names houses not in houses.toml: {sorted(unknown)}")
    return covered
