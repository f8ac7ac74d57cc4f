"""A ZSM desk's inflow (issue: the report's "known share of the inflow" had no denominator of
its own): every suspect the desk's case system registered is recorded once per region and case,
with whether and when Baken checked him; the desk's screen lists it; a decision settles what was
held for the desk and ends the need for the pseudonyms; a technisch sepot 01 takes the entry out;
and the month's coverage figures count the inflow. Against a real feedback service before a
real registry with the shipped covenants."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from builders import NOW, Person, problem, subject, valid_bsns
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, USER, RunningFeedback
from google.protobuf import timestamp_pb2
from test_report import ask_one

from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2
from baken.stuurinformatie.figures import CHECK_TERM_MINUTES

SUSPECT = Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1990, 5, 17))
OTHER = Person(bsn="123456782", surname="de Vries", birth_date=dt.date(1988, 2, 3))
CASE = "10-123456-26"
OVJ_UTRECHT = "zsm-midden-nederland-ovj"
POLICE_UTRECHT = "zsm-midden-nederland-politie"
STEERING = "landelijke-stuurgroep"


def stamp(time: dt.datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(time)
    return value


def inflow(
    feedback: RunningFeedback,
    person: Person = SUSPECT,
    party: str = KPC_UTRECHT,
    *,
    case: str = CASE,
    arrested: dt.datetime = NOW - dt.timedelta(hours=1),
    checked: dt.datetime | None = None,
    subject_age: int = registry_service_pb2.SUBJECT_AGE_ADULT,
    **fields: Any,
) -> pb.InflowEntry:
    request = pb.RecordInflowRequest(
        case_reference=case,
        subject=subject(feedback.ring, person),
        arrest_time=stamp(arrested),
        subject_age=subject_age,  # type: ignore[arg-type]
        on_behalf_of="instroom",
        **fields,
    )
    if checked is not None:
        request.checked_time.CopyFrom(stamp(checked))
    entry: pb.InflowEntry = feedback.stub_for(party).RecordInflow(request, timeout=10)
    return entry


def listed(
    feedback: RunningFeedback, party: str = KPC_UTRECHT, **fields: Any
) -> list[pb.InflowEntry]:
    response = feedback.stub_for(party).ListInflow(
        pb.ListInflowRequest(on_behalf_of=USER, **fields), timeout=10
    )
    return list(response.entries)


def refused(call: Any) -> tuple[grpc.StatusCode, str | None, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    found = problem(caught.value)
    return found.code, found.reason, found.fields


def held(request_key: str = "zsm:10-123456-26:8:2") -> pb.HeldDecision:
    return pb.HeldDecision(
        code=pb.DECISION_CODE_DAGVAARDING,
        stage=pb.DECISION_STAGE_FINAL,
        request_key=request_key,
        problem="house_advice: required: a line for houses/vh-regio-utrecht-utrecht",
    )


def test_a_suspect_is_one_entry_and_a_later_record_fills_in_the_check(
    feedback: RunningFeedback,
) -> None:
    first = inflow(feedback, offence_category="winkeldiefstal")
    assert first.name.startswith("inflow/")
    assert not first.HasField("checked_time") and not first.known
    checked = inflow(feedback, checked=NOW, known=True)
    again = inflow(feedback, checked=NOW + dt.timedelta(minutes=5), known=False)

    assert checked.name == again.name == first.name
    assert checked.checked_time.ToDatetime(dt.UTC) == NOW
    # What was recorded is never taken back: the later, different check changes nothing.
    assert again == checked
    (entry,) = listed(feedback)
    assert entry == checked
    assert entry.offence_category == "winkeldiefstal"
    assert entry.subject == subject(feedback.ring, SUSPECT)
    assert entry.recorded_by == KPC_UTRECHT


def test_the_ovj_of_the_desk_reads_its_inflow_and_another_region_does_not(
    feedback: RunningFeedback,
) -> None:
    inflow(feedback)
    assert [e.case_reference for e in listed(feedback, OVJ_UTRECHT)] == [CASE]
    assert listed(feedback, KPC_ROTTERDAM) == []
    # The same case number at another desk is another entry.
    inflow(feedback, OTHER, KPC_ROTTERDAM)
    assert [e.subject for e in listed(feedback, KPC_ROTTERDAM)] == [subject(feedback.ring, OTHER)]


@pytest.mark.parametrize("party", [POLICE_UTRECHT, "adapter-gcos", "privacy-auditor"])
def test_only_a_zsm_desk_keeps_or_reads_an_inflow(feedback: RunningFeedback, party: str) -> None:
    inflow(feedback)
    assert refused(lambda: inflow(feedback, party=party))[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ZSM_DESKS_ONLY",
    )
    assert refused(lambda: listed(feedback, party))[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ZSM_DESKS_ONLY",
    )


def test_a_case_stays_one_persons(feedback: RunningFeedback) -> None:
    inflow(feedback)
    code, reason, _ = refused(lambda: inflow(feedback, OTHER, checked=NOW, known=True))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INFLOW_OTHER_SUBJECT")
    (entry,) = listed(feedback)
    assert entry.subject == subject(feedback.ring, SUSPECT) and not entry.known


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"arrested": NOW + dt.timedelta(hours=1)}, "arrest_time"),
        ({"checked": NOW + dt.timedelta(hours=1)}, "checked_time"),
        ({"known": True}, "known"),
        ({"case": "111222333"}, "case_reference"),
        ({"offence_category": "diefstal\x1b[2J"}, "offence_category"),
        (
            {"held_decision": pb.HeldDecision(code=1, stage=2, request_key="k")},
            "held_decision.code",
        ),
    ],
)
def test_a_wrong_record_is_refused_by_field_and_changes_nothing(
    feedback: RunningFeedback, fields: dict[str, Any], field: str
) -> None:
    code, _, fields_named = refused(lambda: inflow(feedback, **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields_named
    assert feedback.tables()["inflow"] == []


def test_a_decision_settles_the_held_decision_and_ends_the_pseudonyms(
    feedback: RunningFeedback,
) -> None:
    inflow(feedback, checked=NOW, known=False, held_decision=held())
    (entry,) = listed(feedback)
    assert entry.held_decision.request_key == "zsm:10-123456-26:8:2"

    routing = feedback.decide(
        SUSPECT, KPC_UTRECHT, code=pb.DECISION_CODE_VOORGELEIDING, stage=pb.DECISION_STAGE_ROUTING
    )
    (entry,) = listed(feedback)
    assert entry.decision == routing.name and not entry.HasField("held_decision")
    assert entry.subject.pseudonyms, "a routing decision: the desk still works the case"

    final = feedback.decide(SUSPECT, KPC_UTRECHT)
    (entry,) = listed(feedback)
    assert entry.decision == final.name
    assert entry.decision_stage == pb.DECISION_STAGE_FINAL
    assert not entry.HasField("subject")
    # Held again after the final decision (a late retry of the adapter): nothing is held.
    inflow(feedback, held_decision=held("zsm:late"))
    assert not listed(feedback)[0].HasField("held_decision")


def test_the_pseudonyms_go_after_fourteen_days(feedback: RunningFeedback) -> None:
    inflow(feedback)
    feedback.registry.clock.advance(dt.timedelta(days=14, minutes=1))
    (entry,) = listed(feedback, since=stamp(NOW - dt.timedelta(days=30)))
    assert not entry.HasField("subject") and entry.case_reference == CASE
    # Shown no longer at once; erased from the database by the retention run.
    assert feedback.server.expirer.expire()["inflow_pseudonyms"] == 1
    assert feedback.tables()["inflow"][0]["subject"] is None


def test_a_technisch_sepot_01_takes_the_entry_out(feedback: RunningFeedback) -> None:
    inflow(feedback, checked=NOW, known=False)
    feedback.decide(SUSPECT, KPC_UTRECHT, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)
    assert feedback.tables()["inflow"] == []
    code, reason, _ = refused(lambda: inflow(feedback))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CASE_PURGED")


def test_every_record_and_every_listing_is_in_the_access_log(feedback: RunningFeedback) -> None:
    def logged() -> list[str]:
        return [r["body"] for r in feedback.tables()["access_log"]]

    before = len(logged())
    inflow(feedback)
    listed(feedback)
    new = logged()[before:]
    assert len(new) == 2
    assert all('"processing_activity":"baken:zsm-instroom"' in body for body in new)
    assert '"outcome":"recorded"' in new[0] and '"outcome":"listed"' in new[1]


def test_the_coverage_figures_count_the_inflow(feedback: RunningFeedback) -> None:
    """Fourteen suspects in November at the Midden-Nederland desk: thirteen checked, ten of them
    within the term, six known (no minor: at intake a minor's check tells the desk nothing); five
    minors; one never checked. What the registry counts of look-ups does not enter in."""
    late = dt.timedelta(minutes=CHECK_TERM_MINUTES + 1)
    for i, bsn in zip(range(14), valid_bsns(), strict=False):
        arrested = NOW - dt.timedelta(days=2, hours=i)
        fields: dict[str, Any] = {"case": f"10-{100000 + i}-26", "arrested": arrested}
        if i != 13:
            fields["checked"] = arrested + (dt.timedelta(minutes=3) if i < 10 else late)
            fields["known"] = 5 <= i < 11
        if i < 5:
            fields["subject_age"] = registry_service_pb2.SUBJECT_AGE_MINOR
        inflow(feedback, Person(bsn=bsn), **fields)
    # Arrested in October: not November's.
    inflow(feedback, case="10-999999-26", arrested=NOW - dt.timedelta(days=40))

    answer = ask_one(feedback, feedback.server.port, STEERING, month="2026-11")
    counts = {
        f.metric: f.count
        for f in answer.figures
        if f.region == "midden-nederland" and f.metric.startswith("zsm.inflow")
    }
    assert counts == {
        "zsm.inflow": 14,
        "zsm.inflow_minors": 5,
        "zsm.inflow_checked": 13,
        "zsm.inflow_checked_in_time": 10,
        "zsm.inflow_known": 6,
    }
    others = {f.metric: f.small for f in answer.figures if f.region == "oost-nederland"}
    assert others["zsm.inflow"] is True, "nothing counted is fewer than five"
