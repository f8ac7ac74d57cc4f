"""A decision's advice line per marking house (issue: one advice_followed for all houses): the
desk says, per house whose CURRENT or AGED advice it could see, whether it followed it; each
house hears only its own line and that others were told; a house the desk could not see is
never asked about, and a line for it is refused in words that do not tell whether it has advice.
Against a real feedback service before a real registry with the shipped covenants."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from builders import Marking, Person, problem
from feedback_harness import KPC_ROTTERDAM, KPC_UTRECHT, RunningFeedback

from baken.feedback.v1 import feedback_service_pb2 as pb

TRAVELLER = Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1990, 5, 17))
STRANGER = Person(bsn="123456782", surname="de Vries", birth_date=dt.date(1988, 2, 3))
UTRECHT = "vh-regio-utrecht-utrecht"  # Midden-Nederland
AMERSFOORT = "vh-regio-utrecht-amersfoort"  # Midden-Nederland
REASON = "Het advies van Amersfoort was een meldplicht; hij onttrok zich twee keer, dus dagvaarden."


def mark(feedback: RunningFeedback, person: Person, *houses: str) -> None:
    feedback.registry.sync(
        *(
            Marking(person, f"{house}-{person.bsn}", house=house).upsert(feedback.ring)
            for house in houses
        )
    )


def line(house: str, followed: int, reason: str = "") -> pb.HouseAdvice:
    return pb.HouseAdvice(
        house=f"houses/{house}",
        advice_followed=followed,  # type: ignore[arg-type]
        deviation_reason=reason,
    )


def sent(feedback: RunningFeedback) -> dict[str, pb.Delivery]:
    return {row["house_id"]: feedback.stored(row) for row in feedback.tables()["deliveries"]}


def refused(call: object) -> tuple[grpc.StatusCode, list[str], list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    found = problem(caught.value)
    return found.code, found.fields, found.descriptions


def test_each_house_hears_only_its_own_line_and_that_others_were_told(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, AMERSFOORT)
    feedback.decide(
        TRAVELLER,
        KPC_UTRECHT,
        house_advice=[
            line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED),
            line(AMERSFOORT, pb.ADVICE_FOLLOWED_NOT_FOLLOWED, REASON),
        ],
    )
    items = sent(feedback)
    assert items[UTRECHT].decision.advice_followed == pb.ADVICE_FOLLOWED_FOLLOWED
    assert items[UTRECHT].decision.deviation_reason == ""
    assert items[AMERSFOORT].decision.advice_followed == pb.ADVICE_FOLLOWED_NOT_FOLLOWED
    assert items[AMERSFOORT].decision.deviation_reason == REASON
    assert [i.decision.other_houses for i in items.values()] == [1, 1]
    assert REASON not in str(items[UTRECHT])


def test_every_house_whose_advice_the_desk_could_see_needs_its_line(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, AMERSFOORT)
    code, fields, why = refused(
        lambda: feedback.decide(
            TRAVELLER, KPC_UTRECHT, house_advice=[line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED)]
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice"])
    assert f"houses/{AMERSFOORT}" in why[0]
    # The one deprecated line cannot say which of two houses it is about.
    code, fields, _ = refused(
        lambda: feedback.decide(TRAVELLER, KPC_UTRECHT, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED)
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice"])
    assert feedback.tables()["decisions"] == []


def test_a_house_the_desk_could_not_see_is_never_asked_about_nor_revealed(
    feedback: RunningFeedback,
) -> None:
    """The Rotterdam desk sees no Midden-Nederland advice: it decides without a line for
    Utrecht, and a line for Utrecht is refused in the same words whether Utrecht marked the
    person with CURRENT advice or nobody knows him."""
    mark(feedback, TRAVELLER, UTRECHT)
    response = feedback.decide(TRAVELLER, KPC_ROTTERDAM)
    assert [i.house for i in response.items] == [f"houses/{UTRECHT}"]
    assert sent(feedback)[UTRECHT].decision.advice_followed == pb.ADVICE_FOLLOWED_UNSPECIFIED
    marked = refused(
        lambda: feedback.decide(
            TRAVELLER,
            KPC_ROTTERDAM,
            case_reference="10-222222-26",
            house_advice=[line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED)],
        )
    )
    not_marked = refused(
        lambda: feedback.decide(
            STRANGER,
            KPC_ROTTERDAM,
            case_reference="10-333333-26",
            house_advice=[line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED)],
        )
    )
    assert marked == not_marked
    assert marked[:2] == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice[0].house"])


def test_a_house_named_twice_or_a_reason_without_deviation_is_refused(
    feedback: RunningFeedback,
) -> None:
    mark(feedback, TRAVELLER, UTRECHT)
    code, fields, _ = refused(
        lambda: feedback.decide(
            TRAVELLER,
            KPC_UTRECHT,
            house_advice=[
                line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED),
                line(UTRECHT, pb.ADVICE_FOLLOWED_NOT_FOLLOWED, REASON),
            ],
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["house_advice[1].house"])
    code, fields, _ = refused(
        lambda: feedback.decide(
            TRAVELLER,
            KPC_UTRECHT,
            house_advice=[line(UTRECHT, pb.ADVICE_FOLLOWED_FOLLOWED, REASON)],
        )
    )
    assert (code, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ["house_advice[0].deviation_reason"],
    )
