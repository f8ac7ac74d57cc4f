"""The pseudonym key ring of an edge party (an adapter or a ZSM client), kept in a key file.

The file is JSON, readable by its owner only:

    {"keys": [{"id": "k2026-11", "secret": "<base64 of 32 random bytes>"},
              {"id": "k2027-01", "kind": "oprf", "service": "pseudonymiser.internal:50053"}]}

An entry without a kind is an HMAC key, whose secret the edge holds. An "oprf" entry holds no
secret, only the address of the pseudonymisation service that holds the key (baken/oprf.py,
docs/SECURITY.md). Iterating the ring gives the HMAC keys; `oprf` the OPRF key ids and
services; `ids` every key id, the HMAC keys first. A ring read from a file cannot evaluate its
OPRF keys until it is `served_by` the party's client of those services
(baken/pseudonymiser_client.py): the file names them, the party's certificate reaches them.

Rotation: add a new key (the edge then derives pseudonyms under both), resync the markers,
retire the old key, resync again. A lookup hits at every step, because markers and lookups
both carry a pseudonym per key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

KEY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")
KEY_BYTES = 32
SERVICE = re.compile(r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}\Z")
OPRF = "oprf"


class OprfEvaluator(Protocol):
    """Evaluates the OPRF under `key_id` at `service` for each input, blind (the service sees
    no input): the 64-byte outputs, in order (baken/pseudonymiser_client.py)."""

    def outputs(self, key_id: str, service: str, inputs: Sequence[bytes]) -> list[bytes]: ...


class KeyFileError(Exception):
    """The key file is missing, unreadable or malformed. The message names the file, never a key."""


class KeyRing(Mapping[str, bytes]):
    """HMAC key id -> secret, in the order of the file, and OPRF key id -> service address
    (`oprf`). Never without a key."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        oprf: Mapping[str, str] | None = None,
        evaluator: OprfEvaluator | None = None,
    ) -> None:
        oprf = dict(oprf or {})
        if not keys and not oprf:
            raise KeyFileError("a key ring needs at least one key")
        for key_id, secret in keys.items():
            if not KEY_ID.match(key_id):
                raise KeyFileError(f"key id {key_id!r} is not lowercase letters, digits and '-'")
            if len(secret) != KEY_BYTES:
                raise KeyFileError(f"key {key_id} is not {KEY_BYTES} bytes")
        for key_id, service in oprf.items():
            if not KEY_ID.match(key_id):
                raise KeyFileError(f"key id {key_id!r} is not lowercase letters, digits and '-'")
            if key_id in keys:
                raise KeyFileError(f"key {key_id} is in the ring twice")
            if not SERVICE.match(service):
                raise KeyFileError(f"key {key_id}: the service is not host:port")
        self._keys = dict(keys)
        self.oprf: Mapping[str, str] = oprf
        self.evaluator = evaluator

    def served_by(self, evaluator: OprfEvaluator | None) -> KeyRing:
        """This ring, its OPRF keys evaluated through `evaluator`."""
        return KeyRing(self._keys, self.oprf, evaluator)

    @property
    def ids(self) -> list[str]:
        return [*self._keys, *self.oprf]

    def __getitem__(self, key_id: str) -> bytes:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return True  # an OPRF-only ring has no HMAC keys to count, yet is a ring

    def __repr__(self) -> str:
        return f"KeyRing({self.ids})"

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            document = json.loads(path.read_text())
            entries = document["keys"]
            kinds = {e.get("kind", "hmac") for e in entries}
            if not kinds <= {"hmac", OPRF}:
                raise ValueError("unknown kind")
            keys = {
                e["id"]: base64.b64decode(e["secret"], validate=True)
                for e in entries
                if e.get("kind", "hmac") == "hmac"
            }
            oprf = {e["id"]: str(e["service"]) for e in entries if e.get("kind") == OPRF}
        except FileNotFoundError:
            raise KeyFileError(
                f"{path}: no such key file (create one with `baken keys init`)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise KeyFileError(f"{path}: not a valid key file ({type(exc).__name__})") from None
        try:
            return cls(keys, oprf)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None

    def save(self, path: Path) -> None:
        document = {
            "keys": [
                {"id": key_id, "secret": base64.b64encode(secret).decode()}
                for key_id, secret in self._keys.items()
            ]
            + [
                {"id": key_id, "kind": OPRF, "service": service}
                for key_id, service in self.oprf.items()
            ]
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def with_new_key(self, key_id: str) -> KeyRing:
        if key_id in self.ids:
            raise KeyFileError(f"key {key_id} is already in the ring")
        return KeyRing(
            {**self._keys, key_id: secrets.token_bytes(KEY_BYTES)}, self.oprf, self.evaluator
        )

    def with_oprf_key(self, key_id: str, service: str) -> KeyRing:
        """An OPRF key: no secret here, only the pseudonymisation service that holds it."""
        if key_id in self.ids:
            raise KeyFileError(f"key {key_id} is already in the ring")
        return KeyRing(self._keys, {**self.oprf, key_id: service}, self.evaluator)

    def without_key(self, key_id: str) -> KeyRing:
        if key_id not in self.ids:
            raise KeyFileError(f"key {key_id} is not in the ring")
        return KeyRing(
            {k: v for k, v in self._keys.items() if k != key_id},
            {k: v for k, v in self.oprf.items() if k != key_id},
            self.evaluator,
        )

    @classmethod
    def generate(cls, key_id: str) -> KeyRing:
        return cls({key_id: secrets.token_bytes(KEY_BYTES)})


def at_rest_ring(path: Path, key_id: str, sample: str | None, what: str) -> tuple[KeyRing, bool]:
    """A service's at-rest key ring, and whether it was made just now. A new ring is made only
    while the database holds nothing sealed (`sample` is None; otherwise the key id of a sealed
    value): a lost or wrong key file is refused at start instead of failing every read later.
    `what` names what the database holds sealed, for the message."""
    made = False
    if not path.exists():
        if sample is not None:
            raise KeyFileError(
                f"{path}: no at-rest key file, but the database holds sealed {what}; "
                "restore the key file from its backup"
            )
        KeyRing.generate(key_id).save(path)
        made = True
    ring = KeyRing.load(path)
    if sample is not None and sample not in ring:
        raise KeyFileError(
            f"{path}: the database holds {what} sealed under key {sample}, which this key "
            "file does not have"
        )
    return ring, made
