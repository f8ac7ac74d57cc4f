"""Taking over the registry's signals: a ZSM lookup hit a house's marker, so the house hears
that the person flowed in; or another house marks the house's person (matchingsmelding), so the
house hears which, whom to call there and why it marks him."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from baken.pki import Identity
from baken.purposes import TERUGKOPPELING
from services.accesslog.inquiry import Inquiry
from services.common import db
from services.feedback import repository
from services.feedback.context import Context
from services.feedback.routing import Item, NotRouted, Routing, route_match, route_signal
from services.feedback.values import SignalIn

SIGNAL_ACTIVITY = "baken:signalering-veiligheidshuizen"
MATCH_ACTIVITY = "baken:matchingsmelding"
SIGNAL_PAGE = 500
# Why a signal went nowhere: its case was closed by a technisch sepot 01.
CASE_PURGED = "CASE_PURGED"


class Signals:
    def __init__(self, context: Context, *, identity: Identity) -> None:
        self._context = context
        # The feedback service itself: it takes signals over of its own accord.
        self._identity = identity

    def follow(self, page: int = SIGNAL_PAGE) -> int:
        """Take over one page of the registry's signals; how many there were."""
        signals = self._context.registry.pull_signals(self.cursor(), page)
        self.take_over(signals)
        return len(signals)

    def cursor(self) -> int:
        with self._context.engine.connect() as connection:
            return repository.signal_cursor(connection)

    def take_over(self, signals: Sequence[SignalIn]) -> int:
        """Items for the signals, and the cursor past them, in one transaction: a crash
        before the commit takes them over again, after it never twice (keys dedupe too)."""
        if not signals:
            return 0
        context = self._context
        now = context.now()
        routed = [
            (s, self._route(s))
            for s in signals
            if s.house_id in context.houses
            and (s.other_house_id is None or s.other_house_id in context.houses)
        ]
        last = max(s.sequence for s in signals)
        with db.write_transaction(context.engine) as connection:
            # A case closed by a technisch sepot 01 is over: a later lookup under its number
            # signals nobody (checked in this transaction, so a purge committed first counts).
            purged = {
                case
                for case in {s.case_reference for s in signals if s.case_reference}
                if context.is_purged(connection, case)
            }
            routed = [
                (s, NotRouted(s.house_id, CASE_PURGED) if s.case_reference in purged else r)
                for s, r in routed
            ]
            items = [(s, r) for s, r in routed if isinstance(r, Item)]
            new = 0
            for signal, item in items:
                new += context.outbox.add(
                    connection, [item], now, case_reference=signal.case_reference or None
                )
            repository.set_signal_cursor(connection, last)
            inquiry = Inquiry(
                self._identity,
                TERUGKOPPELING,
                on_behalf_of="signal-follower",
                operation="TakeOverSignals",
                request_id="",
                client_address="",
                trace_id=uuid.uuid4().hex,
            )
            # A matchingsmelding discloses another house's marker: entries of their own.
            for activity, matching in ((SIGNAL_ACTIVITY, False), (MATCH_ACTIVITY, True)):
                of_kind = [r for s, r in routed if (s.other_house_id is not None) == matching]
                if matching and not of_kind:
                    continue
                context.append(
                    connection,
                    inquiry,
                    now,
                    "routed",
                    activity=activity,
                    routing=Routing(
                        tuple(r for r in of_kind if isinstance(r, Item)),
                        tuple(r for r in of_kind if isinstance(r, NotRouted)),
                    ),
                    signals=[signals[0].sequence, last],
                )
        context.outbox.notify()
        return new

    def _route(self, s: SignalIn) -> Item | NotRouted:
        recipients = self._context.recipients
        if s.other_house_id is not None:
            return route_match(
                recipients,
                house_id=s.house_id,
                source_record_id=s.source_record_id,
                other=self._context.houses[s.other_house_id],
                other_target_group=s.other_target_group,
                matched_time=s.lookup_time,
                sequence=s.sequence,
            )
        return route_signal(
            recipients,
            house_id=s.house_id,
            source_record_id=s.source_record_id,
            case_reference=s.case_reference,
            zsm_location=s.zsm_location,
            lookup_time=s.lookup_time,
            sequence=s.sequence,
        )
