"""The PGA adapter end to end: export -> `baken adapter pga sync` -> registry -> lookup, and an
adapter process killed with SIGKILL mid-sync, then run again."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import Person, subject, valid_bsns
from harness import RunningRegistry

from adapters.pga.write import seal
from baken.keyring import KeyRing
from baken.registry.v1 import marker_pb2
from baken.registry.v1 import registry_service_pb2 as pb
from cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "pga"


def sync_args(registry: RunningRegistry, source: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "adapter", "pga", "sync", "--source", str(source),
        "--registry", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir),
        "--key-file", str(tmp_path / "adapter-keys.json"),
        "--state-dir", str(tmp_path / "state"), *extra,
    ]  # fmt: skip


@pytest.fixture
def keys(tmp_path: Path, ring: KeyRing) -> KeyRing:
    """The adapter's key file; the ZSM side looks up with the same ring."""
    ring.save(tmp_path / "adapter-keys.json")
    return ring


def live(registry: RunningRegistry) -> dict[str, int]:
    return {
        row["source_record_id"]: row["source_version"]
        for row in registry.tables()["markers"]
        if not row["deleted"]
    }


def test_a_pga_export_round_trips_to_a_lookup(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.set_today(dt.date(2025, 1, 15))
    source = FIXTURES / "export.jsonl"

    assert main(sync_args(registry, source, tmp_path)) == 0
    first = capsys.readouterr().out
    assert main(sync_args(registry, source, tmp_path)) == 0
    second = capsys.readouterr().out

    assert "export.jsonl: new 5, changed 0, deleted 0, unchanged 0, rejected 0" in first
    assert "export.jsonl: new 0, changed 0, deleted 0, unchanged 5, rejected 0" in second
    response = registry.lookup(subject(keys, Person(bsn="111222333")))
    assert response.outcome == pb.LOOKUP_OUTCOME_HIT
    (marker,) = response.markers
    assert marker.house.name == "houses/vh-rotterdam-rijnmond"
    assert marker.advice.text.startswith("Bij nieuw feit: dagvaarden")
    assert marker.at_information.detention_history.startswith("3x kort detentie")
    without_bsn = registry.lookup(
        subject(keys, Person(surname="Bakker", birth_date=dt.date(1987, 11, 30)))
    )
    assert without_bsn.match_quality == marker_pb2.MATCH_QUALITY_NAME_BIRTH_DATE


def test_bad_pga_records_are_reported_by_line_and_the_rest_syncs(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exit 1: a rejected record is news for the operator, though the good ones were applied.
    assert main(sync_args(registry, FIXTURES / "bad.jsonl", tmp_path)) == 1
    out, err = capsys.readouterr()
    out = out.splitlines()

    *problems, summary = [line for line in out if line.startswith("bad.jsonl")]
    assert problems and all(": " in line for line in problems)
    assert f"rejected {len(problems)}" in summary
    assert any("lies in the future" in line for line in problems)  # the framework checks too
    assert "123456789" not in "\n".join(out)
    assert live(registry)  # the good records between the bad ones landed
    assert f"{len(problems)} record(s) rejected, named above; the others were applied" in err


def test_a_missing_export_file_is_a_user_error_naming_it(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It ended in a crash report (exit 70).
    missing = tmp_path / "no" / "such.jsonl"
    assert main(sync_args(registry, missing, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err == f"baken adapter: --source {missing}: no such file or directory\n"


def test_with_the_registry_down_the_error_names_the_registry_not_the_feedback_service(
    registry: RunningRegistry,
    keys: KeyRing,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters import transport
    from baken.backoff import Backoff
    from dev.topology import free_port

    monkeypatch.setattr(transport, "SEND_BACKOFF", Backoff(0.01, 0.01))
    down = f"127.0.0.1:{free_port()}"
    args = sync_args(registry, FIXTURES / "export.jsonl", tmp_path, "--registry", down)
    code = main([*args, "--feedback", f"127.0.0.1:{registry.port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"the registry at {down} is not reachable" in err and "feedback" not in err


def _export(path: Path, persons: list[tuple[str, str]], advice: str) -> None:
    """A PGA export: one registration per (record id, BSN)."""
    with path.open("w", encoding="utf-8") as f:
        for record_id, bsn in persons:
            line = {
                "registratie_id": record_id,
                "veiligheidshuis": "VHRR",
                "bsn": bsn,
                "achternaam": "Jansen",
                "geboortedatum": "1990-01-01",
                "doelgroep": "Veelpleger",
                "status_pva": "Actief",
                "datum_aanmelding": "2026-09-01",
                "advies": f"{advice} {record_id}",
                "advies_datum": "2026-09-01",
            }
            f.write(json.dumps(line) + "\n")
    seal(path)


@pytest.mark.slow
def test_an_adapter_killed_mid_sync_and_run_again_leaves_the_registry_equal_to_the_source(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path
) -> None:
    bsns = valid_bsns(60_000_000)
    persons = [(f"AT-{n:05d}", next(bsns)) for n in range(20_000)]
    source = tmp_path / "export.jsonl"
    args = [
        sys.executable,
        "-m",
        "cli.main",
        *sync_args(registry, source, tmp_path, "--batch", "100"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for round_, delay in enumerate((0.8, 1.3, 1.8, 2.3)):
        # Between the killed runs the source changes: records leave, advice changes.
        current = persons[round_ * 100 :]
        _export(source, current, f"advies ronde {round_}")
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)

    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=True)
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=True)

    assert kills >= 2, "the adapter finished before it could be killed: raise the export size"
    assert "rejected 0" in final.stdout, final.stdout
    assert set(live(registry)) == {record_id for record_id, _ in current}
    assert f"unchanged {len(current)}, rejected 0" in again.stdout
    (marker,) = registry.lookup(subject(keys, Person(bsn=current[0][1]))).markers
    assert marker.advice.text == f"advies ronde 3 {current[0][0]}"


def _until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_watch_picks_up_each_change_of_the_export(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path
) -> None:
    bsns = valid_bsns(61_000_000)
    persons = [(f"AT-{n:05d}", next(bsns)) for n in range(3)]
    source = tmp_path / "export.jsonl"
    _export(source, persons, "eerste advies")
    # One of three leaving is a third of the markers: above the default limit of 10 %.
    args = sync_args(registry, source, tmp_path, "--interval", "0.2", "--max-delete-share", "0.5")
    args[2] = "watch"
    process = subprocess.Popen([sys.executable, "-m", "cli.main", *args], stdout=subprocess.DEVNULL)
    try:
        assert _until(lambda: set(live(registry)) == {"AT-00000", "AT-00001", "AT-00002"})
        _export(source, persons[1:], "tweede advies")
        assert _until(lambda: live(registry) == {"AT-00001": 2, "AT-00002": 2})
    finally:
        process.kill()
        process.wait(timeout=10)


def _state(tmp_path: Path) -> bytes:
    """The state file as the adapter left it (WAL checkpointed by the closed connection)."""
    return (tmp_path / "state" / "pga.state.db").read_bytes()


@pytest.fixture
def synced(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A source of 40 registrations, synced: the export path."""
    bsns = valid_bsns(62_000_000)
    source = tmp_path / "export.jsonl"
    _export(source, [(f"AT-{n:05d}", next(bsns)) for n in range(40)], "advies")
    assert main(sync_args(registry, source, tmp_path)) == 0
    assert "new 40" in capsys.readouterr().out
    return source


def _broken(source: Path, kind: str) -> None:
    data = source.read_bytes()
    if kind == "empty":
        source.write_bytes(b"")
    elif kind == "cut-mid-line":
        source.write_bytes(data[: len(data) // 3])
    elif kind == "cut-at-line-end":
        source.write_bytes(data[: data.index(b"\n", len(data) // 3) + 1])
    else:  # the Amazone CSV fed to the PGA adapter by mistake
        source.write_bytes((FIXTURES.parent / "amazone" / "export.csv").read_bytes())


@pytest.mark.parametrize("kind", ["empty", "cut-mid-line", "cut-at-line-end", "amazone-csv"])
def test_an_export_that_cannot_prove_it_is_complete_deletes_nothing(
    registry: RunningRegistry,
    synced: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """The attack: a 0-byte export deleted every marker of Rotterdam-Rijnmond; one cut off
    deleted the rest; the Amazone CSV gave 498 rejected lines and deleted the lot."""
    before = live(registry), _state(tmp_path)
    _broken(synced, kind)

    assert main(sync_args(registry, synced, tmp_path)) == 2
    out, err = capsys.readouterr()

    assert (live(registry), _state(tmp_path)) == before
    assert "deleted 0" in out and "nothing changed: the export cannot prove it is complete" in err
    assert len([line for line in out.splitlines() if line.startswith("export.jsonl:")]) <= 3
    assert "Traceback" not in err


def test_a_mass_deletion_is_refused_until_the_operator_confirms_its_exact_number(
    registry: RunningRegistry, synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete, sealed export that lost most registrations (a wrong extract): refused, with
    the number to confirm; a wrong number is refused too; the exact number deletes exactly."""
    bsns = valid_bsns(62_000_000)
    kept = [(f"AT-{n:05d}", next(bsns)) for n in range(40)][:10]
    _export(synced, kept, "advies")
    before = live(registry), _state(tmp_path)

    assert main(sync_args(registry, synced, tmp_path)) == 2
    refused = capsys.readouterr().err
    assert main(sync_args(registry, synced, tmp_path, "--confirm-deletions", "29")) == 2
    wrong = capsys.readouterr().err

    assert (live(registry), _state(tmp_path)) == before
    assert "would delete 30 of 40 live markers (75.0%), more than the limit of 10%" in refused
    assert "run again with --confirm-deletions 30" in refused
    assert "29 were confirmed, not 30" in wrong

    assert main(sync_args(registry, synced, tmp_path, "--confirm-deletions", "30")) == 0
    assert "deleted 30, unchanged 10" in capsys.readouterr().out
    assert set(live(registry)) == {record_id for record_id, _ in kept}


def test_the_limit_is_an_option(
    registry: RunningRegistry, synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bsns = valid_bsns(62_000_000)
    _export(synced, [(f"AT-{n:05d}", next(bsns)) for n in range(40)][:30], "advies")

    assert main(sync_args(registry, synced, tmp_path, "--max-delete-share", "0.25")) == 0
    assert "deleted 10, unchanged 30" in capsys.readouterr().out
    assert main(sync_args(registry, synced, tmp_path, "--max-delete-share", "10")) == 2
    assert "--max-delete-share: a share from 0 to 1" in capsys.readouterr().err


def test_the_limit_is_an_environment_setting_too(
    registry: RunningRegistry,
    synced: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bsns = valid_bsns(62_000_000)
    _export(synced, [(f"AT-{n:05d}", next(bsns)) for n in range(40)][:30], "advies")

    monkeypatch.setenv("BAKEN_ADAPTER_MAX_DELETE_SHARE", "lots")
    with pytest.raises(SystemExit):
        main(sync_args(registry, synced, tmp_path))
    assert "--max-delete-share: invalid float value: 'lots'" in capsys.readouterr().err
    monkeypatch.setenv("BAKEN_ADAPTER_MAX_DELETE_SHARE", "0.2")
    assert main(sync_args(registry, synced, tmp_path)) == 2
    assert "more than the limit of 20%" in capsys.readouterr().out
    monkeypatch.setenv("BAKEN_ADAPTER_MAX_DELETE_SHARE", "0.25")
    assert main(sync_args(registry, synced, tmp_path)) == 0
    assert "deleted 10, unchanged 30" in capsys.readouterr().out


def test_a_report_never_sends_a_control_character_to_the_terminal(
    registry: RunningRegistry, keys: KeyRing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw ESC in a line that is no valid JSON still shows in the report as its escape."""
    source = tmp_path / "export.jsonl"
    source.write_bytes(b'{"registratie_id": "AT-\x1b[2J\x1b[H NO HIT", "advies": \n')
    seal(source)

    assert main(sync_args(registry, source, tmp_path)) == 1  # the line is rejected
    out = capsys.readouterr().out

    assert "\x1b" not in out
    assert "export.jsonl:1 (AT-\\x1b[2J\\x1b[H NO HIT): invalid JSON" in out
