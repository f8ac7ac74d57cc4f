"""The registry's management information, counted from its access log: every ZSM look-up is an
entry naming the desk that asked, the person's pseudonyms, his age as the desk gave it and
whether a marking house's source knew him as a minor, and every marker found (its house, how
current its advice was, its target group). No other record is kept or needed.

A person is counted once however often and by whichever pseudonyms he was looked up: look-ups
that share a pseudonym are the same person (union-find over the month's look-ups)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select

from baken.houses import House
from baken.stuurinformatie.figures import CATALOGUE, Figure, Level, Source, counted
from services.accesslog.inquiry import LOOKUP_ACTIVITY
from services.common.covenants import ZSM_ROLES, Party
from services.registry.models import AccessLogRow
from services.report import Selection

# Entries of a look-up that was answered (a refusal looked nobody up).
_ANSWERED = ("hit", "no-hit", "withheld", "break-glass")
_OUTDATED = frozenset({"aged", "expired"})


@dataclass(frozen=True, slots=True)
class _Found:
    house: str
    advice_freshness: str
    target_group: str  # "" in entries written before the log recorded it


@dataclass(frozen=True, slots=True)
class _Lookup:
    region: str  # of the ZSM desk that asked
    subject: tuple[str, ...]
    # "minor" (as the desk said, or as a marking house's source knew), "adult" as the desk
    # said, or "" where the desk did not say
    age: str
    found: tuple[_Found, ...]


class _Persons:
    """Union-find over pseudonym values: one root per person."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def root(self, value: str) -> str:
        parent = self._parent.setdefault(value, value)
        while parent != value:
            grand = self._parent[parent]
            self._parent[value] = grand
            value, parent = parent, grand
        return value

    def join(self, values: Sequence[str]) -> None:
        first = self.root(values[0])
        for v in values[1:]:
            self._parent[self.root(v)] = first


class RegistryFigures:
    def __init__(
        self, engine: Engine, parties: Mapping[str, Party], houses: Mapping[str, House]
    ) -> None:
        self._engine = engine
        self._parties = parties
        self._houses = houses

    def __call__(self, selection: Selection) -> list[Figure]:
        lookups = self._lookups(selection)
        persons = _Persons()
        for lookup in lookups:
            persons.join(lookup.subject)

        counts: Counter[tuple[str, str, str]] = Counter()
        people: dict[tuple[str, str, str], set[str]] = {}
        # A person is a minor if any of the month's look-ups had him one, else an adult if any
        # said so.
        minors = {persons.root(k.subject[0]) for k in lookups if k.age == "minor"}
        for lookup in lookups:
            person = persons.root(lookup.subject[0])
            scope = (lookup.region, "")
            counts[("zsm.lookups", *scope)] += 1
            people.setdefault(("zsm.persons", *scope), set()).add(person)
            if not lookup.found:
                continue
            counts[("zsm.hits", *scope)] += 1
            people.setdefault(("zsm.known_persons", *scope), set()).add(person)
            age = "minor" if person in minors else lookup.age
            if age:
                people.setdefault((f"zsm.known_persons_{age}", *scope), set()).add(person)
            found = [f for f in lookup.found if f.house in self._houses]
            if {self._houses[f.house].region for f in found} - {lookup.region}:
                counts[("zsm.travelling_hits", *scope)] += 1
            for house in dict.fromkeys(f.house for f in found):
                at = (self._houses[house].region, house)
                counts[("house.hits", *at)] += 1
                people.setdefault(("house.known_persons", *at), set()).add(person)
                if at[0] != lookup.region:
                    counts[("house.travelling_hits", *at)] += 1
                markers = [f for f in found if f.house == house]
                if any(f.advice_freshness in _OUTDATED for f in markers):
                    counts[("house.hits_outdated_advice", *at)] += 1
                for group in {f.target_group for f in markers if f.target_group}:
                    people.setdefault((f"house.known_persons_{group}", *at), set()).add(person)
        for key, members in people.items():
            counts[key] = len(members)

        scopes = {
            Level.REGION: selection.region_scopes(),
            Level.HOUSE: selection.house_scopes(self._houses),
        }
        return [
            figure
            for kind in CATALOGUE
            if kind.source is Source.REGISTRY
            for figure in counted(kind.id, counts, scopes[kind.level])
        ]

    def _lookups(self, selection: Selection) -> list[_Lookup]:
        log = AccessLogRow.__table__
        query = (
            select(log.c.party_id, log.c.body)
            .where(log.c.entry_time >= selection.month.start)
            .where(log.c.entry_time < selection.month.end)
            .where(log.c.outcome.in_(_ANSWERED))
            .order_by(log.c.seq)
        )
        found: list[_Lookup] = []
        with self._engine.connect() as connection:
            for party_id, body_text in connection.execute(query):
                party = self._parties.get(party_id)
                if party is None or party.role not in ZSM_ROLES or party.region is None:
                    continue
                body = json.loads(body_text)
                subject = body.get("data_subject")
                if body.get("processing_activity") != LOOKUP_ACTIVITY or not subject:
                    continue
                minor = body.get("subject_age") == "minor" or body.get("minor_by_source")
                found.append(
                    _Lookup(
                        party.region,
                        tuple(subject),
                        "minor" if minor else body.get("subject_age", ""),
                        tuple(
                            _Found(m["house"], m["advice_freshness"], m.get("target_group", ""))
                            for m in body.get("found", ())
                        ),
                    )
                )
        return found
