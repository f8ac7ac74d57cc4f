"""`baken audit inzage`: the extract the privacy officer hands to a person who asked what Baken
holds about him (inzageverzoek), as one self-contained HTML page in plain Dutch.

What it may show is decided by the caller (cli/audit.py): houses and regions only, and per
look-up the organisation and role, never the official. Every value is escaped here; the page
has no script and fetches nothing, so it opens offline and prints as it shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from baken.clock import AMSTERDAM

ROLES = {
    "kpc": "medewerker van het ZSM-team (KPC)",
    "zsm-officier": "officier van justitie",
    "police": "politie",
    "probation": "reclassering",
    "rvdk": "Raad voor de Kinderbescherming",
    "victim-support": "Slachtofferhulp",
    "vh-process-director": "procesregisseur van het Veiligheidshuis",
    "vh-chair": "voorzitter van het Veiligheidshuis",
    "privacy-auditor": "functionaris gegevensbescherming",
    "service": "Baken zelf (geautomatiseerd)",
    "source-adapter": "koppeling met het systeem van een Veiligheidshuis",
    "operator": "beheerder",
}
PURPOSES = {
    "intake-en-selectie": "intake bij ZSM: is u bekend bij een Veiligheidshuis?",
    "afdoeningsbeslissing": "de beslissing van de officier van justitie over uw zaak",
    "triage": "de afweging of u naar hulp of zorg wordt verwezen",
    "terugkoppeling": "het Veiligheidshuis laten weten wat ZSM besliste",
    "advies-op-aanvraag": "een advies dat ZSM aan een Veiligheidshuis vroeg",
    "audit": "toezicht op het gebruik van Baken",
    "inzage": "uw verzoek om inzage",
    # Entries without a purpose are named by their processing activity.
    "baken:matchingsmelding": "Veiligheidshuizen die u kennen, van elkaar op de hoogte brengen",
    "baken:zsm-instroom": "de lijst van verdachten die bij ZSM instroomden",
}
# The feedback service's own outcomes (recorded, listed, ...) reach the API unspecified: the
# page says "vastgelegd" for them.
OUTCOMES = {
    "hit": "gevonden: een Veiligheidshuis kent u",
    "no-hit": "niet gevonden",
    "withheld": "bekend, maar er werd niets getoond",
    "denied": "geweigerd: daar was geen recht op",
    "break-glass": "ingezien met de noodknop (achteraf gecontroleerd)",
    "audit-read": "het toegangslog over u ingezien",
    "review": "controle van een gebruik van de noodknop",
    "signals-disclosed": "doorgegeven aan de terugkoppeling",
}
DECISIONS = {
    "DECISION_CODE_TECHNISCH_SEPOT_01": "technisch sepot (u bleek niet de verdachte)",
    "DECISION_CODE_SEPOT": "sepot",
    "DECISION_CODE_VOORWAARDELIJK_SEPOT": "voorwaardelijk sepot",
    "DECISION_CODE_HALT": "Halt",
    "DECISION_CODE_REPRIMANDE": "reprimande",
    "DECISION_CODE_STRAFBESCHIKKING": "strafbeschikking",
    "DECISION_CODE_TOM_ZITTING": "TOM-zitting",
    "DECISION_CODE_DAGVAARDING": "dagvaarding",
    "DECISION_CODE_VOORGELEIDING": "voorgeleiding",
    "DECISION_CODE_TRANSACTIE": "transactie",
    "DECISION_CODE_OVERDRACHT_BACKOFFICE": "overgedragen aan de backoffice",
    # Items that are no decision, by the processing activity that sent them.
    "baken:advies-op-aanvraag": "ZSM vroeg een Veiligheidshuis om advies",
    "baken:advies-op-aanvraag-ingetrokken": "ZSM trok een adviesvraag in",
}

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #222; background: #fff; margin: 2em;
  max-width: 52em; }
h1 { font-size: 1.5em; margin: 0 0 .4em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ccc; }
p.note { color: #555; }
table { border-collapse: collapse; margin: .5em 0 1em; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; }
td:first-child { white-space: nowrap; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


@dataclass(frozen=True, slots=True)
class MarkingHouse:
    house: str
    region: str


@dataclass(frozen=True, slots=True)
class LookUp:
    time: dt.datetime
    organisation: str
    role: str
    purpose: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Decision:
    time: dt.datetime
    organisation: str
    kind: str
    # The houses told of it (terugkoppeling), by name.
    houses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Extract:
    request: str
    made: dt.datetime
    houses: tuple[MarkingHouse, ...]
    lookups: tuple[LookUp, ...]
    decisions: tuple[Decision, ...] | None  # None: the feedback service's log was not read


def _when(time: dt.datetime) -> str:
    return time.astimezone(AMSTERDAM).strftime("%d-%m-%Y %H:%M")


def _words(table: dict[str, str], token: str) -> str:
    return table.get(token, token)


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(value)}</td>" for value in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def html_page(extract: Extract) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="nl"><head><meta charset="utf-8">',
        "<title>Inzage in Baken</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Wat Baken over u vastlegt</h1>",
        f"<p>Antwoord op uw verzoek om inzage, kenmerk {escape(extract.request)}, "
        f"opgesteld op {escape(_when(extract.made))}.</p>",
        "<p>Baken laat het ZSM-team van het Openbaar Ministerie, politie en partners weten of u "
        "bekend bent bij een Veiligheidshuis. Baken bewaart uw naam en BSN niet: alleen een "
        "code die daaruit is afgeleid. Hieronder staat wat Baken over u weet en wie het "
        "gebruikte. Namen van medewerkers staan er niet in: u ziet de organisatie en de "
        "functie.</p>",
        "<h2>Veiligheidshuizen die u kennen</h2>",
    ]
    if extract.houses:
        parts.append(
            _table(("Veiligheidshuis", "Regio"), ((h.house, h.region) for h in extract.houses))
        )
        parts.append(
            '<p class="note">Wat een Veiligheidshuis over u weet, kunt u bij dat '
            "Veiligheidshuis zelf opvragen; Baken toont alleen dat het u kent.</p>"
        )
    else:
        parts.append("<p>Geen enkel Veiligheidshuis heeft u op dit moment in Baken gemeld.</p>")
    parts.append("<h2>Wie u opzocht, en waarom</h2>")
    if extract.lookups:
        parts.append(
            _table(
                ("Datum en tijd", "Organisatie", "Functie", "Doel", "Uitkomst"),
                (
                    (
                        _when(lookup.time),
                        lookup.organisation,
                        _words(ROLES, lookup.role),
                        _words(PURPOSES, lookup.purpose),
                        OUTCOMES.get(lookup.outcome, "vastgelegd"),
                    )
                    for lookup in extract.lookups
                ),
            )
        )
    else:
        parts.append("<p>Niemand zocht u op in Baken.</p>")
    parts.append("<h2>Beslissingen en terugkoppeling</h2>")
    if extract.decisions is None:
        parts.append('<p class="note">Dit deel is niet opgevraagd.</p>')
    elif extract.decisions:
        parts.append(
            _table(
                ("Datum en tijd", "Organisatie", "Beslissing", "Teruggemeld aan"),
                (
                    (
                        _when(d.time),
                        d.organisation,
                        _words(DECISIONS, d.kind),
                        ", ".join(d.houses) or "geen Veiligheidshuis",
                    )
                    for d in extract.decisions
                ),
            )
        )
    else:
        parts.append("<p>Baken gaf geen beslissing over u door.</p>")
    parts.append(
        '<p class="note">Vragen of een verzoek om correctie: de functionaris '
        "gegevensbescherming die u dit overzicht gaf.</p></body></html>"
    )
    return "\n".join(parts) + "\n"
