"""The management information's figures (stuurinformatie, docs/PROCESS.md §4): one catalogue of
what is counted, for the services that count it, the report that shows it and docs/REPORT.md
that defines it.

A figure is a count or a time about one region's ZSM desks (house "") or about one house, for one
calendar month in Dutch time. Shares are not sent: the report divides two counts it was sent.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from baken.clock import AMSTERDAM
from baken.enums import tokens
from baken.registry.v1 import marker_pb2

# A suspect in the inflow counts as checked in time when Baken answered his look-up within this
# many minutes of his arrest.
CHECK_TERM_MINUTES = 60

# Fewer than this many persons or items: the value is not sent, the report shows "< 5".
SMALL_CELL = 5
SMALL_TEXT = f"< {SMALL_CELL}"


class Level(Enum):
    REGION = "region"  # about a region's ZSM desks
    HOUSE = "house"  # about one Safety House


class Unit(Enum):
    COUNT = "count"
    SECONDS = "seconds"
    PERCENT = "percent"  # a share, computed by the report


class Source(Enum):
    REGISTRY = "registry"
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class FigureKind:
    id: str
    level: Level
    source: Source
    label: str
    unit: Unit = Unit.COUNT


def _m(id_: str, level: Level, source: Source, label: str, unit: Unit = Unit.COUNT) -> FigureKind:
    return FigureKind(id_, level, source, label, unit)


R, H = Level.REGION, Level.HOUSE
REG, FB = Source.REGISTRY, Source.FEEDBACK
# The target groups (doelgroepen) of marker.proto, as the registry stores a marker's: "top_x".
TARGET_GROUPS = tuple(tokens(marker_pb2.TargetGroup, "TARGET_GROUP_").values())
_GROUP_LABELS = {"hit": "High Impact Crime", "top_x": "Top X"}

CATALOGUE: tuple[FigureKind, ...] = (
    # The registry: its access log (every look-up, with the markers it found) and the houses.
    _m("zsm.lookups", R, REG, "ZSM look-ups"),
    _m("zsm.hits", R, REG, "look-ups that found a marker"),
    _m("zsm.persons", R, REG, "persons looked up"),
    _m("zsm.known_persons", R, REG, "persons known at a Safety House"),
    _m("zsm.known_persons_minor", R, REG, "of which minors"),
    _m("zsm.known_persons_adult", R, REG, "of which adults"),
    _m("zsm.travelling_hits", R, REG, "hits on another region's markers"),
    _m("house.hits", H, REG, "look-ups that found the house's marker"),
    _m("house.known_persons", H, REG, "known persons flowing in"),
    *(
        _m(
            f"house.known_persons_{g}",
            H,
            REG,
            f"of which target group {_GROUP_LABELS.get(g, g.replace('_', ' '))}",
        )
        for g in TARGET_GROUPS
    ),
    _m("house.travelling_hits", H, REG, "hits from another region's ZSM"),
    _m("house.hits_outdated_advice", H, REG, "hits with AGED or EXPIRED advice"),
    # The feedback service: the desks' inflow, decisions, the delivery outbox, advice requests.
    _m("zsm.inflow", R, FB, "suspects in the ZSM inflow (the case system's export)"),
    _m("zsm.inflow_minors", R, FB, "of which minors"),
    _m("zsm.inflow_checked", R, FB, "inflow checked in Baken"),
    _m("zsm.inflow_checked_in_time", R, FB, f"checked within {CHECK_TERM_MINUTES} min of arrest"),
    _m("zsm.inflow_known", R, FB, "inflow known at a Safety House"),
    _m("zsm.decisions", R, FB, "ZSM decisions recorded"),
    _m("zsm.deviations", R, FB, "decisions deviating from CURRENT/AGED advice"),
    _m("zsm.deviations_with_reason", R, FB, "of which with a reason given"),
    _m("feedback.items", H, FB, "feedback items produced"),
    _m("feedback.delivered", H, FB, "feedback items delivered"),
    _m("feedback.acknowledged", H, FB, "feedback items acknowledged"),
    _m("feedback.dead_letters", H, FB, "feedback items given up (dead letters)"),
    _m("feedback.cases_signalled", H, FB, "cases signalled to the house"),
    _m("feedback.cases_fed_back", H, FB, "of which decision acknowledged"),
    _m("feedback.retractions", H, FB, "items withdrawn after technisch sepot 01"),
    _m("feedback.matches", H, FB, "matchingsmeldingen: another house marks him too"),
    _m("feedback.ack_p50", H, FB, "decision to acknowledgement, median", Unit.SECONDS),
    _m("feedback.ack_p95", H, FB, "decision to acknowledgement, p95", Unit.SECONDS),
    _m("house.deviations", H, FB, "decisions deviating from the house's advice"),
    _m("house.deviations_with_reason", H, FB, "of which with a reason given"),
    _m("house.aanmeldingen", H, FB, "aanmeldingen of not-known persons"),
    _m("advice.requested", H, FB, "advice requests"),
    _m("advice.answered_in_term", H, FB, "answered in term"),
    _m("advice.overdue", H, FB, "overdue (answered late or not at all)"),
    _m("advice.open", H, FB, "open, term still running"),
    _m("advice.cancelled", H, FB, "withdrawn by ZSM before an answer"),
)
BY_ID: Mapping[str, FigureKind] = {m.id: m for m in CATALOGUE}


@dataclass(frozen=True, slots=True)
class Share:
    """A derived percentage: numerator / denominator, both sent metrics."""

    id: str
    level: Level
    label: str
    numerator: str
    denominator: str
    # For a house share whose denominator is its region's figure.
    denominator_of_region: bool = False
    unit = Unit.PERCENT


SHARES: tuple[Share, ...] = (
    Share("share.hits", R, "look-ups with a hit", "zsm.hits", "zsm.lookups"),
    Share("share.checked", R, "inflow checked", "zsm.inflow_checked", "zsm.inflow"),
    Share(
        "share.checked_in_time",
        R,
        f"inflow checked within {CHECK_TERM_MINUTES} min of arrest",
        "zsm.inflow_checked_in_time",
        "zsm.inflow",
    ),
    Share("share.inflow_known", R, "known share of the inflow", "zsm.inflow_known", "zsm.inflow"),
    Share("share.known", R, "known share of persons looked up", "zsm.known_persons", "zsm.persons"),
    Share(
        "share.house_known",
        H,
        "known share of the region's ZSM inflow",
        "house.known_persons",
        "zsm.persons",
        denominator_of_region=True,
    ),
    Share(
        "share.completeness",
        H,
        "completeness of terugkoppeling",
        "feedback.cases_fed_back",
        "feedback.cases_signalled",
    ),
    Share("share.acknowledged", H, "items acknowledged", "feedback.acknowledged", "feedback.items"),
    Share(
        "share.outdated_advice",
        H,
        "hits whose advice was AGED or EXPIRED",
        "house.hits_outdated_advice",
        "house.hits",
    ),
    Share(
        "share.advice_in_term",
        H,
        "advice answered in term",
        "advice.answered_in_term",
        "advice.requested",
    ),
)


@dataclass(frozen=True, slots=True)
class Month:
    """A calendar month in Dutch time, as a half-open interval of aware UTC times."""

    year: int
    month: int

    _PATTERN = re.compile(r"(\d{4})-(\d{2})")

    @classmethod
    def parse(cls, text: str) -> Month:
        """ "2026-10"; ValueError naming what is wrong."""
        found = cls._PATTERN.fullmatch(text.strip())
        if not found or not 1 <= int(found[2]) <= 12 or int(found[1]) < 2000:
            raise ValueError(f"{text!r} is not a month: give YYYY-MM, for example 2026-10")
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, time: dt.datetime) -> Month:
        local = time.astimezone(AMSTERDAM)
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def start(self) -> dt.datetime:
        return dt.datetime(self.year, self.month, 1, tzinfo=AMSTERDAM).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return self.next().start

    def contains(self, time: dt.datetime) -> bool:
        return self.start <= time < self.end


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure as a service computed it, before small cells are withheld."""

    metric: str
    region: str
    house_id: str  # "" for the region's ZSM desks
    value: float
    # For a time: how many items it was computed from.
    basis: int = 0

    @property
    def small(self) -> bool:
        """Fewer than 5 persons or items: the value must not leave the service."""
        counted = self.value if BY_ID[self.metric].unit is Unit.COUNT else self.basis
        return counted < SMALL_CELL


def counted(
    metric: str, counts: Mapping[tuple[str, str, str], int], scopes: Iterable[tuple[str, str]]
) -> list[Figure]:
    """The count of `metric` for every (region, house) scope from counts keyed (metric, region,
    house): zero where nothing was counted."""
    return [Figure(metric, r, h, counts.get((metric, r, h), 0)) for r, h in scopes]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 < q < 1) by linear interpolation, as statistics.quantiles does."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
