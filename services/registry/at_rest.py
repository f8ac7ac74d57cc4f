"""waarom-informatie sealed at rest: AES-GCM per marker column under a versioned key ring.

A sealed value is `key id length (1 byte) | key id | nonce (12 bytes) | ciphertext+tag`. The
associated data binds it to its marker and column ("baken/markers/{uid}/{column}"), so a value
copied to another marker or column does not open. New values are sealed under the ring's last
key; `reseal` moves older values to it (`baken keys reseal` after `baken keys add`).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from baken.keyring import KeyRing

NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that does not open: wrong key ring, or tampered with. Names no content."""


class Sealer:
    def __init__(self, ring: KeyRing) -> None:
        self._ciphers = {key_id: AESGCM(secret) for key_id, secret in ring.items()}
        self.current = list(ring)[-1]
        self._prefix = bytes([len(self.current)]) + self.current.encode()

    def seal(self, uid: str, column: str, text: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, text.encode(), _aad(uid, column))
        return self._prefix + nonce + sealed

    def open(self, uid: str, column: str, sealed: bytes) -> str:
        key_id = self.key_of(sealed)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(f"marker {uid}: {column} is sealed under key {key_id}, not in the ring")
        start = 1 + sealed[0]
        try:
            plain = cipher.decrypt(
                sealed[start : start + NONCE_BYTES],
                sealed[start + NONCE_BYTES :],
                _aad(uid, column),
            )
        except InvalidTag:
            raise SealError(f"marker {uid}: {column} does not open (tampered or moved)") from None
        return plain.decode()

    @staticmethod
    def key_of(sealed: bytes) -> str:
        return sealed[1 : 1 + sealed[0]].decode()

    def reseal(self, uid: str, column: str, sealed: bytes) -> bytes | None:
        """The value sealed under the current key, or None when it already is."""
        if self.key_of(sealed) == self.current:
            return None
        return self.seal(uid, column, self.open(uid, column, sealed))


def _aad(uid: str, column: str) -> bytes:
    return f"baken/markers/{uid}/{column}".encode()
