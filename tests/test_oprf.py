"""RFC 9497 OPRF(ristretto255, SHA-512) against the RFC's test vectors (tests/fixtures, with
their source), and its properties for random inputs and keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baken import oprf

FIXTURE = Path(__file__).parent / "fixtures/rfc9497_ristretto255_sha512.json"
VECTORS = json.loads(FIXTURE.read_text())


def _suite(mode: int) -> dict[str, Any]:
    return next(s for s in VECTORS["suites"] if s["mode"] == mode)


def _cases() -> list[tuple[int, dict[str, Any]]]:
    return [(s["mode"], v) for s in VECTORS["suites"] for v in s["vectors"]]


def _items(field: str, vector: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(item) for item in vector[field].split(",")]


@pytest.mark.parametrize("mode", [oprf.MODE_OPRF, 1])
def test_the_group_dst_and_the_derived_key_are_the_rfcs(mode: int) -> None:
    suite = _suite(mode)
    assert b"HashToGroup-" + oprf.context_string(mode) == bytes.fromhex(suite["groupDST"])
    secret, _public = oprf.derive_key_pair(
        bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]), mode
    )
    assert secret.hex() == suite["skSm"]


@pytest.mark.parametrize(("mode", "vector"), _cases())
def test_blind_evaluate_finalize_give_the_rfcs_values(mode: int, vector: dict[str, Any]) -> None:
    """Mode 0's vectors one by one, and (mode 1's batch vector, proof aside) a batch of two:
    the evaluation and finalization are the same in both modes."""
    secret = bytes.fromhex(_suite(mode)["skSm"])
    inputs, blinds = _items("Input", vector), _items("Blind", vector)
    blinded = [oprf.blind(i, b, mode) for i, b in zip(inputs, blinds, strict=True)]
    assert [b.element for b in blinded] == _items("BlindedElement", vector)
    evaluated = oprf.blind_evaluate_batch(secret, [b.element for b in blinded])
    assert evaluated == _items("EvaluationElement", vector)
    outputs = [oprf.finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]
    assert outputs == _items("Output", vector)
    assert oprf.finalize_batch(blinded, evaluated) == outputs
    assert [oprf.evaluate(secret, i, mode) for i in inputs] == outputs
    if len(inputs) == 1:
        assert oprf.blind_evaluate(secret, blinded[0].element) == evaluated[0]


def test_expand_message_xmd_sha512_matches_rfc_9380() -> None:
    """RFC 9380 K.3, expand_message_xmd(SHA-512), msg "abc", len_in_bytes 0x20 and 0x80 (the
    OPRF asks 64 bytes, one block; the second case takes the loop over blocks)."""
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert oprf.expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
    )
    assert oprf.expand_message_xmd(b"abc", dst, 0x80).hex() == (
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"
    )


@pytest.mark.parametrize(
    "element",
    [bytes(32), b"\xff" * 32, bytes(31), b"\x01" + bytes(31)],
    ids=["identity", "not-canonical", "short", "not-a-point"],
)
def test_the_server_refuses_what_is_no_element(element: bytes) -> None:
    secret = oprf.random_scalar()
    good = oprf.blind(b"x").element
    with pytest.raises(oprf.InvalidElement):
        oprf.blind_evaluate(secret, element)
    with pytest.raises(oprf.InvalidElement, match="item 1"):
        oprf.blind_evaluate_batch(secret, [good, element])


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=64))
def test_blinded_evaluation_is_the_direct_prf(message: bytes) -> None:
    secret = oprf.random_scalar()
    blinded = oprf.blind(message)
    output = oprf.finalize(blinded, oprf.blind_evaluate(secret, blinded.element))
    assert output == oprf.evaluate(secret, message)
    assert len(output) == oprf.OUTPUT_BYTES
    # The blinded element is fresh every time; the output is not.
    again = oprf.blind(message)
    assert again.element != blinded.element
    assert oprf.finalize(again, oprf.blind_evaluate(secret, again.element)) == output


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=64), other=st.binary(max_size=64))
def test_different_keys_and_inputs_give_different_outputs(message: bytes, other: bytes) -> None:
    one, two = oprf.random_scalar(), oprf.random_scalar()
    assert oprf.evaluate(one, message) != oprf.evaluate(two, message)
    if other != message:
        assert oprf.evaluate(one, message) != oprf.evaluate(one, other)


@settings(max_examples=30, deadline=None)
@given(messages=st.lists(st.binary(max_size=32), max_size=12))
def test_a_batch_finalized_with_one_inversion_gives_each_ones_output(
    messages: list[bytes],
) -> None:
    secret = oprf.random_scalar()
    blinded = [oprf.blind(m) for m in messages]
    evaluated = oprf.blind_evaluate_batch(secret, [b.element for b in blinded])
    assert oprf.finalize_batch(blinded, evaluated) == [oprf.evaluate(secret, m) for m in messages]


def test_a_batch_answer_of_another_length_or_with_no_element_is_refused() -> None:
    blinded = [oprf.blind(b"a"), oprf.blind(b"b")]
    evaluated = oprf.blind_evaluate_batch(oprf.random_scalar(), [b.element for b in blinded])
    with pytest.raises(oprf.InvalidElement):
        oprf.finalize_batch(blinded, evaluated[:1])
    with pytest.raises(oprf.InvalidElement):
        oprf.finalize_batch(blinded, [evaluated[0], b"\x00" * 32])
