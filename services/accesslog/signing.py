"""Ed25519 keys that sign the access log's checkpoints, kept in key files.

A key is a pair of JSON files. The private file, readable by its owner only (0600):

    {"key_id": "cp2026-11", "private_pem": "-----BEGIN PRIVATE KEY-----\\n...(PKCS8)..."}

and next to it, named after the private file's stem with `.pub` (`checkpoint.key` ->
`checkpoint.pub`), the public file an auditor gets (0644):

    {"key_id": "cp2026-11", "public_pem": "-----BEGIN PUBLIC KEY-----\\n...(SPKI)..."}

The key id travels with each checkpoint, so a verifier picks the right public key; it lives in
the file rather than in the file's name, so renaming a file never changes which key it is. The
PEM inside is standard: `openssl pkey` reads it once taken out of the JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from baken.keyring import KEY_ID


class SigningKeyError(Exception):
    """A signing key file is missing, unreadable or malformed. The message names the file, never
    key material."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _check_key_id(key_id: str) -> None:
    if not KEY_ID.match(key_id):
        raise SigningKeyError(f"key id {key_id!r} is not 1 to 32 lowercase letters, digits and '-'")


def generate(key_id: str) -> SigningKey:
    return SigningKey(key_id, Ed25519PrivateKey.generate())


def public_path(path: Path) -> Path:
    """Where the public half of the key file at `path` is kept."""
    return path.with_name(path.stem + ".pub")


def _private_document(key: SigningKey) -> str:
    pem = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return json.dumps({"key_id": key.key_id, "private_pem": pem.decode()}, indent=2) + "\n"


def _public_document(key: SigningKey) -> str:
    return (
        json.dumps({"key_id": key.key_id, "public_pem": key.public_pem().decode()}, indent=2) + "\n"
    )


def _write_tmp(path: Path, text: str, mode: int) -> Path:
    """`text` in a new file next to `path` with exactly `mode`, flushed to disk."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), mode)  # O_CREAT's mode passes through the umask
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _check_path(path: Path) -> None:
    if public_path(path) == path:
        raise SigningKeyError(f"{path}: a private key file must not end in .pub")


def save(key: SigningKey, path: Path) -> None:
    """Write the private key file (0600) and its public file (0644), each replaced atomically."""
    _check_path(path)
    _write_tmp(path, _private_document(key), 0o600).replace(path)
    pub = public_path(path)
    _write_tmp(pub, _public_document(key), 0o644).replace(pub)


def load(path: Path) -> SigningKey:
    document = _read(path, "private_pem")
    try:
        private = serialization.load_pem_private_key(document["private_pem"].encode(), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{path}: not a valid signing key file (bad key)") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: the key is not an Ed25519 key")
    try:
        return SigningKey(document["key_id"], private)
    except SigningKeyError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None


def load_or_create(path: Path, key_id: str) -> SigningKey:
    """The key at `path`; a new one under `key_id` if there is no file yet. An existing file
    keeps its own key id, so a key id made from the date names the key's creation, and a
    restart in a later month signs on with the same key. Two processes that start together
    end up with the same key: the file is created only while it is still absent."""
    _check_path(path)
    _check_key_id(key_id)
    if not path.exists():
        key = generate(key_id)
        tmp = _write_tmp(path, _private_document(key), 0o600)
        try:
            os.link(tmp, path)  # fails if another process created the file meanwhile
        except FileExistsError:
            pass
        else:
            pub = public_path(path)
            _write_tmp(pub, _public_document(key), 0o644).replace(pub)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return load(path)


# Where earlier versions made a service's key by default: in its data dir.
LEGACY_NAME = "audit-signing.key"


def load_for_service(
    path: Path, data_dir: Path, key_id: str, *, env_prefix: str, allow_in_data_dir: bool
) -> SigningKey:
    """The service's checkpoint key (`load_or_create`), refused when it lies in the data dir:
    whoever can copy or change the database could then re-sign a rewritten log. Also refused:
    a key left in the data dir by an earlier version, which a new key would silently replace."""
    if not allow_in_data_dir:
        allow = f"{env_prefix}ALLOW_SIGNING_KEY_IN_DATA_DIR"
        if path.resolve().is_relative_to(data_dir.resolve()):
            raise SigningKeyError(
                f"{path}: the audit signing key lies in the data dir {data_dir}; keep it "
                f"elsewhere ({env_prefix}AUDIT_SIGNING_KEY), or set {allow}=true to accept that "
                "a copy of the data dir can re-sign a rewritten access log"
            )
        legacy = data_dir / LEGACY_NAME
        if legacy.exists():
            raise SigningKeyError(
                f"{legacy}: an audit signing key in the data dir, where earlier versions made "
                f"it; move it and its .pub to {path} (or set {env_prefix}AUDIT_SIGNING_KEY to "
                f"where you keep it), or set {allow}=true"
            )
    return load_or_create(path, key_id)


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key, from public key files (`<stem>.pub`)."""
    keys: dict[str, Ed25519PublicKey] = {}
    raw: dict[str, bytes] = {}
    for path in paths:
        document = _read(path, "public_pem")
        try:
            public = serialization.load_pem_public_key(document["public_pem"].encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise SigningKeyError(f"{path}: not a valid public key file (bad key)") from None
        if not isinstance(public, Ed25519PublicKey):
            raise SigningKeyError(f"{path}: the key is not an Ed25519 key")
        key_id = document["key_id"]
        try:
            _check_key_id(key_id)
        except SigningKeyError as exc:
            raise SigningKeyError(f"{path}: {exc}") from None
        data = public.public_bytes_raw()
        if raw.setdefault(key_id, data) != data:
            raise SigningKeyError(f"{path}: another file holds a different key {key_id!r}")
        keys[key_id] = public
    return keys


def _read(path: Path, pem_field: str) -> dict[str, str]:
    """The file's JSON object, checked to hold a string key_id and a string `pem_field`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such key file") from None
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: not a valid key file ({type(exc).__name__})") from None
    if not (
        isinstance(document, dict)
        and isinstance(document.get("key_id"), str)
        and isinstance(document.get(pem_field), str)
    ):
        raise SigningKeyError(f"{path}: not a valid key file (needs key_id and {pem_field})")
    return {"key_id": document["key_id"], pem_field: document[pem_field]}
