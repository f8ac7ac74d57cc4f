"""waarom-informatie sealed at rest: AES-GCM per marker column under a versioned key ring.

A sealed value is `key id length (1 byte) | key id | nonce (12 bytes) | ciphertext+tag`. The
associated data binds it to its marker and column ("baken/markers/{uid}/{column}"), so a value
copied to another marker or column does not open. New values are sealed under the ring's last
key; `reseal` moves older values to it (`baken keys reseal` after `baken keys add`).

The markers' content and record digests (what a resync compares to recognise a replay) are
HMAC-SHA256 under a digest key derived (HKDF) from a key of the same ring, tagged with its id
the same way. A plain hash would not do: the rest of a marker is stored in clear and advice
texts repeat, so a plain hash of the content could be matched against guessed advice.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from baken.keyring import KeyRing

NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that does not open: wrong key ring, or tampered with. Names no content."""


class Sealer:
    """Seals the values of one table (`table` goes into the associated data)."""

    def __init__(self, ring: KeyRing, table: str = "markers") -> None:
        self._table = table
        self._ciphers = {key_id: AESGCM(secret) for key_id, secret in ring.items()}
        self._digest_keys = {key_id: _digest_key(secret) for key_id, secret in ring.items()}
        self.current = list(ring)[-1]
        self._prefix = bytes([len(self.current)]) + self.current.encode()

    def seal(self, uid: str, column: str, text: str) -> bytes:
        return self.seal_bytes(uid, column, text.encode())

    def open(self, uid: str, column: str, sealed: bytes) -> str:
        return self.open_bytes(uid, column, sealed).decode()

    def seal_bytes(self, uid: str, column: str, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, data, self._aad(uid, column))
        return self._prefix + nonce + sealed

    def open_bytes(self, uid: str, column: str, sealed: bytes) -> bytes:
        key_id = self.key_of(sealed)
        cipher = self._ciphers.get(key_id)
        where = f"{self._table.removesuffix('s')} {uid}"
        if cipher is None:
            raise SealError(f"{where}: {column} is sealed under key {key_id}, not in the ring")
        start = 1 + sealed[0]
        try:
            return cipher.decrypt(
                sealed[start : start + NONCE_BYTES],
                sealed[start + NONCE_BYTES :],
                self._aad(uid, column),
            )
        except InvalidTag:
            raise SealError(f"{where}: {column} does not open (tampered or moved)") from None

    def _aad(self, uid: str, column: str) -> bytes:
        return f"baken/{self._table}/{uid}/{column}".encode()

    @staticmethod
    def key_of(sealed: bytes) -> str:
        """The key id a sealed value or a digest was made under."""
        return sealed[1 : 1 + sealed[0]].decode()

    def digest(self, data: bytes, key_id: str | None = None) -> bytes:
        """The tagged HMAC of `data` under the digest key of `key_id` (default: the current)."""
        key_id = key_id or self.current
        mac = hmac.new(self._digest_keys[key_id], data, hashlib.sha256).digest()
        return bytes([len(key_id)]) + key_id.encode() + mac

    def digests(self, data: bytes) -> list[bytes]:
        """The tagged HMAC of `data` under every key of the ring: what to look a stored digest
        up by, whichever key made it."""
        return [self.digest(data, key_id) for key_id in self._digest_keys]

    def digest_key_for(self, stored_digest: bytes) -> str:
        """The key to compare with a stored digest: its own, while the ring still holds it."""
        if stored_digest:
            key_id = self.key_of(stored_digest)
            if key_id in self._digest_keys:
                return key_id
        return self.current

    def reseal(self, uid: str, column: str, sealed: bytes) -> bytes | None:
        """The value sealed under the current key, or None when it already is."""
        if self.key_of(sealed) == self.current:
            return None
        return self.seal(uid, column, self.open(uid, column, sealed))


def _digest_key(secret: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"baken/markers/digest/v1")
    return hkdf.derive(secret)
