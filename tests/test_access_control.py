"""The shipped covenants enforced over gRPC: who gets in, which fields each answer shows, what it
withholds and why, and that every answer and every denial is an access-log entry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import TODAY, Marking, Person, problem, subject, valid_bsns
from google.type import date_pb2
from harness import RunningRegistry, batch_request, lookup_request
from sqlalchemy import text

from baken import pki
from baken.clock import AMSTERDAM
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2, registry_service_pb2_grpc
from baken.registry.v1 import registry_service_pb2 as pb
from baken.type.v1 import purpose_pb2
from services.accesslog import store as access_log
from services.accesslog.inquiry import MATCH_ACTIVITY
from services.common.covenants import MARKER_FIELDS

_bsns = valid_bsns(30_000_000)
PERSON = Person(bsn=next(_bsns))
STRANGER = Person(bsn=next(_bsns))
KPC = "zsm-midden-nederland-kpc"
OVJ = "zsm-midden-nederland-ovj"
INTAKE = purpose_pb2.PURPOSE_INTAKE_EN_SELECTIE
DECISION = purpose_pb2.PURPOSE_AFDOENINGSBESLISSING
CASE = "ZSM-MN-2026-000123"
REASON = "Suspect threatens his ex-partner tonight; the house cannot be reached."
UTRECHT = "vh-regio-utrecht-utrecht"
AT_FIELDS = tuple(f for f in MARKER_FIELDS if f.startswith("at."))
ROTTERDAM = "vh-rotterdam-rijnmond"
AT = {"open_cases": "Eén openstaande zaak.", "supervisions": "Toezicht 3RO loopt."}
# From this day national@v2 lets the advice travel with the person (covenants/national.toml).
ADVICE_TRAVELS = dt.date(2026, 12, 1)


@pytest.fixture
def marked(shipped_registry: RunningRegistry, ring: KeyRing) -> RunningRegistry:
    """PERSON marked in Utrecht (Midden-Nederland) and in Rotterdam, with A&T fields."""
    response = shipped_registry.sync(
        Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring),
        Marking(PERSON, "pga-1", house=ROTTERDAM, at_information=AT).upsert(ring),
    )
    assert response.created == 2
    return shipped_registry


def log_entries(registry: RunningRegistry) -> list[access_log.StoredEntry]:
    """The access log but the entries of matchingsmeldingen: marking one person in two houses
    logs the pair at sync (docs/REGISTRY.md), and these tests are about the look-ups."""
    with registry.engine.connect() as connection:
        return [
            e
            for e in access_log.search(connection, limit=10_000)
            if e.body.get("processing_activity") != MATCH_ACTIVITY
        ]


def withheld(response: pb.LookupResponse, house: str) -> dict[str, tuple[str, str, str]]:
    """field -> (reason, covenant, grant) for the house's marker."""
    return {
        w.field: (
            pb.WithholdReason.Name(w.reason).removeprefix("WITHHOLD_REASON_"),
            w.covenant,
            w.grant,
        )
        for w in response.withheld
        if w.marker.startswith(f"houses/{house}/")
    }


def marker_of(response: pb.LookupResponse, house: str) -> marker_pb2.Marker:
    (marker,) = [m for m in response.markers if m.house.name == f"houses/{house}"]
    return marker


def denied(call: Any) -> str | None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    found = problem(caught.value)
    assert found.code == grpc.StatusCode.PERMISSION_DENIED
    return found.reason


@pytest.mark.parametrize("day", [TODAY, ADVICE_TRAVELS], ids=str)
def test_the_kpc_sees_the_advice_of_its_own_region_and_the_that_signal_elsewhere(
    marked: RunningRegistry, ring: KeyRing, day: dt.date
) -> None:
    # At intake also once the advice travels for the decision: the selection needs only
    # whether any house knows him (docs/PROCESS.md §3 step 1).
    marked.set_today(day)
    response = marked.lookup(subject(ring, PERSON), party=KPC)

    assert response.outcome == pb.LOOKUP_OUTCOME_HIT
    utrecht, rotterdam = marker_of(response, UTRECHT), marker_of(response, ROTTERDAM)
    assert utrecht.advice.text.startswith("dagvaarden")
    assert utrecht.plan_status == marker_pb2.PLAN_STATUS_ACTIVE
    # Every field is decided, with or without a value: the list does not tell what exists.
    assert withheld(response, UTRECHT) == dict.fromkeys(AT_FIELDS, ("NO_COVENANT", "", ""))
    # Rotterdam: only the national that-signal.
    assert rotterdam.house.region == "rotterdam-rijnmond"
    assert rotterdam.house.contact.email
    assert rotterdam.target_group == marker_pb2.TARGET_GROUP_VEELPLEGER
    assert not rotterdam.HasField("advice")
    assert not rotterdam.plan_status
    assert not rotterdam.source_record_id
    assert not rotterdam.HasField("at_information")
    grant = ("OUTSIDE_REGION", "midden-nederland@v1", "kpc-intake-terugkoppeling")
    assert withheld(response, ROTTERDAM) == {
        "advice": grant,
        "plan_status": grant,
        "mark_date": grant,
        "source_record": grant,
        # Without the advice, its freshness is a field of its own, which no grant gives a kpc.
        "advice_freshness": ("NO_COVENANT", "", ""),
        **dict.fromkeys(AT_FIELDS, ("NO_COVENANT", "", "")),
    }


def test_the_ovj_sees_open_cases_of_its_region_but_not_supervisions(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    shipped_registry.sync(
        Marking(PERSON, "pga-1", house="vh-zuid-holland-zuid", at_information=AT).upsert(ring)
    )
    response = shipped_registry.lookup(
        subject(ring, PERSON),
        party="zsm-rotterdam-rijnmond-ovj",
        purpose=DECISION,
        case_reference=CASE,
    )
    marker = marker_of(response, "vh-zuid-holland-zuid")
    assert marker.at_information.open_cases == AT["open_cases"]
    assert not marker.at_information.supervisions
    # Rotterdam shares these with the OvJ at the A&T triage table only.
    triage = ("PURPOSE_NOT_GRANTED", "rotterdam-rijnmond@v2", "advies-en-triage")
    assert withheld(response, "vh-zuid-holland-zuid") == {
        "at.supervisions": triage,
        "at.detention_history": triage,
        "at.compulsory_education": triage,
        "at.care_deployed": triage,
    }


def test_a_party_that_may_not_see_where_gets_withheld_not_a_false_no_hit(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    # Police at ZSM Midden-Nederland: only its regional covenant, which covers Utrecht only.
    police = "zsm-midden-nederland-politie"
    marked.sync(Marking(STRANGER, "pga-2", house=ROTTERDAM).upsert(ring))

    response = marked.lookup(subject(ring, STRANGER), party=police)

    assert response.outcome == pb.LOOKUP_OUTCOME_WITHHELD
    assert list(response.markers) == []
    assert [(w.marker, w.field, w.reason, w.covenant) for w in response.withheld] == [
        ("", "marker", pb.WITHHOLD_REASON_OUTSIDE_REGION, "midden-nederland@v1")
    ]


def test_nothing_of_the_houses_is_shown_about_a_minor_at_intake(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    # Measured before: the that-signal of a minor was shown at intake. That step needs neither
    # dat- nor waarom-informatie of a minor; known or not, the answer is the same.
    for person in (PERSON, Person(bsn="123456782")):
        at_intake = marked.lookup(
            subject(ring, person), party=KPC, subject_age=pb.SUBJECT_AGE_MINOR
        )
        assert at_intake.outcome == pb.LOOKUP_OUTCOME_MINOR_AT_INTAKE
        assert list(at_intake.markers) == []
        assert [(w.marker, w.field, w.reason) for w in at_intake.withheld] == [
            ("", "marker", pb.WITHHOLD_REASON_MINOR_AT_INTAKE)
        ]

    deciding = marked.lookup(
        subject(ring, PERSON),
        party=OVJ,
        purpose=DECISION,
        case_reference=CASE,
        subject_age=pb.SUBJECT_AGE_MINOR,
    )
    assert marker_of(deciding, UTRECHT).advice.text.startswith("dagvaarden")


def test_a_minor_as_the_source_knows_him_stays_one_whatever_the_caller_claims(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    # Measured before: claiming ADULT for a 17-year-old at intake showed the house's advice,
    # and the claim was not logged.
    seventeen = Person(bsn="123456782")
    change = Marking(seventeen, "gcos-minor", house=UTRECHT).upsert(ring)
    until = TODAY.replace(day=1) + dt.timedelta(days=62)
    change.upsert.minor_until.CopyFrom(date_pb2.Date(year=until.year, month=until.month, day=1))
    assert shipped_registry.sync(change).created == 1

    claimed_adult = shipped_registry.lookup(subject(ring, seventeen), party=KPC)
    assert claimed_adult.outcome == pb.LOOKUP_OUTCOME_MINOR_AT_INTAKE
    assert list(claimed_adult.markers) == []
    entry = log_entries(shipped_registry)[-1]
    assert entry.body["subject_age"] == "adult"
    assert entry.body["minor_by_source"] is True
    assert "advice" not in json.dumps(entry.body["disclosed"])

    # Once he came of age, the house's advice is there for intake again.
    shipped_registry.set_today(until)
    grown = shipped_registry.lookup(subject(ring, seventeen), party=KPC)
    assert grown.outcome == pb.LOOKUP_OUTCOME_HIT
    assert log_entries(shipped_registry)[-1].body["minor_by_source"] is False


def test_an_expired_advice_is_withheld_even_where_the_covenant_grants_it(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    old = TODAY - dt.timedelta(days=400)
    shipped_registry.sync(
        Marking(PERSON, "gcos-1", house=UTRECHT, mark_date=old, advice_date=old).upsert(ring)
    )
    response = shipped_registry.lookup(subject(ring, PERSON), party=KPC)

    advice = marker_of(response, UTRECHT).advice
    assert (advice.text, advice.freshness) == ("", marker_pb2.ADVICE_FRESHNESS_EXPIRED)
    assert withheld(response, UTRECHT)["advice"] == ("ADVICE_EXPIRED", "", "")
    assert "advice" not in log_entries(shipped_registry)[-1].body["disclosed"][0]["fields"]


def test_the_feedback_service_sees_whether_an_advice_is_current_but_never_the_advice(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(
        subject(ring, PERSON),
        party="feedback",
        purpose=purpose_pb2.PURPOSE_TERUGKOPPELING,
        case_reference=CASE,
    )

    assert response.outcome == pb.LOOKUP_OUTCOME_HIT
    routing = "national@v1 terugkoppeling-routering"
    shown = {d["marker"]: d["fields"] for d in log_entries(marked)[-1].body["disclosed"]}
    for house in (UTRECHT, ROTTERDAM):
        marker = marker_of(response, house)
        assert marker.advice.freshness == marker_pb2.ADVICE_FRESHNESS_CURRENT
        assert marker.advice.text == ""
        assert not marker.advice.HasField("advice_date")
        assert marker.source_record_id in ("gcos-1", "pga-1")
        assert not marker.house.region and not marker.house.HasField("contact")
        assert not marker.target_group and not marker.plan_status
        assert not marker.HasField("at_information")
        hidden = withheld(response, house)
        assert hidden["advice"] == ("NO_COVENANT", "", "")
        assert {"house", "source_record", "advice_freshness"}.isdisjoint(hidden)
        assert shown[marker.name] == dict.fromkeys(
            ["house", "source_record", "advice_freshness"], routing
        )
    assert "dagvaarden" not in json.dumps(log_entries(marked)[-1].body)


@pytest.mark.parametrize("hour", [14, 2])
def test_a_party_whose_covenant_withholds_the_contact_point_sees_no_number_at_any_hour(
    marked: RunningRegistry, ring: KeyRing, hour: int
) -> None:
    # A Wednesday: by day the desk's number answers, at night the piket's.
    marked.clock.advance(dt.datetime(2026, 12, 2, hour, tzinfo=AMSTERDAM) - marked.clock.now())
    houses = load_houses()

    kpc = marked.lookup(subject(ring, PERSON), party=KPC)
    routing = marked.lookup(
        subject(ring, PERSON),
        party="feedback",
        purpose=purpose_pb2.PURPOSE_TERUGKOPPELING,
        case_reference=CASE,
    )

    wire = routing.SerializeToString()
    for house in (UTRECHT, ROTTERDAM):
        numbers = (houses[house].contact_phone, houses[house].contact_after_hours_phone)
        # The KPC'er's covenants grant the contact point: he sees whom to call now.
        seen = marker_of(kpc, house).house.contact
        assert seen.call_now_phone == numbers[0 if hour == 14 else 1]
        assert (seen.phone, seen.after_hours_phone) == numbers
        # The feedback service's grant leaves it out: neither number, nor which to call.
        assert not marker_of(routing, house).house.HasField("contact")
        assert withheld(routing, house)["contact"] == ("NO_COVENANT", "", "")
        assert not any(n.encode() in wire for n in numbers)


@pytest.mark.parametrize(
    ("party", "fields", "reason"),
    [
        # No purpose named.
        (KPC, {"purpose": purpose_pb2.PURPOSE_UNSPECIFIED}, "PURPOSE_REQUIRED"),
        # Victim support may look only when the decision is taken, never at intake.
        ("zsm-midden-nederland-slachtofferhulp", {}, "PURPOSE_NOT_GRANTED"),
        # A process director receives feedback; it does not screen suspects.
        ("vh-midden-nederland-procesregie", {}, "PURPOSE_NOT_GRANTED"),
        # Police has no triage grant anywhere.
        (
            "zsm-rotterdam-rijnmond-politie",
            {"purpose": purpose_pb2.PURPOSE_TRIAGE, "case_reference": CASE},
            "PURPOSE_NOT_GRANTED",
        ),
        # The operator runs the system and is in no covenant.
        ("operator", {}, "NO_COVENANT"),
        # The decision needs the case it is about.
        (OVJ, {"purpose": DECISION}, "CASE_REFERENCE_REQUIRED"),
        # Monitoring sees aggregates, never a person.
        (KPC, {"purpose": purpose_pb2.PURPOSE_MONITORING}, "PURPOSE_NOT_FOR_LOOKUP"),
        # Break-glass: only the OvJ, only for the decision.
        (KPC, {"break_glass_reason": REASON}, "BREAK_GLASS_NOT_ALLOWED"),
        (OVJ, {"break_glass_reason": REASON}, "BREAK_GLASS_NOT_ALLOWED"),
    ],
)
def test_a_lookup_outside_the_covenants_is_denied_and_the_denial_is_logged(
    marked: RunningRegistry, ring: KeyRing, party: str, fields: dict[str, Any], reason: str
) -> None:
    before = len(log_entries(marked))

    assert denied(lambda: marked.lookup(subject(ring, PERSON), party=party, **fields)) == reason

    entries = log_entries(marked)
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.outcome, entry.party_id, entry.body["denial_reason"]) == ("denied", party, reason)
    assert entry.body["data_subject"] == sorted(
        p.value.hex() for p in subject(ring, PERSON).pseudonyms
    ) or set(entry.body["data_subject"]) == {
        p.value.hex() for p in subject(ring, PERSON).pseudonyms
    }
    assert "disclosed" not in entry.body


def test_a_denial_names_the_purpose_and_role_refused_in_its_error_info(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    """The values of the message are in ErrorInfo.metadata (AIP-193): no client parses them."""
    with pytest.raises(grpc.RpcError) as caught:
        marked.lookup(
            subject(ring, PERSON),
            party="zsm-rotterdam-rijnmond-politie",
            purpose=purpose_pb2.PURPOSE_TRIAGE,
            case_reference=CASE,
        )
    found = problem(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PURPOSE_NOT_GRANTED")
    assert found.metadata == {"purpose": "triage", "role": "police"}
    assert caught.value.details() == "no covenant grants triage to role police"

    with pytest.raises(grpc.RpcError) as caught:
        marked.lookup(subject(ring, PERSON), party=KPC, break_glass_reason=REASON)
    found = problem(caught.value)
    assert found.reason == "BREAK_GLASS_NOT_ALLOWED"
    assert found.metadata == {
        "breakGlassRole": "zsm-officier",
        "breakGlassPurpose": "afdoeningsbeslissing",
    }
    # The break-glass reason is free text from the request: in no message, in no metadata.
    assert REASON not in caught.value.details()


def test_covenants_out_of_force_grant_nothing(marked: RunningRegistry, ring: KeyRing) -> None:
    marked.set_today(dt.date(2029, 1, 15))  # every shipped covenant has ended

    assert denied(lambda: marked.lookup(subject(ring, PERSON), party=KPC)) == "COVENANT_EXPIRED"


def test_the_covenant_in_force_on_the_day_decides(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    day = dt.date(2025, 6, 1)  # Rotterdam's 2024 covenant (v1) is in force; v2 and national not
    shipped_registry.set_today(day)
    shipped_registry.sync(
        Marking(
            PERSON, "pga-1", house=ROTTERDAM, mark_date=day, advice_date=day, at_information=AT
        ).upsert(ring)
    )
    response = shipped_registry.lookup(subject(ring, PERSON), party="zsm-rotterdam-rijnmond-kpc")

    marker = marker_of(response, ROTTERDAM)
    assert marker.advice.text.startswith("dagvaarden")
    assert withheld(response, ROTTERDAM)["source_record"] == (
        "COVENANT_EXPIRED",
        "rotterdam-rijnmond@v2",
        "kpc-intake-terugkoppeling",
    )
    entry = log_entries(shipped_registry)[-1]
    assert entry.body["covenants"] == ["rotterdam-rijnmond@v1"]


def test_break_glass_shows_waarom_informatie_beyond_the_grant_and_awaits_review(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(
        subject(ring, PERSON),
        party=OVJ,
        purpose=DECISION,
        case_reference=CASE,
        break_glass_reason=REASON,
    )

    assert response.break_glass
    rotterdam = marker_of(response, ROTTERDAM)
    assert rotterdam.advice.text.startswith("dagvaarden")
    assert rotterdam.at_information.supervisions == AT["supervisions"]
    assert "advice" not in withheld(response, ROTTERDAM)
    entry = log_entries(marked)[-1]
    assert entry.seq == response.access_log_entry
    assert entry.outcome == "break-glass"
    assert entry.body["break_glass_reason"] == REASON
    shown = {d["marker"]: d["fields"] for d in entry.body["disclosed"]}
    assert shown[rotterdam.name]["advice"] == "break-glass"
    assert shown[rotterdam.name]["house"] == "national@v1 dat-signaal-zsm"
    with marked.engine.connect() as connection:
        assert [e.seq for e in access_log.pending_reviews(connection)] == [entry.seq]


def test_a_break_glass_look_up_leaves_nothing_behind_for_the_next_plain_one(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    """A house's fields are decided once per scope and day (disclosure's field plan): the
    same officer's plain look-ups before and after a break-glass one see only the grant."""

    def look_up(**break_glass: str) -> pb.LookupResponse:
        return marked.lookup(
            subject(ring, PERSON), party=OVJ, purpose=DECISION, case_reference=CASE, **break_glass
        )

    before = look_up()
    opened = look_up(break_glass_reason=REASON)
    after = look_up()

    assert marker_of(opened, ROTTERDAM).advice.text.startswith("dagvaarden")
    for response in (before, after):
        assert not response.break_glass
        assert not marker_of(response, ROTTERDAM).HasField("advice")
        assert not marker_of(response, ROTTERDAM).HasField("at_information")
        assert withheld(response, ROTTERDAM)["advice"][0] == "OUTSIDE_REGION"
    assert withheld(before, ROTTERDAM) == withheld(after, ROTTERDAM)


def test_before_december_2026_the_ovj_reads_another_regions_advice_only_by_break_glass(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    response = marked.lookup(
        subject(ring, PERSON), party=OVJ, purpose=DECISION, case_reference=CASE
    )

    assert not response.break_glass
    assert marker_of(response, UTRECHT).advice.text.startswith("dagvaarden")
    assert not marker_of(response, ROTTERDAM).HasField("advice")
    assert withheld(response, ROTTERDAM)["advice"] == (
        "OUTSIDE_REGION",
        "midden-nederland@v1",
        "ovj-afdoening",
    )
    assert log_entries(marked)[-1].body["covenants"] == ["midden-nederland@v1", "national@v1"]


def test_from_december_2026_the_ovj_reads_another_regions_advice_by_the_national_covenant(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    marked.set_today(ADVICE_TRAVELS)

    response = marked.lookup(
        subject(ring, PERSON), party=OVJ, purpose=DECISION, case_reference=CASE
    )

    assert response.outcome == pb.LOOKUP_OUTCOME_HIT and not response.break_glass
    rotterdam = marker_of(response, ROTTERDAM)
    assert rotterdam.advice.text.startswith("dagvaarden")
    assert rotterdam.advice.freshness == marker_pb2.ADVICE_FRESHNESS_CURRENT
    # Only the advice travels: the plan and the A&T fields stay with Rotterdam's covenant.
    assert not rotterdam.plan_status and not rotterdam.source_record_id
    assert not rotterdam.HasField("at_information")
    outside = ("OUTSIDE_REGION", "midden-nederland@v1", "ovj-afdoening")
    hidden = withheld(response, ROTTERDAM)
    assert hidden == {
        **dict.fromkeys(AT_FIELDS, ("NO_COVENANT", "", "")),
        **dict.fromkeys(
            ["plan_status", "mark_date", "source_record", "at.open_cases", "at.antecedents"],
            outside,
        ),
    }
    entry = log_entries(marked)[-1]
    assert entry.outcome == "hit"
    assert entry.body["covenants"] == ["midden-nederland@v1", "national@v2"]
    shown = {d["marker"]: d["fields"] for d in entry.body["disclosed"]}[rotterdam.name]
    # Each field shown names the covenant and grant that showed it.
    assert shown == {
        **dict.fromkeys(
            ["house", "region", "contact", "target_group"], "national@v2 dat-signaal-zsm"
        ),
        **dict.fromkeys(["advice", "advice_freshness"], "national@v2 advies-bij-afdoening"),
    }
    # Every field is decided: shown or withheld, none left out.
    assert set(shown) | set(hidden) == set(MARKER_FIELDS)
    assert set(shown).isdisjoint(hidden)
    with marked.engine.connect() as connection:
        assert access_log.pending_reviews(connection) == []


def test_from_december_2026_break_glass_shows_only_what_no_covenant_grants(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    marked.set_today(ADVICE_TRAVELS)

    response = marked.lookup(
        subject(ring, PERSON),
        party=OVJ,
        purpose=DECISION,
        case_reference=CASE,
        break_glass_reason=REASON,
    )

    rotterdam = marker_of(response, ROTTERDAM)
    assert rotterdam.at_information.supervisions == AT["supervisions"]
    entry = log_entries(marked)[-1]
    assert entry.outcome == "break-glass"
    shown = {d["marker"]: d["fields"] for d in entry.body["disclosed"]}[rotterdam.name]
    assert shown["advice"] == "national@v2 advies-bij-afdoening"
    assert shown["at.supervisions"] == shown["at.open_cases"] == "break-glass"


def test_a_break_glass_reason_must_be_written_out(marked: RunningRegistry, ring: KeyRing) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        marked.lookup(
            subject(ring, PERSON),
            party=OVJ,
            purpose=DECISION,
            case_reference=CASE,
            break_glass_reason="urgent",
        )
    assert problem(caught.value).fields == ["break_glass_reason"]


def test_each_answer_is_the_access_log_entry_it_cites(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    hit = marked.lookup(subject(ring, PERSON), party=KPC)
    miss = marked.lookup(subject(ring, STRANGER), party=KPC, on_behalf_of="kpc-0099")

    entries = {e.seq: e for e in log_entries(marked)}
    assert set(entries) == {hit.access_log_entry, miss.access_log_entry}
    found = entries[hit.access_log_entry]
    assert found.outcome == "hit"
    body = found.body
    assert (body["party_id"], body["organisation"], body["role"]) == (
        KPC,
        "OM ZSM Midden-Nederland",
        "kpc",
    )
    assert (body["purpose"], body["on_behalf_of"]) == ("intake-en-selectie", "kpc-0042")
    assert body["covenants"] == ["midden-nederland@v1", "national@v1"]
    assert len(body["trace_id"]) == 32 and len(body["span_id"]) == 16
    assert body["request_id"] and body["client_address"].startswith("ipv4:127.0.0.1")
    shown = {d["marker"]: d["fields"] for d in body["disclosed"]}
    assert shown[marker_of(hit, ROTTERDAM).name] == dict.fromkeys(
        ["house", "region", "contact", "target_group"], "national@v1 dat-signaal-zsm"
    )
    assert shown[marker_of(hit, UTRECHT).name]["advice"] == (
        "midden-nederland@v1 kpc-intake-terugkoppeling"
    )
    assert {w["field"] for w in body["withheld"]} >= {"advice", "source_record"}
    assert entries[miss.access_log_entry].outcome == "no-hit"
    assert entries[miss.access_log_entry].body["on_behalf_of"] == "kpc-0099"


def test_the_callers_traceparent_names_the_trace(marked: RunningRegistry, ring: KeyRing) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    marked.stub_for(KPC).Lookup(
        lookup_request(subject(ring, PERSON)),
        metadata=(("traceparent", f"00-{trace}-00f067aa0ba902b7-01"),),
        timeout=10,
    )
    assert log_entries(marked)[-1].body["trace_id"] == trace


def test_a_batch_entry_without_a_case_is_denied_alone_and_logged(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    request = batch_request(
        [
            pb.BatchLookupEntry(ref="a", subject=subject(ring, PERSON), case_reference=CASE),
            pb.BatchLookupEntry(ref="b", subject=subject(ring, STRANGER)),
        ],
        purpose=DECISION,
    )
    [response] = marked.stub_for(OVJ).BatchLookup(iter([request]), timeout=10)

    a, b = response.results
    assert a.lookup.outcome == pb.LOOKUP_OUTCOME_HIT
    assert b.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert [(e.outcome, e.body.get("denial_reason")) for e in log_entries(marked)] == [
        ("hit", None),
        ("denied", "CASE_REFERENCE_REQUIRED"),
    ]


def test_without_a_log_entry_there_is_no_answer(marked: RunningRegistry, ring: KeyRing) -> None:
    with marked.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'log unavailable'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON access_log EXECUTE FUNCTION refuse()")
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON access_log "
                    "BEGIN SELECT RAISE(ABORT, 'log unavailable'); END"
                )
            )

    with pytest.raises(grpc.RpcError) as caught:
        marked.lookup(subject(ring, PERSON), party=KPC)

    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "dagvaarden" not in str(caught.value.details())
    assert log_entries(marked) == []


def _certificate(pki_dir: Path, identity: pki.Identity) -> grpc.ChannelCredentials:
    """A certificate from the registry's own CA, for an identity the register may not know."""
    ca = pki.Issued((pki_dir / "ca.pem").read_bytes(), (pki_dir / "ca.key").read_bytes())
    issued = pki.issue(ca, identity, now=dt.datetime.now(dt.UTC))
    return grpc.ssl_channel_credentials(ca.cert_pem, issued.key_pem, issued.cert_pem)


@pytest.mark.parametrize(
    "identity",
    [
        pki.Identity("zsm-nowhere-kpc", "OM ZSM Nergens", "kpc"),
        # A real party id with another organisation or role than the register's.
        pki.Identity(KPC, "Een andere organisatie", "kpc"),
        pki.Identity(KPC, "OM ZSM Midden-Nederland", "zsm-officier"),
    ],
)
def test_a_certificate_that_does_not_match_the_party_register_is_refused(
    marked: RunningRegistry, ring: KeyRing, identity: pki.Identity
) -> None:
    credentials = _certificate(marked.pki_dir, identity)
    with grpc.secure_channel(f"127.0.0.1:{marked.port}", credentials) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        reason = denied(lambda: stub.Lookup(lookup_request(subject(ring, PERSON)), timeout=10))
    assert reason == "PARTY_UNKNOWN"
    assert log_entries(marked)[-1].body["denial_reason"] == "PARTY_UNKNOWN"


def test_only_a_source_adapter_syncs_and_only_its_own_source(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    change = Marking(PERSON, "gcos-1", house=UTRECHT).upsert(ring)
    request = pb.SyncMarkersRequest(changes=[change])

    kpc = shipped_registry.stub_for(KPC)
    assert denied(lambda: kpc.SyncMarkers(iter([request]), timeout=10)) == "NOT_A_SOURCE_ADAPTER"
    response = shipped_registry.stub_for("adapter-pga").SyncMarkers(iter([request]), timeout=10)
    assert (response.created, response.rejected) == (0, 1)
    assert response.rejections[0].reason == "SOURCE_NOT_SERVED"
    assert shipped_registry.tables()["markers"] == []


def test_the_log_entry_names_no_bsn_and_no_advice_text(
    marked: RunningRegistry, ring: KeyRing
) -> None:
    marked.lookup(subject(ring, PERSON), party=OVJ, purpose=DECISION, case_reference=CASE)
    body = json.dumps([e.body for e in log_entries(marked)])
    assert PERSON.bsn is not None and PERSON.bsn not in body
    assert "dagvaarden" not in body and AT["open_cases"] not in body


def test_break_glass_does_not_lift_the_expiry_of_an_advice(
    shipped_registry: RunningRegistry, ring: KeyRing
) -> None:
    old = TODAY - dt.timedelta(days=400)
    shipped_registry.sync(
        Marking(PERSON, "pga-1", house=ROTTERDAM, mark_date=old, advice_date=old).upsert(ring)
    )
    response = shipped_registry.lookup(
        subject(ring, PERSON),
        party=OVJ,
        purpose=DECISION,
        case_reference=CASE,
        break_glass_reason=REASON,
    )

    assert marker_of(response, ROTTERDAM).advice.text == ""
    assert withheld(response, ROTTERDAM)["advice"] == ("ADVICE_EXPIRED", "", "")
    entry = log_entries(shipped_registry)[-1]
    assert entry.outcome == "break-glass"
    assert "advice" not in entry.body["disclosed"][0]["fields"]


def test_reference_data_is_for_parties_of_the_register_only(marked: RunningRegistry) -> None:
    stranger = pki.Identity("zsm-nowhere-kpc", "OM ZSM Nergens", "kpc")
    credentials = _certificate(marked.pki_dir, stranger)
    with grpc.secure_channel(f"127.0.0.1:{marked.port}", credentials) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        assert denied(lambda: stub.ListHouses(pb.ListHousesRequest(), timeout=10)) == (
            "PARTY_UNKNOWN"
        )
    assert marked.stub_for("adapter-gcos").ListHouses(pb.ListHousesRequest(), timeout=10).houses
