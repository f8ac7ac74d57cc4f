"""Every edge command with an OPRF-only key file (no secret at the edge): the adapter's sync,
`baken lookup` and `baken audit subject` build their client of the pseudonymisation service from
the file's address and the party's own certificate, and find each other's pseudonyms."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RunningRegistry
from pseudonymiser_harness import KEY_ID, RunningPseudonymiser, running_pseudonymiser

from baken.keyring import KeyRing
from cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "pga"
KPC = "zsm-midden-nederland-kpc"


@pytest.fixture
def service(tmp_path: Path, pki_dir: Path) -> Iterator[RunningPseudonymiser]:
    with running_pseudonymiser(tmp_path, pki_dir) as running:
        yield running


@pytest.fixture
def key_file(tmp_path: Path, service: RunningPseudonymiser) -> Path:
    """An edge's key file made as an operator makes one: no secret, the service's address."""
    path = tmp_path / "edge-keys.json"
    init = ["keys", "init", "--kind", "oprf", "--key-id", KEY_ID, "--service", service.address]
    assert main([*init, "--key-file", str(path)]) == 0
    assert json.loads(path.read_text()) == {
        "keys": [{"id": KEY_ID, "kind": "oprf", "service": service.address}]
    }
    return path


def _lookup(registry: RunningRegistry, key_file: Path, *args: str) -> int:
    return main(
        ["lookup", "--registry", f"127.0.0.1:{registry.port}", "--key-file", str(key_file),
         "--bsn", "111222333", "--adult", "--pki-dir", str(registry.pki_dir), "--party", KPC,
         "--json", *args]
    )  # fmt: skip


def test_sync_lookup_and_audit_pseudonymise_through_the_service(
    registry: RunningRegistry,
    service: RunningPseudonymiser,
    key_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry.set_today(dt.date(2025, 1, 15))
    sync = [
        "adapter", "pga", "sync", "--source", str(FIXTURES / "export.jsonl"),
        "--registry", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir),
        "--key-file", str(key_file), "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    assert main(sync) == 0
    assert "new 5" in capsys.readouterr().out
    assert {row["key_id"] for row in registry.tables()["marker_pseudonyms"]} == {KEY_ID}

    assert _lookup(registry, key_file, "--user", "kpc-0117") == 0
    assert '"outcome": "LOOKUP_OUTCOME_HIT"' in capsys.readouterr().out

    audit = [
        "audit", "subject", "--bsn", "111222333", "--key-file", str(key_file),
        "--registry", f"127.0.0.1:{registry.port}", "--pki-dir", str(registry.pki_dir),
        "--user", "fg-1",
    ]  # fmt: skip
    assert main(audit) == 0
    assert "1 entries." in capsys.readouterr().out

    calls = [(e.party_id, e.body["elements"]) for e in service.log_entries()]
    # The sync's 5 persons in one call; the look-up and the report one BSN each.
    assert calls[0][0] == "adapter-pga" and calls[1:] == [(KPC, 1), ("privacy-auditor", 1)]


def test_a_lookup_under_an_oprf_key_needs_a_user_and_a_reachable_service(
    registry: RunningRegistry,
    key_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _lookup(registry, key_file) == 2
    assert "--user" in capsys.readouterr().err
    away = tmp_path / "away.json"
    KeyRing({}, {KEY_ID: "127.0.0.1:1"}).save(away)
    assert _lookup(registry, away, "--user", "kpc-0117") == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "111222333" not in err
    assert registry.tables()["access_log"] == []  # nothing reached the registry


def test_an_oprf_key_file_needs_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert (
        main(["keys", "init", "--kind", "oprf", "--key-id", KEY_ID, "--key-file", str(path)]) == 2
    )
    assert "--service host:port" in capsys.readouterr().err and not path.exists()
