"""What a lookup shows: the covenant scope applied to each marker found, field by field.

Every field of the covenant vocabulary is decided for every marker, whether or not the marker
has a value for it: shown, or listed as withheld with the rule that decided. Listing only the
fields that have a value would tell the caller what it may not see exists (a supervision, an
advice for a minor). Three rules stand above the covenants: nothing of the houses is shown about
a minor at intake-en-selectie (a minor as the caller says, or as a marking house's source knows
him, whatever the caller says), an expired advice is never shown, and break-glass (noodknop)
shows waarom-informatie beyond the grant, but never past those two rules.

`advice_freshness` is dat-informatie: where the advice itself is withheld, it shows only whether
an advice is CURRENT, AGED, EXPIRED or absent (no text, no date); the advice, where shown,
carries its freshness anyway.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from baken.purposes import INTAKE
from services.common.access import Decision, Scope, Withhold
from services.common.at_rest import Sealer
from services.common.covenants import MARKER_FIELDS, THAT_FIELDS, WHY_FIELDS
from services.registry.freshness import Freshness, freshness
from services.registry.markers import MarkerHit, RecordKey, marker_name
from services.registry.repository import Found

BREAK_GLASS = Decision(None, "break-glass", "")
_REASONS = {reason: reason.value for reason in Withhold}


class Withheld(NamedTuple):
    """A field not shown, and why (a dozen for a marker seen only as dat-informatie)."""

    marker: str  # empty when the whole marker is withheld
    field: str
    reason: Withhold
    covenant: str = ""
    grant: str = ""


class FoundMarker(NamedTuple):
    """A marker a look-up found, as the access log records it for the management information."""

    house: str
    advice_freshness: Freshness
    target_group: str


@dataclass(frozen=True, slots=True)
class Disclosure:
    """The markers as the caller may see them, and everything withheld."""

    hits: list[MarkerHit]
    withheld: list[Withheld]
    # Markers found, including those withheld whole: for the access log and the management
    # information.
    found: tuple[FoundMarker, ...]
    # For the access log: per marker, each field whose value was shown, and the covenant and
    # grant that showed it ("break-glass" where the noodknop did).
    disclosed: Mapping[str, Mapping[str, str]]
    # A minor at intake-en-selectie: nothing of the houses shown, whether or not one knows him.
    minor_at_intake: bool = False
    # A marking house's source knows him as a minor where the caller did not say so.
    minor_by_source: bool = False

    def log_fields(self) -> dict[str, Any]:
        """What the access-log entry of this answer records of it."""
        return {
            # Every marker found, shown or not: its house, how current its advice was, and its
            # target group.
            "found": [
                {"house": house, "advice_freshness": fresh.value, "target_group": group}
                for house, fresh, group in self.found
            ],
            # Per marker: each field shown and the covenant and grant (or break-glass) that did.
            "disclosed": [
                {"marker": marker, "fields": fields} for marker, fields in self.disclosed.items()
            ],
            "withheld": [
                {"marker": m, "field": f, "reason": _REASONS[r], "covenant": c, "grant": g}
                for m, f, r, c, g in self.withheld
            ],
            "minor_by_source": self.minor_by_source,
        }


@dataclass(frozen=True, slots=True)
class _Plan:
    """One house's marker fields as a scope decides them, break-glass applied or not: the same
    for every marker of the house, so decided once per scope."""

    shown: frozenset[str]
    # Per field shown, the covenant and grant (or break-glass) that showed it, for the log.
    cites: Mapping[str, str]
    withheld: tuple[tuple[str, Withhold, str, str], ...]  # field, reason, covenant, grant
    advice_shown: bool


def _plan(scope: Scope, house_id: str, break_glass: bool) -> _Plan:
    key = ("disclosure", house_id, break_glass)
    plan = scope.derived.get(key)
    if plan is None:
        plan = scope.derived[key] = _decide_plan(scope, house_id, break_glass)
    return plan


def _decide_plan(scope: Scope, house_id: str, break_glass: bool) -> _Plan:
    decisions: dict[str, Decision] = {}
    for field in MARKER_FIELDS:
        decision = scope.decide(house_id, field)
        if field in WHY_FIELDS and break_glass and not decision.disclosed:
            decision = BREAK_GLASS
        decisions[field] = decision
    # The advice carries its freshness: where the advice is shown, so is its freshness, by
    # the advice's decision. Without the advice, advice_freshness alone shows only it.
    if decisions["advice"].disclosed and not decisions["advice_freshness"].disclosed:
        decisions["advice_freshness"] = decisions["advice"]
    shown = {f: d for f, d in decisions.items() if d.disclosed}
    return _Plan(
        shown=frozenset(shown),
        cites={f: f"{d.covenant} {d.grant}".strip() for f, d in shown.items()},
        withheld=tuple((f, *_cite(d)) for f, d in decisions.items() if not d.disclosed),
        advice_shown="advice" in shown,
    )


def disclose(
    rows: Sequence[Found],
    scope: Scope,
    today: dt.date,
    sealer: Sealer,
    *,
    minor: bool,
    break_glass: bool,
) -> Disclosure:
    best: dict[str, Found] = {}
    for row in rows:
        if row.uid not in best or row.kind < best[row.uid].kind:
            best[row.uid] = row
    found = tuple(
        FoundMarker(row.house_id, freshness(row.advice_date, today), row.target_group)
        for row in best.values()
    )
    # What a source knows of his age stands above the caller's claim.
    by_source = not minor and any(
        row.minor_until is not None and today < row.minor_until for row in best.values()
    )
    if (minor or by_source) and scope.purpose == INTAKE:
        return Disclosure(
            [], [Withheld("", "marker", Withhold.MINOR_AT_INTAKE)], found, {}, True, by_source
        )
    minor = minor or by_source
    hits: list[MarkerHit] = []
    withheld: list[Withheld] = []
    disclosed: dict[str, dict[str, str]] = {}
    for row in best.values():
        house = scope.decide(row.house_id, "house")
        if not house.disclosed:
            withheld.append(Withheld("", "marker", *_cite(house)))
            continue
        name = marker_name(row.house_id, row.uid)
        fresh = freshness(row.advice_date, today)
        at: dict[str, str] = (
            json.loads(sealer.open(row.uid, "at_information", row.at_information))
            if row.at_information
            else {}
        )
        plan = _plan(scope, row.house_id, break_glass)
        withheld += [Withheld(name, *w) for w in plan.withheld]
        advice = None
        if plan.advice_shown and row.advice is not None:
            if fresh is Freshness.EXPIRED:
                withheld.append(Withheld(name, "advice", Withhold.ADVICE_EXPIRED))
            else:
                advice = sealer.open(row.uid, "advice", row.advice)
        with_value = {*THAT_FIELDS, *(("advice",) if advice else ()), *(f"at.{k}" for k in at)}
        disclosed[name] = {f: cite for f, cite in plan.cites.items() if f in with_value}
        shown = plan.shown
        hits.append(
            MarkerHit(
                uid=row.uid,
                key=RecordKey(row.source_system, row.house_id, row.source_record_id),
                source_version=row.source_version,
                target_group=row.target_group,
                plan_status=row.plan_status,
                mark_date=row.mark_date,
                advice=advice,
                advice_date=row.advice_date,
                freshness=fresh,
                at_information={k: v for k, v in at.items() if f"at.{k}" in shown} or None,
                match_kind=row.kind,
                fields=shown,
            )
        )
    hits.sort(key=lambda h: (h.match_kind, h.key.house_id, -h.mark_date.toordinal()))
    return Disclosure(hits, withheld, found, disclosed, minor_by_source=by_source)


def _cite(decision: Decision) -> tuple[Withhold, str, str]:
    assert decision.reason is not None
    return decision.reason, decision.covenant, decision.grant
