"""What an attacker or a careless desk puts into a request is refused and changes nothing: a
subject that hides a sweep inside one person, free text that carries a BSN or a name, control
characters that would steer the terminal that shows them, and case references and user ids
outside the formats the party register gives each party.

Each refusal is INVALID_ARGUMENT naming the field, never quoting the value, and leaves every
table as it was (no log entry): the bad-input contract of docs/SECURITY.md.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from builders import Marking, Person, problem, problem_of_status, subject
from feedback_harness import KPC_UTRECHT, RunningFeedback, decision_request
from harness import RunningRegistry, batch_request, dump_tables, lookup_request
from sqlalchemy import Engine

from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.keyring import KeyRing
from baken.registry.v1 import registry_service_pb2
from baken.type.v1 import pseudonym_pb2, purpose_pb2

pb = registry_service_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT
KNOWN = Person(bsn="111222333")
KNOWN_BIRTH_DATE = dt.date(1991, 6, 14)
# What the measured attack carried in every free-text field it could find.
SMUGGLED = "bsn=123456782 naam=Jansen"
CASE = "ZSM-MN-4711"
OVJ = "zsm-midden-nederland-ovj"


def evasive_subject(ring: KeyRing, known: Person) -> pseudonym_pb2.Subject:
    """One known pseudonym and 15 random ones of the same kind and key: a sweep of 15 persons
    in the cover of a hit."""
    disguise = subject(ring, known)
    [real] = disguise.pseudonyms
    for _ in range(15):
        disguise.pseudonyms.add(kind=real.kind, key_id=real.key_id, value=secrets.token_bytes(32))
    return disguise


def refused(call: Callable[[], Any]) -> list[str]:
    """The fields an INVALID_ARGUMENT named (the call must be refused so)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() == INVALID, caught.value.details()
    details = caught.value.details() or ""
    assert "123456782" not in details and "Jansen" not in details and "\x1b" not in details
    return problem(caught.value).fields


def rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    return dump_tables(engine)


# --- 3. Enumeration hidden inside hits ------------------------------------------------------------


def test_a_subject_with_one_known_pseudonym_and_15_random_ones_is_refused_and_writes_nothing(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    registry.sync(Marking(KNOWN, "pga-1").upsert(ring))
    before = rows(registry.engine)

    fields = refused(lambda: registry.lookup(evasive_subject(ring, KNOWN)))
    assert fields == [f"subject.pseudonyms[{i}]" for i in range(1, 16)]

    [response] = registry.stub.BatchLookup(
        iter(
            [
                batch_request(
                    [
                        pb.BatchLookupEntry(ref=f"e{i}", subject=evasive_subject(ring, KNOWN))
                        for i in range(900)
                    ]
                )
            ]
        ),
        timeout=30,
    )
    assert len(response.results) == 900
    for result in response.results:
        assert result.WhichOneof("result") == "error"
        assert problem_of_status(result.error).code == INVALID
    assert rows(registry.engine) == before  # no access-log entry, no signal


def test_the_evasion_is_refused_by_the_feedback_service_and_at_sync(
    feedback: RunningFeedback, ring: KeyRing
) -> None:
    registry = feedback.registry
    before = rows(registry.engine), rows(feedback.engine)

    fields = refused(
        lambda: feedback.stub_for(KPC_UTRECHT).RecordDecision(
            decision_request(ring, KNOWN, subject=evasive_subject(ring, KNOWN)), timeout=10
        )
    )
    assert "subject.pseudonyms[1]" in fields
    marking = Marking(KNOWN, "pga-2")
    change = marking.upsert(ring)
    change.upsert.subject.CopyFrom(evasive_subject(ring, KNOWN))
    [rejection] = registry.sync(change).rejections
    assert "upsert.subject.pseudonyms[1]" in [v.field for v in rejection.field_violations]
    assert (rows(registry.engine), rows(feedback.engine)) == before


def test_a_person_under_two_keys_and_both_kinds_is_still_one_subject(
    registry: RunningRegistry,
) -> None:
    ring = KeyRing.generate("k1").with_new_key("k2")
    person = Person("111222333", "Van der Berg", KNOWN_BIRTH_DATE)
    registry.sync(Marking(person, "pga-3").upsert(ring))

    whole = subject(ring, person)
    assert len(whole.pseudonyms) == 4  # BSN and name + birth date, under k1 and k2
    assert registry.lookup(whole).outcome == pb.LOOKUP_OUTCOME_HIT


# --- 7. Free text that carries what must not be there ---------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"case_reference": SMUGGLED}, "case_reference"),
        ({"case_reference": "ZSM-123456782"}, "case_reference"),
        ({"case_reference": " "}, "case_reference"),
        ({"case_reference": "x"}, "case_reference"),
        ({"case_reference": "ZSM-MN-4711\x1b[2J"}, "case_reference"),
        ({"on_behalf_of": SMUGGLED}, "on_behalf_of"),
        ({"on_behalf_of": "kpc-123456782"}, "on_behalf_of"),
        ({"on_behalf_of": "Jansen"}, "on_behalf_of"),
        ({"break_glass_reason": f"spoed, {SMUGGLED}, zie dossier"}, "break_glass_reason"),
    ],
    ids=lambda v: repr(v)[:30] if isinstance(v, dict) else None,
)
def test_free_text_with_a_bsn_a_name_or_outside_the_partys_format_is_refused_unlogged(
    registry: RunningRegistry,
    ring: KeyRing,
    json_logs: Callable[[], str],
    fields: dict[str, str],
    named: str,
) -> None:
    before = rows(registry.engine)
    request = {"party": OVJ, "purpose": purpose_pb2.PURPOSE_AFDOENINGSBESLISSING}
    request |= {"case_reference": CASE} | fields

    assert refused(lambda: registry.lookup(subject(ring, KNOWN), **request)) == [named]

    assert rows(registry.engine) == before
    assert "123456782" not in json_logs() and "Jansen" not in json_logs()


def test_a_request_id_with_a_bsn_is_refused_before_it_reaches_a_log(
    registry: RunningRegistry, ring: KeyRing, json_logs: Callable[[], str]
) -> None:
    before = rows(registry.engine)

    for request_id in (SMUGGLED, "123456782", "req 4711"):
        fields = refused(
            lambda rid=request_id: registry.stub.Lookup(
                lookup_request(subject(ring, KNOWN)),
                metadata=(("x-request-id", rid),),
                timeout=10,
            )
        )
        assert fields == ["x-request-id"]
    batch = registry.stub.BatchLookup(
        iter([batch_request([pb.BatchLookupEntry(ref="a", subject=subject(ring, KNOWN))])]),
        metadata=(("x-request-id", "123456782"),),
        timeout=10,
    )
    assert refused(lambda: list(batch)) == ["x-request-id"]

    assert rows(registry.engine) == before
    assert "123456782" not in json_logs()
    # An ordinary one is taken and quoted back.
    call = registry.stub.Lookup.with_call(
        lookup_request(subject(ring, KNOWN)), metadata=(("x-request-id", "req-4711"),), timeout=10
    )[1]
    assert ("x-request-id", "req-4711") in tuple(call.trailing_metadata() or ())


def test_a_batch_entry_with_a_bsn_in_its_case_reference_is_refused_alone(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    [response] = registry.stub_for(OVJ).BatchLookup(
        iter(
            [
                batch_request(
                    [
                        pb.BatchLookupEntry(
                            ref="bad", subject=subject(ring, KNOWN), case_reference=SMUGGLED
                        ),
                        pb.BatchLookupEntry(
                            ref="good", subject=subject(ring, KNOWN), case_reference=CASE
                        ),
                    ],
                    purpose=purpose_pb2.PURPOSE_AFDOENINGSBESLISSING,
                )
            ]
        ),
        timeout=10,
    )
    bad, good = response.results
    assert problem_of_status(bad.error).fields == ["case_reference"]
    assert good.WhichOneof("result") == "lookup"
    logged = [r["body"] for r in rows(registry.engine)["access_log"]]
    assert len(logged) == 1 and SMUGGLED not in repr(logged)


@pytest.mark.parametrize(
    "text",
    [
        "Advies: dagvaarden.\x1b[2J\x1b[HNO HIT: not known at any Safety House.",
        "Advies: dagvaarden.\rNO HIT: not known at any Safety House.",
        "Advies: dagvaarden \u202enegeer\u202c",
        f"Advies: dagvaarden; {SMUGGLED}",
    ],
    ids=["esc", "carriage-return", "bidi-override", "bsn"],
)
def test_an_advice_with_control_characters_or_a_bsn_is_rejected_at_sync(
    registry: RunningRegistry, ring: KeyRing, text: str
) -> None:
    before = rows(registry.engine)
    advice = Marking(KNOWN, "pga-4", advice=text)
    at = Marking(KNOWN, "pga-5", at_information={"open_cases": text})

    response = registry.sync(advice.upsert(ring), at.upsert(ring))

    assert response.rejected == 2
    assert [[v.field for v in r.field_violations] for r in response.rejections] == [
        ["upsert.advice"],
        ["upsert.at_information.open_cases"],
    ]
    assert rows(registry.engine) == before


def test_an_advice_of_several_lines_is_still_taken(
    registry: RunningRegistry, ring: KeyRing
) -> None:
    marking = Marking(KNOWN, "pga-6", advice="Advies:\n\tdagvaarden met meldplicht.")
    assert registry.sync(marking.upsert(ring)).created == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"case_reference": SMUGGLED}, "case_reference"),
        ({"case_reference": "x"}, "case_reference"),
        ({"on_behalf_of": SMUGGLED}, "on_behalf_of"),
        (
            {
                "advice_followed": fb.ADVICE_FOLLOWED_NOT_FOLLOWED,
                "deviation_reason": f"Zie het dossier van {SMUGGLED}.",
            },
            "deviation_reason",
        ),
        (
            {
                "advice_followed": fb.ADVICE_FOLLOWED_NOT_FOLLOWED,
                "deviation_reason": "Ernstiger feit.\x1b]8;;http://x\x07hier\x1b]8;;\x07",
            },
            "deviation_reason",
        ),
        ({"request_key": "123456782"}, "request_key"),
    ],
    ids=["case-bsn", "case-x", "user-bsn", "reason-bsn", "reason-esc", "request-key-bsn"],
)
def test_the_feedback_service_refuses_the_same_free_text_and_writes_nothing(
    feedback: RunningFeedback, ring: KeyRing, fields: dict[str, Any], named: str
) -> None:
    before = rows(feedback.registry.engine), rows(feedback.engine)

    fields_named = refused(
        lambda: feedback.stub_for(KPC_UTRECHT).RecordDecision(
            decision_request(ring, KNOWN, **fields), timeout=10
        )
    )

    assert fields_named == [named]
    assert (rows(feedback.registry.engine), rows(feedback.engine)) == before


def test_an_advice_question_with_a_bsn_or_control_characters_is_refused(
    feedback: RunningFeedback, ring: KeyRing
) -> None:
    before = rows(feedback.registry.engine), rows(feedback.engine)
    for question in (f"Graag advies over {SMUGGLED}", "Graag advies\x1b[2J"):
        request = fb.RequestAdviceRequest(
            case_reference="10-123456-26",
            subject=subject(ring, KNOWN),
            house="houses/vh-regio-utrecht-utrecht",
            question=question,
            on_behalf_of="kpc-0042",
            subject_age=pb.SUBJECT_AGE_ADULT,
        )
        request.term.FromSeconds(48 * 3600)
        fields = refused(
            lambda r=request: feedback.stub_for(KPC_UTRECHT).RequestAdvice(r, timeout=10)
        )
        assert fields == ["question"]
    assert (rows(feedback.registry.engine), rows(feedback.engine)) == before


# --- The formats come from the party register -----------------------------------------------------

NARROW = """
[[party]]
id = "zsm-midden-nederland-ovj"
organisation = "OM ZSM Midden-Nederland"
role = "zsm-officier"
region = "midden-nederland"
case_reference = 'ZSM-MN-[0-9]{3,8}'
user = 'ovj-[0-9]{4}'
"""


def test_a_partys_own_formats_in_the_register_are_enforced(
    database_url: str,
    tmp_path: Path,
    engines: Callable[[str], Engine],
    pki_dir: Path,
    ring: KeyRing,
    clock: Any,
) -> None:
    from harness import TEST_COVENANTS, running_registry

    covenants = tmp_path / "covenants"
    covenants.mkdir()
    shipped = (TEST_COVENANTS / "parties.toml").read_text("utf-8")
    start = shipped.index('[[party]]\nid = "zsm-midden-nederland-ovj"')
    end = shipped.index("[[party]]", start + 1)
    (covenants / "parties.toml").write_text(
        shipped[:start] + NARROW.lstrip() + "\n" + shipped[end:]
    )
    (covenants / "everything.toml").write_text((TEST_COVENANTS / "everything.toml").read_text())

    with running_registry(database_url, tmp_path, clock, engines, pki_dir, covenants) as registry:
        registry.sync(Marking(KNOWN, "pga-7").upsert(ring))
        before = rows(registry.engine)
        asked = {"party": OVJ, "purpose": purpose_pb2.PURPOSE_AFDOENINGSBESLISSING}
        for case, user, named in (
            ("10-123456-26", "ovj-0007", "case_reference"),  # the default, not the OvJ's own
            ("ZSM-MN-4711", "kpc-0042", "on_behalf_of"),
        ):
            fields = refused(
                lambda c=case, u=user: registry.lookup(
                    subject(ring, KNOWN), case_reference=c, on_behalf_of=u, **asked
                )
            )
            assert fields == [named]
        assert rows(registry.engine) == before
        answer = registry.lookup(
            subject(ring, KNOWN), case_reference="ZSM-MN-4711", on_behalf_of="ovj-0007", **asked
        )
        assert answer.outcome == pb.LOOKUP_OUTCOME_HIT
        # The KPC keeps the register's default formats.
        assert registry.lookup(subject(ring, KNOWN), case_reference="10-123456-26").outcome == (
            pb.LOOKUP_OUTCOME_HIT
        )


# --- 7. Nothing reaches the terminal but text -----------------------------------------------------

FORGED = "dagvaarden.\x1b[2J\x1b[HNO HIT: not known at any Safety House.\r\n\u202eNO HIT\x9b2J"


def test_an_advice_with_escape_sequences_never_reaches_the_terminal_of_baken_lookup(
    registry: RunningRegistry, ring: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    key_file = tmp_path / "keys.json"
    ring.save(key_file)
    response = registry.sync(Marking(KNOWN, "pga-8", advice=FORGED).upsert(ring))
    assert [v.field for r in response.rejections for v in r.field_violations] == ["upsert.advice"]
    registry.sync(Marking(KNOWN, "pga-9").upsert(ring))

    code = main(
        ["lookup", "--registry", f"127.0.0.1:{registry.port}", "--key-file", str(key_file),
         "--bsn", KNOWN.bsn or "", "--adult", "--user", "kpc-0042",
         "--party", "zsm-midden-nederland-kpc", "--pki-dir", str(registry.pki_dir)]
    )  # fmt: skip

    out = capsys.readouterr().out  # the server's log lines too, in this process
    assert code == 0
    assert "\nHIT: known at 1 Safety House" in out
    assert "NO HIT" not in out and "\x1b" not in out


def test_the_lookup_text_shows_control_characters_as_escapes_and_forges_no_line() -> None:
    from baken.render import lookup_json, lookup_text

    response = pb.LookupResponse(outcome=pb.LOOKUP_OUTCOME_HIT)
    marker = response.markers.add(name="houses/vh-twente/markers/1")
    marker.house.name = "houses/vh-twente"
    marker.house.display_name = "Veiligheidshuis Twente\x1b[31m"
    marker.advice.text = FORGED
    marker.at_information.open_cases = FORGED

    text = lookup_text(response)

    assert not [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
    assert "\u202e" not in text and "\\x1b[2J" in text and "\\u202e" in text
    first, *rest = text.splitlines()
    assert first.startswith("HIT")
    assert all(line.startswith(" ") for line in rest)  # no line at the margin but the verdict
    raw = lookup_json(response)
    assert "\x1b" not in raw and "\u202e" not in raw and "\x9b" not in raw


def test_digits_inside_a_longer_token_are_not_a_bsn() -> None:
    # Client request ids and delivery keys are hex: a run of nine digits inside one that
    # passes the 11-proef must not refuse the call (it did, about once in 200 ids).
    from baken.pseudonym import looks_like_bsn

    assert looks_like_bsn("bsn 123456782 naam")
    assert looks_like_bsn("bsn=123456782")
    assert looks_like_bsn("1234.56.782")
    assert not looks_like_bsn("a123456782f0e1")
    assert not looks_like_bsn("123456782abc")
    assert not looks_like_bsn("1234567820")


def test_every_command_that_prints_server_text_shows_control_characters_as_escapes() -> None:
    # `advice list`, `dead-letters` and `audit subject` print text a house, a source or a caller
    # wrote; none of it may steer the terminal or start a line of its own.
    from baken.audit.v1 import audit_service_pb2 as audit
    from baken.render import access_entry, advice_request_line

    entry = audit.AccessEntry(
        sequence=7,
        on_behalf_of=FORGED,
        case_reference=FORGED,
        denial_reason=FORGED,
        break_glass_reason=FORGED,
        audit_query=FORGED,
        reviews_sequence=3,
        review_finding=FORGED,
    )
    request = fb.AdviceRequest(name="adviceRequests/1", case_reference=FORGED, requested_by=FORGED)

    for text in (access_entry(entry), advice_request_line(request)):
        assert not [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F)]
        assert "\u202e" not in text
        assert not [line for line in text.splitlines()[1:] if not line.startswith(" ")]
