"""The inflow adapter's state file (SQLite, no BSN or name): per case what was done, and per
decision whether the feedback service has it; under an OPRF key also the pseudonyms of the
rows' suspects, under a salted hash of their identifiers (`InflowState.pseudonyms`). Killed at
any point, the next run goes on from here (adapters/zsm/README.md, "Nothing twice")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapters.state import StateFile


@dataclass(frozen=True, slots=True)
class Case:
    """What the adapter did for one case. `fingerprints`: a hash of each pseudonym of the
    suspect (the pseudonyms themselves are not kept), so a later row of the case can be told
    to be about the same person, also across a key rotation (one shared pseudonym suffices)."""

    case_reference: str
    fingerprints: frozenset[str]
    first_seen: dt.datetime
    checked_time: dt.datetime | None = None  # when the registry answered the look-up
    known: bool = False
    # What RecordInflow has: None nothing yet; "unchecked" the inflow without the check;
    # "checked" the inflow with it.
    recorded: str | None = None
    # Why the registry or the feedback service refused the case for good (no personal data):
    # it is not looked up or recorded again.
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionState:
    request_key: str
    case_reference: str
    # "recorded" (RecordDecision took it), "held" (held for the desk on the inflow entry),
    # "pending" (to try again: `attempts` failures so far, not before `next_try`).
    status: str
    attempts: int = 0
    next_try: dt.datetime | None = None


class InflowState(StateFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS cases (case_reference TEXT PRIMARY KEY,"
                " fingerprints TEXT NOT NULL, first_seen TEXT NOT NULL, checked_time TEXT,"
                " known INTEGER NOT NULL DEFAULT 0, recorded TEXT, refused TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS decisions (request_key TEXT PRIMARY KEY,"
                " case_reference TEXT NOT NULL, status TEXT NOT NULL,"
                " attempts INTEGER NOT NULL DEFAULT 0, next_try TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pseudonyms (person BLOB PRIMARY KEY,"
                " case_reference TEXT NOT NULL, subject BLOB NOT NULL, made TEXT NOT NULL)"
            )
            self._make_salt()

    def cases(self) -> dict[str, Case]:
        return {
            row[0]: Case(
                row[0],
                frozenset(row[1].split(",")) if row[1] else frozenset(),
                dt.datetime.fromisoformat(row[2]),
                dt.datetime.fromisoformat(row[3]) if row[3] else None,
                bool(row[4]),
                row[5],
                row[6],
            )
            for row in self._db.execute(
                "SELECT case_reference, fingerprints, first_seen, checked_time, known,"
                " recorded, refused FROM cases"
            )
        }

    def decisions(self) -> dict[str, DecisionState]:
        return {
            key: DecisionState(
                key, case, status, attempts, dt.datetime.fromisoformat(t) if t else None
            )
            for key, case, status, attempts, t in self._db.execute(
                "SELECT request_key, case_reference, status, attempts, next_try FROM decisions"
            )
        }

    def seen(self, case: Case) -> None:
        """A new case, remembered before anything about it is sent."""
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO cases (case_reference, fingerprints, first_seen)"
                " VALUES (?, ?, ?)",
                (
                    case.case_reference,
                    ",".join(sorted(case.fingerprints)),
                    case.first_seen.isoformat(),
                ),
            )

    def checked(self, case_reference: str, when: dt.datetime, known: bool) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE cases SET checked_time = ?, known = ? WHERE case_reference = ?",
                (when.isoformat(), int(known), case_reference),
            )

    def recorded(self, case_reference: str, what: str) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE cases SET recorded = ? WHERE case_reference = ?", (what, case_reference)
            )

    def refuse(self, case_reference: str, why: str) -> None:
        """The case is done with for good; the pseudonyms of its rows are not kept."""
        with self._transaction():
            self._db.execute(
                "UPDATE cases SET refused = ? WHERE case_reference = ?", (why, case_reference)
            )
            self._db.execute("DELETE FROM pseudonyms WHERE case_reference = ?", (case_reference,))

    def pseudonyms(self) -> dict[bytes, bytes]:
        """Under an OPRF key: a hash of a row's case reference and identifiers (salted with
        `salt`) -> the serialized Subject they were pseudonymised to, so a monitor read again
        is not sent to the pseudonymisation service again."""
        return {
            bytes(person): bytes(subject)
            for person, subject in self._db.execute("SELECT person, subject FROM pseudonyms")
        }

    def remember(
        self, made: Iterable[tuple[bytes, str, bytes]], now: dt.datetime, keep: dt.timedelta
    ) -> None:
        """(person, case reference, subject) made this run; those made longer than `keep` ago
        are forgotten (a monitor still read then is pseudonymised again)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO pseudonyms (person, case_reference, subject, made)"
                " VALUES (?, ?, ?, ?)",
                [(person, case, subject, now.isoformat()) for person, case, subject in made],
            )
            self._db.execute("DELETE FROM pseudonyms WHERE made < ?", ((now - keep).isoformat(),))

    def decision(self, state: DecisionState) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO decisions (request_key, case_reference, status, attempts, next_try)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_key) DO UPDATE SET"
                " status = excluded.status, attempts = excluded.attempts,"
                " next_try = excluded.next_try",
                (
                    state.request_key,
                    state.case_reference,
                    state.status,
                    state.attempts,
                    state.next_try.isoformat() if state.next_try else None,
                ),
            )
