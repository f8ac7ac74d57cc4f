"""The report as a terminal table and as CSV."""

from __future__ import annotations

import csv
import io

from baken.stuurinformatie.figures import CATALOGUE, SHARES, SMALL_TEXT, Level, Unit
from baken.stuurinformatie.report import Cell, Report


def _rows(report: Report, level: Level, scopes: list[tuple[str, str]]) -> list[list[str]]:
    month = report.month
    rows = [
        [m.label, *(report.cell(month, m.id, r, h).text(m.unit) for r, h in scopes)]
        for m in CATALOGUE
        if m.level is level
    ]
    rows += [
        [s.label, *(report.share(month, s, r, h).text(s.unit) for r, h in scopes)]
        for s in SHARES
        if s.level is level
    ]
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(report: Report) -> str:
    """The month's figures: the ZSM desks per region, then each region's houses."""
    parts = [
        f"Baken management information, {report.month}"
        f" (aggregates only; {SMALL_TEXT} = fewer than 5)"
    ]
    regions = report.scopes(Level.REGION)
    if regions:
        header = ["ZSM desks", *(report.region_names.get(r, r) for r, _ in regions)]
        parts.append(_table(header, _rows(report, Level.REGION, regions)))
    for region, houses in report.regions.items():
        if not houses:
            continue
        scopes = [(region, h) for h in houses]
        header = [report.region_names.get(region, region), *(_short(report, h) for h in houses)]
        parts.append(_table(header, _rows(report, Level.HOUSE, scopes)))
        parts.append(
            "  "
            + "; ".join(f"{_short(report, h)} = {report.houses[h].display_name}" for h in houses)
        )
    for region, why in report.withheld:
        parts.append(f"Not shown: {report.region_names.get(region, region)} ({why})")
    if not regions:
        parts.append("No region to show.")
    return "\n\n".join(parts) + "\n"


def _short(report: Report, house: str) -> str:
    return report.houses[house].location or house


def csv_text(report: Report) -> str:
    """One row per month, scope and metric (shares included): month, region, house, metric,
    label, value ("< 5" for a small cell, empty where not shown), unit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "region", "house", "metric", "label", "value", "unit"])
    for month in report.months:
        for level in (Level.REGION, Level.HOUSE):
            for region, house in report.scopes(level):
                for m in CATALOGUE:
                    if m.level is level:
                        value = _csv_value(report.cell(month, m.id, region, house), m.unit)
                        writer.writerow([month, region, house, m.id, m.label, value, m.unit.value])
                for s in SHARES:
                    if s.level is level:
                        value = _csv_value(report.share(month, s, region, house), s.unit)
                        writer.writerow([month, region, house, s.id, s.label, value, s.unit.value])
    return out.getvalue()


def _csv_value(cell: Cell, unit: Unit) -> str:
    if cell.small:
        return SMALL_TEXT
    if cell.value is None:
        return ""
    if unit is Unit.SECONDS:
        return f"{cell.value:.3f}"
    if unit is Unit.PERCENT:
        return f"{cell.value:.1f}"
    return str(int(cell.value))
