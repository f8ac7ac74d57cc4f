"""A month's management information as `baken report` shows it: the figures both services sent,
for one or more months, with the shares derived from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from baken.houses import House
from baken.stuurinformatie.figures import BY_ID, SMALL_TEXT, Level, Month, Share, Unit


@dataclass(frozen=True, slots=True)
class Cell:
    """A value, or small (fewer than 5: withheld), or missing (not sent, or a share without a
    denominator)."""

    value: float | None
    small: bool = False

    def text(self, unit: Unit = Unit.COUNT) -> str:
        if self.small:
            return SMALL_TEXT
        if self.value is None:
            return "-"
        if unit is Unit.SECONDS:
            return duration(self.value)
        if unit is Unit.PERCENT:
            return f"{self.value:.1f} %"
        return f"{int(self.value):,}".replace(",", ".")

    @property
    def missing(self) -> bool:
        return self.value is None and not self.small


MISSING = Cell(None)
SMALL = Cell(None, small=True)


def duration(seconds: float) -> str:
    """ "850 ms", "42 s", "3 min", "2.5 h"."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# (month, metric, region, house id or "")
Key = tuple[str, str, str, str]


@dataclass
class Report:
    """Figures for `months` (oldest first; the last is the month asked for)."""

    months: list[Month]
    # The regions shown, each with its houses shown (in the order of houses.toml).
    regions: dict[str, list[str]]
    region_names: Mapping[str, str]
    houses: Mapping[str, House]
    cells: dict[Key, Cell] = field(default_factory=dict)
    # (region, why) for each region the caller may not see.
    withheld: list[tuple[str, str]] = field(default_factory=list)

    @property
    def month(self) -> Month:
        return self.months[-1]

    def cell(self, month: Month, metric: str, region: str, house: str = "") -> Cell:
        return self.cells.get((str(month), metric, region, house), MISSING)

    def share(self, month: Month, share: Share, region: str, house: str = "") -> Cell:
        """The share in percent. Missing when either count was not sent (whether or not the
        other is small) or the denominator is 0; else small when either count is small."""
        top = self.cell(month, share.numerator, region, house)
        bottom = self.cell(
            month, share.denominator, region, "" if share.denominator_of_region else house
        )
        if top.missing or bottom.missing:
            return MISSING
        if top.small or bottom.small:
            return SMALL
        if not bottom.value:
            return MISSING
        assert top.value is not None
        return Cell(100.0 * top.value / bottom.value)

    def scopes(self, level: Level) -> list[tuple[str, str]]:
        """(region, house) pairs shown at a level: regions with house "", or each house."""
        if level is Level.REGION:
            return [(region, "") for region in self.regions]
        return [(region, house) for region, houses in self.regions.items() for house in houses]

    def scope_name(self, region: str, house: str) -> str:
        if house:
            return self.houses[house].display_name
        return f"ZSM {self.region_names.get(region, region)}"

    def total(self, month: Month, metric: str) -> Cell:
        """A count summed over every scope of its level; small if any part is small."""
        parts = [self.cell(month, metric, r, h) for r, h in self.scopes(BY_ID[metric].level)]
        if BY_ID[metric].unit is not Unit.COUNT or not parts:
            return MISSING
        if any(p.small for p in parts):
            return SMALL
        values = [p.value for p in parts if p.value is not None]
        return Cell(sum(values)) if values else MISSING


def months_back(last: Month, count: int) -> list[Month]:
    """`count` months ending with `last`, oldest first."""
    months = [last]
    while len(months) < count:
        months.insert(0, months[0].previous())
    return months


def add_figures(
    report: Report, month: Month, figures: Iterable[tuple[str, str, str, Cell]]
) -> None:
    """(metric, region, house, cell) as received, for `month`."""
    for metric, region, house, cell in figures:
        report.cells[(str(month), metric, region, house)] = cell


def ordered_houses(houses: Mapping[str, House], regions: Sequence[str]) -> dict[str, list[str]]:
    return {r: [h.id for h in houses.values() if h.region == r] for r in regions}
