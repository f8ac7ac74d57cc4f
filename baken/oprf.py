"""The oblivious PRF of RFC 9497, OPRF mode (0x00), ciphersuite ristretto255-SHA512.

The client blinds its input (`blind`), the server applies its key to the blinded element without
learning the input (`blind_evaluate`), and the client removes the blind and hashes
(`finalize`): the client has PRF(key, input), the server saw neither input nor output, and
without the server no one can compute it. `evaluate` is the server's direct PRF, for tests and
for a holder of the key. The group arithmetic is libsodium's ristretto255 (through rbcl).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import rbcl

MODE_OPRF = 0x00
IDENTIFIER = b"ristretto255-SHA512"
ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
_IDENTITY = bytes(ELEMENT_BYTES)


class InvalidInput(ValueError):
    """The input hashes to the identity element (RFC 9497 InvalidInputError)."""


class InvalidElement(ValueError):
    """Bytes that are no ristretto255 element other than the identity (DeserializeError)."""


class DeriveKeyPairError(ValueError):
    """No key from this seed and info (RFC 9497 DeriveKeyPairError); practically never."""


def context_string(mode: int = MODE_OPRF) -> bytes:
    return b"OPRFV1-" + bytes([mode]) + b"-" + IDENTIFIER


def expand_message_xmd(message: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512."""
    if len(dst) > 255 or length > 255 * 64 or length > 0xFFFF:
        raise ValueError("expand_message_xmd: DST or length too long")
    ell = -(-length // 64)
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + message + length.to_bytes(2, "big") + b"\x00" + dst_prime)
    b0_digest = b0.digest()
    block = hashlib.sha512(b0_digest + b"\x01" + dst_prime).digest()
    uniform = block
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0_digest, block, strict=True))
        block = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        uniform += block
    return uniform[:length]


def hash_to_group(message: bytes, mode: int = MODE_OPRF) -> bytes:
    uniform = expand_message_xmd(message, b"HashToGroup-" + context_string(mode), 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(message: bytes, dst: bytes) -> bytes:
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(expand_message_xmd(message, dst, 64)))


def derive_key_pair(seed: bytes, info: bytes, mode: int = MODE_OPRF) -> tuple[bytes, bytes]:
    """(skS, pkS) from a 32-byte seed and public info, deterministically (RFC 9497 3.2.1)."""
    if len(seed) != 32 or len(info) > 0xFFFF:
        raise ValueError("a seed is 32 bytes, info at most 65535")
    derive_input = seed + len(info).to_bytes(2, "big") + info
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        secret = hash_to_scalar(derive_input + bytes([counter]), dst)
        if secret != bytes(SCALAR_BYTES):
            return secret, bytes(rbcl.crypto_scalarmult_ristretto255_base(secret))
    raise DeriveKeyPairError("no non-zero scalar from this seed")


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar: a private key or a blind."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_random())


def check_element(element: bytes) -> bytes:
    """`element` if it is the canonical encoding of a ristretto255 element other than the
    identity; InvalidElement otherwise."""
    if (
        len(element) != ELEMENT_BYTES
        or element == _IDENTITY
        or not rbcl.crypto_core_ristretto255_is_valid_point(element)
    ):
        raise InvalidElement("not a ristretto255 element other than the identity")
    return element


def _mult(scalar: bytes, element: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))


@dataclass(frozen=True, slots=True)
class Blinded:
    """What the client keeps (input and blind) and what it sends (the blinded element)."""

    input: bytes
    blind: bytes
    element: bytes


def blind(message: bytes, blind_scalar: bytes | None = None, mode: int = MODE_OPRF) -> Blinded:
    """The client's first step; `blind_scalar` is random unless given (test vectors)."""
    element = hash_to_group(message, mode)
    if element == _IDENTITY:
        raise InvalidInput("the input hashes to the identity element")
    scalar = blind_scalar if blind_scalar is not None else random_scalar()
    return Blinded(message, scalar, _mult(scalar, element))


def blind_evaluate(secret: bytes, blinded_element: bytes) -> bytes:
    """The server's step: its key times the client's element, checked first (InvalidElement)."""
    return _mult(secret, check_element(blinded_element))


def blind_evaluate_batch(secret: bytes, blinded_elements: Sequence[bytes]) -> list[bytes]:
    """Every element checked before any is evaluated: InvalidElement names the first bad index."""
    for index, element in enumerate(blinded_elements):
        try:
            check_element(element)
        except InvalidElement:
            raise InvalidElement(f"item {index}") from None
    return [_mult(secret, element) for element in blinded_elements]


def _finalize_hash(message: bytes, element: bytes) -> bytes:
    return hashlib.sha512(
        len(message).to_bytes(2, "big")
        + message
        + len(element).to_bytes(2, "big")
        + element
        + b"Finalize"
    ).digest()


def finalize(blinded: Blinded, evaluated_element: bytes) -> bytes:
    """The client's last step: the 64-byte PRF output. InvalidElement when the server answered
    with no valid element."""
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(blinded.blind))
    unblinded = _mult(inverse, check_element(evaluated_element))
    return _finalize_hash(blinded.input, unblinded)


def finalize_batch(blinded: Sequence[Blinded], evaluated_elements: Sequence[bytes]) -> list[bytes]:
    """`finalize` of each pair, with one scalar inversion for the whole batch (Montgomery's
    trick: three scalar products an element instead of an inversion, which costs about as much
    as a scalar multiplication). The outputs are the same."""
    if len(blinded) != len(evaluated_elements):
        raise InvalidElement("another number of evaluated elements than blinded ones")
    if not blinded:
        return []
    mul = rbcl.crypto_core_ristretto255_scalar_mul
    prefix = [blinded[0].blind]  # prefix[i]: the product of the first i + 1 blinds
    for b in blinded[1:]:
        prefix.append(bytes(mul(prefix[-1], b.blind)))
    running = bytes(rbcl.crypto_core_ristretto255_scalar_invert(prefix[-1]))
    outputs: list[bytes] = [b""] * len(blinded)
    for i in range(len(blinded) - 1, -1, -1):
        inverse = bytes(mul(running, prefix[i - 1])) if i else running
        if i:
            running = bytes(mul(running, blinded[i].blind))
        element = check_element(evaluated_elements[i])
        outputs[i] = _finalize_hash(blinded[i].input, _mult(inverse, element))
    return outputs


def evaluate(secret: bytes, message: bytes, mode: int = MODE_OPRF) -> bytes:
    """The PRF computed directly by the key's holder: what finalize gives the client."""
    element = hash_to_group(message, mode)
    if element == _IDENTITY:
        raise InvalidInput("the input hashes to the identity element")
    return _finalize_hash(message, _mult(secret, element))
