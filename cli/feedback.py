"""`baken decide`, `baken advice ...` and `baken feedback ...`: the feedback service from the
command line (a ZSM desk recording decisions and asking advice; an operator with dead letters)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import uuid
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2
from google.type import timeofday_pb2

from baken import enums, sealed
from baken.age import claimed_minor
from baken.client import connect, subject_age
from baken.clock import SystemClock
from baken.errors import UserError
from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.feedback.v1 import feedback_service_pb2_grpc
from baken.houses import house_name, load_houses, load_municipalities
from baken.pki import TlsFiles
from baken.render import advice_request_line, shown
from cli.options import (
    FEEDBACK_TARGET_ENV,
    HOUSE_KEYS_ENV,
    PARTY_ENV,
    add_party,
    age_options,
    pages,
    party,
    person_options,
    person_subject,
)

DEAD_LETTERS = "deadLetters/"
_TERM = re.compile(r"^(\d+)([hd])\Z")
# --by: "13:00", "13:00 next working day", "9:30 2 working days", "13:00 on the 2nd working day".
_BY = re.compile(
    r"([0-9]{1,2}):([0-9]{2})"
    r"(?:\s+(?:on\s+the\s+)?(next|[1-5])(?:st|nd|rd|th)?\s+working\s+days?)?"
)


CODES = enums.numbers(pb.DecisionCode, "DECISION_CODE_", "-")
STAGES = enums.numbers(pb.DecisionStage, "DECISION_STAGE_", "-")
ADVICE = enums.numbers(pb.AdviceFollowed, "ADVICE_FOLLOWED_", "-")
CRITERIA = enums.numbers(pb.TriageCriterion, "TRIAGE_CRITERION_", "-")
KINDS = enums.tokens(pb.DeliveryKind, "DELIVERY_KIND_", "-")


def _stub(args: argparse.Namespace) -> tuple[Any, feedback_service_pb2_grpc.FeedbackServiceStub]:
    channel = connect(args.feedback, TlsFiles.of(args.pki_dir, party(args)))
    return channel, feedback_service_pb2_grpc.FeedbackServiceStub(channel)


def _user(args: argparse.Namespace) -> str:
    if not args.user:
        raise UserError("say who you are: --user (or env BAKEN_USER)")
    return str(args.user)


def _age(args: argparse.Namespace) -> int:
    try:
        minor = claimed_minor(args.minor, args.birth_date, SystemClock().today())
    except ValueError as error:
        raise UserError(str(error)) from None
    if minor is None:
        raise UserError("say --minor or --adult (or give --surname and --birth-date)")
    return subject_age(minor)


def _referral(args: argparse.Namespace) -> pb.SealedEnvelope | None:
    """The person sealed to the house of the residence municipality, here at the edge: the
    feedback service only ever holds the ciphertext."""
    if not args.complex_problems:
        return None
    if not args.municipality:
        raise UserError(
            "--complex-problems needs --municipality (the aanmelding goes to its house)"
        )
    return _sealed_person(args)


def _sealed_person(args: argparse.Namespace) -> pb.SealedEnvelope:
    """The person (--bsn, --surname, --birth-date, --municipality) sealed to the public key of
    the house that covers --municipality, for --case."""
    house = load_municipalities(load_houses()).get(args.municipality.strip().casefold())
    if house is None:
        raise UserError(f"--municipality {args.municipality!r}: no Safety House in Baken covers it")
    keys = Path(args.house_keys or args.pki_dir / "houses")
    try:
        key = sealed.load_public(keys, house)
    except sealed.SealError as error:
        raise UserError(str(error)) from None
    person = sealed.ReferredPerson(args.bsn, args.surname, args.birth_date, args.municipality)
    return sealed.seal_person(key, person, case_reference=args.case)


def _advice_lines(advice: list[str], reasons: list[str]) -> dict[str, Any]:
    """--advice [HOUSE=]followed|not-followed and --reason [HOUSE=]TEXT as the request's advice
    lines; one without HOUSE is the one house whose advice the desk could see (the service
    finds it: RecordDecisionRequest.advice_followed)."""
    why: dict[str, str] = {}
    for given in reasons:
        house, _, text = given.partition("=") if _names_house(given) else ("", "", given)
        why[house] = text
    lines = []
    for given in advice:
        house, _, word = given.rpartition("=")
        if word not in ADVICE or word in ("unspecified", "no-advice"):
            raise UserError(f"--advice {given}: followed or not-followed, after HOUSE= if given")
        lines.append((house, ADVICE[word], why.pop(house, "")))
    if why:
        raise UserError(f"--reason {next(iter(why)) or 'TEXT'}: no --advice for that house")
    if len(lines) == 1 and not lines[0][0]:
        _, followed, reason = lines[0]
        return {"advice_followed": followed, "deviation_reason": reason}
    if any(not house for house, _, _ in lines):
        raise UserError("--advice: name the house (HOUSE=...) when giving several")
    return {
        "house_advice": [
            pb.HouseAdvice(house=house_name(h), advice_followed=f, deviation_reason=r)  # type: ignore[arg-type]
            for h, f, r in lines
        ]
    }


def _names_house(given: str) -> bool:
    house, sep, _ = given.partition("=")
    return bool(sep) and house.startswith("vh-") and " " not in house


def _decide(args: argparse.Namespace) -> None:

    _ring, subject = person_subject(args)
    request = pb.RecordDecisionRequest(
        case_reference=args.case,
        subject=subject,
        code=CODES[args.code],  # type: ignore[arg-type]
        sepot_code=args.sepot_code or "",
        stage=STAGES[args.stage],  # type: ignore[arg-type]
        subject_age=_age(args),  # type: ignore[arg-type]
        **_advice_lines(args.advice or [], args.reason or []),
        probation_report_requested=args.probation_report,
        triage=pb.TriageCheck(
            checked=args.triage_checked or bool(args.triage),
            matched=[CRITERIA[c] for c in args.triage or []],  # type: ignore[misc]
        ),
        complex_problems_suspected=args.complex_problems,
        residence_municipality=args.municipality or "",
        on_behalf_of=_user(args),
        request_key=args.request_key or uuid.uuid4().hex,
    )
    referral = _referral(args)
    if referral is not None:
        request.referral.CopyFrom(referral)
    channel, stub = _stub(args)
    with channel:
        response = stub.RecordDecision(request, timeout=args.timeout)
    if not response.name:
        print(
            f"technisch sepot 01: nothing fed back; {response.purged_items} items purged "
            "(those a house already had are retracted)"
        )
        return
    print(f"{response.name} recorded")
    for item in response.items:
        withheld = f" (withheld by covenant: {', '.join(item.withheld)})" if item.withheld else ""
        print(f"  {KINDS.get(item.kind, '?')} -> {item.house}{withheld}  [{item.key}]")
    for missed in response.not_routed:
        print(f"  not sent -> {missed.house or '(no house)'}: {shown(missed.reason)}")
    if not response.items and not response.not_routed:
        print("  not known at any Safety House: no terugkoppeling")


def _term(text: str) -> dt.timedelta:
    found = _TERM.match(text)
    if not found:
        raise argparse.ArgumentTypeError("e.g. 3h, 24h or 7d")
    amount = int(found.group(1))
    return dt.timedelta(hours=amount) if found.group(2) == "h" else dt.timedelta(days=amount)


def _by(text: str) -> tuple[int, int, int | None]:
    """ "13:00", "13:00 next working day" or "9:30 2 working days": hours, minutes and the
    working day when the text says it."""
    found = _BY.fullmatch(text.strip().lower())
    if not found:
        raise argparse.ArgumentTypeError('e.g. "13:00 next working day" or 13:00')
    hours, minutes = int(found.group(1)), int(found.group(2))
    if hours > 23 or minutes > 59:
        raise argparse.ArgumentTypeError("a time of day, 00:00 to 23:59")
    day = found.group(3)
    return hours, minutes, None if day is None else 1 if day == "next" else int(day)


def _advice_term(args: argparse.Namespace) -> dict[str, Any]:
    """The request's term or deadline: --term, or --by (with --working-days); 24h by default."""
    if args.by is not None:
        if args.term is not None:
            raise UserError("advice request takes --term or --by, not both")
        hours, minutes, said = args.by
        if said is not None and args.working_days is not None and said != args.working_days:
            raise UserError("--by and --working-days name different working days")
        days = said or args.working_days or 1
        return {
            "deadline": pb.WorkingDayDeadline(
                time_of_day=timeofday_pb2.TimeOfDay(hours=hours, minutes=minutes),
                working_days=days,
            )
        }
    if args.working_days is not None:
        raise UserError("--working-days goes with --by")
    term = duration_pb2.Duration()
    term.FromTimedelta(args.term or dt.timedelta(hours=24))
    return {"term": term}


def _asked_house(args: argparse.Namespace, request: pb.RequestAdviceRequest) -> None:
    """--house (a house that marked the suspect), or --municipality with --enrichment for a
    suspect no house marks: the person is sealed here to the house of the municipality."""
    if bool(args.house) == bool(args.municipality):
        raise UserError(
            "advice request needs --house (a house that marked him) or --municipality "
            "(an enrichment request to the house of his residence), not both"
        )
    if args.house:
        if args.enrichment:
            raise UserError("--enrichment goes with --municipality")
        request.house = house_name(args.house)
        return
    if not args.enrichment:
        raise UserError(
            "--municipality needs --enrichment: the triage criteria for which the house is asked"
        )
    request.residence_municipality = args.municipality
    request.person.CopyFrom(_sealed_person(args))
    request.enrichment_criteria.extend(
        pb.TriageCriterion.ValueType(CRITERIA[c]) for c in args.enrichment
    )


def _advice(args: argparse.Namespace) -> None:
    channel, stub = _stub(args)
    with channel:
        if args.action == "request":
            _ring, subject = person_subject(args)
            if not args.case or not args.question:
                raise UserError("advice request needs --case and --question")
            request = pb.RequestAdviceRequest(
                case_reference=args.case,
                subject=subject,
                **_advice_term(args),
                question=args.question,
                on_behalf_of=_user(args),
                subject_age=_age(args),  # type: ignore[arg-type]
            )
            _asked_house(args, request)
            made = stub.RequestAdvice(request, timeout=args.timeout)
            print(advice_request_line(made))
            return
        if args.action == "cancel":
            if not args.name:
                raise UserError("advice cancel needs --name (adviceRequests/{id})")
            cancelled = stub.CancelAdviceRequest(
                pb.CancelAdviceRequestRequest(name=args.name, on_behalf_of=_user(args)),
                timeout=args.timeout,
            )
            print(advice_request_line(cancelled))
            return
        listed = list(
            pages(
                stub.ListAdviceRequests,
                pb.ListAdviceRequestsRequest(
                    overdue_only=args.overdue, house=house_name(args.house) if args.house else ""
                ),
                "advice_requests",
                args.timeout,
            )
        )
    if not listed:
        print("no overdue advice requests" if args.overdue else "no open advice requests")
    for request in listed:
        print(advice_request_line(request))


def _dead_letters(args: argparse.Namespace) -> None:
    channel, stub = _stub(args)
    with channel:
        if args.action == "requeue":
            if not args.key:
                raise UserError("requeue needs the item's key")
            name = DEAD_LETTERS + args.key.removeprefix(DEAD_LETTERS)
            letter = stub.RequeueDeadLetter(
                pb.RequeueDeadLetterRequest(name=name), timeout=args.timeout
            )
            print(f"{letter.name.removeprefix(DEAD_LETTERS)}: requeued for {letter.house}")
            return
        listed = list(
            pages(
                stub.ListDeadLetters,
                pb.ListDeadLettersRequest(house=house_name(args.house) if args.house else ""),
                "dead_letters",
                args.timeout,
            )
        )
    if not listed:
        print("no dead letters")
    for d in listed:
        last = d.last_attempt_time.ToDatetime(dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M")
        key = d.name.removeprefix(DEAD_LETTERS)
        print(
            f"{key}  {KINDS.get(d.kind, '?'):<14} {d.house}  {d.attempts} attempts, last {last}: "
            f"{shown(d.last_failure)}"
        )


def _common(p: argparse.ArgumentParser, pki_dir_env: str, default_party: str | None) -> None:
    """The feedback service, the PKI, the party (None: --party or BAKEN_PARTY required) and
    the deadline."""
    p.add_argument(
        "--feedback",
        default=os.environ.get(FEEDBACK_TARGET_ENV, "127.0.0.1:50052"),
        help=f"the feedback service, host:port (env {FEEDBACK_TARGET_ENV})",
    )
    p.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(pki_dir_env, "var/pki")),
        help=f"the CA and the party's certificate (env {pki_dir_env}, default var/pki)",
    )
    if default_party is None:
        add_party(p)
    else:
        p.add_argument(
            "--party",
            default=os.environ.get(PARTY_ENV, default_party),
            help=f"whose certificate to use (env {PARTY_ENV}; default {default_party})",
        )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def _person(p: argparse.ArgumentParser, key_file_env: str) -> None:

    p.add_argument("--key-file", help=f"pseudonym key file (env {key_file_env})")
    person_options(p)
    p.add_argument(
        "--user",
        default=os.environ.get("BAKEN_USER") or os.environ.get("USER"),
        help="you, the responsible user (env BAKEN_USER)",
    )
    age_options(p)


def add_parsers(sub: Any, key_file_env: str, pki_dir_env: str) -> None:
    decide = sub.add_parser(
        "decide",
        help="record a ZSM decision: every marking house hears it (terugkoppeling)",
        description="Record a ZSM decision. Known persons: every house that marked him, "
        "nationwide, gets the decision. technisch-sepot-01: nothing is fed back and the case "
        "is purged. Not known with --complex-problems: an aanmelding, sealed here to the house "
        "of --municipality.",
    )
    _person(decide, key_file_env)
    decide.add_argument("--case", required=True, help="the ZSM case reference")
    decide.add_argument("--code", required=True, choices=sorted(CODES), help="the decision")
    decide.add_argument("--sepot-code", help='with --code sepot: "02" to "99"')
    decide.add_argument(
        "--stage", choices=sorted(STAGES), default="final", help="of the decision (default final)"
    )
    decide.add_argument(
        "--advice",
        metavar="[HOUSE=]followed|not-followed",
        action="append",
        help="was a house's CURRENT or AGED advice you could see followed: once per such house "
        "(HOUSE as vh-regio-utrecht-utrecht); without HOUSE= when only one house's advice shows",
    )
    decide.add_argument(
        "--reason",
        metavar="[HOUSE=]TEXT",
        action="append",
        help="with not-followed: the substantive reason about that house's advice (it alone "
        "receives it)",
    )
    decide.add_argument("--probation-report", action="store_true", help="probation was asked")
    decide.add_argument(
        "--triage-checked", action="store_true", help="the triage criteria were checked"
    )
    decide.add_argument("--triage", nargs="+", choices=sorted(CRITERIA), help="criteria matched")
    decide.add_argument(
        "--complex-problems",
        action="store_true",
        help="complex problems: a person not known is referred to the house of --municipality",
    )
    decide.add_argument("--municipality", help="residence municipality (gemeente)")
    decide.add_argument(
        "--house-keys",
        default=os.environ.get(HOUSE_KEYS_ENV),
        help=f"the houses' public keys (env {HOUSE_KEYS_ENV}; default PKI-DIR/houses)",
    )
    decide.add_argument("--request-key", help="retry key (default: a fresh one)")
    _common(decide, pki_dir_env, None)
    decide.set_defaults(run=_decide)

    advice = sub.add_parser(
        "advice", help="advies op aanvraag: ask a house, cancel, list the open ones"
    )
    advice.add_argument(
        "action",
        choices=["request", "cancel", "list"],
        help="ask a house for advice, withdraw a request, or list the open ones",
    )
    _person(advice, key_file_env)
    advice.add_argument("--case", help="(request) the ZSM case reference")
    advice.add_argument("--house", help="house id, e.g. vh-regio-utrecht-utrecht")
    advice.add_argument("--term", type=_term, help="1h to 7d (default 24h), e.g. 3h at night")
    advice.add_argument(
        "--by",
        type=_by,
        help='a time on a working day (Amsterdam): "13:00 next working day", or 13:00 with '
        "--working-days",
    )
    advice.add_argument(
        "--working-days", type=int, help="(with --by) the n-th working day, 1 to 5 (default 1)"
    )
    advice.add_argument(
        "--municipality",
        help="(request) instead of --house, for a suspect no house marks: an enrichment request "
        "to the house of his residence municipality, the person sealed here to its key",
    )
    advice.add_argument(
        "--enrichment",
        nargs="+",
        choices=sorted(CRITERIA),
        help="(with --municipality) the triage criteria for which the house is asked",
    )
    advice.add_argument(
        "--house-keys",
        default=os.environ.get(HOUSE_KEYS_ENV),
        help=f"the houses' public keys (env {HOUSE_KEYS_ENV}; default PKI-DIR/houses)",
    )
    advice.add_argument("--question", help="why advice is needed (no personal data)")
    advice.add_argument("--overdue", action="store_true", help="(list) only past their term")
    advice.add_argument("--name", help="(cancel) the request, adviceRequests/{id}")
    _common(advice, pki_dir_env, None)
    advice.set_defaults(run=_advice)

    feedback = sub.add_parser("feedback", help="operator: delivery items that failed too often")
    feedback.add_argument(
        "action",
        choices=["dead-letters", "requeue"],
        help="list the items that failed too often, or requeue one",
    )
    feedback.add_argument("key", nargs="?", help="(requeue) the item's key")
    feedback.add_argument("--house", help="only this house's")
    _common(feedback, pki_dir_env, "operator")
    feedback.set_defaults(run=_dead_letters)
