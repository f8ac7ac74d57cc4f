"""The `baken` command: clear one-line errors, never a traceback; JSON for machines."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baken import logs
from baken.cli import main
from baken.keyring import KeyRing
from baken.settings import RegistrySettings
from services.registry.server import create_server


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    assert main(["keys", "init", "--key-file", str(path), "--key-id", "k1"]) == 0
    return path


@pytest.fixture
def registry(tmp_path: Path, pki_dir: Path) -> Iterator[str]:
    logs.configure(json=True)  # to stderr, so stdout holds only the command's answer
    server, port = create_server(
        RegistrySettings(address="127.0.0.1:0", data_dir=tmp_path / "registry")
    )
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None).wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lookup_with_a_bad_bsn_names_the_field_and_sends_nothing(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["lookup", "--registry", "127.0.0.1:1", "--key-file", str(key_file), "--bsn", "111222334"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "bsn: the BSN fails the 11-proef" in err
    assert "111222334" not in err
    assert "Traceback" not in err


def test_lookup_says_plainly_when_the_registry_is_down(
    key_file: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main(
        ["lookup", "--registry", f"127.0.0.1:{_free_port()}", "--key-file", str(key_file),
         "--bsn", "111222333", "--adult", "--user", "kpc-0042", "--timeout", "2",
         "--pki-dir", str(pki_dir)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "not reachable" in err or "did not answer within 2 s" in err
    assert time.monotonic() - started < 10


def test_lookup_prints_json_for_a_no_hit(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "lookup",
            "--registry",
            registry,
            "--key-file",
            str(key_file),
            "--bsn",
            "111222333",
            "--adult",
            "--user",
            "kpc-0042",
            "--json",
            "--pki-dir",
            str(pki_dir),
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "LOOKUP_OUTCOME_NO_HIT"


def test_lookup_needs_a_surname_with_a_birth_date(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lookup", "--key-file", str(key_file), "--birth-date", "1990-01-01"])
    assert code == 2
    assert "surname" in capsys.readouterr().err


def test_missing_key_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lookup", "--key-file", str(tmp_path / "absent.json"), "--bsn", "111222333"])
    assert code == 2
    assert "no such key file" in capsys.readouterr().err


def test_keys_rotate_through_add_and_retire(key_file: Path) -> None:
    assert main(["keys", "add", "--key-file", str(key_file), "--key-id", "k2"]) == 0
    assert list(KeyRing.load(key_file)) == ["k1", "k2"]
    assert main(["keys", "retire", "--key-file", str(key_file), "--key-id", "k1"]) == 0
    assert list(KeyRing.load(key_file)) == ["k2"]
    assert main(["keys", "init", "--key-file", str(key_file), "--key-id", "k3"]) == 2


def test_lookup_without_the_party_certificate_names_the_missing_file(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["lookup", "--key-file", str(key_file), "--bsn", "111222333", "--adult",
         "--user", "kpc-0042", "--pki-dir", str(tmp_path / "no-pki")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "no-pki" in err and "baken pki init" in err
    assert "Traceback" not in err


def test_pki_init_makes_a_ca_and_refuses_to_overwrite_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    assert (tmp_path / "pki" / "ca.pem").exists()
    assert (tmp_path / "pki" / "zsm-midden-nederland-kpc.key").stat().st_mode & 0o077 == 0
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 2
    assert "holds a CA already" in capsys.readouterr().err


def test_serve_on_an_address_in_use_says_so_without_a_traceback(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "registry", "--address", registry, "--data-dir", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot listen on {registry}" in err
    assert "Traceback" not in err


def test_serve_stops_on_a_broken_covenant_naming_file_and_line(
    tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    covenants = tmp_path / "covenants"
    covenants.mkdir()
    shipped = Path(__file__).parent.parent / "covenants"
    for name in ("parties.toml", "national.toml"):
        (covenants / name).write_text((shipped / name).read_text())
    national = covenants / "national.toml"
    text = national.read_text().replace('"target_group"]', '"target_grup"]', 1)
    national.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "target_grup" in t)

    code = main(
        ["serve", "registry", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
         "--pki-dir", str(pki_dir), "--covenants-dir", str(covenants)]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert f"{national}:{line}: unknown field 'target_grup'" in err
    assert "Traceback" not in err
