"""Management information: a generated month whose true numbers are known, played through the
real services, and the report's figures checked against them; who may see which region; small
cells; the access log.

The month: persons marked at four houses in four regions (some at two, travelling offenders),
with CURRENT, AGED, EXPIRED or no advice; ZSM look-ups on every day of October 2026 by the KPC of
each region (some persons twice, once by BSN alone); decisions, deviations from advice with a
reason, aanmeldingen, a technisch sepot 01; advice requests answered in term, late, never, and
still open; on the last afternoon a house marking six persons other houses mark
(matchingsmeldingen); items acknowledged by two houses, delivered but not acknowledged by a
third, never fetched by the fourth. Look-ups in September and November must not count."""

from __future__ import annotations

import datetime as dt
import functools
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from builders import HOUSES, Marking, Person, subject, valid_bsns
from feedback_harness import USER, RunningFeedback
from google.protobuf import duration_pb2
from harness import ADAPTERS, lookup_request, secure_channel
from test_feedback_routing import referral_envelope, refused

from baken.clock import AMSTERDAM
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.purposes import PURPOSES
from baken.registry.v1 import marker_pb2, registry_service_pb2
from baken.registry.v1.registry_service_pb2 import SUBJECT_AGE_ADULT, SUBJECT_AGE_MINOR
from baken.report.v1 import report_service_pb2 as rpb
from baken.report.v1 import report_service_pb2_grpc
from baken.stuurinformatie.figures import (
    BY_ID,
    CATALOGUE,
    SMALL_CELL,
    Month,
    Source,
    Unit,
    percentile,
)
from baken.type.v1 import purpose_pb2
from services.registry.freshness import Freshness, freshness

UTRECHT = "vh-regio-utrecht-utrecht"  # Midden-Nederland, GCOS
BREDA = "vh-breda"  # Zeeland-West-Brabant, GCOS
TWENTE = "vh-twente"  # Oost-Nederland, Amazone
ROTTERDAM = "vh-rotterdam-rijnmond"  # Rotterdam-Rijnmond, PGA
MARKING_HOUSES = (UTRECHT, BREDA, TWENTE, ROTTERDAM)
REGIONS = ("midden-nederland", "zeeland-west-brabant", "oost-nederland", "rotterdam-rijnmond")
OCTOBER = Month(2026, 10)
STEERING = "landelijke-stuurgroep"
REASON = "Het plan van aanpak loopt niet meer; een dagvaarding past beter bij de recidive."
# How current each advice is at the October look-ups (about 5 to 9 months old gives AGED).
ADVICE_DATES = {
    "current": dt.date(2026, 8, 1),
    "aged": dt.date(2026, 2, 1),
    "expired": dt.date(2025, 6, 1),
    "none": None,
}


def kpc(region: str) -> str:
    return f"zsm-{region}-kpc"


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=AMSTERDAM).astimezone(dt.UTC)


@dataclass
class Suspect:
    person: Person
    case: str
    region: str  # the ZSM desk that handles him
    houses: tuple[str, ...]  # where he is marked
    advice: str  # key of ADVICE_DATES
    day: dt.date
    twice: bool = False  # looked up a second time, by BSN alone
    target_group: str = "veelpleger"  # of his markers
    # A minor: as the desk says ("desk"), or as the marking houses' sources know, the desk
    # saying adult ("source"); "" for an adult.
    minor: str = ""
    plan: str = "decide"  # decide, deviate, sepot01, advice-in-term, -late, -never, -open, none


@dataclass
class Truth:
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    ack_seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metric: str, region: str, house: str = "", n: int = 1) -> None:
        self.counts[(metric, region, house)] += n


def region_of(house: str) -> str:
    return HOUSES[house].region


def advice_counts(suspect: Suspect) -> bool:
    return any(
        freshness(ADVICE_DATES[suspect.advice], suspect.day) in (Freshness.CURRENT, Freshness.AGED)
        for _ in suspect.houses
    )


def cast(rng: random.Random) -> list[Suspect]:
    """About 130 suspects in October: a third known, travellers, and the plans for each."""
    bsns = valid_bsns(30_000_000)
    suspects: list[Suspect] = []
    for i in range(132):
        region = REGIONS[i % 4]
        home = MARKING_HOUSES[i % 4]
        known = i % 3 == 0
        houses: tuple[str, ...] = ()
        if known:
            houses = (home,)
            if i % 15 == 0:  # a travelling offender, marked in another region too
                houses = (home, MARKING_HOUSES[(i % 4 + 1 + (i // 15) % 3) % 4])
            if i % 21 == 0:  # looked up by another region's desk
                region = REGIONS[(i + 1) % 4]
        person = Person(
            bsn=next(bsns),
            surname=f"Verdachte{i:03d}",
            birth_date=dt.date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
        )
        suspects.append(
            Suspect(
                person,
                f"10-{700000 + i:06d}-26",
                region,
                houses,
                advice=("current", "aged", "expired", "none")[(i // 3) % 4],
                day=dt.date(2026, 10, 1 + i % 28),
                twice=i % 5 == 0,
            )
        )
    known = [s for s in suspects if s.houses]
    for k, suspect in enumerate(known):
        # Most are veelplegers: enough of them per house to show.
        if k % 3 == 0:
            suspect.target_group = ("jeugd", "hit", "huiselijk_geweld", "top_x")[k // 3 % 4]
        suspect.minor = ("", "", "desk", "source")[k // 4 % 4]
    rng.shuffle(known)
    plans = ["sepot01"] + ["advice-in-term"] * 6 + ["advice-late"] * 2 + ["advice-never"] * 2
    for suspect, plan in zip(known, plans, strict=False):
        suspect.plan = plan
    for suspect in known[len(plans) :]:
        if advice_counts(suspect) and rng.random() < 0.4:
            suspect.plan = "deviate"
    for suspect in known[-2:]:
        suspect.plan = "advice-open"
        suspect.day = dt.date(2026, 10, 31)
    unknown = [s for s in suspects if not s.houses]
    for suspect in unknown[:7]:
        suspect.plan = "aanmelding"
    for suspect in unknown[7:15]:
        suspect.plan = "none"  # no decision yet
    return suspects


class PlayedMonth:
    """Plays the month through the services' public APIs and keeps the true numbers."""

    def __init__(self, feedback: RunningFeedback, house_keys: Path) -> None:
        self.fb = feedback
        self.registry = feedback.registry
        self.keys = house_keys
        self.truth = Truth()
        self.decision_times: dict[str, dt.datetime] = {}  # decision item key -> made
        self.signalled: dict[str, set[str]] = {h: set() for h in MARKING_HOUSES}
        self.items: Counter[str] = Counter()  # house -> items made in October
        self.pending: dict[str, list[tuple[dt.date, str, str]]] = {}  # answers due per day
        self.decided: dict[str, set[str]] = {}  # house -> cases with a decision item

    def set(self, time: dt.datetime) -> None:
        self.registry.clock.advance(time - self.registry.clock.now())

    def mark(self, suspects: list[Suspect]) -> None:
        self.set(at(dt.date(2026, 9, 15), 9))
        changes = [
            Marking(
                s.person,
                f"{house}-{s.person.bsn}",
                house=house,
                advice="" if s.advice == "none" else "toezicht met meldplicht via het plan",
                advice_date=ADVICE_DATES[s.advice],
                target_group=marker_pb2.TargetGroup.Value(f"TARGET_GROUP_{s.target_group.upper()}"),
                minor_until=dt.date(2028, 3, 1) if s.minor == "source" else None,
            ).upsert(self.fb.ring)
            for s in suspects
            for house in s.houses
        ]
        self.registry.sync(*changes)

    def lookup(self, region: str, person: Person, case: str, age: int = SUBJECT_AGE_ADULT) -> None:
        self.registry.stub_for(kpc(region)).Lookup(
            lookup_request(subject(self.fb.ring, person), case_reference=case, subject_age=age),
            timeout=10,
        )

    def noise(self, day: dt.date, suspects: list[Suspect]) -> None:
        """Look-ups outside October, in other cases: they must not count."""
        self.set(at(day, 10))
        for s in suspects:
            self.lookup(s.region, s.person, s.case[:-2] + "25")
        self.fb.server.follower.follow_once()

    def look_up(self, s: Suspect) -> None:
        t = self.truth
        age = SUBJECT_AGE_MINOR if s.minor == "desk" else SUBJECT_AGE_ADULT
        self.lookup(s.region, s.person, s.case, age)
        lookups = 2 if s.twice else 1
        if s.twice:  # by a desk that says adult: a minor once is a minor
            self.lookup(s.region, Person(bsn=s.person.bsn), s.case)
        t.add("zsm.lookups", s.region, n=lookups)
        t.add("zsm.persons", s.region)
        if not s.houses:
            return
        t.add("zsm.hits", s.region, n=lookups)
        t.add("zsm.known_persons", s.region)
        t.add("zsm.known_persons_minor" if s.minor else "zsm.known_persons_adult", s.region)
        if any(region_of(h) != s.region for h in s.houses):
            t.add("zsm.travelling_hits", s.region, n=lookups)
        outdated = freshness(ADVICE_DATES[s.advice], s.day) in (Freshness.AGED, Freshness.EXPIRED)
        for h in s.houses:
            t.add("house.hits", region_of(h), h, lookups)
            t.add("house.known_persons", region_of(h), h)
            t.add(f"house.known_persons_{s.target_group}", region_of(h), h)
            if region_of(h) != s.region:
                t.add("house.travelling_hits", region_of(h), h, lookups)
            if outdated:
                t.add("house.hits_outdated_advice", region_of(h), h, lookups)
            if s.plan != "sepot01":
                self.signalled[h].add(s.case)
                self.items[h] += 1

    def decide(self, s: Suspect) -> None:
        fields: dict[str, object] = {}
        if s.plan == "sepot01":
            fields["code"] = pb.DECISION_CODE_TECHNISCH_SEPOT_01
        elif s.plan == "aanmelding":
            fields.update(
                complex_problems_suspected=True,
                residence_municipality="Nieuwegein",
                referral=referral_envelope(self.keys, UTRECHT, s.person, s.case),
            )
        if advice_counts(s) and s.plan != "sepot01":
            deviate = s.plan == "deviate"
            fields["advice_followed"] = (
                pb.ADVICE_FOLLOWED_NOT_FOLLOWED if deviate else pb.ADVICE_FOLLOWED_FOLLOWED
            )
            if deviate:
                fields["deviation_reason"] = REASON
        response = self.fb.decide(s.person, party=kpc(s.region), case_reference=s.case, **fields)
        if s.plan == "sepot01":
            return
        t = self.truth
        t.add("zsm.decisions", s.region)
        if s.plan == "deviate":
            t.add("zsm.deviations", s.region)
            t.add("zsm.deviations_with_reason", s.region)
        for item in response.items:
            house = item.house.removeprefix("houses/")
            self.items[house] += 1
            if item.kind == pb.DELIVERY_KIND_REFERRAL:
                t.add("house.aanmeldingen", region_of(house), house)
            if item.kind == pb.DELIVERY_KIND_DECISION:
                self.decision_times[item.key] = self.registry.clock.now()
                self.decided.setdefault(house, set()).add(s.case)
                if s.plan == "deviate":
                    t.add("house.deviations", region_of(house), house)
                    t.add("house.deviations_with_reason", region_of(house), house)

    def ask(self, s: Suspect) -> None:
        house = s.houses[0]
        hours = 7 * 24 if s.plan == "advice-open" else 48
        term = duration_pb2.Duration()
        term.FromTimedelta(dt.timedelta(hours=hours))
        request = self.fb.stub_for(kpc(s.region)).RequestAdvice(
            pb.RequestAdviceRequest(
                case_reference=s.case,
                subject=subject(self.fb.ring, s.person),
                house=f"houses/{house}",
                term=term,
                question="Is het plan van aanpak nog actueel?",
                on_behalf_of=USER,
                subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
            ),
            timeout=10,
        )
        self.items[house] += 1
        region = region_of(house)
        self.truth.add("advice.requested", region, house)
        answer_in = {"advice-in-term": 1, "advice-late": 3}.get(s.plan)
        if answer_in is not None:
            day = s.day + dt.timedelta(days=answer_in)
            self.pending.setdefault(str(day), []).append((day, house, request.name))
        metric = {
            "advice-in-term": "advice.answered_in_term",
            "advice-open": "advice.open",
        }.get(s.plan, "advice.overdue")
        self.truth.add(metric, region, house)

    def answer(self, day: dt.date) -> None:
        """The houses answer, in their sources, the requests they were to answer by `day`."""
        self.set(at(day, 8))
        due = [k for k in self.pending if dt.date.fromisoformat(k) <= day]
        for _, house, name in [a for k in due for a in self.pending.pop(k)]:
            party = ADAPTERS[HOUSES[house].source_system]
            self.fb.stub_for(party).AnswerAdviceRequest(
                pb.AnswerAdviceRequestRequest(name=name), timeout=5
            )

    def fetch(self, house: str, *, ack: bool) -> int:
        """The house's adapter fetches what is waiting (16 at most without `ack`: the window)
        and acknowledges each with `ack`; returns how many of them were made in October."""
        party = ADAPTERS[HOUSES[house].source_system]
        waiting = sum(
            r["house_id"] == house and r["state"] == "pending"
            for r in self.fb.tables()["deliveries"]
        )
        count = waiting if ack else min(16, waiting)
        october = 0
        while count:
            # Items of one person wait for the one before: a batch may bring fewer.
            got = self.fb.receive(house, count=min(count, 16), party=party, timeout=0.5)
            assert got, f"{count} items of {house} did not come"
            count -= len(got)
            for delivery in got:
                # Not October's: the noise's cases. Not items: the matchingsmeldingen (of the
                # suspects two houses marked on 15 September, and of Twente's late markers).
                october += not (
                    delivery.case_reference.endswith("-25")
                    or delivery.kind == pb.DELIVERY_KIND_MATCH
                )
                if not ack:
                    continue
                self.fb.ack(delivery.key, party)
                made = self.decision_times.get(delivery.key)
                if made is not None:
                    seconds = (self.registry.clock.now() - made).total_seconds()
                    self.truth.ack_seconds.setdefault(house, []).append(seconds)
            if not ack:
                break
        return october

    def play(self, suspects: list[Suspect]) -> None:
        self.mark(suspects)
        self.noise(dt.date(2026, 9, 28), suspects[:6])
        for day in (
            OCTOBER.start.astimezone(AMSTERDAM).date() + dt.timedelta(n) for n in range(31)
        ):
            self.answer(day)
            today = [s for s in suspects if s.day == day]
            self.set(at(day, 9, 30))
            for s in today:
                self.look_up(s)
            self.fb.server.follower.follow_once()
            self.set(at(day, 15))
            for s in today:
                if s.plan.startswith("advice"):
                    self.ask(s)
                elif s.plan != "none":
                    self.decide(s)
        self.match(suspects)
        # The month's last afternoon: two houses fetch and acknowledge all, one fetches 16.
        self.set(at(dt.date(2026, 10, 31), 16, 45))
        t = self.truth
        for house, ack in ((UTRECHT, True), (ROTTERDAM, True), (BREDA, False)):
            fetched = self.fetch(house, ack=ack)
            t.add("feedback.delivered", region_of(house), house, fetched)
            if ack:
                t.add("feedback.acknowledged", region_of(house), house, fetched)
        for house in MARKING_HOUSES:
            t.add("feedback.items", region_of(house), house, self.items[house])
            t.add("feedback.cases_signalled", region_of(house), house, len(self.signalled[house]))
        for house in (UTRECHT, ROTTERDAM):
            fed_back = {c for c in self.signalled[house] if self._decided(c, house)}
            t.add("feedback.cases_fed_back", region_of(house), house, len(fed_back))
        self.answer(dt.date(2026, 11, 2))
        self.noise(dt.date(2026, 11, 2), suspects[6:9])
        self.set(at(dt.date(2026, 11, 2), 12))

    def match(self, suspects: list[Suspect]) -> None:
        """Twente comes to mark six persons another house marks, after their cases were
        decided: a matchingsmelding to both houses of each pair (counted apart from the items)."""
        self.set(at(dt.date(2026, 10, 31), 16))
        chosen = [
            s
            for s in suspects
            if len(s.houses) == 1 and s.houses[0] != TWENTE and s.plan in ("decide", "deviate")
        ][:6]
        assert len(chosen) == 6
        self.registry.sync(
            *(
                Marking(s.person, f"{TWENTE}-late-{s.person.bsn}", house=TWENTE).upsert(
                    self.fb.ring
                )
                for s in chosen
            )
        )
        self.fb.server.follower.follow_once()
        for s in chosen:
            for house in (s.houses[0], TWENTE):
                self.truth.add("feedback.matches", region_of(house), house)

    def _decided(self, case: str, house: str) -> bool:
        return case in self.decided.get(house, set())


def ask_figures(
    feedback: RunningFeedback, party: str = STEERING, **fields: str
) -> tuple[dict[tuple[str, str, str], rpb.Figure], list[rpb.GetMonthlyFiguresResponse]]:
    """Both services' answers, and their figures by (metric, region, house)."""
    answers = [
        ask_one(feedback, port, party, **fields)
        for port in (feedback.registry.port, feedback.server.port)
    ]
    found = {
        (f.metric, f.region, f.house.removeprefix("houses/")): f for a in answers for f in a.figures
    }
    return found, answers


def report_stub(
    feedback: RunningFeedback, port: int, party: str
) -> report_service_pb2_grpc.ReportServiceStub:
    key = f"report-{port}-{party}"
    if key not in feedback._channels:
        feedback._channels[key] = secure_channel(feedback.registry.pki_dir, port, party)
    return report_service_pb2_grpc.ReportServiceStub(feedback._channels[key])


def expected(truth: Truth, metric: str, region: str, house: str) -> tuple[bool, float]:
    """(small, value) as the report must show it."""
    if BY_ID[metric].unit is Unit.SECONDS:
        times = sorted(truth.ack_seconds.get(house, []))
        if len(times) < SMALL_CELL:
            return True, 0.0
        if metric == "feedback.ack_p50":
            return False, statistics.median(times)
        return False, percentile(times, 0.95)
    n = truth.counts[(metric, region, house)]
    return n < SMALL_CELL, float(n)


def shown(figure: rpb.Figure) -> tuple[bool, float]:
    if figure.small:
        assert figure.WhichOneof("value") is None, "a small cell carries no value"
        return True, 0.0
    return False, float(figure.count if figure.WhichOneof("value") == "count" else figure.seconds)


def test_the_months_figures_are_the_true_numbers(
    feedback: RunningFeedback, house_keys_dir: Path
) -> None:
    month = PlayedMonth(feedback, house_keys_dir)
    month.play(cast(random.Random(2026)))
    truth = month.truth
    found, answers = ask_figures(feedback)

    assert {a.month for a in answers} == {"2026-10"} and not any(a.withheld for a in answers)
    houses = [h.id for h in HOUSES.values()]
    scopes = [(r, "") for r in REGIONS] + [(region_of(h), h) for h in houses]
    wrong = []
    for metric in CATALOGUE:
        for region, house in scopes:
            if (metric.level.value == "house") != bool(house):
                continue
            key = (metric.id, region, house)
            if key not in found:
                wrong.append(f"{key}: not sent")
                continue
            want, got = expected(truth, metric.id, region, house), shown(found[key])
            if want[0] != got[0] or (not want[0] and abs(want[1] - got[1]) > 1e-6):
                wrong.append(f"{key}: expected {want}, the report says {got}")
    assert wrong == [], "\n".join(wrong)
    # The month is big enough that the check means something: most marking-house cells show.
    values = [k for k, f in found.items() if k[2] in MARKING_HOUSES and not f.small]
    assert len(values) >= 30
    assert not found[("feedback.ack_p95", "rotterdam-rijnmond", ROTTERDAM)].small
    assert found[("feedback.matches", "oost-nederland", TWENTE)].count == 6
    # The pilots' splits show: minors (as the desk said, or as a source knew) and adults, and
    # the veelplegers among each house's known persons.
    assert not found[("zsm.known_persons_minor", "rotterdam-rijnmond", "")].small
    assert not found[("zsm.known_persons_adult", "rotterdam-rijnmond", "")].small
    assert all(
        not found[("house.known_persons_veelpleger", region_of(h), h)].small for h in MARKING_HOUSES
    )
    assert {m.source for m in CATALOGUE} == {Source.REGISTRY, Source.FEEDBACK}

    # A region's process director sees his region only, and is told what is not shown.
    mine, answers = ask_figures(feedback, "vh-rotterdam-rijnmond-procesregie")
    assert {k[1] for k in mine} == {"rotterdam-rijnmond"}
    assert {w.region for w in answers[0].withheld} == set(REGIONS) - {"rotterdam-rijnmond"}
    assert all(mine[k] == found[k] for k in mine)
    one, _ = ask_figures(feedback, house=f"houses/{UTRECHT}")
    assert {k[2] for k in one} == {"", UTRECHT} and {k[1] for k in one} == {"midden-nederland"}


def test_who_may_see_aggregates_and_what_is_logged(feedback: RunningFeedback) -> None:
    refusals = {
        ("zsm-midden-nederland-ovj", ""): "PURPOSE_NOT_GRANTED",  # no monitoring grant
        ("adapter-gcos", ""): "NO_COVENANT",
        (STEERING, "intake-en-selectie"): "PURPOSE_NOT_FOR_REPORT",
        ("vh-midden-nederland-procesregie", "oost-nederland"): "AGGREGATES_NOT_GRANTED",
    }
    for service, port in (
        (feedback.registry, feedback.registry.port),
        (feedback, feedback.server.port),
    ):
        for (party, other), reason in refusals.items():
            name = "purpose" if other.startswith("intake") else "region"
            fields = {name: other} if other else {}
            code, why, _ = refused(functools.partial(ask_one, feedback, port, party, **fields))
            assert (code, why) == (grpc.StatusCode.PERMISSION_DENIED, reason)
        answer = ask_one(feedback, port, "zsm-oost-nederland-kpc")
        log = service.tables()["access_log"]
        denied = [e for e in log if e["outcome"] == "denied"]
        assert sorted(e["party_id"] for e in denied) == sorted(p for p, _ in refusals)
        (answered,) = [e for e in log if e["outcome"] == "aggregates"]
        assert answered["seq"] == answer.access_log_entry
        assert '"regions":["oost-nederland"]' in answered["body"]
        assert '"processing_activity":"baken:stuurinformatie"' in answered["body"]


def ask_one(
    feedback: RunningFeedback, port: int, party: str, **fields: str
) -> rpb.GetMonthlyFiguresResponse:
    request = rpb.GetMonthlyFiguresRequest(
        month=str(OCTOBER),
        purpose=purpose_pb2.PURPOSE_MONITORING,
        on_behalf_of="beleidsmedewerker-7",
    )
    for name, value in fields.items():
        if name == "purpose":
            request.purpose = PURPOSES.get(value, purpose_pb2.PURPOSE_UNSPECIFIED)
        else:
            setattr(request, name, value)
    response: rpb.GetMonthlyFiguresResponse = report_stub(feedback, port, party).GetMonthlyFigures(
        request, timeout=30
    )
    return response


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"month": "2026-13"}, "month"),
        ({"month": "oktober"}, "month"),
        ({"region": "friesland"}, "region"),
        ({"purpose": ""}, "purpose"),
        ({"house": "houses/vh-nergens"}, "house"),
        ({"house": "vh-regio-utrecht-utrecht"}, "house"),
        ({"region": "oost-nederland", "house": f"houses/{UTRECHT}"}, "house"),
    ],
)
def test_bad_requests_name_the_field_and_log_nothing(
    feedback: RunningFeedback, fields: dict[str, str], field: str
) -> None:
    code, _, fields_named = refused(lambda: ask_figures(feedback, **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields_named == [field]
    assert feedback.registry.tables()["access_log"] == []


def run_report(
    feedback: RunningFeedback, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from cli.main import main

    code = main(
        [
            "report",
            "--registry",
            f"127.0.0.1:{feedback.registry.port}",
            "--feedback",
            f"127.0.0.1:{feedback.server.port}",
            "--pki-dir",
            str(feedback.registry.pki_dir),
            "--user",
            "beleidsmedewerker-7",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_a_table_csv_and_html(
    feedback: RunningFeedback, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_report(feedback, capsys, "--month", "2026-10", "--region", "oost-nederland")
    assert code == 0, _
    assert "Baken management information, 2026-10" in out
    assert "ZSM look-ups" in out and "< 5" in out and "Twente" in out
    assert "of which minors" in out and "of which target group veelpleger" in out
    assert "Rotterdam" not in out  # only the region asked for

    code, out, _ = run_report(feedback, capsys, "--month", "2026-10", "--months", "2", "--csv")
    rows = [line for line in out.splitlines() if "[info" not in line]  # the servers' logs
    assert code == 0 and rows[0] == "month,region,house,metric,label,value,unit"
    houses, regions = len(HOUSES), len(REGIONS)
    per_region = sum(m.level.value == "region" for m in CATALOGUE) + 2  # two region shares
    per_house = sum(m.level.value == "house" for m in CATALOGUE) + 5
    assert len(rows) - 1 == 2 * (regions * per_region + houses * per_house)
    assert {r.split(",")[0] for r in rows[1:]} == {"2026-09", "2026-10"}

    page = tmp_path / "report.html"
    code, out, _ = run_report(feedback, capsys, "--month", "2026-10", "--html", str(page))
    assert code == 0 and page.read_text().startswith("<!DOCTYPE html>")


def test_the_command_says_plainly_what_went_wrong(
    feedback: RunningFeedback, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_report(
        feedback, capsys, "--month", "2026-10", "--party", "zsm-midden-nederland-ovj"
    )
    assert code == 1 and "PERMISSION_DENIED (PURPOSE_NOT_GRANTED)" in err
    assert "Traceback" not in err
    code, _, err = run_report(feedback, capsys, "--month", "2026-10", "--region", "friesland")
    assert code == 1 and "region: unknown region" in err
    with pytest.raises(SystemExit):
        run_report(feedback, capsys, "--month", "oktober")
    assert "is not a month" in capsys.readouterr().err
