"""The register of processing activities (verwerkingsregister, art. 30 AVG), generated from the
covenants and the party register (`baken register`): per purpose the parties and their roles,
the data, the legal basis, the validity and the retention period. The files decide every
answer, so a register written from them cannot drift from what the services do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from baken.houses import House
from baken.purposes import AFDOENING, INTAKE, MONITORING, PURPOSES, TERUGKOPPELING
from services.common.covenants import (
    FEEDBACK_FIELDS,
    PURPOSE_ONLY_FIELDS,
    THAT_FIELDS,
    WHY_FIELDS,
    Covenant,
    CovenantSet,
    Grant,
)
from services.common.settings import RetentionSettings

PURPOSE_TEXT = {
    "intake-en-selectie": "ZSM ziet bij de intake of een verdachte bekend is bij een "
    "Veiligheidshuis, en waar",
    "afdoeningsbeslissing": "de officier van justitie weegt het advies van het Veiligheidshuis "
    "bij de afdoening",
    "triage": "het advies- en triagepunt weegt een verwijzing naar zorg of hulp",
    "terugkoppeling": "het markerende Veiligheidshuis hoort wat ZSM besliste",
    "advies-op-aanvraag": "ZSM vraagt een Veiligheidshuis om een vers advies en leest het",
    "monitoring": "stuurinformatie: aantallen, nooit personen",
    "audit": "de functionaris gegevensbescherming houdt toezicht via het toegangslog",
    "inzage": "de functionaris gegevensbescherming beantwoordt een verzoek om inzage",
}


def retention_period(purpose: str, schedule: RetentionSettings | None = None) -> str:
    """How long the data of `purpose` is kept, from the retention schedule (RetentionSettings,
    docs/RETENTION.md) as the services enforce it."""
    s = schedule or RetentionSettings()
    log = f"toegangslog {s.access_log_months} maanden"
    markers = (
        "markeringen tot de bron ze verwijdert, en uiterlijk "
        f"{s.marker_lapse_days} dagen nadat het plan van aanpak is afgesloten; {log}"
    )
    return {
        INTAKE: markers,
        AFDOENING: markers,
        "triage": markers,
        TERUGKOPPELING: (
            f"beslissingen {s.decision_months} maanden, terugkoppelingsitems "
            f"{s.delivery_months} maanden na bevestiging, instroom {s.inflow_months} maanden, "
            f"sporen van een technisch sepot {s.purged_case_months} maanden; {log}"
        ),
        "advies-op-aanvraag": (
            f"adviesaanvragen {s.advice_request_months} maanden na antwoord of intrekking; {log}"
        ),
        MONITORING: f"alleen tellingen, uit gegevens met hun eigen termijn; {log}",
    }.get(purpose, log)


def _kind(field: str) -> str:
    if field in THAT_FIELDS:
        return "dat"
    if field in WHY_FIELDS:
        return "waarom"
    if field in FEEDBACK_FIELDS:
        return "terugkoppeling"
    if field in PURPOSE_ONLY_FIELDS.values():
        return "geen persoonsgegevens van betrokkenen" if field == "aggregates" else "toegangslog"
    return "?"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _scope(covenant: Covenant, grant: Grant, houses: Mapping[str, House]) -> str:
    if grant.houses is not None:
        return ", ".join(houses[h].display_name for h in sorted(grant.houses))
    if grant.regions is not None:
        return "regio's " + ", ".join(sorted(grant.regions))
    return "heel Nederland" if covenant.region == "national" else f"regio {covenant.region}"


def register_markdown(covenants: CovenantSet, houses: Mapping[str, House]) -> str:
    """Every purpose, and under it every grant of every covenant that grants it."""
    lines = [
        "# Verwerkingsregister Baken",
        "",
        "Gegenereerd uit de convenanten en het partijenregister (`covenants/`) met "
        "`baken register`; niet met de hand bewerken. Betrokkenen: verdachten die bij ZSM "
        "instromen en personen die een Veiligheidshuis markeert. Baken verwerkt van hen geen "
        "BSN of naam, alleen pseudoniemen (sleutel-HMAC of OPRF), en per Veiligheidshuis de "
        "velden hieronder.",
        "",
        "## Convenanten",
        "",
        _row(("convenant", "naam", "geldig", "regio", "grondslag")),
        _row(("---",) * 5),
    ]
    for c in sorted(covenants.covenants, key=lambda c: (c.id, c.version)):
        lines.append(
            _row(
                (
                    c.ref,
                    c.name,
                    f"{c.valid_from} t/m {c.valid_until}",
                    c.region,
                    c.basis or "niet in het convenant vastgelegd",
                )
            )
        )
    for purpose in PURPOSES:
        retention = retention_period(purpose)
        lines += [
            "",
            f"## Doel: {purpose}",
            "",
            f"{_sentence(PURPOSE_TEXT.get(purpose, purpose))}. Bewaartermijn: {retention}.",
            "",
        ]
        granted = [(c, g) for c in covenants.covenants for g in c.grants if purpose in g.purposes]
        if not granted:
            lines.append("Geen convenant verleent dit doel: niemand verwerkt ervoor.")
            continue
        lines += [
            _row(("convenant", "geldig", "toekenning", "partijen (rol)", "gegevens", "bereik")),
            _row(("---",) * 6),
        ]
        for c, g in sorted(granted, key=lambda cg: (cg[0].id, cg[0].version, cg[1].id)):
            parties = sorted(
                f"{covenants.parties[p].organisation} ({p}, {covenants.parties[p].role})"
                for p in c.parties
                if covenants.parties[p].role in g.roles
            )
            fields = ", ".join(f"{f} ({_kind(f)})" for f in sorted(g.fields))
            grant = f"{g.id}: {g.note}" if g.note else g.id
            lines.append(
                _row(
                    (
                        c.ref,
                        f"{c.valid_from} t/m {c.valid_until}",
                        grant,
                        "; ".join(parties) or "geen partij met die rol",
                        fields,
                        _scope(c, g, houses),
                    )
                )
            )
    return "\n".join(lines) + "\n"
