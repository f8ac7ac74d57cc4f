"""Personal data sealed to one Safety House: only that house's adapter can open it.

An aanmelding carries the person a house does not know yet. The ZSM client seals it to the
house's X25519 public key; the feedback service stores and forwards the ciphertext; the house's
adapter opens it with the private key and writes the person into its source:

    shared  = X25519(ephemeral private, house public)
    key     = HKDF-SHA256(shared, salt = ephemeral public || house public, info = DOMAIN)
    sealed  = nonce (12 bytes) || AES-256-GCM(key, nonce, plaintext, aad = context)

The context binds the envelope to its house, key and case: an envelope copied to another case
or house does not open. Key files (`baken pki init`): `{house}.x25519.key` (private, for the
house's adapter only) and `{house}.x25519.pub` (public, for the ZSM client), both JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from baken.feedback.v1 import feedback_service_pb2
from baken.houses import house_name

if TYPE_CHECKING:
    from baken.houses import House

DOMAIN = b"baken-sealed-to-house-v1"
_RAW = serialization.Encoding.Raw
_NONCE = 12


class SealError(Exception):
    """An envelope that does not open: wrong house, key, case, or altered. Names no content."""


@dataclass(frozen=True, slots=True)
class HouseKey:
    """A house's X25519 key pair (private half only at the house's adapter)."""

    house_id: str
    key_id: str
    private: X25519PrivateKey

    @classmethod
    def generate(cls, house_id: str, key_id: str) -> HouseKey:
        return cls(house_id, key_id, X25519PrivateKey.generate())

    @property
    def public(self) -> PublicHouseKey:
        raw = self.private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        return PublicHouseKey(self.house_id, self.key_id, raw)


@dataclass(frozen=True, slots=True)
class PublicHouseKey:
    house_id: str
    key_id: str
    public: bytes  # 32 bytes


def _context(house_id: str, key_id: str, case_reference: str) -> bytes:
    return b"\0".join((DOMAIN, house_id.encode(), key_id.encode(), case_reference.encode("utf-8")))


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=DOMAIN).derive(shared)


def seal(
    key: PublicHouseKey, plaintext: bytes, *, case_reference: str
) -> feedback_service_pb2.SealedEnvelope:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(key.public))
    nonce = os.urandom(_NONCE)
    cipher = AESGCM(_key(shared, ephemeral_public, key.public))
    sealed = cipher.encrypt(nonce, plaintext, _context(key.house_id, key.key_id, case_reference))
    return feedback_service_pb2.SealedEnvelope(
        house=house_name(key.house_id),
        key_id=key.key_id,
        ephemeral_public_key=ephemeral_public,
        ciphertext=nonce + sealed,
    )


def open_envelope(
    key: HouseKey, envelope: feedback_service_pb2.SealedEnvelope, *, case_reference: str
) -> bytes:
    if envelope.house != house_name(key.house_id) or envelope.key_id != key.key_id:
        raise SealError(f"the envelope is sealed to {envelope.house} key {envelope.key_id!r}")
    try:
        shared = key.private.exchange(
            X25519PublicKey.from_public_bytes(envelope.ephemeral_public_key)
        )
        cipher = AESGCM(_key(shared, envelope.ephemeral_public_key, key.public.public))
        return cipher.decrypt(
            envelope.ciphertext[:_NONCE],
            envelope.ciphertext[_NONCE:],
            _context(key.house_id, key.key_id, case_reference),
        )
    except (InvalidTag, ValueError):
        raise SealError("the envelope does not open: altered, or for another case") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def private_path(directory: Path, house_id: str) -> Path:
    return directory / f"{house_id}.x25519.key"


def public_path(directory: Path, house_id: str) -> Path:
    return directory / f"{house_id}.x25519.pub"


def share_private_keys_by_source(pki_dir: Path, houses: Mapping[str, House]) -> list[str]:
    """Copies of the houses' private keys from `pki_dir/houses`, one directory per source
    system (`houses-gcos/`, ...), each holding only its own houses' keys: what that source's
    adapter is given, so that no adapter can open another source's aanmeldingen. The systems."""
    by_system: dict[str, list[str]] = {}
    for house in houses.values():
        by_system.setdefault(house.source_system_token, []).append(house.id)
    for system, house_ids in by_system.items():
        target = pki_dir / f"houses-{system}"
        target.mkdir(mode=0o700, exist_ok=True)
        for house_id in house_ids:
            copy = private_path(target, house_id)
            copy.write_bytes(private_path(pki_dir / "houses", house_id).read_bytes())
            copy.chmod(0o600)
    return sorted(by_system)


def init_house_keys(directory: Path, house_ids: Iterable[str], *, now: dt.datetime) -> None:
    """A key pair per house under `directory` (development; each house makes its own)."""
    directory.mkdir(parents=True, exist_ok=True)
    for house_id in house_ids:
        key = HouseKey.generate(house_id, now.strftime("x%Y-%m"))
        raw = key.private.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        private = private_path(directory, house_id)
        private.write_text(
            json.dumps({"house": house_id, "key_id": key.key_id, "private": _b64(raw)}),
            "utf-8",
        )
        private.chmod(0o600)
        public_path(directory, house_id).write_text(
            json.dumps(
                {"house": house_id, "key_id": key.key_id, "public": _b64(key.public.public)}
            ),
            "utf-8",
        )


def _read(path: Path, house_id: str, field: str) -> tuple[str, bytes]:
    try:
        data = json.loads(path.read_text("utf-8"))
        if data["house"] != house_id:
            raise SealError(f"{path}: the key is for house {data['house']!r}")
        raw = base64.b64decode(data[field], validate=True)
        if len(raw) != 32:
            raise ValueError
        return str(data["key_id"]), raw
    except FileNotFoundError:
        raise SealError(f"{path}: no key file for house {house_id}") from None
    except (KeyError, TypeError, ValueError):
        raise SealError(f"{path}: not a house key file") from None


def load_public(directory: Path, house_id: str) -> PublicHouseKey:
    key_id, raw = _read(public_path(directory, house_id), house_id, "public")
    return PublicHouseKey(house_id, key_id, raw)


def load_private(directory: Path, house_id: str) -> HouseKey:
    key_id, raw = _read(private_path(directory, house_id), house_id, "private")
    return HouseKey(house_id, key_id, X25519PrivateKey.from_private_bytes(raw))


@dataclass(frozen=True, slots=True)
class ReferredPerson:
    """What an aanmelding tells the house about the person (sealed; never in clear outside
    the ZSM client and the house's adapter)."""

    bsn: str | None
    surname: str | None
    birth_date: dt.date | None
    residence_municipality: str


def seal_person(
    key: PublicHouseKey, person: ReferredPerson, *, case_reference: str
) -> feedback_service_pb2.SealedEnvelope:
    plaintext = json.dumps(
        {
            "bsn": person.bsn,
            "surname": person.surname,
            "birth_date": person.birth_date.isoformat() if person.birth_date else None,
            "residence_municipality": person.residence_municipality,
        },
        sort_keys=True,
    ).encode("utf-8")
    return seal(key, plaintext, case_reference=case_reference)


def open_person(
    key: HouseKey, envelope: feedback_service_pb2.SealedEnvelope, *, case_reference: str
) -> ReferredPerson:
    plaintext = open_envelope(key, envelope, case_reference=case_reference)
    try:
        data = json.loads(plaintext)
        birth = data.get("birth_date")
        return ReferredPerson(
            data.get("bsn"),
            data.get("surname"),
            dt.date.fromisoformat(birth) if birth else None,
            str(data["residence_municipality"]),
        )
    except (KeyError, TypeError, ValueError):
        raise SealError("the envelope opens, but holds no person") from None
