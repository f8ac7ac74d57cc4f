"""The key file of an edge party: roundtrip, owner-only, and errors that never show a secret."""

from __future__ import annotations

import base64
import json
import stat
import traceback
from pathlib import Path

import pytest

from baken.keyring import KeyFileError, KeyRing

SECRET = base64.b64encode(b"\x5a" * 32).decode()
SHORT_SECRET = base64.b64encode(b"\x5a" * 31).decode()


def test_a_saved_ring_loads_back_with_the_same_keys_in_order(tmp_path: Path) -> None:
    ring = KeyRing.generate("k2026-05").with_new_key("k2026-11")
    path = tmp_path / "keys" / "baken.keys"
    ring.save(path)
    loaded = KeyRing.load(path)
    assert list(loaded) == ["k2026-05", "k2026-11"]
    assert dict(loaded) == dict(ring)


def test_the_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "baken.keys"
    KeyRing.generate("k1").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_saving_over_a_key_file_keeps_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "baken.keys"
    path.write_text("{}")
    path.chmod(0o644)
    KeyRing.generate("k1").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(KeyRing.load(path)) == ["k1"]


def test_rotation_adds_and_retires_keys_without_touching_the_others() -> None:
    ring = KeyRing.generate("k1")
    both = ring.with_new_key("k2")
    assert both["k1"] == ring["k1"]
    assert both["k2"] != ring["k1"]
    assert dict(both.without_key("k1")) == {"k2": both["k2"]}
    with pytest.raises(KeyFileError):
        both.with_new_key("k1")
    with pytest.raises(KeyFileError):
        ring.without_key("k2")
    with pytest.raises(KeyFileError):
        ring.without_key("k1")  # a ring is never empty


def test_a_ring_never_shows_its_secrets() -> None:
    ring = KeyRing({"k1": b"\x5a" * 32})
    assert SECRET not in repr(ring)
    assert "Z" * 32 not in repr(ring)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        # Truncated JSON that carries a secret.
        '{"keys": [{"id": "k1", "secret": "' + SECRET + '"}',
        "[]",
        '{"keys": "' + SECRET + '"}',
        '{"keys": []}',
        '{"keys": [{"id": "k1"}]}',
        '{"keys": [{"secret": "' + SECRET + '"}]}',
        '{"keys": [{"id": "K1 upper", "secret": "' + SECRET + '"}]}',
        '{"keys": [{"id": "k1", "secret": "' + SECRET + '!"}]}',
        '{"keys": [{"id": "k1", "secret": "' + SHORT_SECRET + '"}]}',
        '{"keys": [{"id": "k1", "secret": 12345}]}',
    ],
    ids=[
        "empty",
        "not-json",
        "truncated",
        "list",
        "keys-not-a-list",
        "no-keys",
        "no-secret",
        "no-id",
        "bad-id",
        "bad-base64",
        "31-byte-key",
        "secret-not-text",
    ],
)
def test_a_malformed_key_file_names_the_file_and_never_the_secret(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "baken.keys"
    path.write_text(content)
    with pytest.raises(KeyFileError) as caught:
        KeyRing.load(path)
    message = str(caught.value)
    assert str(path) in message
    shown = "".join(traceback.format_exception(caught.value))
    for secret in (SECRET, SHORT_SECRET, SECRET.rstrip("=")[:16]):
        assert secret not in message
        assert secret not in shown


def test_a_missing_key_file_is_a_key_file_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.keys"
    with pytest.raises(KeyFileError) as caught:
        KeyRing.load(path)
    assert str(path) in str(caught.value)


def test_a_key_file_written_by_hand_in_the_documented_format_loads(tmp_path: Path) -> None:
    path = tmp_path / "baken.keys"
    path.write_text(json.dumps({"keys": [{"id": "k2026-11", "secret": SECRET}]}))
    assert KeyRing.load(path)["k2026-11"] == b"\x5a" * 32


@pytest.mark.parametrize("key_id", ["", "K1", "k1\n", "-k1", "k_1", "k" * 33, "kéy"])
def test_a_key_id_must_be_lowercase_letters_digits_and_dashes(key_id: str) -> None:
    with pytest.raises(KeyFileError):
        KeyRing({key_id: b"\x01" * 32})
