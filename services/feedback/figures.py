"""The feedback service's management information, counted from its own tables: the decisions
(what was decided, never about whom), the delivery outbox (every item, whether it was sent and
acknowledged, and when; matchingsmeldingen and retractions counted apart) and the advice
requests. A technisch sepot 01 leaves nothing to count but the retractions of what its houses
already had.

A month's items are those made in it; whether they were delivered or acknowledged is counted as
it stands when the report is drawn up, so last month's figures grow complete after the fact."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping

from sqlalchemy import Connection, Engine, select

from baken.clock import Clock
from baken.houses import House
from baken.stuurinformatie.figures import CHECK_TERM_MINUTES, Figure, counted, percentile
from services.common.covenants import Party
from services.common.db import utc
from services.feedback.models import (
    AdviceRequestRow,
    DecisionAdviceRow,
    DecisionRow,
    DeliveryRow,
    InflowRow,
)
from services.feedback.values import AdviceFollowed, DeliveryKind
from services.report import Selection

_DEVIATED = AdviceFollowed.NOT_FOLLOWED
_CHECK_TERM = dt.timedelta(minutes=CHECK_TERM_MINUTES)

Counts = Counter[tuple[str, str, str]]


class FeedbackFigures:
    def __init__(
        self,
        engine: Engine,
        parties: Mapping[str, Party],
        houses: Mapping[str, House],
        clock: Clock,
    ) -> None:
        self._engine = engine
        self._parties = parties
        self._houses = houses
        self._clock = clock

    def __call__(self, selection: Selection) -> list[Figure]:
        counts: Counts = Counter()
        ack_seconds: dict[tuple[str, str], list[float]] = {}
        with self._engine.connect() as connection:
            self._inflow(connection, selection, counts)
            self._decisions(connection, selection, counts)
            self._deliveries(connection, selection, counts, ack_seconds)
            self._advice_requests(connection, selection, counts)

        regions = selection.region_scopes()
        houses = selection.house_scopes(self._houses)
        figures: list[Figure] = []
        for metric in (
            "zsm.inflow",
            "zsm.inflow_minors",
            "zsm.inflow_checked",
            "zsm.inflow_checked_in_time",
            "zsm.inflow_known",
            "zsm.decisions",
            "zsm.deviations",
            "zsm.deviations_with_reason",
        ):
            figures += counted(metric, counts, regions)
        for metric in (
            "feedback.items",
            "feedback.delivered",
            "feedback.acknowledged",
            "feedback.dead_letters",
            "feedback.cases_signalled",
            "feedback.cases_fed_back",
            "feedback.retractions",
            "feedback.matches",
            "house.deviations",
            "house.deviations_with_reason",
            "house.aanmeldingen",
            "advice.requested",
            "advice.answered_in_term",
            "advice.overdue",
            "advice.open",
            "advice.cancelled",
        ):
            figures += counted(metric, counts, houses)
        for scope in houses:
            times = sorted(ack_seconds.get(scope, ()))
            for metric, q in (("feedback.ack_p50", 0.5), ("feedback.ack_p95", 0.95)):
                value = percentile(times, q) if times else 0.0
                figures.append(Figure(metric, *scope, value, len(times)))
        return figures

    def _region_of(self, party_id: str) -> str | None:
        party = self._parties.get(party_id)
        return party.region if party is not None else None

    def _house(self, house_id: str, selection: Selection) -> tuple[str, str] | None:
        if house_id not in selection.houses:
            return None
        return (self._houses[house_id].region, house_id)

    def _inflow(self, connection: Connection, selection: Selection, counts: Counts) -> None:
        """The suspects arrested in the month, as the desks' case systems registered them."""
        f = InflowRow.__table__.c
        rows = connection.execute(
            select(f.region, f.minor, f.arrest_time, f.checked_time, f.known)
            .where(f.arrest_time >= selection.month.start)
            .where(f.arrest_time < selection.month.end)
            .where(f.region.in_(sorted(selection.regions)))
        )
        for region, minor, arrest_time, checked_time, known in rows:
            counts[("zsm.inflow", region, "")] += 1
            counts[("zsm.inflow_minors", region, "")] += bool(minor)
            if checked_time is None:
                continue
            counts[("zsm.inflow_checked", region, "")] += 1
            in_time = utc(checked_time) - utc(arrest_time) <= _CHECK_TERM
            counts[("zsm.inflow_checked_in_time", region, "")] += in_time
            counts[("zsm.inflow_known", region, "")] += bool(known)

    def _decisions(self, connection: Connection, selection: Selection, counts: Counts) -> None:
        d = DecisionRow.__table__.c
        rows = connection.execute(
            select(d.party_id, d.advice_current, d.advice_followed, d.deviation_reason_given)
            .where(d.recorded_time >= selection.month.start)
            .where(d.recorded_time < selection.month.end)
        )
        for party_id, advice_current, followed, reason_given in rows:
            region = self._region_of(party_id)
            if region is None:
                continue
            counts[("zsm.decisions", region, "")] += 1
            if advice_current and followed == _DEVIATED:
                counts[("zsm.deviations", region, "")] += 1
                counts[("zsm.deviations_with_reason", region, "")] += bool(reason_given)

    def _deliveries(
        self,
        connection: Connection,
        selection: Selection,
        counts: Counts,
        ack_seconds: dict[tuple[str, str], list[float]],
    ) -> None:
        i = DeliveryRow.__table__.c
        a = DecisionAdviceRow.__table__.c
        rows = connection.execute(
            select(
                i.house_id,
                i.kind,
                i.case_reference,
                i.state,
                i.attempts,
                i.created_time,
                i.acked_time,
                a.advice_followed,
                a.deviation_reason_given,
            )
            .select_from(
                # The house's own advice line of the decision: deviations are per house.
                DeliveryRow.__table__.outerjoin(
                    DecisionAdviceRow.__table__,
                    (i.decision_id == a.decision_id) & (i.house_id == a.house_id),
                )
            )
            .where(i.created_time >= selection.month.start)
            .where(i.created_time < selection.month.end)
        )
        signalled: dict[tuple[str, str], set[str]] = {}
        fed_back: dict[tuple[str, str], set[str]] = {}
        for (
            house_id,
            kind,
            case,
            state,
            attempts,
            created,
            acked,
            followed,
            reason_given,
        ) in rows:
            scope = self._house(house_id, selection)
            if scope is None:
                continue
            if kind == DeliveryKind.RETRACTION:
                # Not feedback but its withdrawal (technisch sepot 01): counted apart, so the
                # shares of items acknowledged stay about feedback.
                counts[("feedback.retractions", *scope)] += 1
                continue
            if kind == DeliveryKind.MATCH:
                # A matchingsmelding tells the house of another house that marks its person: not
                # feedback of a ZSM decision, so counted apart like a retraction.
                counts[("feedback.matches", *scope)] += 1
                continue
            counts[("feedback.items", *scope)] += 1
            counts[("feedback.delivered", *scope)] += attempts > 0 or state == "acked"
            counts[("feedback.acknowledged", *scope)] += state == "acked"
            counts[("feedback.dead_letters", *scope)] += state == "dead"
            if kind == DeliveryKind.SIGNAL and case:
                signalled.setdefault(scope, set()).add(case)
            elif kind == DeliveryKind.REFERRAL:
                counts[("house.aanmeldingen", *scope)] += 1
            elif kind == DeliveryKind.DECISION:
                if state == "acked" and acked is not None:
                    if case:
                        fed_back.setdefault(scope, set()).add(case)
                    seconds = (utc(acked) - utc(created)).total_seconds()
                    ack_seconds.setdefault(scope, []).append(seconds)
                if followed == _DEVIATED:
                    counts[("house.deviations", *scope)] += 1
                    counts[("house.deviations_with_reason", *scope)] += bool(reason_given)
        for scope, cases in signalled.items():
            counts[("feedback.cases_signalled", *scope)] = len(cases)
            counts[("feedback.cases_fed_back", *scope)] = len(cases & fed_back.get(scope, set()))

    def _advice_requests(
        self, connection: Connection, selection: Selection, counts: Counts
    ) -> None:
        a = AdviceRequestRow.__table__.c
        now = self._clock.now()
        rows = connection.execute(
            select(a.house_id, a.due_time, a.answered_time, a.cancelled_time)
            .where(a.requested_time >= selection.month.start)
            .where(a.requested_time < selection.month.end)
        )
        for house_id, due, answered, cancelled in rows:
            scope = self._house(house_id, selection)
            if scope is None:
                continue
            counts[("advice.requested", *scope)] += 1
            if cancelled is not None:
                counts[("advice.cancelled", *scope)] += 1
            elif answered is not None and utc(answered) <= utc(due):
                counts[("advice.answered_in_term", *scope)] += 1
            elif answered is not None or utc(due) < now:
                counts[("advice.overdue", *scope)] += 1
            else:
                counts[("advice.open", *scope)] += 1
