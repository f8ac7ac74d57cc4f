"""Covenants as code: the party register and one file per covenant under covenants/.

A covenant (convenant) names its parties, its region (or `national`), when it is in force, and
its grants: which roles may see which fields for which purposes, optionally limited to some of
the region's houses. Files are checked when a service starts; the first error stops it with the
file and line. The format is documented in covenants/README.md.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baken.houses import House, load_houses
from baken.pki import ROLES, Identity
from baken.purposes import AUDIT, INTAKE, INZAGE, MONITORING, PURPOSES, TERUGKOPPELING
from baken.registry.v1 import marker_pb2

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "covenants"
PARTIES_FILE = "parties.toml"
NATIONAL = "national"

# Purposes a lookup may name without a ZSM case reference.
WITHOUT_CASE = frozenset({INTAKE, MONITORING, AUDIT})
# The access log (purpose audit) is read by the privacy officer alone.
AUDIT_ROLE = "privacy-auditor"
assert AUDIT_ROLE in ROLES
# A data subject's request of access (inzage) tells him which houses mark him: that only.
INZAGE_FIELDS = frozenset({"house", "region"})

AT_FIELDS = tuple(f.name for f in marker_pb2.AtInformation.DESCRIPTOR.fields)
# dat-informatie: the signal that, and where, a person is known.
THAT_FIELDS = (
    "house",
    "region",
    "contact",
    "target_group",
    "plan_status",
    "mark_date",
    "source_record",
    # Only whether the house's advice is CURRENT, AGED, EXPIRED or absent: never its text or date.
    "advice_freshness",
)
# waarom-informatie: the advice and the A&T fields.
WHY_FIELDS = ("advice", *(f"at.{name}" for name in AT_FIELDS))
MARKER_FIELDS = (*THAT_FIELDS, *WHY_FIELDS)
# What a Safety House may receive back about its person from ZSM, for purpose terugkoppeling
# only (covenants/README.md, "Feedback fields").
FEEDBACK_FIELDS = (
    "feedback.flowed_in",
    "feedback.decision",
    "feedback.deviation_reason",
    "feedback.probation_report",
    "feedback.triage",
    "feedback.referral",
    "feedback.advice_request",
    "feedback.match",
    # An enrichment request about a person the house does not know, per triage criterion.
    "feedback.enrichment_request.youth",
    "feedback.enrichment_request.domestic_violence",
    "feedback.enrichment_request.high_impact_crime",
    "feedback.enrichment_request.repeat_offender",
)
# Not about one person: monitoring sees aggregates, audit the access log.
PURPOSE_ONLY_FIELDS: Mapping[str, str] = {MONITORING: "aggregates", AUDIT: "access-log"}
FIELDS = frozenset({*MARKER_FIELDS, *FEEDBACK_FIELDS, *PURPOSE_ONLY_FIELDS.values()})

# A party, covenant or grant id.
IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d|24:00"
_SHIFT = re.compile(rf"^(?:{_TIME})-(?:{_TIME})\Z")


class CovenantError(Exception):
    """A covenant or party file that cannot be used; the message starts with file:line."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


@dataclass(frozen=True, slots=True)
class Formats:
    """What a party's users type, as the register spells it: the ZSM case reference and the
    user id. Each is matched whole (re.fullmatch)."""

    case_reference: re.Pattern[str]
    user: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Party:
    """A party of the register; its certificate carries id (CN), organisation (O), role (OU)."""

    id: str
    organisation: str
    role: str
    region: str | None = None
    # Adapters: the source system whose markers they may write ("gcos", "amazone", "pga").
    source_system: str | None = None
    # When this desk is staffed, "HH:MM-HH:MM" in Amsterdam time (may wrap past midnight);
    # look-ups without a case reference outside it are flagged as anomalies.
    shift: str | None = None
    # Its case references and user ids: the register's [formats], or the party's own.
    formats: Formats = field(kw_only=True)

    @property
    def identity(self) -> Identity:
        """What its certificate must say."""
        return Identity(self.id, self.organisation, self.role)


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    roles: frozenset[str]
    purposes: frozenset[str]
    fields: frozenset[str]
    # A narrower scope than the covenant's region; None means the whole region (or country).
    houses: frozenset[str] | None
    regions: frozenset[str] | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Covenant:
    id: str
    version: int
    name: str
    region: str  # a region id, or NATIONAL
    valid_from: dt.date
    valid_until: dt.date  # inclusive
    parties: frozenset[str]
    grants: tuple[Grant, ...]
    path: Path
    # The legal basis, as the covenant names it (the register of processing shows it).
    basis: str = ""

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"

    def in_force(self, day: dt.date) -> bool:
        return self.valid_from <= day <= self.valid_until

    def covers(self, grant: Grant, house: House) -> bool:
        """Whether `grant` of this covenant reaches markers of `house`."""
        if grant.houses is not None:
            return house.id in grant.houses
        if grant.regions is not None:
            return house.region in grant.regions
        return self.region == NATIONAL or house.region == self.region


@dataclass(frozen=True, slots=True)
class CovenantSet:
    parties: Mapping[str, Party]
    covenants: tuple[Covenant, ...]
    # The register's own [formats], for a caller it does not know (refused after the check).
    formats: Formats

    def formats_of(self, party_id: str) -> Formats:
        """The formats of the party's case references and user ids."""
        party = self.parties.get(party_id)
        return party.formats if party is not None else self.formats

    def of_party(self, party_id: str) -> tuple[Covenant, ...]:
        return tuple(c for c in self.covenants if party_id in c.parties)


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")


class _Lines:
    """Finds the line a key or value stands on, for error messages (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()

    def _block(self, table: str | None, index: int) -> tuple[int, int]:
        """0-based [start, end) of the index-th [[table]] (or the top level before any table)."""
        headers = [i for i, line in enumerate(self._lines) if _HEADER.match(line)]
        if table is None:
            return 0, headers[0] if headers else len(self._lines)
        own = [i for i in headers if _HEADER.match(self._lines[i])[1] == table]  # type: ignore[index]
        if index >= len(own):
            return 0, len(self._lines)
        start = own[index]
        end = next((i for i in headers if i > start), len(self._lines))
        return start, end

    def of(self, table: str | None, index: int, key: str, value: str | None = None) -> int:
        start, end = self._block(table, index)
        if table is None:  # a table key names its own header, wherever it stands
            for i, line in enumerate(self._lines):
                header = _HEADER.match(line)
                if header and header[1].split(".")[0] == key:
                    return i + 1
        key_line = re.compile(rf"^\s*{re.escape(key)}\s*[=.]")
        for i in range(start, end):
            if key_line.match(self._lines[i]):
                if value is None:
                    return i + 1
                for j in range(i, end):
                    if f'"{value}"' in self._lines[j]:
                        return j + 1
                return i + 1
        return start + 1


class _Reader:
    """Typed access to one parsed table, raising CovenantError at the right line."""

    def __init__(
        self, path: Path, lines: _Lines, table: str | None, index: int, data: Mapping[str, Any]
    ) -> None:
        self.path, self.lines, self.table, self.index, self.data = path, lines, table, index, data

    def error(self, key: str, message: str, value: str | None = None) -> CovenantError:
        return CovenantError(self.path, self.lines.of(self.table, self.index, key, value), message)

    def keys(self, required: Iterable[str], optional: Iterable[str] = ()) -> None:
        allowed = {*required, *optional}
        for key in self.data:
            if key not in allowed:
                where = f"[[{self.table}]]" if self.table else "the covenant"
                raise self.error(key, f"unknown key {key!r} in {where}")
        for key in required:
            if key not in self.data:
                raise CovenantError(
                    self.path,
                    self.lines.of(self.table, self.index, key),
                    f"missing key {key!r}",
                )

    def text(self, key: str, *, pattern: re.Pattern[str] | None = None) -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"{key} must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"{key} {value!r} is not a valid id (lowercase, digits, '-')")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if key in self.data else None

    def day(self, key: str) -> dt.date:
        value = self.data[key]
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise self.error(key, f"{key} must be a date (YYYY-MM-DD, unquoted)")
        return value

    def words(self, key: str, known: Iterable[str], what: str) -> frozenset[str]:
        value = self.data[key]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"{key} must be a non-empty list")
        known = frozenset(known)
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"{key} must list strings")
            if item not in known:
                raise self.error(key, f"unknown {what} {item!r}", str(item))
        return frozenset(value)


def _parse(path: Path) -> tuple[dict[str, Any], _Lines]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CovenantError(path, 1, f"cannot read ({type(exc).__name__})") from None
    try:
        return tomllib.loads(text), _Lines(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))
        raise CovenantError(path, line, f"not valid TOML: {str(exc).split(' (at')[0]}") from None


# What no format may admit: nothing, a blank, a single character.
_NOT_A_FORMAT = ("", " ", "x", "0")


def _format(r: _Reader, key: str, default: re.Pattern[str] | None) -> re.Pattern[str]:
    if key not in r.data:
        assert default is not None
        return default
    text = r.text(key)
    try:
        pattern = re.compile(text)
    except re.error:
        raise r.error(key, f"{key} is not a regular expression") from None
    if any(pattern.fullmatch(sample) for sample in _NOT_A_FORMAT):
        raise r.error(key, f"{key} admits an empty, blank or one-character value")
    return pattern


def _formats(r: _Reader, defaults: Formats | None = None) -> Formats:
    return Formats(
        _format(r, "case_reference", defaults.case_reference if defaults else None),
        _format(r, "user", defaults.user if defaults else None),
    )


def load_parties(path: Path, regions: Iterable[str]) -> dict[str, Party]:
    return _load_register(path, regions)[0]


def _load_register(path: Path, regions: Iterable[str]) -> tuple[dict[str, Party], Formats]:
    """The parties of the register and its [formats]."""
    data, lines = _parse(path)
    top = _Reader(path, lines, None, 0, data)
    top.keys(["formats", "party"])
    if not isinstance(data["formats"], dict):
        raise top.error("formats", "use a [formats] table")
    formats = _Reader(path, lines, "formats", 0, data["formats"])
    formats.keys(["case_reference", "user"])
    defaults = _formats(formats)
    if not isinstance(data["party"], list):
        raise top.error("party", "use [[party]] tables")
    parties: dict[str, Party] = {}
    for i, entry in enumerate(data["party"]):
        r = _Reader(path, lines, "party", i, entry)
        r.keys(
            ["id", "organisation", "role"],
            ["region", "source_system", "shift", "case_reference", "user"],
        )
        party = Party(
            id=r.text("id", pattern=IDENTIFIER),
            organisation=r.text("organisation"),
            role=r.text("role"),
            region=r.optional_text("region"),
            source_system=r.optional_text("source_system"),
            shift=r.optional_text("shift"),
            formats=_formats(r, defaults),
        )
        if party.role not in ROLES:
            raise r.error("role", f"unknown role {party.role!r}")
        if party.region is not None and party.region not in regions:
            raise r.error("region", f"unknown region {party.region!r}")
        if party.source_system not in (None, "gcos", "amazone", "pga"):
            raise r.error("source_system", "source_system must be gcos, amazone or pga")
        if (party.role == "source-adapter") != (party.source_system is not None):
            raise r.error("role", "a source-adapter, and only it, names its source_system")
        if party.shift is not None and not _SHIFT.match(party.shift):
            raise r.error("shift", "shift must be HH:MM-HH:MM")
        if party.id in parties:
            raise r.error("id", f"party {party.id!r} is listed twice")
        parties[party.id] = party
    return parties, defaults


def identities(directory: Path = DEFAULT_DIR) -> list[Identity]:
    """What the certificates of the register's parties must say (for `baken pki init`)."""
    regions = {h.region for h in load_houses().values()}
    return [p.identity for p in load_parties(directory / PARTIES_FILE, regions).values()]


def load_covenant(
    path: Path, parties: Mapping[str, Party], houses: Mapping[str, House]
) -> Covenant:
    data, lines = _parse(path)
    top = _Reader(path, lines, None, 0, data)
    top.keys(
        ["id", "version", "name", "region", "valid_from", "valid_until", "parties", "grant"],
        ["description", "basis"],
    )
    regions = {h.region for h in houses.values()}
    region = top.text("region")
    if region != NATIONAL and region not in regions:
        raise top.error("region", f"unknown region {region!r} (or use {NATIONAL!r})")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise top.error("version", "version must be a positive integer")
    valid_from, valid_until = top.day("valid_from"), top.day("valid_until")
    if valid_until < valid_from:
        raise top.error("valid_until", "valid_until lies before valid_from")
    members = top.words("parties", parties, "party")
    if not isinstance(data["grant"], list):
        raise top.error("grant", "use [[grant]] tables")
    grants: list[Grant] = []
    for i, entry in enumerate(data["grant"]):
        grants.append(_grant(_Reader(path, lines, "grant", i, entry), region, houses, regions))
        if grants[-1].id in {g.id for g in grants[:-1]}:
            raise _Reader(path, lines, "grant", i, entry).error("id", "grant id used twice")
    return Covenant(
        id=top.text("id", pattern=IDENTIFIER),
        version=version,
        name=top.text("name"),
        region=region,
        valid_from=valid_from,
        valid_until=valid_until,
        parties=members,
        grants=tuple(grants),
        path=path,
        basis=top.optional_text("basis") or "",
    )


def _grant(r: _Reader, region: str, houses: Mapping[str, House], regions: set[str]) -> Grant:
    r.keys(["id", "roles", "purposes", "fields"], ["houses", "regions", "note"])
    grant_id = r.text("id", pattern=IDENTIFIER)
    roles = r.words("roles", ROLES, "role")
    purposes = r.words("purposes", PURPOSES, "purpose")
    fields = r.words("fields", FIELDS, "field")
    for purpose, only in PURPOSE_ONLY_FIELDS.items():
        if (purpose in purposes or only in fields) and (purposes != {purpose} or fields != {only}):
            raise r.error("fields", f"purpose {purpose!r} goes alone, with the one field {only!r}")
    feedback = [f for f in r.data["fields"] if f in FEEDBACK_FIELDS]
    if feedback and purposes != {TERUGKOPPELING}:
        message = f"field {feedback[0]!r} is only for purpose {TERUGKOPPELING}"
        raise r.error("fields", message, feedback[0])
    others = sorted(roles - {AUDIT_ROLE})
    for own in (AUDIT, INZAGE):
        if own in purposes and others:
            message = f"purpose {own!r} is for the role {AUDIT_ROLE!r} only, not {others[0]!r}"
            raise r.error("roles", message, others[0])
    beyond = sorted(fields - INZAGE_FIELDS)
    if INZAGE in purposes and (purposes != {INZAGE} or beyond):
        message = f"purpose {INZAGE!r} goes alone, with the fields house and region only"
        raise r.error("fields", message, *beyond[:1])
    scoped_houses = r.words("houses", houses, "house") if "houses" in r.data else None
    scoped_regions = r.words("regions", regions, "region") if "regions" in r.data else None
    if region != NATIONAL:
        if scoped_regions is not None:
            raise r.error("regions", "only a national covenant limits grants by region")
        for house_id in scoped_houses or ():
            if houses[house_id].region != region:
                raise r.error("houses", f"house {house_id!r} lies outside {region}", house_id)
    note = r.optional_text("note") or ""
    return Grant(grant_id, roles, purposes, fields, scoped_houses, scoped_regions, note)


def load(
    directory: Path, houses: Mapping[str, House], *, parties_file: Path | None = None
) -> CovenantSet:
    """The party register and every *.toml covenant in `directory`, checked."""
    regions = {h.region for h in houses.values()}
    register = parties_file or directory / PARTIES_FILE
    parties, formats = _load_register(register, regions)
    paths = sorted(
        p
        for p in directory.glob("*.toml")
        if p.name != PARTIES_FILE and p.resolve() != register.resolve()
    )
    if not paths:
        raise CovenantError(directory, 0, "no covenant files (*.toml)")
    covenants = [load_covenant(p, parties, houses) for p in paths]
    _check_overlaps(covenants)
    return CovenantSet(parties, tuple(covenants), formats)


def _check_overlaps(covenants: Sequence[Covenant]) -> None:
    """Versions of one covenant are distinct, follow each other in time, and never overlap."""
    by_id: dict[str, list[Covenant]] = {}
    for c in covenants:
        by_id.setdefault(c.id, []).append(c)
    for versions in by_id.values():
        versions.sort(key=lambda c: (c.valid_from, c.version))
        seen: dict[int, Covenant] = {}
        for c in versions:
            if c.version in seen:
                raise CovenantError(
                    c.path,
                    _line(c.path, "version"),
                    f"version {c.version} of {c.id!r} is also in {seen[c.version].path.name}",
                )
            seen[c.version] = c
        for earlier, later in itertools.pairwise(versions):
            if later.version < earlier.version:
                raise CovenantError(
                    later.path,
                    _line(later.path, "version"),
                    f"version {later.version} starts after version {earlier.version} "
                    f"({earlier.path.name}): versions must grow over time",
                )
            if later.valid_from <= earlier.valid_until:
                raise CovenantError(
                    later.path,
                    _line(later.path, "valid_from"),
                    f"in force from {later.valid_from}, while {earlier.ref} in {earlier.path.name} "
                    f"runs until {earlier.valid_until}: validity overlaps",
                )


def _line(path: Path, key: str) -> int:
    return _Lines(path.read_text("utf-8")).of(None, 0, key)


# The roles of the ZSM desks: their lookups signal the marking houses.
ZSM_ROLES = frozenset({"zsm-officier", "kpc", "police", "probation", "rvdk", "victim-support"})


def zsm_locations(parties: Mapping[str, Party], houses: Mapping[str, House]) -> dict[str, str]:
    """Party id -> its ZSM location ("ZSM Rotterdam-Rijnmond"), for every ZSM desk of the
    register: a party with a region and a ZSM role."""
    regions = {h.region: h.region_display_name for h in houses.values()}
    return {
        p.id: f"ZSM {regions[p.region]}"
        for p in parties.values()
        if p.role in ZSM_ROLES and p.region in regions
    }


def kpc_desks(parties: Mapping[str, Party], houses: Mapping[str, House]) -> dict[str, Party]:
    """Region -> the KPC'er's party of its ZSM desk (the first of the register), whose
    certificate the desk's inflow adapter calls with."""
    regions = {h.region for h in houses.values()}
    desks: dict[str, Party] = {}
    for p in parties.values():
        if p.role == "kpc" and p.region in regions:
            desks.setdefault(p.region, p)
    return desks
