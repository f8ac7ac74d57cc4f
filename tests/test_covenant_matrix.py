"""What the shipped covenants let each party see: role x purpose x house x field.

The decisions come from services.common.access over the files in covenants/, on 28 November 2026 (every
shipped covenant in force but Rotterdam's 2024 version and the national arrangement's version 2),
on 1 December 2026 (national version 2 in force: the advice travels with the person), and on
1 June 2025 (only Rotterdam's 2024 version in force; the national arrangement and the current
regional covenants start in 2026).
"""

# The decision tables keep one row per line, wider than the usual 100 columns.
# ruff: noqa: E501

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping

import pytest
from test_covenant_files import NOT_ENRICHED

from baken.errors import PermissionDenied
from baken.houses import House, load_houses
from baken.pki import Identity
from baken.purposes import PURPOSES
from services.common.access import AccessPolicy, Scope, Withhold
from services.common.covenants import (
    DEFAULT_DIR,
    FEEDBACK_FIELDS,
    MARKER_FIELDS,
    THAT_FIELDS,
    CovenantSet,
    load,
)

DAY = dt.date(2026, 11, 28)
ADVICE_TRAVELS = dt.date(2026, 12, 1)  # national@v2 in force, national@v1 ended the day before
BEFORE_2026 = dt.date(2025, 6, 1)
AFTER_REGIONAL = dt.date(2028, 6, 1)  # regional covenants ended 2027-12-31; national runs on

# Purposes.
INTAKE = "intake-en-selectie"
AFDOENING = "afdoeningsbeslissing"
TRIAGE = "triage"
TERUGKOPPELING = "terugkoppeling"
ADVIES = "advies-op-aanvraag"
MONITORING = "monitoring"
AUDIT = "audit"
INZAGE = "inzage"

# Reasons.
DISCLOSED = None
OUTSIDE_REGION = Withhold.OUTSIDE_REGION
PURPOSE_NOT_GRANTED = Withhold.PURPOSE_NOT_GRANTED
COVENANT_EXPIRED = Withhold.COVENANT_EXPIRED
NO_COVENANT = Withhold.NO_COVENANT

REGIONS = ("midden-nederland", "oost-nederland", "zeeland-west-brabant", "rotterdam-rijnmond")
# The regional covenant in force on DAY, per region.
REGIONAL = {
    "midden-nederland": "midden-nederland@v1",
    "oost-nederland": "oost-nederland@v1",
    "zeeland-west-brabant": "zeeland-west-brabant@v1",
    "rotterdam-rijnmond": "rotterdam-rijnmond@v2",
}
NATIONAL = "national@v1"  # until 2026-11-30
NATIONAL_V2 = "national@v2"  # from 2026-12-01

# Parties: the ZSM desks and the houses' process direction, per region.
MN_KPC, MN_OVJ = "zsm-midden-nederland-kpc", "zsm-midden-nederland-ovj"
MN_POLITIE, MN_RECLASSERING = "zsm-midden-nederland-politie", "zsm-midden-nederland-reclassering"
MN_PROCESREGIE = "vh-midden-nederland-procesregie"
ON_KPC, ON_OVJ = "zsm-oost-nederland-kpc", "zsm-oost-nederland-ovj"
ON_POLITIE, ON_RECLASSERING = "zsm-oost-nederland-politie", "zsm-oost-nederland-reclassering"
ON_SLACHTOFFERHULP = "zsm-oost-nederland-slachtofferhulp"
ON_PROCESREGIE = "vh-oost-nederland-procesregie"
ZWB_KPC, ZWB_OVJ = "zsm-zeeland-west-brabant-kpc", "zsm-zeeland-west-brabant-ovj"
ZWB_POLITIE, ZWB_RVDK = "zsm-zeeland-west-brabant-politie", "zsm-zeeland-west-brabant-rvdk"
ZWB_PROCESREGIE = "vh-zeeland-west-brabant-procesregie"
RR_KPC, RR_OVJ = "zsm-rotterdam-rijnmond-kpc", "zsm-rotterdam-rijnmond-ovj"
RR_POLITIE, RR_RECLASSERING = (
    "zsm-rotterdam-rijnmond-politie",
    "zsm-rotterdam-rijnmond-reclassering",
)
RR_RVDK, RR_SLACHTOFFERHULP = (
    "zsm-rotterdam-rijnmond-rvdk",
    "zsm-rotterdam-rijnmond-slachtofferhulp",
)
RR_PROCESREGIE = "vh-rotterdam-rijnmond-procesregie"
AUDITOR = "privacy-auditor"
FEEDBACK = "feedback"  # the feedback service

# Houses, two per region.
UTRECHT, ALMERE = "vh-regio-utrecht-utrecht", "vh-almere"
TWENTE, NIJMEGEN = "vh-twente", "vh-gelderland-zuid-nijmegen"
BREDA, ZEELAND = "vh-breda", "vh-zeeland"
ROTTERDAM, DORDRECHT = "vh-rotterdam-rijnmond", "vh-zuid-holland-zuid"

MUNICIPAL_FIELDS = ("at.compulsory_education", "at.administrative_measures", "at.care_deployed")
ZSM_OM_DESKS = {  # the kpc and the OvJ of every region
    region: (f"zsm-{region}-kpc", f"zsm-{region}-ovj") for region in REGIONS
}


@pytest.fixture(scope="module")
def houses() -> Mapping[str, House]:
    return load_houses()


@pytest.fixture(scope="module")
def covenants(houses: Mapping[str, House]) -> CovenantSet:
    return load(DEFAULT_DIR, houses)


@pytest.fixture(scope="module")
def policy(covenants: CovenantSet, houses: Mapping[str, House]) -> AccessPolicy:
    return AccessPolicy(covenants, houses)


def scope_of(policy: AccessPolicy, party: str, purpose: str, day: dt.date = DAY) -> Scope:
    return policy.authorise(policy.covenants.parties[party].identity, purpose, day)


def refusal(policy: AccessPolicy, identity: Identity, purpose: str, day: dt.date) -> str:
    with pytest.raises(PermissionDenied) as caught:
        policy.authorise(identity, purpose, day)
    return caught.value.reason


# --- The matrix on 28 November 2026 ---------------------------------------------------------------

# (party, purpose, house, field, reason or DISCLOSED, "covenant-ref grant-id" that decided; "" when
# no covenant has a grant of the field for the party's role)
# fmt: off
MATRIX = [
    # intake-en-selectie: the that-signal nationwide, the why only for the own region.
    (MN_KPC, INTAKE, TWENTE, "house", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (MN_KPC, INTAKE, ROTTERDAM, "target_group", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (MN_KPC, INTAKE, TWENTE, "plan_status", OUTSIDE_REGION, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, INTAKE, ALMERE, "plan_status", DISCLOSED, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, INTAKE, ALMERE, "advice", DISCLOSED, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, INTAKE, ALMERE, "at.open_cases", NO_COVENANT, ""),
    (ON_KPC, INTAKE, BREDA, "contact", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (ON_KPC, INTAKE, BREDA, "advice", OUTSIDE_REGION, "oost-nederland@v1 kpc-intake-terugkoppeling"),
    (ON_KPC, INTAKE, TWENTE, "advice", DISCLOSED, "oost-nederland@v1 kpc-intake-terugkoppeling"),
    (ZWB_KPC, INTAKE, DORDRECHT, "region", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (ZWB_KPC, INTAKE, ZEELAND, "mark_date", DISCLOSED, "zeeland-west-brabant@v1 kpc-intake-terugkoppeling"),
    (ZWB_KPC, INTAKE, UTRECHT, "source_record", OUTSIDE_REGION, "zeeland-west-brabant@v1 kpc-intake-terugkoppeling"),
    (RR_KPC, INTAKE, UTRECHT, "house", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (RR_KPC, INTAKE, UTRECHT, "advice", OUTSIDE_REGION, "rotterdam-rijnmond@v2 kpc-intake-terugkoppeling"),
    (RR_KPC, INTAKE, DORDRECHT, "source_record", DISCLOSED, "rotterdam-rijnmond@v2 kpc-intake-terugkoppeling"),
    (RR_KPC, INTAKE, ROTTERDAM, "at.care_deployed", PURPOSE_NOT_GRANTED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (MN_OVJ, INTAKE, NIJMEGEN, "house", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (MN_OVJ, INTAKE, ALMERE, "advice", PURPOSE_NOT_GRANTED, "midden-nederland@v1 ovj-afdoening"),
    (ON_POLITIE, INTAKE, TWENTE, "at.antecedents", DISCLOSED, "oost-nederland@v1 politie-zsm"),
    (ON_POLITIE, INTAKE, BREDA, "house", OUTSIDE_REGION, "oost-nederland@v1 politie-zsm"),
    # afdoeningsbeslissing: the OvJ weighs advice, open cases and antecedents of the own region.
    (ON_OVJ, AFDOENING, ZEELAND, "house", DISCLOSED, "national@v1 dat-signaal-zsm"),
    (ON_OVJ, AFDOENING, ZEELAND, "plan_status", OUTSIDE_REGION, "oost-nederland@v1 ovj-afdoening"),
    (ON_OVJ, AFDOENING, TWENTE, "at.open_cases", DISCLOSED, "oost-nederland@v1 ovj-afdoening"),
    (ON_OVJ, AFDOENING, NIJMEGEN, "at.antecedents", DISCLOSED, "oost-nederland@v1 ovj-afdoening"),
    (ON_OVJ, AFDOENING, TWENTE, "at.supervisions", NO_COVENANT, ""),
    (RR_OVJ, AFDOENING, ROTTERDAM, "at.supervisions", PURPOSE_NOT_GRANTED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (RR_OVJ, AFDOENING, DORDRECHT, "at.administrative_measures", DISCLOSED, "rotterdam-rijnmond@v2 ovj-afdoening"),
    (RR_OVJ, AFDOENING, BREDA, "at.administrative_measures", OUTSIDE_REGION, "rotterdam-rijnmond@v2 ovj-afdoening"),
    (ZWB_OVJ, AFDOENING, BREDA, "at.administrative_measures", NO_COVENANT, ""),
    (MN_RECLASSERING, AFDOENING, UTRECHT, "at.supervisions", DISCLOSED, "midden-nederland@v1 reclassering-advies"),
    (MN_RECLASSERING, AFDOENING, UTRECHT, "at.open_cases", NO_COVENANT, ""),
    (MN_RECLASSERING, AFDOENING, TWENTE, "at.supervisions", OUTSIDE_REGION, "midden-nederland@v1 reclassering-advies"),
    (RR_RECLASSERING, AFDOENING, ROTTERDAM, "at.care_deployed", DISCLOSED, "rotterdam-rijnmond@v2 reclassering-advies"),
    (RR_RECLASSERING, AFDOENING, ROTTERDAM, "at.open_cases", PURPOSE_NOT_GRANTED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (ZWB_RVDK, AFDOENING, ZEELAND, "at.supervisions", DISCLOSED, "zeeland-west-brabant@v1 rvdk-jeugd"),
    (ZWB_RVDK, AFDOENING, ZEELAND, "at.detention_history", NO_COVENANT, ""),
    (RR_RVDK, AFDOENING, DORDRECHT, "at.compulsory_education", DISCLOSED, "rotterdam-rijnmond@v2 rvdk-jeugd"),
    (ON_SLACHTOFFERHULP, AFDOENING, TWENTE, "contact", DISCLOSED, "oost-nederland@v1 slachtofferhulp-signaal"),
    (ON_SLACHTOFFERHULP, AFDOENING, TWENTE, "plan_status", NO_COVENANT, ""),
    (ON_SLACHTOFFERHULP, AFDOENING, TWENTE, "advice", NO_COVENANT, ""),
    (ON_SLACHTOFFERHULP, AFDOENING, BREDA, "house", OUTSIDE_REGION, "oost-nederland@v1 slachtofferhulp-signaal"),
    (ZWB_POLITIE, AFDOENING, ZEELAND, "advice", DISCLOSED, "zeeland-west-brabant@v1 politie-zsm"),
    # triage: Rotterdam's advice-and-triage point, with every A&T field, for its own houses.
    (RR_KPC, TRIAGE, ROTTERDAM, "at.compulsory_education", DISCLOSED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (RR_OVJ, TRIAGE, DORDRECHT, "at.care_deployed", DISCLOSED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (RR_RECLASSERING, TRIAGE, ROTTERDAM, "at.administrative_measures", DISCLOSED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (RR_RVDK, TRIAGE, ROTTERDAM, "at.open_cases", DISCLOSED, "rotterdam-rijnmond@v2 advies-en-triage"),
    (RR_KPC, TRIAGE, UTRECHT, "house", OUTSIDE_REGION, "rotterdam-rijnmond@v2 advies-en-triage"),
    # terugkoppeling: the kpc and the house's process director; the kpc also hears of every
    # marking house nationwide (the national that-signal), to feed each one back.
    (MN_KPC, TERUGKOPPELING, ALMERE, "advice", DISCLOSED, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, TERUGKOPPELING, TWENTE, "house", DISCLOSED, "national@v1 dat-signaal-terugkoppeling"),
    (MN_KPC, TERUGKOPPELING, TWENTE, "advice", OUTSIDE_REGION, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (ZWB_PROCESREGIE, TERUGKOPPELING, BREDA, "advice", DISCLOSED, "zeeland-west-brabant@v1 procesregie-terugkoppeling"),
    (ZWB_PROCESREGIE, TERUGKOPPELING, ROTTERDAM, "house", OUTSIDE_REGION, "zeeland-west-brabant@v1 procesregie-terugkoppeling"),
    # The feedback fields: what a house's process director may receive back, own region only;
    # Zeeland-West-Brabant's houses take the triage outcome through the casusoverleg instead.
    (MN_PROCESREGIE, TERUGKOPPELING, ALMERE, "feedback.decision", DISCLOSED, "midden-nederland@v1 terugkoppeling-aan-veiligheidshuis"),
    (MN_PROCESREGIE, TERUGKOPPELING, TWENTE, "feedback.decision", OUTSIDE_REGION, "midden-nederland@v1 terugkoppeling-aan-veiligheidshuis"),
    (ON_PROCESREGIE, TERUGKOPPELING, NIJMEGEN, "feedback.triage", DISCLOSED, "oost-nederland@v1 terugkoppeling-aan-veiligheidshuis"),
    (ZWB_PROCESREGIE, TERUGKOPPELING, ZEELAND, "feedback.referral", DISCLOSED, "zeeland-west-brabant@v1 terugkoppeling-aan-veiligheidshuis"),
    (ZWB_PROCESREGIE, TERUGKOPPELING, BREDA, "feedback.triage", NO_COVENANT, ""),
    (RR_PROCESREGIE, TERUGKOPPELING, DORDRECHT, "feedback.deviation_reason", DISCLOSED, "rotterdam-rijnmond@v2 terugkoppeling-aan-veiligheidshuis"),
    (RR_KPC, TERUGKOPPELING, ROTTERDAM, "feedback.decision", NO_COVENANT, ""),
    # The feedback service routes to every marking house nationwide: the house, its record and
    # whether an advice is current, never the advice.
    (FEEDBACK, TERUGKOPPELING, TWENTE, "house", DISCLOSED, "national@v1 terugkoppeling-routering"),
    (FEEDBACK, TERUGKOPPELING, ROTTERDAM, "source_record", DISCLOSED, "national@v1 terugkoppeling-routering"),
    (FEEDBACK, TERUGKOPPELING, BREDA, "advice_freshness", DISCLOSED, "national@v1 terugkoppeling-routering"),
    (FEEDBACK, TERUGKOPPELING, BREDA, "advice", NO_COVENANT, ""),
    (FEEDBACK, TERUGKOPPELING, UTRECHT, "target_group", NO_COVENANT, ""),
    (FEEDBACK, TERUGKOPPELING, UTRECHT, "feedback.decision", NO_COVENANT, ""),
    # advies-op-aanvraag.
    (ON_PROCESREGIE, ADVIES, NIJMEGEN, "advice", DISCLOSED, "oost-nederland@v1 procesregie-terugkoppeling"),
    (ON_RECLASSERING, ADVIES, TWENTE, "at.detention_history", DISCLOSED, "oost-nederland@v1 reclassering-advies"),
    (ON_PROCESREGIE, ADVIES, TWENTE, "feedback.advice_request", PURPOSE_NOT_GRANTED, "oost-nederland@v1 terugkoppeling-aan-veiligheidshuis"),
    (MN_KPC, INTAKE, ALMERE, "advice_freshness", NO_COVENANT, ""),
    (RR_KPC, ADVIES, ROTTERDAM, "advice", DISCLOSED, "rotterdam-rijnmond@v2 kpc-intake-terugkoppeling"),
    (ZWB_KPC, ADVIES, ZEELAND, "at.antecedents", NO_COVENANT, ""),
    # monitoring: aggregates of the own region.
    (MN_PROCESREGIE, MONITORING, ALMERE, "aggregates", DISCLOSED, "midden-nederland@v1 procesregie-monitoring"),
    (MN_PROCESREGIE, MONITORING, TWENTE, "aggregates", OUTSIDE_REGION, "midden-nederland@v1 procesregie-monitoring"),
    (RR_KPC, MONITORING, DORDRECHT, "aggregates", DISCLOSED, "rotterdam-rijnmond@v2 procesregie-monitoring"),
    # audit: the access log, nationwide.
    (AUDITOR, AUDIT, TWENTE, "access-log", DISCLOSED, "national@v1 toezicht-toegangslog"),
    (AUDITOR, AUDIT, ROTTERDAM, "access-log", DISCLOSED, "national@v1 toezicht-toegangslog"),
    # inzage: which houses mark the person who asked, nothing more.
    (AUDITOR, INZAGE, TWENTE, "house", DISCLOSED, "inzage@v1 inzage-betrokkene"),
    (AUDITOR, INZAGE, ROTTERDAM, "region", DISCLOSED, "inzage@v1 inzage-betrokkene"),
    (AUDITOR, INZAGE, BREDA, "contact", NO_COVENANT, ""),
    (AUDITOR, INZAGE, UTRECHT, "advice", NO_COVENANT, ""),
]
# fmt: on


def _row_id(row: tuple[str, str, str, str, Withhold | None, str]) -> str:
    party, purpose, house, field, reason, _ = row
    return f"{party}|{purpose}|{house}|{field}|{reason.name if reason else 'DISCLOSED'}"


@pytest.mark.parametrize(
    ("party", "purpose", "house", "field", "reason", "by"), MATRIX, ids=map(_row_id, MATRIX)
)
def test_shipped_covenants_decide_each_field_for_each_role_and_purpose(
    policy: AccessPolicy,
    party: str,
    purpose: str,
    house: str,
    field: str,
    reason: Withhold | None,
    by: str,
) -> None:
    decision = scope_of(policy, party, purpose).decide(house, field)

    assert decision.reason is reason
    assert f"{decision.covenant} {decision.grant}".strip() == by


def test_matrix_covers_every_role_purpose_and_region(
    covenants: CovenantSet, houses: Mapping[str, House]
) -> None:
    """The table above is meant to span the matrix; this keeps it that way."""
    roles = {covenants.parties[party].role for party, *_ in MATRIX}
    assert roles == {
        "kpc",
        "zsm-officier",
        "police",
        "probation",
        "rvdk",
        "victim-support",
        "vh-process-director",
        "privacy-auditor",
        "service",
    }
    assert {purpose for _, purpose, *_ in MATRIX} == set(PURPOSES)
    assert {houses[house].region for _, _, house, *_ in MATRIX} == set(REGIONS)
    assert {covenants.parties[party].region for party, *_ in MATRIX} >= set(REGIONS)
    assert len(MATRIX) >= 40


# --- Nationwide that-signal, own-region why -----------------------------------------------------


@pytest.mark.parametrize("purpose", [INTAKE, AFDOENING])
@pytest.mark.parametrize("party", [p for pair in ZSM_OM_DESKS.values() for p in pair])
def test_zsm_kpc_and_ovj_see_the_that_signal_of_every_house_nationwide(
    policy: AccessPolicy,
    covenants: CovenantSet,
    houses: Mapping[str, House],
    party: str,
    purpose: str,
) -> None:
    own_region = covenants.parties[party].region
    scope = scope_of(policy, party, purpose)

    for house, field in itertools.product(
        houses.values(), ("house", "region", "contact", "target_group")
    ):
        decision = scope.decide(house.id, field)
        assert decision.reason is DISCLOSED, (house.id, field)
        if house.region != own_region:
            assert (decision.covenant, decision.grant) == (NATIONAL, "dat-signaal-zsm")
        else:
            # The own region's covenant grants these too; which of the two is cited follows
            # the order of the covenant files (access.py tries grants in that order).
            assert decision.covenant in {NATIONAL, REGIONAL[own_region]}


@pytest.mark.parametrize(
    ("party", "purpose"),
    [(kpc, INTAKE) for kpc, _ in ZSM_OM_DESKS.values()]
    + [(ovj, AFDOENING) for _, ovj in ZSM_OM_DESKS.values()],
)
def test_zsm_kpc_and_ovj_see_plan_and_advice_only_of_their_own_regions_houses(
    policy: AccessPolicy,
    covenants: CovenantSet,
    houses: Mapping[str, House],
    party: str,
    purpose: str,
) -> None:
    own_region = covenants.parties[party].region
    scope = scope_of(policy, party, purpose)

    for house, field in itertools.product(houses.values(), ("plan_status", "advice")):
        decision = scope.decide(house.id, field)
        if house.region == own_region:
            assert decision.reason is DISCLOSED, (house.id, field)
        else:
            assert decision.reason is OUTSIDE_REGION, (house.id, field)
        assert decision.covenant == REGIONAL[own_region]


@pytest.mark.parametrize("region", REGIONS)
def test_ovj_sees_open_cases_and_antecedents_of_own_region_but_not_supervisions(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    scope = scope_of(policy, f"zsm-{region}-ovj", AFDOENING)
    # Rotterdam grants supervisions to the OvJ for triage, so afdoening is the wrong purpose;
    # elsewhere no grant gives the OvJ supervisions at all.
    supervisions = PURPOSE_NOT_GRANTED if region == "rotterdam-rijnmond" else NO_COVENANT

    for house in (h for h in houses.values() if h.region == region):
        assert scope.decide(house.id, "at.open_cases").reason is DISCLOSED
        assert scope.decide(house.id, "at.antecedents").reason is DISCLOSED
        assert scope.decide(house.id, "at.supervisions").reason is supervisions


@pytest.mark.parametrize("region", REGIONS)
def test_probation_sees_supervisions_of_own_region_but_not_open_cases(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    scope = scope_of(policy, f"zsm-{region}-reclassering", AFDOENING)
    open_cases = PURPOSE_NOT_GRANTED if region == "rotterdam-rijnmond" else NO_COVENANT

    for house in (h for h in houses.values() if h.region == region):
        assert scope.decide(house.id, "at.supervisions").reason is DISCLOSED
        assert scope.decide(house.id, "at.detention_history").reason is DISCLOSED
        assert scope.decide(house.id, "at.open_cases").reason is open_cases


def test_municipality_fields_are_disclosed_only_where_rotterdams_covenant_grants_them(
    policy: AccessPolicy, covenants: CovenantSet, houses: Mapping[str, House]
) -> None:
    disclosed = set()
    for party, purpose in itertools.product(covenants.parties, PURPOSES):
        try:
            scope = scope_of(policy, party, purpose)
        except PermissionDenied:
            continue
        for house, field in itertools.product(houses, MUNICIPAL_FIELDS):
            if field in scope.decisions[house] and scope.decide(house, field).disclosed:
                disclosed.add((party, purpose, house, field))

    rotterdam_houses = (ROTTERDAM, DORDRECHT)
    expected = {
        *itertools.product(
            (RR_KPC, RR_OVJ, RR_RECLASSERING, RR_RVDK), [TRIAGE], rotterdam_houses, MUNICIPAL_FIELDS
        ),
        *itertools.product([RR_OVJ], [AFDOENING], rotterdam_houses, ["at.administrative_measures"]),
        *itertools.product(
            [RR_RECLASSERING], [AFDOENING, ADVIES], rotterdam_houses, ["at.care_deployed"]
        ),
        *itertools.product([RR_RVDK], [AFDOENING], rotterdam_houses, ["at.compulsory_education"]),
    }
    assert disclosed == expected


@pytest.mark.parametrize("region", REGIONS)
def test_victim_support_sees_only_the_four_that_fields_of_own_region(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    scope = scope_of(policy, f"zsm-{region}-slachtofferhulp", AFDOENING)

    disclosed = {
        (house, field)
        for house, field in itertools.product(houses, MARKER_FIELDS)
        if scope.decide(house, field).disclosed
    }

    own_houses = [h.id for h in houses.values() if h.region == region]
    assert disclosed == set(
        itertools.product(own_houses, ["house", "region", "contact", "target_group"])
    )


# --- Feedback: what the houses receive back, and who receives it --------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_each_process_director_is_decided_every_feedback_field_of_every_house(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    scope = scope_of(policy, f"vh-{region}-procesregie", TERUGKOPPELING)
    grant = (REGIONAL[region], "terugkoppeling-aan-veiligheidshuis")

    for house, field in itertools.product(houses.values(), FEEDBACK_FIELDS):
        decision = scope.decide(house.id, field)
        found = (decision.reason, decision.covenant, decision.grant)
        if region == "zeeland-west-brabant" and field == "feedback.triage":
            # Left out of that covenant: the triage outcome goes through the casusoverleg.
            assert found == (NO_COVENANT, "", ""), (house.id, field)
        elif field in NOT_ENRICHED:
            # Enrichment requests only for domestic violence: no covenant grants the others.
            assert found == (NO_COVENANT, "", ""), (house.id, field)
        elif house.region == region:
            assert found == (DISCLOSED, *grant), (house.id, field)
        else:
            assert found == (OUTSIDE_REGION, *grant), (house.id, field)


def test_feedback_fields_are_granted_for_terugkoppeling_only(
    policy: AccessPolicy, covenants: CovenantSet
) -> None:
    for covenant in covenants.covenants:
        for grant in covenant.grants:
            if grant.fields & set(FEEDBACK_FIELDS):
                assert grant.purposes == {TERUGKOPPELING}, (covenant.ref, grant.id)
    # A process director asking advice is not told the feedback fields of that purpose.
    scope = scope_of(policy, MN_PROCESREGIE, ADVIES)
    assert all(
        scope.decide(ALMERE, field).reason is PURPOSE_NOT_GRANTED
        for field in FEEDBACK_FIELDS
        if field not in NOT_ENRICHED
    )


def test_the_recipient_of_a_houses_feedback_is_its_regions_process_director(
    policy: AccessPolicy, houses: Mapping[str, House]
) -> None:
    for house in houses.values():
        recipient = policy.recipient_of(house)
        assert recipient == policy.covenants.parties[f"vh-{house.region}-procesregie"].identity
        assert recipient is not None and recipient.role == "vh-process-director"


def test_a_region_without_a_process_director_in_the_register_has_no_recipient(
    covenants: CovenantSet, houses: Mapping[str, House]
) -> None:
    parties = {k: p for k, p in covenants.parties.items() if k != ZWB_PROCESREGIE}
    policy = AccessPolicy(CovenantSet(parties, covenants.covenants, covenants.formats), houses)

    assert policy.recipient_of(houses[BREDA]) is None
    assert policy.recipient_of(houses[ZEELAND]) is None
    assert policy.recipient_of(houses[ROTTERDAM]) == parties[RR_PROCESREGIE].identity


def test_the_feedback_service_sees_house_record_and_advice_freshness_of_every_house_only(
    policy: AccessPolicy, houses: Mapping[str, House]
) -> None:
    scope = scope_of(policy, FEEDBACK, TERUGKOPPELING)

    assert scope.covenants == (NATIONAL,)
    for house in houses:
        shown = {field for field, d in scope.decisions[house].items() if d.disclosed}
        assert shown == {"house", "source_record", "advice_freshness"}, house
        assert scope.decide(house, "advice").reason is NO_COVENANT


# --- Admission: who may use a purpose at all ------------------------------------------------------

# (party, purpose, day, the PermissionDenied reason)
REFUSED = [
    (MN_PROCESREGIE, INTAKE, DAY, "PURPOSE_NOT_GRANTED"),
    (RR_PROCESREGIE, INTAKE, DAY, "PURPOSE_NOT_GRANTED"),
    (ON_PROCESREGIE, AFDOENING, DAY, "PURPOSE_NOT_GRANTED"),
    (RR_POLITIE, TRIAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (MN_POLITIE, TRIAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (MN_OVJ, TRIAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (RR_SLACHTOFFERHULP, TRIAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (ON_SLACHTOFFERHULP, INTAKE, DAY, "PURPOSE_NOT_GRANTED"),
    (ZWB_POLITIE, TERUGKOPPELING, DAY, "PURPOSE_NOT_GRANTED"),
    (ZWB_OVJ, MONITORING, DAY, "PURPOSE_NOT_GRANTED"),
    (ZWB_KPC, AUDIT, DAY, "PURPOSE_NOT_GRANTED"),
    (ZWB_KPC, INZAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (MN_OVJ, INZAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, INTAKE, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, AFDOENING, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, TRIAGE, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, TERUGKOPPELING, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, ADVIES, DAY, "PURPOSE_NOT_GRANTED"),
    (AUDITOR, MONITORING, DAY, "PURPOSE_NOT_GRANTED"),
    ("operator", INTAKE, DAY, "NO_COVENANT"),
    ("operator", AUDIT, DAY, "NO_COVENANT"),
    ("registry", MONITORING, DAY, "NO_COVENANT"),
    ("registry", TERUGKOPPELING, DAY, "NO_COVENANT"),
    (FEEDBACK, INTAKE, DAY, "PURPOSE_NOT_GRANTED"),
    (FEEDBACK, AFDOENING, DAY, "PURPOSE_NOT_GRANTED"),
    (FEEDBACK, TERUGKOPPELING, BEFORE_2026, "COVENANT_EXPIRED"),
    ("adapter-gcos", INTAKE, DAY, "NO_COVENANT"),
    # Before 2026 only Rotterdam's 2024 version is in force, and it grants no triage; the
    # version that does is not in force yet, which the policy reports as COVENANT_EXPIRED.
    (RR_KPC, TRIAGE, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_OVJ, TRIAGE, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_RECLASSERING, TRIAGE, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_RVDK, TRIAGE, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_POLITIE, INTAKE, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_SLACHTOFFERHULP, AFDOENING, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_KPC, MONITORING, BEFORE_2026, "COVENANT_EXPIRED"),
    (RR_POLITIE, TRIAGE, BEFORE_2026, "PURPOSE_NOT_GRANTED"),
    (MN_KPC, INTAKE, BEFORE_2026, "COVENANT_EXPIRED"),
    (AUDITOR, AUDIT, BEFORE_2026, "COVENANT_EXPIRED"),
    ("operator", INTAKE, BEFORE_2026, "NO_COVENANT"),
    # After the regional covenants end, only the national arrangement is in force.
    (MN_PROCESREGIE, TERUGKOPPELING, AFTER_REGIONAL, "COVENANT_EXPIRED"),
    (RR_RVDK, AFDOENING, AFTER_REGIONAL, "COVENANT_EXPIRED"),
]


@pytest.mark.parametrize(
    ("party", "purpose", "day", "reason"),
    REFUSED,
    ids=[f"{p}|{purpose}|{day}" for p, purpose, day, _ in REFUSED],
)
def test_party_is_refused_a_purpose_no_covenant_in_force_grants_its_role(
    policy: AccessPolicy, party: str, purpose: str, day: dt.date, reason: str
) -> None:
    assert refusal(policy, policy.covenants.parties[party].identity, purpose, day) == reason


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param(
            Identity("zsm-midden-nederland-kpc", "OM ZSM Oost-Nederland", "kpc"),
            id="organisation-differs",
        ),
        pytest.param(
            Identity("zsm-midden-nederland-kpc", "OM ZSM Midden-Nederland", "zsm-officier"),
            id="role-differs",
        ),
        pytest.param(
            Identity("privacy-auditor", "Baken privacyfunctionaris", "operator"),
            id="auditor-as-operator",
        ),
        pytest.param(Identity("zsm-amsterdam-kpc", "OM ZSM Amsterdam", "kpc"), id="unknown-id"),
        pytest.param(
            Identity("vh-midden-nederland-voorzitter", "VH Regio Utrecht", "vh-chair"),
            id="vh-chair-not-in-register",
        ),
    ],
)
def test_certificate_that_differs_from_the_register_is_party_unknown(
    policy: AccessPolicy, identity: Identity
) -> None:
    assert refusal(policy, identity, INTAKE, DAY) == "PARTY_UNKNOWN"
    assert refusal(policy, identity, AUDIT, DAY) == "PARTY_UNKNOWN"


def test_privacy_auditor_reads_the_access_log_of_every_house_and_nothing_else(
    policy: AccessPolicy, houses: Mapping[str, House]
) -> None:
    scope = scope_of(policy, AUDITOR, AUDIT)

    assert scope.covenants == (NATIONAL,)
    for house in houses:
        assert set(scope.decisions[house]) == {"access-log"}
        assert scope.decide(house, "access-log").reason is DISCLOSED
    for purpose in set(PURPOSES) - {AUDIT, INZAGE}:
        assert refusal(policy, policy.covenants.parties[AUDITOR].identity, purpose, DAY) == (
            "PURPOSE_NOT_GRANTED"
        )


@pytest.mark.parametrize(
    ("party", "region"),
    [(f"vh-{region}-procesregie", region) for region in REGIONS]
    + [(f"zsm-{region}-kpc", region) for region in REGIONS],
)
def test_monitoring_decides_only_aggregates_of_the_own_region(
    policy: AccessPolicy, houses: Mapping[str, House], party: str, region: str
) -> None:
    scope = scope_of(policy, party, MONITORING)

    for house in houses.values():
        assert set(scope.decisions[house.id]) == {"aggregates"}
        decision = scope.decide(house.id, "aggregates")
        assert decision.reason is (DISCLOSED if house.region == region else OUTSIDE_REGION)
        assert (decision.covenant, decision.grant) == (REGIONAL[region], "procesregie-monitoring")


def test_person_purposes_decide_every_marker_and_feedback_field_and_no_purpose_only_field(
    policy: AccessPolicy, houses: Mapping[str, House]
) -> None:
    for purpose in (INTAKE, AFDOENING, TRIAGE, TERUGKOPPELING):
        scope = scope_of(policy, RR_KPC, purpose)
        for house in houses:
            assert set(scope.decisions[house]) == {*MARKER_FIELDS, *FEEDBACK_FIELDS}


def test_scope_names_the_covenants_in_force_that_admitted_the_caller(policy: AccessPolicy) -> None:
    assert set(scope_of(policy, MN_KPC, INTAKE).covenants) == {NATIONAL, "midden-nederland@v1"}
    assert set(scope_of(policy, MN_KPC, TERUGKOPPELING).covenants) == {
        NATIONAL,
        "midden-nederland@v1",
    }
    assert scope_of(policy, RR_KPC, TRIAGE).covenants == ("rotterdam-rijnmond@v2",)
    assert scope_of(policy, RR_KPC, INTAKE, BEFORE_2026).covenants == ("rotterdam-rijnmond@v1",)
    assert scope_of(policy, MN_KPC, INTAKE, AFTER_REGIONAL).covenants == (NATIONAL_V2,)
    assert set(scope_of(policy, MN_OVJ, AFDOENING, ADVICE_TRAVELS).covenants) == {
        NATIONAL_V2,
        "midden-nederland@v1",
    }


# --- 1 June 2025: only Rotterdam's 2024 version is in force ---------------------------------------

# fmt: off
BEFORE_2026_MATRIX = [
    (RR_KPC, INTAKE, ROTTERDAM, "advice", DISCLOSED, "rotterdam-rijnmond@v1 zsm-advies"),
    (RR_KPC, INTAKE, DORDRECHT, "house", DISCLOSED, "rotterdam-rijnmond@v1 zsm-advies"),
    # The national that-signal starts in 2026: another region's house is outside the 2024 version.
    (RR_KPC, INTAKE, BREDA, "house", OUTSIDE_REGION, "rotterdam-rijnmond@v1 zsm-advies"),
    # Granted only by version 2, not yet in force.
    (RR_KPC, INTAKE, ROTTERDAM, "source_record", COVENANT_EXPIRED, "rotterdam-rijnmond@v2 kpc-intake-terugkoppeling"),
    (RR_KPC, INTAKE, ROTTERDAM, "at.open_cases", NO_COVENANT, ""),
    (RR_OVJ, AFDOENING, DORDRECHT, "plan_status", DISCLOSED, "rotterdam-rijnmond@v1 zsm-advies"),
    (RR_OVJ, AFDOENING, ROTTERDAM, "at.open_cases", COVENANT_EXPIRED, "rotterdam-rijnmond@v2 ovj-afdoening"),
    (RR_OVJ, AFDOENING, ZEELAND, "contact", OUTSIDE_REGION, "rotterdam-rijnmond@v1 zsm-advies"),
    (RR_RECLASSERING, AFDOENING, ROTTERDAM, "advice", DISCLOSED, "rotterdam-rijnmond@v1 zsm-advies"),
    (RR_RECLASSERING, AFDOENING, ROTTERDAM, "at.supervisions", COVENANT_EXPIRED, "rotterdam-rijnmond@v2 reclassering-advies"),
    (RR_RECLASSERING, INTAKE, ROTTERDAM, "mark_date", DISCLOSED, "rotterdam-rijnmond@v1 zsm-advies"),
]
# fmt: on


@pytest.mark.parametrize(
    ("party", "purpose", "house", "field", "reason", "by"),
    BEFORE_2026_MATRIX,
    ids=map(_row_id, BEFORE_2026_MATRIX),
)
def test_before_2026_only_rotterdams_2024_version_grants(
    policy: AccessPolicy,
    party: str,
    purpose: str,
    house: str,
    field: str,
    reason: Withhold | None,
    by: str,
) -> None:
    decision = scope_of(policy, party, purpose, BEFORE_2026).decide(house, field)

    assert decision.reason is reason
    assert f"{decision.covenant} {decision.grant}".strip() == by


def test_after_the_regional_covenants_end_only_the_national_that_signal_remains(
    policy: AccessPolicy, houses: Mapping[str, House]
) -> None:
    scope = scope_of(policy, MN_KPC, INTAKE, AFTER_REGIONAL)

    for house, field in itertools.product(houses, (*THAT_FIELDS, "advice")):
        decision = scope.decide(house, field)
        if field == "advice_freshness":
            assert decision.reason is NO_COVENANT  # no covenant grants it to a ZSM desk
        elif field in ("house", "region", "contact", "target_group"):
            assert (decision.reason, decision.covenant) == (DISCLOSED, NATIONAL_V2)
        elif field == "advice":
            # National version 2 grants the kpc the advice, but for advies-op-aanvraag only.
            assert (decision.reason, decision.covenant, decision.grant) == (
                PURPOSE_NOT_GRANTED,
                NATIONAL_V2,
                "advies-op-aanvraag-antwoord",
            )
        elif houses[house].region == "midden-nederland":
            assert (decision.reason, decision.covenant) == (COVENANT_EXPIRED, "midden-nederland@v1")
        else:
            # The lapsed covenant never reached other regions' houses.
            assert decision.reason is NO_COVENANT


# --- From 1 December 2026: the advice travels with the person (national@v2) ------------------------

# fmt: off
ADVICE_TRAVELS_MATRIX = [
    # The OvJ deciding reads another region's advice, by the national covenant ...
    (MN_OVJ, AFDOENING, ROTTERDAM, "advice", DISCLOSED, "national@v2 advies-bij-afdoening"),
    (RR_OVJ, AFDOENING, UTRECHT, "advice", DISCLOSED, "national@v2 advies-bij-afdoening"),
    (ZWB_OVJ, AFDOENING, TWENTE, "advice", DISCLOSED, "national@v2 advies-bij-afdoening"),
    # ... her own region's by her own covenant, cited first ...
    (MN_OVJ, AFDOENING, ALMERE, "advice", DISCLOSED, "midden-nederland@v1 ovj-afdoening"),
    (MN_OVJ, AFDOENING, ROTTERDAM, "house", DISCLOSED, "national@v2 dat-signaal-zsm"),
    # ... and nothing more of another region's why: that stays for break-glass.
    (MN_OVJ, AFDOENING, ROTTERDAM, "plan_status", OUTSIDE_REGION, "midden-nederland@v1 ovj-afdoening"),
    (MN_OVJ, AFDOENING, ROTTERDAM, "at.open_cases", OUTSIDE_REGION, "midden-nederland@v1 ovj-afdoening"),
    (MN_OVJ, AFDOENING, ROTTERDAM, "at.administrative_measures", NO_COVENANT, ""),
    (ON_OVJ, AFDOENING, BREDA, "at.antecedents", OUTSIDE_REGION, "oost-nederland@v1 ovj-afdoening"),
    (MN_OVJ, INTAKE, ROTTERDAM, "advice", PURPOSE_NOT_GRANTED, "national@v2 advies-bij-afdoening"),
    # Intake: the that-signal only, another region's advice stays withheld (docs/PROCESS.md §3 step 1).
    (MN_KPC, INTAKE, ROTTERDAM, "house", DISCLOSED, "national@v2 dat-signaal-zsm"),
    (MN_KPC, INTAKE, ROTTERDAM, "advice", OUTSIDE_REGION, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (ZWB_KPC, INTAKE, UTRECHT, "advice", OUTSIDE_REGION, "zeeland-west-brabant@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, TERUGKOPPELING, TWENTE, "advice", OUTSIDE_REGION, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    # The kpc who asked a house for advice reads its answer, wherever the house lies.
    (MN_KPC, ADVIES, ROTTERDAM, "house", DISCLOSED, "national@v2 advies-op-aanvraag-antwoord"),
    (MN_KPC, ADVIES, ROTTERDAM, "advice", DISCLOSED, "national@v2 advies-op-aanvraag-antwoord"),
    (MN_KPC, ADVIES, ROTTERDAM, "plan_status", OUTSIDE_REGION, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (MN_KPC, ADVIES, ALMERE, "advice", DISCLOSED, "midden-nederland@v1 kpc-intake-terugkoppeling"),
    (RR_KPC, ADVIES, BREDA, "advice", DISCLOSED, "national@v2 advies-op-aanvraag-antwoord"),
    # Parties outside the national covenant, and the feedback service, gain nothing.
    (MN_RECLASSERING, ADVIES, TWENTE, "advice", OUTSIDE_REGION, "midden-nederland@v1 reclassering-advies"),
    (MN_POLITIE, AFDOENING, ROTTERDAM, "advice", OUTSIDE_REGION, "midden-nederland@v1 politie-zsm"),
    (FEEDBACK, ADVIES, ROTTERDAM, "advice", NO_COVENANT, ""),
    (FEEDBACK, TERUGKOPPELING, ROTTERDAM, "house", DISCLOSED, "national@v2 terugkoppeling-routering"),
]
# fmt: on


@pytest.mark.parametrize(
    ("party", "purpose", "house", "field", "reason", "by"),
    ADVICE_TRAVELS_MATRIX,
    ids=map(_row_id, ADVICE_TRAVELS_MATRIX),
)
def test_from_december_2026_the_advice_travels_for_the_decision_and_the_request_only(
    policy: AccessPolicy,
    party: str,
    purpose: str,
    house: str,
    field: str,
    reason: Withhold | None,
    by: str,
) -> None:
    decision = scope_of(policy, party, purpose, ADVICE_TRAVELS).decide(house, field)

    assert decision.reason is reason
    assert f"{decision.covenant} {decision.grant}".strip() == by


@pytest.mark.parametrize("region", REGIONS)
def test_the_day_before_another_regions_advice_is_outside_the_ovjs_and_the_kpcs_region(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    day = ADVICE_TRAVELS - dt.timedelta(days=1)
    kpc, ovj = ZSM_OM_DESKS[region]
    for party, purpose in ((ovj, AFDOENING), (kpc, ADVIES)):
        scope = scope_of(policy, party, purpose, day)
        assert NATIONAL_V2 not in scope.covenants
        for house in (h for h in houses.values() if h.region != region):
            decision = scope.decide(house.id, "advice")
            assert (decision.reason, decision.covenant) == (OUTSIDE_REGION, REGIONAL[region])


@pytest.mark.parametrize("region", REGIONS)
def test_from_december_2026_the_ovj_and_the_asking_kpc_read_every_houses_advice(
    policy: AccessPolicy, houses: Mapping[str, House], region: str
) -> None:
    kpc, ovj = ZSM_OM_DESKS[region]
    for party, purpose, grant in (
        (ovj, AFDOENING, "advies-bij-afdoening"),
        (kpc, ADVIES, "advies-op-aanvraag-antwoord"),
    ):
        scope = scope_of(policy, party, purpose, ADVICE_TRAVELS)
        for house in houses.values():
            decision = scope.decide(house.id, "advice")
            assert decision.reason is DISCLOSED, (party, house.id)
            if house.region != region:
                assert (decision.covenant, decision.grant) == (NATIONAL_V2, grant)
                assert scope.decide(house.id, "plan_status").reason is OUTSIDE_REGION
    # At intake the kpc still reads only the own region's advice.
    intake = scope_of(policy, kpc, INTAKE, ADVICE_TRAVELS)
    for house in houses.values():
        expected = DISCLOSED if house.region == region else OUTSIDE_REGION
        assert intake.decide(house.id, "advice").reason is expected, house.id


# --- Invariants over every admitted party and purpose ---------------------------------------------


@pytest.mark.parametrize("day", [DAY, ADVICE_TRAVELS, BEFORE_2026, AFTER_REGIONAL], ids=str)
def test_every_decision_cites_a_covenant_of_the_caller_consistent_with_its_reason(
    policy: AccessPolicy, covenants: CovenantSet, day: dt.date
) -> None:
    by_ref = {c.ref: c for c in covenants.covenants}
    admitted = 0
    for party, purpose in itertools.product(covenants.parties, PURPOSES):
        try:
            scope = scope_of(policy, party, purpose, day)
        except PermissionDenied:
            continue
        admitted += 1
        for house, fields in scope.decisions.items():
            for field, decision in fields.items():
                where = (party, purpose, house, field)
                if decision.reason is NO_COVENANT:
                    assert (decision.covenant, decision.grant) == ("", ""), where
                    continue
                covenant = by_ref[decision.covenant]
                [grant] = [g for g in covenant.grants if g.id == decision.grant]
                assert party in covenant.parties, where
                assert field in grant.fields, where
                assert covenant.in_force(day) is (decision.reason is not COVENANT_EXPIRED), where
                if decision.reason is DISCLOSED:
                    assert decision.covenant in scope.covenants, where
                    assert purpose in grant.purposes, where
    assert admitted > 0
