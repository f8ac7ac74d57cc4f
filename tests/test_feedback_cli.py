"""`baken decide`, `baken advice` and `baken feedback` against a real feedback service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from builders import Marking, Person
from feedback_harness import RunningFeedback

from baken import logs
from baken.clock import AMSTERDAM
from baken.feedback.v1 import feedback_service_pb2 as pb
from cli.main import main
from services.accesslog.signing import public_path

TRAVELLER = Person(bsn="111222333")


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    """The servers log to stderr, so stdout holds only the command's answer."""
    logs.configure(json=True)
    yield
    structlog.reset_defaults()


UTRECHT, ROTTERDAM = "vh-regio-utrecht-utrecht", "vh-rotterdam-rijnmond"


def run(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    key_file = tmp_path / "edge-keys.json"
    if not key_file.exists():
        feedback.ring.save(key_file)
    common = [
        "--feedback",
        f"127.0.0.1:{feedback.server.port}",
        "--pki-dir",
        str(feedback.registry.pki_dir),
    ]
    person = ["--key-file", str(key_file), "--user", "kpc-0042"]
    command = list(args)
    if command[0] in ("decide", "advice"):
        command += person
        if "--party" not in command:
            command += ["--party", "zsm-midden-nederland-kpc"]
    capsys.readouterr()
    code = main([*command, *common])
    out, err = capsys.readouterr()
    return code, out, err


def test_decide_and_advice_without_a_party_are_refused_naming_party(
    feedback: RunningFeedback,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # They acted as the Midden-Nederland KPC'er, silently, and were logged as one.
    monkeypatch.delenv("BAKEN_PARTY", raising=False)
    key_file = tmp_path / "edge-keys.json"
    feedback.ring.save(key_file)
    common = ["--key-file", str(key_file), "--user", "kpc-0042", "--bsn", "111222333", "--adult"]
    target = ["--feedback", f"127.0.0.1:{feedback.server.port}"]
    pki = ["--pki-dir", str(feedback.registry.pki_dir)]
    for command in (
        ["decide", "--case", "10-123456-26", "--code", "technisch-sepot-01"],
        ["advice", "list"],
    ):
        code = main([*command, *common, *target, *pki])
        err = capsys.readouterr().err
        assert code == 2, command
        assert "--party or BAKEN_PARTY" in err and "Traceback" not in err


def test_decide_tells_which_houses_hear_it(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback.registry.sync(
        Marking(TRAVELLER, "g1", house=UTRECHT).upsert(feedback.ring),
        Marking(TRAVELLER, "r1", house=ROTTERDAM).upsert(feedback.ring),
    )
    base = ["decide", "--bsn", TRAVELLER.bsn or "", "--adult", "--case", "10-123456-26"]
    code, _, err = run(feedback, tmp_path, capsys, *base, "--code", "dagvaarding")
    assert code == 1
    assert f"INVALID_ARGUMENT: --advice HOUSE=: required: a line for houses/{UTRECHT}" in err
    assert "Traceback" not in err
    code, out, _ = run(
        feedback,
        tmp_path,
        capsys,
        *base,
        "--code",
        "dagvaarding",
        "--advice",
        "not-followed",
        "--reason",
        "Hij onttrok zich twee keer aan toezicht; daarom dagvaarden.",
        "--party",
        "zsm-rotterdam-rijnmond-kpc",
    )
    assert code == 0
    assert "recorded" in out
    assert f"decision -> houses/{UTRECHT}" in out and f"decision -> houses/{ROTTERDAM}" in out
    code, out, _ = run(feedback, tmp_path, capsys, *base, "--code", "technisch-sepot-01")
    assert code == 0 and "technisch sepot 01: nothing fed back; 2 items purged" in out


def test_decide_seals_an_aanmelding_at_the_desk(
    feedback: RunningFeedback,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    house_keys_dir: Path,
) -> None:
    code, out, _ = run(
        feedback,
        tmp_path,
        capsys,
        "decide",
        "--bsn",
        "123456782",
        "--adult",
        "--case",
        "10-7-26",
        "--code",
        "strafbeschikking",
        "--complex-problems",
        "--municipality",
        "Nieuwegein",
        "--triage",
        "repeat-offender",
        "--house-keys",
        str(house_keys_dir),
    )
    assert code == 0 and f"referral -> houses/{UTRECHT}" in out
    code, _, err = run(
        feedback,
        tmp_path,
        capsys,
        "decide",
        "--bsn",
        "123456782",
        "--adult",
        "--case",
        "10-7-26",
        "--code",
        "strafbeschikking",
        "--complex-problems",
        "--municipality",
        "Atlantis",
    )
    assert code == 2 and "no Safety House in Baken covers it" in err


def test_an_enrichment_request_seals_the_person_to_the_municipalitys_house_at_the_desk(
    feedback: RunningFeedback,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    house_keys_dir: Path,
) -> None:
    asked = [
        "advice",
        "request",
        "--bsn",
        "123456782",
        "--surname",
        "de Vries",
        "--birth-date",
        "1988-02-03",
        "--adult",
        "--case",
        "10-8-26",
        "--question",
        "Is het gezin bij jullie in beeld?",
        "--house-keys",
        str(house_keys_dir),
    ]
    code, out, _ = run(
        feedback,
        tmp_path,
        capsys,
        *asked,
        "--municipality",
        "Nieuwegein",
        "--enrichment",
        "domestic-violence",
    )
    assert code == 0 and "open" in out and f"houses/{UTRECHT}" in out
    [item] = feedback.receive(UTRECHT, count=1, party="adapter-gcos")
    assert item.kind == pb.DELIVERY_KIND_ADVICE_REQUEST and item.source_record_id == ""
    assert list(item.enrichment_criteria) == [pb.TRIAGE_CRITERION_DOMESTIC_VIOLENCE]
    # Not granted for youth: refused, saying for which criterion.
    code, _, err = run(
        feedback, tmp_path, capsys, *asked, "--municipality", "Nieuwegein", "--enrichment", "youth"
    )
    assert code != 0 and "TRIAGE_CRITERION_YOUTH" in err
    code, _, err = run(feedback, tmp_path, capsys, *asked, "--municipality", "Nieuwegein")
    assert code == 2 and "--municipality needs --enrichment" in err
    code, _, err = run(
        feedback, tmp_path, capsys, *asked, "--house", UTRECHT, "--municipality", "Nieuwegein"
    )
    assert code == 2 and "not both" in err


def test_advice_request_and_the_overdue_list(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback.registry.sync(Marking(TRAVELLER, "g1", house=UTRECHT).upsert(feedback.ring))
    code, out, _ = run(
        feedback,
        tmp_path,
        capsys,
        "advice",
        "request",
        "--bsn",
        TRAVELLER.bsn or "",
        "--adult",
        "--case",
        "10-1-26",
        "--house",
        UTRECHT,
        "--term",
        "24h",
        "--question",
        "Is het plan nog actueel?",
    )
    assert code == 0 and "open" in out and f"houses/{UTRECHT}" in out
    code, out, _ = run(feedback, tmp_path, capsys, "advice", "list", "--overdue")
    assert code == 0 and out.strip() == "no overdue advice requests"
    feedback.registry.clock.advance(dt.timedelta(hours=25))
    code, out, _ = run(feedback, tmp_path, capsys, "advice", "list", "--overdue")
    assert code == 0 and "overdue" in out and "case 10-1-26" in out


def test_advice_cancel_withdraws_the_request(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback.registry.sync(Marking(TRAVELLER, "g1", house=UTRECHT).upsert(feedback.ring))
    asked = ["--bsn", TRAVELLER.bsn or "", "--adult", "--case", "10-1-26", "--house", UTRECHT]
    code, out, _ = run(
        feedback, tmp_path, capsys, "advice", "request", *asked, "--question", "Plan actueel?"
    )
    assert code == 0
    name = out.split()[0]
    code, out, _ = run(feedback, tmp_path, capsys, "advice", "cancel", "--name", name)
    assert code == 0 and out.startswith(name) and "cancelled" in out
    code, out, _ = run(feedback, tmp_path, capsys, "advice", "list")
    assert code == 0 and out.strip() == "no open advice requests"


@pytest.mark.parametrize(
    ("when", "due"),
    [
        (["--term", "3h"], "2026-12-04 23:30"),
        (["--by", "13:00 next working day"], "2026-12-07 13:00"),
        (["--by", "13:00", "--working-days", "2"], "2026-12-08 13:00"),
    ],
)
def test_advice_request_with_a_short_term_or_by_a_working_day(
    feedback: RunningFeedback,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    when: list[str],
    due: str,
) -> None:
    clock = feedback.registry.clock
    clock.advance(dt.datetime(2026, 12, 4, 20, 30, tzinfo=AMSTERDAM) - clock.now())  # Friday
    feedback.registry.sync(Marking(TRAVELLER, "g1", house=UTRECHT).upsert(feedback.ring))
    asked = ["--bsn", TRAVELLER.bsn or "", "--adult", "--case", "10-1-26", "--house", UTRECHT]
    code, out, err = run(
        feedback, tmp_path, capsys, "advice", "request", *asked, *when, "--question", "Plan?"
    )
    assert code == 0, err
    [request] = (
        feedback.stub_for("zsm-midden-nederland-kpc")
        .ListAdviceRequests(pb.ListAdviceRequestsRequest(), timeout=5)
        .advice_requests
    )
    local = request.due_time.ToDatetime(dt.UTC).astimezone(AMSTERDAM)
    assert local.strftime("%Y-%m-%d %H:%M") == due
    assert request.name in out


def test_advice_request_refuses_term_and_by_together(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = ["--bsn", TRAVELLER.bsn or "", "--adult", "--case", "10-1-26", "--house", UTRECHT]
    code, _, err = run(
        feedback, tmp_path, capsys, "advice", "request", *asked, "--question", "Plan?",
        "--term", "3h", "--by", "13:00",
    )  # fmt: skip
    assert code != 0 and "--term or --by" in err and "Traceback" not in err


def test_dead_letters_for_the_operator_only(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(feedback, tmp_path, capsys, "feedback", "dead-letters")
    assert code == 0 and out.strip() == "no dead letters"
    code, _, err = run(
        feedback, tmp_path, capsys, "feedback", "dead-letters", "--party", "adapter-gcos"
    )
    assert code == 1 and "PERMISSION_DENIED (OPERATORS_ONLY)" in err
    code, _, err = run(feedback, tmp_path, capsys, "feedback", "requeue", "no-such-key")
    assert code == 1 and "NOT_FOUND (DEAD_LETTER_NOT_FOUND)" in err


def test_the_feedback_services_access_log_verifies(
    feedback: RunningFeedback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback.registry.sync(Marking(TRAVELLER, "g1", house=UTRECHT).upsert(feedback.ring))
    feedback.decide(TRAVELLER, advice_followed=pb.ADVICE_FOLLOWED_FOLLOWED)
    feedback.decide(TRAVELLER, code=pb.DECISION_CODE_TECHNISCH_SEPOT_01)  # a purge entry
    settings = feedback.settings
    code = main(
        [
            "audit",
            "verify",
            "--service",
            "feedback",
            "--database-url",
            settings.resolved_database_url(),
            "--public-key",
            str(public_path(settings.resolved_audit_signing_key())),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "OK: the access log verifies: 2 entries" in out
