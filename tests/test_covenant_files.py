"""The covenant files and the party register: the shipped ones load, and a broken file stops the
load with a CovenantError naming that file and the line to fix.

Broken files are made from the small valid templates below, one change each, and written into a
temporary directory; the shipped files are never touched.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from baken.houses import House, load_houses
from baken.pki import Identity
from services.common.covenants import (
    DEFAULT_DIR,
    FEEDBACK_FIELDS,
    NATIONAL,
    PARTIES_FILE,
    CovenantError,
    identities,
    load,
)

SHIPPED_PARTIES = DEFAULT_DIR / PARTIES_FILE


@pytest.fixture(scope="module")
def houses() -> Mapping[str, House]:
    return load_houses()


# --- The shipped files --------------------------------------------------------------------------


def test_shipped_covenants_and_party_register_load(houses: Mapping[str, House]) -> None:
    covenants = load(DEFAULT_DIR, houses)

    assert sorted(c.ref for c in covenants.covenants) == [
        "inzage@v1",
        "midden-nederland@v1",
        "national@v1",
        "national@v2",
        "oost-nederland@v1",
        "rotterdam-rijnmond@v1",
        "rotterdam-rijnmond@v2",
        "zeeland-west-brabant@v1",
    ]
    assert {c.path.name for c in covenants.covenants} == {
        "inzage.toml",
        "national.toml",
        "national-2026.toml",
        "midden-nederland.toml",
        "oost-nederland.toml",
        "zeeland-west-brabant.toml",
        "rotterdam-rijnmond.toml",
        "rotterdam-rijnmond-2024.toml",
    }


def test_shipped_regional_covenants_cover_the_four_regions_and_one_national(
    houses: Mapping[str, House],
) -> None:
    covenants = load(DEFAULT_DIR, houses).covenants

    assert {c.region for c in covenants} == {h.region for h in houses.values()} | {NATIONAL}
    assert [c.ref for c in covenants if c.region == NATIONAL] == [
        "inzage@v1",
        "national@v1",
        "national@v2",
    ]


def test_every_party_of_a_shipped_covenant_is_in_the_register(
    houses: Mapping[str, House],
) -> None:
    covenants = load(DEFAULT_DIR, houses)

    for covenant in covenants.covenants:
        assert covenant.parties <= covenants.parties.keys(), covenant.ref


def test_shipped_rotterdam_versions_follow_each_other_without_gap_or_overlap(
    houses: Mapping[str, House],
) -> None:
    by_ref = {c.ref: c for c in load(DEFAULT_DIR, houses).covenants}
    v1, v2 = by_ref["rotterdam-rijnmond@v1"], by_ref["rotterdam-rijnmond@v2"]

    assert v1.valid_until + dt.timedelta(days=1) == v2.valid_from
    assert v1.path.name == "rotterdam-rijnmond-2024.toml"


def test_shipped_national_versions_follow_each_other_and_version_2_only_adds_the_advice(
    houses: Mapping[str, House],
) -> None:
    by_ref = {c.ref: c for c in load(DEFAULT_DIR, houses).covenants}
    v1, v2 = by_ref["national@v1"], by_ref["national@v2"]

    assert v1.valid_until + dt.timedelta(days=1) == v2.valid_from == dt.date(2026, 12, 1)
    assert (v1.path.name, v2.path.name) == ("national-2026.toml", "national.toml")
    assert v1.parties == v2.parties
    old = {g.id: g for g in v1.grants}
    assert {g.id: g for g in v2.grants if g.id in old} == old
    added = {(g.id, *g.roles, *g.purposes): g.fields for g in v2.grants if g.id not in old}
    # The advice, and nothing else of the why: for the OvJ's decision and for the KPC'er who
    # asked a house for advice (with the that-signal, without which the marker is withheld).
    assert added == {
        ("advies-bij-afdoening", "zsm-officier", "afdoeningsbeslissing"): {"advice"},
        ("advies-op-aanvraag-antwoord", "kpc", "advies-op-aanvraag"): {
            "house",
            "region",
            "contact",
            "target_group",
            "advice",
        },
    }


def test_shipped_party_register_gives_each_party_its_certificate_identity(
    houses: Mapping[str, House],
) -> None:
    parties = load(DEFAULT_DIR, houses).parties

    kpc = parties["zsm-midden-nederland-kpc"]
    assert (kpc.identity.id, kpc.identity.organisation, kpc.identity.role) == (
        "zsm-midden-nederland-kpc",
        "OM ZSM Midden-Nederland",
        "kpc",
    )
    assert {p.source_system for p in parties.values() if p.role == "source-adapter"} == {
        "gcos",
        "amazone",
        "pga",
    }


REGIONS = ("midden-nederland", "oost-nederland", "zeeland-west-brabant", "rotterdam-rijnmond")


NOT_ENRICHED = {
    "feedback.enrichment_request.youth",
    "feedback.enrichment_request.high_impact_crime",
    "feedback.enrichment_request.repeat_offender",
}


@pytest.mark.parametrize("region", REGIONS)
def test_each_regional_covenant_grants_its_process_director_the_feedback_fields(
    houses: Mapping[str, House], region: str
) -> None:
    covenants = load(DEFAULT_DIR, houses)
    [covenant] = [c for c in covenants.covenants if c.path.name == f"{region}.toml"]
    [grant] = [g for g in covenant.grants if g.id == "terugkoppeling-aan-veiligheidshuis"]

    assert f"vh-{region}-procesregie" in covenant.parties
    assert (grant.roles, grant.purposes) == ({"vh-process-director"}, {"terugkoppeling"})
    # Zeeland-West-Brabant's houses take the triage outcome through the casusoverleg.
    left_out = {"feedback.triage"} if region == "zeeland-west-brabant" else set()
    # Enrichment requests only for domestic violence, the group the report names.
    left_out |= NOT_ENRICHED
    assert grant.fields == set(FEEDBACK_FIELDS) - left_out


def test_the_feedback_service_is_a_party_with_a_certificate_and_routes_nationally(
    houses: Mapping[str, House],
) -> None:
    covenants = load(DEFAULT_DIR, houses)

    assert covenants.parties["feedback"].identity == Identity("feedback", "Baken", "service")
    # `baken pki init` issues a certificate for every party of the register.
    assert Identity("feedback", "Baken", "service") in identities()
    for national in (c for c in covenants.covenants if c.id == NATIONAL):
        [grant] = [g for g in national.grants if g.id == "terugkoppeling-routering"]
        assert "feedback" in national.parties
        assert grant.roles == {"service"} and "terugkoppeling" in grant.purposes
        assert grant.fields == {"house", "source_record", "advice_freshness"}


# --- Templates ------------------------------------------------------------------------------------

# A valid regional covenant; the parties are in the shipped register.
REGIONAL = """\
# A small regional covenant for the tests.
id = "test-midden"
version = 1
name = "Testconvenant Midden-Nederland"
region = "midden-nederland"
valid_from = 2026-01-01
valid_until = 2027-12-31
parties = [
    "zsm-midden-nederland-kpc",
    "zsm-midden-nederland-ovj",
]

[[grant]]
id = "kpc-intake"
roles = ["kpc"]
purposes = ["intake-en-selectie"]
fields = ["house", "region", "contact", "target_group", "advice"]

[[grant]]
id = "ovj-afdoening"
roles = ["zsm-officier"]
purposes = ["afdoeningsbeslissing"]
fields = [
    "house",
    "advice",
    "at.open_cases",
]
houses = ["vh-almere", "vh-regio-utrecht-utrecht"]

[[grant]]
id = "monitoring"
roles = ["kpc"]
purposes = ["monitoring"]
fields = ["aggregates"]
"""

# A valid national covenant: grants may be narrowed to regions or houses of any region.
NATIONAL_TEMPLATE = """\
id = "test-national"
version = 1
name = "Testregeling landelijk"
region = "national"
valid_from = 2026-01-01
valid_until = 2028-12-31
parties = ["zsm-oost-nederland-kpc", "privacy-auditor"]

[[grant]]
id = "dat-signaal"
roles = ["kpc"]
purposes = ["intake-en-selectie"]
fields = ["house", "region"]
regions = ["oost-nederland", "midden-nederland"]

[[grant]]
id = "twee-huizen"
roles = ["kpc"]
purposes = ["afdoeningsbeslissing"]
fields = ["contact"]
houses = ["vh-breda", "vh-twente"]

[[grant]]
id = "toezicht"
roles = ["privacy-auditor"]
purposes = ["audit"]
fields = ["access-log"]
"""

# A valid party register with the parties REGIONAL names, and one source adapter.
PARTIES = """\
[formats]
case_reference = '[0-9]{2}-[0-9]{1,6}-[0-9]{2}'
user = '[a-z]{2,8}-[0-9]{4}'

[[party]]
id = "zsm-midden-nederland-kpc"
organisation = "OM ZSM Midden-Nederland"
role = "kpc"
region = "midden-nederland"
shift = "07:00-23:00"

[[party]]
id = "zsm-midden-nederland-ovj"
organisation = "OM ZSM Midden-Nederland"
role = "zsm-officier"
region = "midden-nederland"
shift = "22:00-06:00"

[[party]]
id = "adapter-gcos"
organisation = "Veiligheidshuizen GCOS-koppeling"
role = "source-adapter"
source_system = "gcos"
"""


def change(template: str, old: str, new: str) -> str:
    """The template with its one occurrence of `old` replaced."""
    assert template.count(old) == 1, f"{old!r} must occur once in the template"
    return template.replace(old, new)


def version(template: str, number: int, valid_from: str, valid_until: str) -> str:
    """The template as another version with another validity."""
    return change(
        change(template, "version = 1", f"version = {number}"),
        "valid_from = 2026-01-01\nvalid_until = 2027-12-31",
        f"valid_from = {valid_from}\nvalid_until = {valid_until}",
    )


@dataclass(frozen=True)
class Line:
    """The line of a file whose stripped text is `text` (its `nth` such line)."""

    text: str
    nth: int = 1

    def number_in(self, content: str) -> int:
        numbers = [i for i, line in enumerate(content.splitlines(), 1) if line.strip() == self.text]
        assert len(numbers) >= self.nth, f"no line {self.text!r} (#{self.nth}) in the file"
        return numbers[self.nth - 1]


@dataclass(frozen=True)
class Broken:
    """Files to write (the shipped register is copied when none is given); where the load must
    stop: the file and its line; and a word from the file that the message must name."""

    files: Mapping[str, str]
    at: str
    line: Line | int
    mentions: str = ""

    def line_number(self) -> int:
        return self.line if isinstance(self.line, int) else self.line.number_in(self.files[self.at])


def write(directory: Path, files: Mapping[str, str]) -> None:
    if PARTIES_FILE not in files:
        shutil.copy(SHIPPED_PARTIES, directory / PARTIES_FILE)
    for name, content in files.items():
        (directory / name).write_text(content, "utf-8")


def assert_stops_at(error: CovenantError, path: Path, line: int) -> None:
    assert (error.path, error.line) == (path, line)
    assert str(error).startswith(f"{path}:{line}: ")


def _last_line(new: str) -> Line:
    return Line(new.splitlines()[-1].strip())


def regional(old: str, new: str, *, line: Line | int | None = None, mentions: str = "") -> Broken:
    """REGIONAL with one change; by default the load stops at the last line `new` wrote."""
    files = {"regional.toml": change(REGIONAL, old, new)}
    return Broken(files, "regional.toml", line or _last_line(new), mentions)


def national(old: str, new: str, *, mentions: str = "") -> Broken:
    """NATIONAL_TEMPLATE with one change; the load stops at the last line `new` wrote."""
    files = {"national.toml": change(NATIONAL_TEMPLATE, old, new)}
    return Broken(files, "national.toml", _last_line(new), mentions)


def register(old: str, new: str, *, line: Line | None = None, mentions: str = "") -> Broken:
    """PARTIES with one change, next to REGIONAL; by default the load stops in the register at
    the last line `new` wrote."""
    files = {PARTIES_FILE: change(PARTIES, old, new), "regional.toml": REGIONAL}
    return Broken(files, PARTIES_FILE, line or _last_line(new), mentions)


def load_stops_at(directory: Path, houses: Mapping[str, House], case: Broken) -> None:
    write(directory, case.files)

    with pytest.raises(CovenantError) as caught:
        load(directory, houses)

    assert_stops_at(caught.value, directory / case.at, case.line_number())
    assert case.mentions in str(caught.value)


# --- Templates are valid --------------------------------------------------------------------------


def test_templates_load(tmp_path: Path, houses: Mapping[str, House]) -> None:
    write(tmp_path, {PARTIES_FILE: PARTIES, "regional.toml": REGIONAL})
    assert [c.ref for c in load(tmp_path, houses).covenants] == ["test-midden@v1"]

    national = tmp_path / "national"
    national.mkdir()
    write(national, {"national.toml": NATIONAL_TEMPLATE})
    [covenant] = load(national, houses).covenants
    assert covenant.region == NATIONAL
    assert [g.regions for g in covenant.grants] == [
        frozenset({"oost-nederland", "midden-nederland"}),
        None,
        None,
    ]


FEEDBACK_GRANT = """
[[grant]]
id = "terugkoppeling"
roles = ["kpc"]
purposes = ["terugkoppeling"]
fields = ["house", "advice_freshness", "feedback.decision", "feedback.triage"]
"""


def test_feedback_fields_load_in_a_grant_for_terugkoppeling_alone(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    write(tmp_path, {PARTIES_FILE: PARTIES, "regional.toml": REGIONAL + FEEDBACK_GRANT})

    [covenant] = load(tmp_path, houses).covenants

    assert covenant.grants[-1].fields == {
        "house",
        "advice_freshness",
        "feedback.decision",
        "feedback.triage",
    }


def test_versions_that_follow_each_other_load(tmp_path: Path, houses: Mapping[str, House]) -> None:
    write(
        tmp_path,
        {
            "a.toml": version(REGIONAL, 1, "2024-01-01", "2025-12-31"),
            "b.toml": version(REGIONAL, 2, "2026-01-01", "2026-01-01"),
            "c.toml": version(REGIONAL, 3, "2026-01-02", "2027-12-31"),
        },
    )
    refs = [c.ref for c in load(tmp_path, houses).covenants]
    assert refs == ["test-midden@v1", "test-midden@v2", "test-midden@v3"]


def test_party_register_may_live_outside_the_covenant_directory(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    covenant_dir = tmp_path / "covenants"
    covenant_dir.mkdir()
    (covenant_dir / "regional.toml").write_text(REGIONAL, "utf-8")
    (tmp_path / "register.toml").write_text(PARTIES, "utf-8")

    covenants = load(covenant_dir, houses, parties_file=tmp_path / "register.toml")

    assert set(covenants.parties) == {
        "zsm-midden-nederland-kpc",
        "zsm-midden-nederland-ovj",
        "adapter-gcos",
    }


# --- Broken covenant files ------------------------------------------------------------------------

BROKEN_COVENANTS = [
    # TOML syntax: the line tomllib reports.
    pytest.param(
        regional('name = "Testconvenant Midden-Nederland"', 'name = "Testconvenant'),
        id="toml-unterminated-string",
    ),
    pytest.param(
        regional('roles = ["zsm-officier"]', 'roles ["zsm-officier"]'),
        id="toml-missing-equals-in-grant",
    ),
    pytest.param(
        regional("valid_until = 2027-12-31", "valid_until = 2027-12-31 2028"),
        id="toml-junk-after-a-value",
    ),
    pytest.param(
        regional('name = "Testconvenant Midden-Nederland"', 'id = "again"'),
        id="toml-key-given-twice",
    ),
    # Keys.
    pytest.param(
        regional(
            'region = "midden-nederland"',
            'region = "midden-nederland"\ncolour = "blue"',
            mentions="colour",
        ),
        id="unknown-top-level-key",
    ),
    pytest.param(
        regional("valid_until = 2027-12-31\n", "", line=1, mentions="valid_until"),
        id="missing-top-level-key-at-line-1",
    ),
    pytest.param(
        regional(
            'purposes = ["afdoeningsbeslissing"]\n',
            "",
            line=Line("[[grant]]", nth=2),
            mentions="purposes",
        ),
        id="missing-grant-key-at-its-grant-header",
    ),
    pytest.param(
        regional(
            'houses = ["vh-almere", "vh-regio-utrecht-utrecht"]',
            'house = ["vh-almere"]',
            mentions="house",
        ),
        id="unknown-key-in-a-grant",
    ),
    # Vocabulary and references.
    pytest.param(
        regional('"at.open_cases",', '"at.bsn",', mentions="at.bsn"),
        id="unknown-field-in-a-multi-line-list",
    ),
    pytest.param(
        regional(
            'fields = ["house", "region", "contact", "target_group", "advice"]',
            'fields = ["house", "name", "contact"]',
            mentions="name",
        ),
        id="unknown-field-in-a-one-line-list",
    ),
    pytest.param(
        regional(
            'roles = ["zsm-officier"]',
            'roles = ["zsm-officier", "burgemeester"]',
            mentions="burgemeester",
        ),
        id="unknown-role",
    ),
    pytest.param(
        regional(
            'purposes = ["afdoeningsbeslissing"]',
            'purposes = ["afdoeningsbeslissing", "opsporing"]',
            mentions="opsporing",
        ),
        id="unknown-purpose",
    ),
    pytest.param(
        regional('"zsm-midden-nederland-ovj",', '"zsm-utrecht-ovj",', mentions="zsm-utrecht-ovj"),
        id="unknown-party",
    ),
    pytest.param(
        regional(
            'region = "midden-nederland"', 'region = "noord-holland"', mentions="noord-holland"
        ),
        id="unknown-region",
    ),
    pytest.param(
        regional(
            'houses = ["vh-almere", "vh-regio-utrecht-utrecht"]',
            'houses = ["vh-almere", "vh-amsterdam"]',
            mentions="vh-amsterdam",
        ),
        id="unknown-house",
    ),
    pytest.param(
        national(
            'regions = ["oost-nederland", "midden-nederland"]',
            'regions = ["oost-nederland", "noord-holland"]',
            mentions="noord-holland",
        ),
        id="unknown-region-in-a-national-grant",
    ),
    # Scope.
    pytest.param(
        regional(
            'houses = ["vh-almere", "vh-regio-utrecht-utrecht"]',
            'houses = ["vh-almere", "vh-twente"]',
            mentions="vh-twente",
        ),
        id="house-outside-the-covenants-region",
    ),
    pytest.param(
        regional(
            'houses = ["vh-almere", "vh-regio-utrecht-utrecht"]',
            'regions = ["midden-nederland"]',
        ),
        id="regions-in-a-regional-covenant",
    ),
    # Values.
    pytest.param(regional("version = 1", "version = 0"), id="version-zero"),
    pytest.param(regional("version = 1", "version = -2"), id="version-negative"),
    pytest.param(regional("version = 1", 'version = "1"'), id="version-a-string"),
    pytest.param(regional("version = 1", "version = true"), id="version-a-boolean"),
    pytest.param(
        regional("valid_until = 2027-12-31", "valid_until = 2025-12-31"),
        id="valid-until-before-valid-from",
    ),
    pytest.param(
        regional("valid_from = 2026-01-01", 'valid_from = "2026-01-01"'), id="date-quoted"
    ),
    pytest.param(
        regional("valid_from = 2026-01-01", "valid_from = 2026-01-01T08:00:00"),
        id="date-with-a-time",
    ),
    pytest.param(regional('id = "test-midden"', 'id = "Test Midden"'), id="covenant-id-not-an-id"),
    pytest.param(
        regional(
            'id = "ovj-afdoening"', 'id = "kpc-intake"', line=Line('id = "kpc-intake"', nth=2)
        ),
        id="grant-id-used-twice",
    ),
    pytest.param(regional('roles = ["zsm-officier"]', "roles = []"), id="roles-empty"),
    pytest.param(
        regional(
            '    "zsm-midden-nederland-kpc",\n    "zsm-midden-nederland-ovj",\n',
            "",
            line=Line("parties = ["),
        ),
        id="parties-empty",
    ),
    pytest.param(regional("version = 1", "version = 1.0"), id="version-a-float"),
    # Purpose-only fields go alone.
    pytest.param(
        regional('fields = ["aggregates"]', 'fields = ["aggregates", "house"]'),
        id="monitoring-mixed-with-a-marker-field",
    ),
    pytest.param(
        regional(
            'purposes = ["monitoring"]',
            'purposes = ["monitoring", "intake-en-selectie"]',
            line=Line('fields = ["aggregates"]'),
        ),
        id="monitoring-mixed-with-a-marker-purpose",
    ),
    pytest.param(
        regional(
            'fields = ["house", "region", "contact", "target_group", "advice"]',
            'fields = ["house", "aggregates"]',
        ),
        id="aggregates-for-a-marker-purpose",
    ),
    pytest.param(
        national('fields = ["access-log"]', 'fields = ["access-log", "advice"]'),
        id="audit-mixed-with-a-marker-field",
    ),
    # Feedback fields are for terugkoppeling alone.
    pytest.param(
        regional(
            'fields = ["house", "region", "contact", "target_group", "advice"]',
            'fields = ["house", "feedback.decision"]',
            mentions="field 'feedback.decision' is only for purpose terugkoppeling",
        ),
        id="feedback-field-for-intake",
    ),
    pytest.param(
        Broken(
            {
                "regional.toml": change(
                    change(
                        REGIONAL,
                        'purposes = ["intake-en-selectie"]',
                        'purposes = ["intake-en-selectie", "terugkoppeling"]',
                    ),
                    'fields = ["house", "region", "contact", "target_group", "advice"]',
                    'fields = ["house", "region", "contact", "target_group", "feedback.triage"]',
                )
            },
            "regional.toml",
            Line('fields = ["house", "region", "contact", "target_group", "feedback.triage"]'),
            "field 'feedback.triage' is only for purpose terugkoppeling",
        ),
        id="feedback-field-for-terugkoppeling-and-another-purpose",
    ),
    pytest.param(
        regional(
            '    "at.open_cases",\n',
            '    "at.open_cases",\n    "feedback.flowed_in",\n',
            line=Line('"feedback.flowed_in",'),
            mentions="field 'feedback.flowed_in' is only for purpose terugkoppeling",
        ),
        id="feedback-field-in-a-multi-line-list",
    ),
    # The access log is for the privacy officer alone.
    pytest.param(
        national(
            'roles = ["privacy-auditor"]',
            'roles = ["privacy-auditor", "kpc"]',
            mentions="'kpc'",
        ),
        id="audit-granted-to-another-role",
    ),
    pytest.param(
        Broken(
            {
                "national.toml": change(
                    NATIONAL_TEMPLATE,
                    'roles = ["privacy-auditor"]',
                    'roles = [\n    "privacy-auditor",\n    "zsm-officier",\n]',
                )
            },
            "national.toml",
            Line('"zsm-officier",'),
            mentions="'zsm-officier'",
        ),
        id="audit-granted-to-another-role-in-a-multi-line-list",
    ),
    # A data subject's request of access: the privacy officer alone, house and region only.
    pytest.param(
        national(
            'purposes = ["audit"]\nfields = ["access-log"]',
            'purposes = ["inzage"]\nfields = ["house", "advice"]',
            mentions="house and region only",
        ),
        id="inzage-beyond-the-that-signal",
    ),
    pytest.param(
        Broken(
            {
                "national.toml": change(
                    NATIONAL_TEMPLATE,
                    'roles = ["privacy-auditor"]\npurposes = ["audit"]\nfields = ["access-log"]',
                    'roles = ["privacy-auditor", "police"]\npurposes = ["inzage"]\n'
                    'fields = ["house"]',
                )
            },
            "national.toml",
            Line('roles = ["privacy-auditor", "police"]'),
            mentions="'police'",
        ),
        id="inzage-granted-to-another-role",
    ),
    # Versions of one covenant.
    pytest.param(
        Broken(
            {
                "a-later.toml": version(REGIONAL, 2, "2027-01-01", "2028-12-31"),
                "b-earlier.toml": version(REGIONAL, 1, "2026-01-01", "2027-01-01"),
            },
            "a-later.toml",
            Line("valid_from = 2027-01-01"),
            mentions="test-midden@v1",
        ),
        id="overlap-names-the-later-file-sorted-first",
    ),
    pytest.param(
        Broken(
            {
                "a-earlier.toml": version(REGIONAL, 1, "2024-01-01", "2026-06-30"),
                "b-later.toml": version(REGIONAL, 2, "2026-01-01", "2027-12-31"),
            },
            "b-later.toml",
            Line("valid_from = 2026-01-01"),
            mentions="test-midden@v1",
        ),
        id="overlap-names-the-later-file-sorted-last",
    ),
    pytest.param(
        Broken(
            {
                "a.toml": version(REGIONAL, 1, "2024-01-01", "2025-12-31"),
                "b.toml": version(REGIONAL, 2, "2025-12-31", "2027-12-31"),
            },
            "b.toml",
            Line("valid_from = 2025-12-31"),
        ),
        id="overlap-of-one-day",
    ),
    pytest.param(
        Broken(
            {
                "a.toml": version(REGIONAL, 1, "2024-01-01", "2025-12-31"),
                "b.toml": version(REGIONAL, 1, "2026-01-01", "2027-12-31"),
            },
            "b.toml",
            Line("version = 1"),
        ),
        id="same-version-twice",
    ),
]


@pytest.mark.parametrize("case", BROKEN_COVENANTS)
def test_broken_covenant_file_stops_the_load_at_the_offending_line(
    tmp_path: Path, houses: Mapping[str, House], case: Broken
) -> None:
    load_stops_at(tmp_path, houses, case)


def test_same_version_twice_names_the_later_file(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    write(
        tmp_path,
        {
            "a.toml": version(REGIONAL, 1, "2026-01-01", "2027-12-31"),
            "b.toml": version(REGIONAL, 1, "2024-01-01", "2025-12-31"),
        },
    )

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    assert caught.value.path == tmp_path / "a.toml"
    assert str(caught.value).startswith(f"{tmp_path / 'a.toml'}:")


def test_no_covenant_files_stops_the_load_naming_the_directory(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    write(tmp_path, {})

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    # A directory has no lines; the code reports line 0.
    assert_stops_at(caught.value, tmp_path, 0)


def test_missing_party_register_stops_the_load_at_its_path(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    (tmp_path / "regional.toml").write_text(REGIONAL, "utf-8")

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    assert_stops_at(caught.value, tmp_path / PARTIES_FILE, 1)


# --- Broken party register ------------------------------------------------------------------------

BROKEN_REGISTERS = [
    pytest.param(
        register('role = "zsm-officier"', 'role = "zsm-officier'),
        id="toml-unterminated-string",
    ),
    pytest.param(
        register('role = "zsm-officier"', 'role = "officier"', mentions="officier"),
        id="unknown-role",
    ),
    pytest.param(
        register('source_system = "gcos"\n', "", line=Line('role = "source-adapter"')),
        id="adapter-without-source-system",
    ),
    pytest.param(
        register(
            'shift = "07:00-23:00"',
            'shift = "07:00-23:00"\nsource_system = "gcos"',
            line=Line('role = "kpc"'),
        ),
        id="source-system-on-a-zsm-desk",
    ),
    pytest.param(
        register('source_system = "gcos"', 'source_system = "bvh"'),
        id="unknown-source-system",
    ),
    pytest.param(
        register(
            'id = "zsm-midden-nederland-ovj"',
            'id = "zsm-midden-nederland-kpc"',
            line=Line('id = "zsm-midden-nederland-kpc"', nth=2),
            mentions="zsm-midden-nederland-kpc",
        ),
        id="duplicate-id",
    ),
    pytest.param(register('shift = "22:00-06:00"', 'shift = "7:00-23:00"'), id="shift-one-digit"),
    pytest.param(register('shift = "22:00-06:00"', 'shift = "22:00-25:00"'), id="shift-hour-25"),
    pytest.param(register('shift = "22:00-06:00"', 'shift = "22:00"'), id="shift-without-end"),
    pytest.param(register('shift = "22:00-06:00"', "shift = 22"), id="shift-not-text"),
    pytest.param(
        register('region = "midden-nederland"\nshift = "22:00-06:00"', 'region = "noord-holland"'),
        id="unknown-region",
    ),
    pytest.param(
        register(
            'source_system = "gcos"',
            'source_system = "gcos"\nemail = "gcos@example.org"',
            mentions="email",
        ),
        id="unknown-key",
    ),
    pytest.param(
        register(
            'organisation = "Veiligheidshuizen GCOS-koppeling"\n',
            "",
            line=Line("[[party]]", nth=3),
            mentions="organisation",
        ),
        id="missing-key-at-its-party-header",
    ),
    pytest.param(register('id = "adapter-gcos"', 'id = "Adapter GCOS"'), id="id-not-an-id"),
]


@pytest.mark.parametrize("case", BROKEN_REGISTERS)
def test_broken_party_register_stops_the_load_at_the_offending_line(
    tmp_path: Path, houses: Mapping[str, House], case: Broken
) -> None:
    load_stops_at(tmp_path, houses, case)


def test_broken_register_passed_as_parties_file_is_named(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    covenant_dir = tmp_path / "covenants"
    covenant_dir.mkdir()
    (covenant_dir / "regional.toml").write_text(REGIONAL, "utf-8")
    register_file = tmp_path / "register.toml"
    register_file.write_text(change(PARTIES, 'role = "kpc"', 'role = "ketenregisseur"'), "utf-8")

    with pytest.raises(CovenantError) as caught:
        load(covenant_dir, houses, parties_file=register_file)

    assert_stops_at(
        caught.value,
        register_file,
        Line('role = "ketenregisseur"').number_in(register_file.read_text("utf-8")),
    )


# --- Known defects: each fails today and should pass once the loader is fixed ---------------------


def test_misspelt_grant_table_is_reported_at_its_header(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    content = change(REGIONAL, '[[grant]]\nid = "monitoring"', '[[grants]]\nid = "monitoring"')
    write(tmp_path, {"regional.toml": content})

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    assert_stops_at(caught.value, tmp_path / "regional.toml", Line("[[grants]]").number_in(content))


def test_grant_header_with_a_comment_keeps_line_numbers_right(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    content = change(
        change(REGIONAL, '[[grant]]\nid = "kpc-intake"', '[[grant]]  # KPC\nid = "kpc-intake"'),
        'roles = ["zsm-officier"]\n',
        "",
    )
    write(tmp_path, {"regional.toml": content})

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    # The first header now carries a comment: the first bare "[[grant]]" is the OvJ grant's.
    assert_stops_at(
        caught.value, tmp_path / "regional.toml", Line("[[grant]]", nth=1).number_in(content)
    )


def test_nested_list_in_fields_is_a_covenant_error(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    content = change(REGIONAL, 'fields = ["aggregates"]', 'fields = [["aggregates"]]')
    write(tmp_path, {"regional.toml": content})

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    assert_stops_at(
        caught.value,
        tmp_path / "regional.toml",
        Line('fields = [["aggregates"]]').number_in(content),
    )


def test_same_version_twice_is_refused_with_another_version_between(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    write(
        tmp_path,
        {
            "a.toml": version(REGIONAL, 1, "2022-01-01", "2023-12-31"),
            "b.toml": version(REGIONAL, 2, "2024-01-01", "2025-12-31"),
            "c.toml": version(REGIONAL, 1, "2026-01-01", "2027-12-31"),
        },
    )

    with pytest.raises(CovenantError) as caught:
        load(tmp_path, houses)

    assert caught.value.path == tmp_path / "c.toml"


def test_party_register_with_another_name_inside_the_directory_is_not_a_covenant(
    tmp_path: Path, houses: Mapping[str, House]
) -> None:
    (tmp_path / "regional.toml").write_text(REGIONAL, "utf-8")
    (tmp_path / "register.toml").write_text(PARTIES, "utf-8")

    covenants = load(tmp_path, houses, parties_file=tmp_path / "register.toml")

    assert [c.ref for c in covenants.covenants] == ["test-midden@v1"]
