"""Pseudonymisation at the edge: the 11-proef, surname normalisation and the HMAC pseudonyms."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from builders import TODAY, bsn_from
from hypothesis import given
from hypothesis import strategies as st

from baken.keyring import KeyRing
from baken.pseudonym import (
    TUSSENVOEGSELS,
    InvalidIdentifier,
    bsn_pseudonyms,
    name_birth_date_pseudonyms,
    normalise_surname,
    person_pseudonyms,
    validate_bsn,
    with_leading_zero,
)
from baken.type.v1 import pseudonym_pb2

WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def passes_11_proef(digits: str) -> bool:
    return sum(int(d) * w for d, w in zip(digits, WEIGHTS, strict=True)) % 11 == 0


# --- the 11-proef -------------------------------------------------------------------------------


@pytest.mark.parametrize("bsn", ["111222333", "123456782", "999999990", "100000009"])
def test_a_bsn_passing_the_11_proef_is_accepted(bsn: str) -> None:
    assert validate_bsn(bsn) == bsn


def test_surrounding_spaces_are_ignored() -> None:
    assert validate_bsn(" 111222333\n") == "111222333"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "BSN_NOT_NINE_DIGITS"),
        ("1234567", "BSN_NOT_NINE_DIGITS"),
        ("12345678", "BSN_FAILS_11_PROEF"),  # 8 digits: 012345678
        ("1234567820", "BSN_NOT_NINE_DIGITS"),
        ("12345678a", "BSN_NOT_NINE_DIGITS"),
        ("1234-5678", "BSN_NOT_NINE_DIGITS"),
        ("12345 782", "BSN_NOT_NINE_DIGITS"),
        ("+23456782", "BSN_NOT_NINE_DIGITS"),
        # Digits, but not ASCII ones (full-width and Arabic-Indic).
        ("\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff12", "BSN_NOT_NINE_DIGITS"),
        ("١٢٣٤٥٦٧٨٢", "BSN_NOT_NINE_DIGITS"),
        ("123456789", "BSN_FAILS_11_PROEF"),
        ("111222334", "BSN_FAILS_11_PROEF"),
        ("000000000", "BSN_ALL_ZEROS"),
    ],
)
def test_an_invalid_bsn_is_rejected_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_bsn(value)
    assert caught.value.field == "bsn"
    assert caught.value.reason == reason


@given(st.from_regex(r"\A[0-9]{9}\Z"))
def test_every_nine_digit_string_is_valid_exactly_when_it_passes_the_11_proef(
    digits: str,
) -> None:
    if passes_11_proef(digits) and digits != "000000000":
        assert validate_bsn(digits) == digits
        return
    with pytest.raises(InvalidIdentifier) as caught:
        validate_bsn(digits)
    assert caught.value.reason in {"BSN_FAILS_11_PROEF", "BSN_ALL_ZEROS"}
    if digits != "000000000":
        assert digits not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the BSN is empty"),
        ("1234 56782", "the BSN contains a space"),
        ("12345678a", "the BSN contains a letter"),
        ("1234-5678", "the BSN contains a character other than a digit"),
        ("١٢٣٤٥٦٧٨٢", "the BSN contains a digit other than 0-9"),
        ("1234567", "the BSN has 7 digits; a BSN has 9 (8: the leading 0 left off)"),
        ("1234567820", "the BSN has 10 digits"),
    ],
)
def test_a_bsn_that_is_not_nine_digits_is_told_what_is_wrong(value: str, message: str) -> None:
    # It was always "a BSN has exactly 9 digits", for a space or a letter too.
    with pytest.raises(InvalidIdentifier) as caught:
        validate_bsn(value)
    assert str(caught.value).startswith(message)


def test_eight_digits_are_a_bsn_that_lost_its_leading_zero() -> None:
    ring = KeyRing.generate("k1")
    assert validate_bsn(" 10000008 ") == "010000008"
    assert bsn_pseudonyms(ring, "10000008") == bsn_pseudonyms(ring, "010000008")
    assert with_leading_zero("1000008") == "1000008"


@given(st.text(max_size=20))
def test_any_text_is_a_valid_bsn_or_an_invalid_identifier(value: str) -> None:
    stripped = with_leading_zero(value.strip())
    if (
        len(stripped) == 9
        and stripped.isascii()
        and stripped.isdigit()
        and passes_11_proef(stripped)
        and stripped != "000000000"
    ):
        assert validate_bsn(value) == stripped
        return
    with pytest.raises(InvalidIdentifier) as caught:
        validate_bsn(value)
    assert caught.value.field == "bsn"


# --- surname normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surname", "expected"),
    [
        ("Van der Berg", "berg"),
        ("van den berg", "berg"),
        ("VAN DER BERG", "berg"),
        ("in 't Veld", "veld"),
        ("In \u2019t Veld", "veld"),
        ("Çelik", "celik"),
        ("Öztürk", "ozturk"),
        ("Müller", "muller"),
        ("Gökçe", "gokce"),
        ("de la Cruz", "cruz"),
        ("O'Brien", "obrien"),
        ("Ter Horst", "horst"),
        ("Janssen-de Vries", "janssenvries"),
        # A surname that is nothing but particles keeps them.
        ("Van", "van"),
        ("De", "de"),
    ],
)
def test_normalised_surname_ignores_case_diacritics_and_tussenvoegsels(
    surname: str, expected: str
) -> None:
    assert normalise_surname(surname) == expected


@pytest.mark.parametrize(
    ("written", "plain"),
    [
        # Letters whose diacritic does not decompose in Unicode: common in Dutch registers.
        ("Yılmaz", "Yilmaz"),
        ("Kılıç", "Kilic"),
        ("Łukaszewski", "Lukaszewski"),
        ("Søren", "Soren"),
        ("Œuvray", "Oeuvray"),
        ("Ægidius", "Aegidius"),
    ],
)
def test_letters_with_a_non_decomposing_diacritic_match_their_plain_spelling(
    written: str, plain: str
) -> None:
    assert normalise_surname(written) == normalise_surname(plain)


@pytest.mark.parametrize("surname", ["", "   ", "-", "'", "123", "😀"])
def test_a_surname_without_letters_is_rejected(surname: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        normalise_surname(surname)
    assert caught.value.field == "surname"
    assert caught.value.reason == "SURNAME_EMPTY"


@given(st.text(max_size=40))
def test_normalising_any_text_gives_lowercase_ascii_or_an_invalid_identifier(text: str) -> None:
    try:
        normalised = normalise_surname(text)
    except InvalidIdentifier as error:
        reason: str | None = error.reason
    else:
        reason = None
    if reason is not None:
        assert reason == "SURNAME_EMPTY"
        return
    assert normalised
    assert normalised.isascii()
    assert normalised.isalpha()
    assert normalised == normalised.lower()
    assert normalise_surname(normalised) == normalised


@given(st.from_regex(r"\A[A-Za-z' -]{1,30}\Z"))
def test_normalising_ignores_case(text: str) -> None:
    try:
        expected = normalise_surname(text.lower())
    except InvalidIdentifier:
        return
    assert normalise_surname(text.upper()) == expected
    assert normalise_surname(text.swapcase()) == expected


@given(
    st.lists(st.sampled_from(["van", "der", "de", "den", "'t", "in", "ter"]), max_size=3),
    st.from_regex(r"\A[A-Za-z]{2,12}\Z").filter(lambda w: w.lower() not in TUSSENVOEGSELS),
)
def test_tussenvoegsels_in_front_never_change_the_normalised_surname(
    particles: list[str], core: str
) -> None:
    assert normalise_surname(" ".join([*particles, core])) == normalise_surname(core)


# --- pseudonyms ---------------------------------------------------------------------------------


def test_a_bsn_pseudonym_is_hmac_sha256_over_the_domain_separated_bsn() -> None:
    # Pins the derivation: any other edge (another language, another client) must reproduce it.
    key = bytes(range(32))
    ring = KeyRing({"k2026-11": key})
    [pseudonym] = bsn_pseudonyms(ring, "111222333")
    assert pseudonym.kind == pseudonym_pb2.PSEUDONYM_KIND_BSN
    assert pseudonym.key_id == "k2026-11"
    assert pseudonym.value == hmac.digest(key, b"baken/bsn/v1\x00111222333", hashlib.sha256)


def test_a_name_pseudonym_is_hmac_sha256_over_normalised_surname_and_birth_date() -> None:
    key = bytes(range(32))
    ring = KeyRing({"k1": key})
    [pseudonym] = name_birth_date_pseudonyms(ring, "Van der Berg", dt.date(1990, 4, 1), today=TODAY)
    assert pseudonym.kind == pseudonym_pb2.PSEUDONYM_KIND_NAME_BIRTH_DATE
    assert pseudonym.value == hmac.digest(
        key, b"baken/name-birth-date/v1\x00berg\x001990-04-01", hashlib.sha256
    )


# Name pseudonyms as the edge made them before abbreviated tussenvoegsels were read: the markers
# deployed registries hold carry these values, so a change to normalise_surname must leave every
# full-form spelling on the same key (or those markers stop matching).
_PINNED_NAME_PSEUDONYMS = [
    (
        "van der Berg",
        dt.date(1990, 4, 1),
        "14847ccf298cb722793aa06eefc7cf60db23ed0debfe5c5abd9ec5c6c6243a1f",
    ),
    (
        "in 't Veld",
        dt.date(1985, 12, 31),
        "c2335ffd5c863b5acc9e509e4e82babbbe1dc8abc7a8367b548b55103711eeb2",
    ),
    (
        "Janssen-de Vries",
        dt.date(2001, 2, 3),
        "67b0f8d0c734cb1deb508e4de33d816f246aad7bc94fa556c8c9fb8af00bbeb6",
    ),
    (
        "d'Ancona",
        dt.date(1970, 7, 7),
        "717404558d7f18d34a2e796ab4a7a73da79af53dc8896a755db3c5a70cf9c68c",
    ),
    (
        "Vanderbilt",
        dt.date(1999, 9, 9),
        "efd81f87f9ab9f05055c84128fca589861654e853faf448bbd9d8078ffc2dba6",
    ),
    (
        "Çelik",
        dt.date(2006, 7, 4),
        "273c19feca4ecdf05491536a53640c3b083bf274846dd4df99223e809fcba3f6",
    ),
    (
        "Van",
        dt.date(1960, 1, 1),
        "294b07ec29dcd6c58f571115910bb032265da990e557ee833fc913bf576d2954",
    ),
]


@pytest.mark.parametrize(("surname", "born", "pinned"), _PINNED_NAME_PSEUDONYMS)
def test_name_pseudonyms_of_full_form_surnames_keep_their_deployed_value(
    surname: str, born: dt.date, pinned: str
) -> None:
    ring = KeyRing({"k1": bytes(range(32))})
    [pseudonym] = name_birth_date_pseudonyms(ring, surname, born, today=TODAY)
    assert pseudonym.value.hex() == pinned


@given(st.from_regex(r"\A[0-9]{8}\Z").map(bsn_from).filter(bool))
def test_bsn_pseudonyms_are_deterministic_32_bytes_and_one_per_key(bsn: str | None) -> None:
    assert bsn is not None
    ring = KeyRing({"k1": b"\x01" * 32, "k2": b"\x02" * 32})
    first = bsn_pseudonyms(ring, bsn)
    assert first == bsn_pseudonyms(ring, bsn)
    assert [p.key_id for p in first] == ["k1", "k2"]
    assert all(len(p.value) == 32 for p in first)
    assert first[0].value != first[1].value


def test_pseudonyms_differ_per_key_with_the_same_key_id() -> None:
    one, other = KeyRing.generate("k1"), KeyRing.generate("k1")
    assert bsn_pseudonyms(one, "111222333") != bsn_pseudonyms(other, "111222333")


def test_pseudonyms_differ_per_person() -> None:
    ring = KeyRing.generate("k1")
    assert bsn_pseudonyms(ring, "111222333")[0].value != bsn_pseudonyms(ring, "123456782")[0].value


def test_pseudonyms_differ_per_kind_even_for_the_same_characters() -> None:
    # The contexts separate the kinds: a BSN and a name key never collide, whatever the input.
    key = b"\x07" * 32
    ring = KeyRing({"k1": key})
    bsn = bsn_pseudonyms(ring, "111222333")[0].value
    names = name_birth_date_pseudonyms(ring, "Berg", dt.date(1990, 4, 1), today=TODAY)[0].value
    assert bsn != names
    assert bsn != hmac.digest(key, b"111222333", hashlib.sha256)


def test_name_pseudonyms_match_across_spellings_of_the_same_surname() -> None:
    ring = KeyRing.generate("k1")
    born = dt.date(1988, 2, 29)
    assert name_birth_date_pseudonyms(
        ring, "van der Berg", born, today=TODAY
    ) == name_birth_date_pseudonyms(ring, "BERG", born, today=TODAY)
    assert name_birth_date_pseudonyms(
        ring, "Berg", born, today=TODAY
    ) != name_birth_date_pseudonyms(ring, "Berg", dt.date(1988, 3, 1), today=TODAY)


def test_a_person_with_bsn_and_name_gets_both_kinds_under_every_key() -> None:
    ring = KeyRing.generate("k1").with_new_key("k2")
    made = person_pseudonyms(
        ring, bsn="111222333", surname="Yilmaz", birth_date=dt.date(1990, 1, 1), today=TODAY
    )
    assert sorted((p.kind, p.key_id) for p in made) == [
        (pseudonym_pb2.PSEUDONYM_KIND_BSN, "k1"),
        (pseudonym_pb2.PSEUDONYM_KIND_BSN, "k2"),
        (pseudonym_pb2.PSEUDONYM_KIND_NAME_BIRTH_DATE, "k1"),
        (pseudonym_pb2.PSEUDONYM_KIND_NAME_BIRTH_DATE, "k2"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({}, "bsn", "IDENTIFIER_MISSING"),
        ({"surname": "Berg"}, "birth_date", "BIRTH_DATE_MISSING"),
        ({"birth_date": dt.date(1990, 1, 1)}, "surname", "SURNAME_MISSING"),
        (
            {"surname": "Berg", "birth_date": dt.date(2026, 11, 29)},
            "birth_date",
            "BIRTH_DATE_IN_FUTURE",
        ),
        (
            {"surname": "Berg", "birth_date": dt.date(1899, 12, 31)},
            "birth_date",
            "BIRTH_DATE_TOO_EARLY",
        ),
        ({"bsn": "123456789"}, "bsn", "BSN_FAILS_11_PROEF"),
    ],
)
def test_a_person_that_cannot_be_pseudonymised_is_refused_naming_the_field(
    kwargs: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        person_pseudonyms(KeyRing.generate("k1"), today=TODAY, **kwargs)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.reason) == (field, reason)
