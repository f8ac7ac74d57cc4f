"""The privacy officer's use of the access log: search it, find anomalies, review break-glass.

Only a party whose covenant grants the purpose `audit` (field access-log) gets in, and every read
is itself an entry of the log, written in the transaction that reads.

Anomaly rules (docs/AUDIT.md):
- LOOKUP_WITHOUT_CASE_OUTSIDE_SHIFT: a look-up without a ZSM case reference at a time (Amsterdam)
  outside the shift the party register gives for the desk.
- VOLUME_ABOVE_NORM: a party's look-ups on one day exceed 3 times its norm, the median of its
  daily look-ups on the days it looked anything up in the 28 days before (at least 7 such days),
  and number at least 50.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from baken.clock import AMSTERDAM, Clock
from baken.errors import FailedPrecondition, NotFound, PermissionDenied
from baken.purposes import AUDIT
from services.accesslog import store as access_log
from services.accesslog.inquiry import AUDIT_ACTIVITY, LOOKUP_ACTIVITY, Inquiry, entry, log_refusal
from services.accesslog.store import AccessLog, StoredEntry
from services.common import db
from services.common.access import AccessPolicy

LOOKUP_OUTCOMES = frozenset({"hit", "no-hit", "withheld", "break-glass", "denied"})
VOLUME_FACTOR = 3
VOLUME_MINIMUM = 50
NORM_DAYS = 28
NORM_MIN_DAYS = 7
# Enumeration: one party looking up at least this many different persons within the span,
# nearly all of them unknown. A desk's whole night is about 50 suspects; a re-check of the
# night's inflow in one batch about 140.
SWEEP_MISSES = 200
# No desk probes this many unknown pseudonyms in ten minutes: the whole country's ZSM inflow
# is about 550 cases a day.
SWEEP_MISSES_AT_ANY_SHARE = 1000
SWEEP_SPAN = dt.timedelta(minutes=10)
SWEEP_NO_HIT_SHARE = 0.9
DEFAULT_WINDOW = dt.timedelta(days=7)
_PAGE = 5000


@dataclass(frozen=True, slots=True)
class Anomaly:
    rule: str
    party: str
    description: str
    sequences: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EntryQuery:
    subject: tuple[bytes, ...] = ()
    party: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    after_seq: int = 0
    # The newest entry a paged walk may return, fixed at its first page: every page is itself
    # logged, so without a ceiling a walk over a subject would keep finding its own reads.
    until_seq: int | None = None
    limit: int = 100

    def describe(self) -> str:
        parts = [
            f"subject ({len(self.subject)} pseudonyms)" if self.subject else "",
            f"party={self.party}" if self.party else "",
            f"from={self.start.isoformat()}" if self.start else "",
            f"to={self.end.isoformat()}" if self.end else "",
            f"after={self.after_seq}" if self.after_seq else "",
        ]
        return " ".join(["entries", *(p for p in parts if p)])


class Audit:
    def __init__(
        self, engine: Engine, clock: Clock, *, policy: AccessPolicy, log: AccessLog
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._policy = policy
        self._log = log

    def entries(self, inquiry: Inquiry, query: EntryQuery) -> tuple[list[StoredEntry], int]:
        """A page of entries, and the ceiling (until_seq) the next pages must use."""
        covenants = self._admit(inquiry, query.subject)
        with db.write_transaction(self._engine) as connection:
            ceiling = query.until_seq
            if ceiling is None:
                ceiling = access_log.last_seq(connection)
            found = access_log.search(
                connection,
                subject=query.subject,
                party_id=query.party,
                start=query.start,
                end=query.end,
                after_seq=query.after_seq,
                until_seq=ceiling,
                limit=query.limit,
            )
            self._read(connection, inquiry, covenants, query.describe(), query.subject)
        return found, ceiling

    def pending_reviews(self, inquiry: Inquiry, *, after_seq: int, limit: int) -> list[StoredEntry]:
        """Break-glass entries not reviewed yet after `after_seq`: at most `limit`."""
        covenants = self._admit(inquiry)
        with db.write_transaction(self._engine) as connection:
            found = access_log.pending_reviews(connection, after_seq=after_seq, limit=limit)
            self._read(connection, inquiry, covenants, "pending break-glass reviews")
        return found

    def review(self, inquiry: Inquiry, sequence: int, finding: str) -> StoredEntry:
        """Record the privacy officer's finding on a break-glass entry, as a new entry."""
        covenants = self._admit(inquiry)
        with db.write_transaction(self._engine) as connection:
            # Hold the log first: two reviews of one entry must not both find it pending.
            self._log.lock(connection)
            target = access_log.search(connection, after_seq=sequence - 1, limit=1)
            if not target or target[0].seq != sequence or target[0].outcome != "break-glass":
                raise NotFound("ENTRY_NOT_FOUND", "no break-glass entry with that sequence")
            if access_log.is_reviewed(connection, sequence):
                raise FailedPrecondition("ALREADY_REVIEWED", "that entry has been reviewed")
            now = self._clock.now()
            review = entry(
                inquiry,
                now,
                "review",
                activity=AUDIT_ACTIVITY,
                covenants=covenants,
                reviews=sequence,
                review_finding=finding,
            )
            (seq,) = self._log.append(connection, [review], now)
            (stored,) = access_log.search(connection, after_seq=seq - 1, limit=1)
        return stored

    def anomalies(
        self, inquiry: Inquiry, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[Anomaly]:
        covenants = self._admit(inquiry)
        end = end or self._clock.now()
        start = start or end - DEFAULT_WINDOW
        with db.write_transaction(self._engine) as connection:
            first_day = start.astimezone(AMSTERDAM).date() - dt.timedelta(days=NORM_DAYS)
            since = dt.datetime.combine(first_day, dt.time(0), tzinfo=AMSTERDAM)
            history = _lookups(connection, since, end)
            self._read(
                connection,
                inquiry,
                covenants,
                f"anomalies from={start.isoformat()} to={end.isoformat()}",
            )
        window = [e for e in history if e.time >= start]
        return [*self._outside_shift(window), *_volume(history, start), *_sweeps(window)]

    def _outside_shift(self, window: Sequence[StoredEntry]) -> list[Anomaly]:
        flagged: dict[str, list[int]] = defaultdict(list)
        for e in window:
            party = self._policy.covenants.parties.get(e.party_id)
            if party is None or party.shift is None or e.body.get("case_reference"):
                continue
            if not _in_shift(party.shift, e.time.astimezone(AMSTERDAM).time()):
                flagged[e.party_id].append(e.seq)
        return [
            Anomaly(
                "LOOKUP_WITHOUT_CASE_OUTSIDE_SHIFT",
                party_id,
                f"{len(seqs)} look-ups without a case reference outside the desk's shift "
                f"({self._policy.covenants.parties[party_id].shift})",
                tuple(seqs),
            )
            for party_id, seqs in flagged.items()
        ]

    def _admit(self, inquiry: Inquiry, subject: Sequence[bytes] = ()) -> tuple[str, ...]:
        now = self._clock.now()
        try:
            return self._policy.authorise(inquiry.caller, AUDIT, self._clock.today()).covenants
        except PermissionDenied as denied:
            log_refusal(
                self._engine,
                self._log,
                inquiry,
                now,
                denied.reason,
                activity=AUDIT_ACTIVITY,
                subject=subject,
            )
            raise

    def _read(
        self,
        connection: Connection,
        inquiry: Inquiry,
        covenants: Sequence[str],
        query: str,
        subject: Sequence[bytes] = (),
    ) -> None:
        now = self._clock.now()
        read = entry(
            inquiry,
            now,
            "audit-read",
            activity=AUDIT_ACTIVITY,
            subject=subject,
            covenants=covenants,
            audit_query=query,
        )
        self._log.append(connection, [read], now)


def _lookups(connection: Connection, start: dt.datetime, end: dt.datetime) -> list[StoredEntry]:
    found: list[StoredEntry] = []
    after = 0
    while True:
        page = access_log.search(connection, start=start, end=end, after_seq=after, limit=_PAGE)
        found += [
            e
            for e in page
            if e.outcome in LOOKUP_OUTCOMES and e.body.get("processing_activity") == LOOKUP_ACTIVITY
        ]
        if len(page) < _PAGE:
            return found
        after = page[-1].seq


def _in_shift(shift: str, at: dt.time) -> bool:
    """Whether `at` lies in "HH:MM-HH:MM" (which may wrap past midnight; 24:00 ends a day)."""
    begin, finish = (int(t[:2]) * 60 + int(t[3:]) for t in shift.split("-"))
    minute = at.hour * 60 + at.minute
    if begin <= finish:
        return begin <= minute < finish
    return minute >= begin or minute < finish


def _volume(history: Sequence[StoredEntry], start: dt.datetime) -> list[Anomaly]:
    daily: dict[str, Counter[dt.date]] = defaultdict(Counter)
    for e in history:
        daily[e.party_id][e.time.astimezone(AMSTERDAM).date()] += 1
    first = start.astimezone(AMSTERDAM).date()
    anomalies = []
    for party_id, days in sorted(daily.items()):
        for day, count in sorted(days.items()):
            if day < first or count < VOLUME_MINIMUM:
                continue
            before = [n for d, n in days.items() if day - dt.timedelta(days=NORM_DAYS) <= d < day]
            if len(before) < NORM_MIN_DAYS:
                continue
            norm = statistics.median(before)
            if count > VOLUME_FACTOR * norm:
                anomalies.append(
                    Anomaly(
                        "VOLUME_ABOVE_NORM",
                        party_id,
                        f"{count} look-ups on {day}, norm {norm:g} a day "
                        f"(median of {len(before)} days before)",
                    )
                )
    return anomalies


def _sweeps(window: Sequence[StoredEntry]) -> list[Anomaly]:
    """The first span per party in which the different pseudonyms it probed that found no
    marker number SWEEP_MISSES while at most 1 - SWEEP_NO_HIT_SHARE of all it probed found one,
    or number SWEEP_MISSES_AT_ANY_SHARE whatever the share: a sweep for who is known.

    Counted in different pseudonyms, not in subjects: a subject stuffed with random pseudonyms
    beside a known one is as many probes as it holds, and the known one counts once however
    often it comes back."""
    by_party: dict[str, list[StoredEntry]] = defaultdict(list)
    for e in window:
        if e.outcome != "denied" and e.body.get("data_subject"):
            by_party[e.party_id].append(e)
    anomalies = []
    for party_id, entries in sorted(by_party.items()):
        entries.sort(key=lambda e: e.time)
        probed: Counter[str] = Counter()
        matched: Counter[str] = Counter()
        first = 0
        for e in entries:
            probed.update(e.body["data_subject"])
            matched.update(_matched(e))
            while e.time - entries[first].time > SWEEP_SPAN:
                gone = entries[first]
                _forget(probed, gone.body["data_subject"])
                _forget(matched, _matched(gone))
                first += 1
            missed = len(probed) - len(matched)
            if missed >= SWEEP_MISSES_AT_ANY_SHARE or (
                missed >= SWEEP_MISSES and len(matched) <= (1 - SWEEP_NO_HIT_SHARE) * len(probed)
            ):
                since = entries[first].time.astimezone(AMSTERDAM)
                anomalies.append(
                    Anomaly(
                        "PSEUDONYM_SWEEP",
                        party_id,
                        f"{len(probed)} different pseudonyms probed in "
                        f"{SWEEP_SPAN.seconds // 60} minutes from {since:%Y-%m-%d %H:%M}, "
                        f"{len(matched)} of them found a marker: a sweep for who is known?",
                    )
                )
                break
    return anomalies


def _matched(entry: StoredEntry) -> list[str]:
    """The entry's pseudonyms that found a marker; for entries written before the log said
    which, every pseudonym of a look-up that found one."""
    if "matched" in entry.body:
        return list(entry.body["matched"])
    return list(entry.body["data_subject"]) if entry.body.get("found") else []


def _forget(counts: Counter[str], values: Iterable[str]) -> None:
    for value in values:
        counts[value] -= 1
        if not counts[value]:
            del counts[value]
