"""Pseudonyms, made at the edge: the registry only ever receives these, never a BSN or a name.

A pseudonym is HMAC-SHA256 over a domain-separated identifier under a versioned key, or, for an
OPRF key of the ring, the first 32 bytes of the RFC 9497 OPRF output over the same
domain-separated identifier, evaluated blind by the pseudonymisation service that alone holds
the key (baken/oprf.py; through the ring's `evaluator`). The key id travels with the value,
and the edge derives one pseudonym per key of its ring, so markers synced under an old key keep
hitting while a new key is rolled out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from baken.keyring import KeyFileError, KeyRing
from baken.type.v1.pseudonym_pb2 import (
    PSEUDONYM_KIND_BSN,
    PSEUDONYM_KIND_NAME_BIRTH_DATE,
    PseudonymKind,
)

BSN_CONTEXT = b"baken/bsn/v1\x00"
NAME_BIRTH_DATE_CONTEXT = b"baken/name-birth-date/v1\x00"

# Dutch surname particles (tussenvoegsels) and the common foreign ones seen in Dutch registers.
# "t" and "s" are 't (het) and 's (des); "d" and "l" are d' and l'. d' is a particle wherever
# it stands, also where a register counts it as part of the surname ("d'Ancona" and "d'Hondt"
# give "ancona" and "hondt", as "Ancona" and "Hondt" do): registers disagree on it, and the
# keys markers were synced under depend on it, so it stays.
TUSSENVOEGSELS = frozenset(
    [
        "van",
        "de",
        "der",
        "den",
        "het",
        "t",
        "s",
        "ten",
        "ter",
        "te",
        "in",
        "op",
        "aan",
        "bij",
        "uit",
        "voor",
        "onder",
        "over",
        "la",
        "le",
        "les",
        "du",
        "da",
        "di",
        "del",
        "della",
        "dos",
        "das",
        "d",
        "l",
        "von",
        "zu",
        "vom",
        "zum",
        "zur",
    ]
)
# Tussenvoegsels as registers abbreviate them, in words as the key splits them (at every
# character that is not a letter: "v.d.", "v/d" and "v. d." are all "v" "d", and "d" is a
# particle already). "v" is "van"; "vd" is "van de", "van der" or "van den": the abbreviation
# no longer says which, and the key need not, since particles are left out of it. "i" ("in")
# and "h" ("het") are particles only as part of such an abbreviation ("i.t.", "i. 't", "i.d.",
# "i. de", "i.h.", "v.h."): alone, or beside a surname, they are letters of the surname as
# before.
ABBREVIATED_TUSSENVOEGSELS = frozenset(
    [("v",), ("vd",), ("v", "h")]
    + [("i", article) for article in ("t", "het", "h", "d", "de", "den", "der")]
)
_WORD = re.compile(r"[a-z]+")
# Letters whose diacritic or ligature has no Unicode decomposition (after casefold).
_UNDECOMPOSABLE = str.maketrans(
    {"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ŧ": "t"}
    | {"æ": "ae", "œ": "oe", "þ": "th"}
)


@dataclass(frozen=True, slots=True)
class Pseudonym:
    kind: PseudonymKind.ValueType
    key_id: str
    value: bytes


class InvalidIdentifier(ValueError):
    """An identifier that cannot be pseudonymised. The message never repeats the value."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def with_leading_zero(bsn: str) -> str:
    """A BSN that went through a spreadsheet (or a number field) lost its leading zero: eight
    digits get it back; anything else is returned as it is."""
    if len(bsn) == 8 and bsn.isascii() and bsn.isdigit():
        return "0" + bsn
    return bsn


def _not_nine_digits(digits: str) -> str:
    """What is wrong with `digits`, named without repeating it."""
    if not digits:
        return "the BSN is empty"
    for c in digits:
        if c.isspace():
            return "the BSN contains a space; a BSN has 9 digits"
        if c.isalpha():
            return "the BSN contains a letter; a BSN has 9 digits"
        if c.isdigit() and not c.isascii():
            return "the BSN contains a digit other than 0-9"
        if not c.isdigit():
            return "the BSN contains a character other than a digit; a BSN has 9 digits"
    return f"the BSN has {len(digits)} digits; a BSN has 9 (8: the leading 0 left off)"


def validate_bsn(bsn: str) -> str:
    """Return the BSN without surrounding spaces if it is 9 digits passing the 11-proef; 8
    digits get their leading zero back (`with_leading_zero`)."""
    digits = with_leading_zero(bsn.strip())
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        raise InvalidIdentifier("bsn", "BSN_NOT_NINE_DIGITS", _not_nine_digits(digits))
    if digits == "000000000":
        raise InvalidIdentifier("bsn", "BSN_ALL_ZEROS", "000000000 is not a BSN")
    weighted = sum(int(d) * w for d, w in zip(digits, (9, 8, 7, 6, 5, 4, 3, 2, -1), strict=True))
    if weighted % 11 != 0:
        raise InvalidIdentifier("bsn", "BSN_FAILS_11_PROEF", "the BSN fails the 11-proef")
    return digits


# Nine digits standing alone (not part of a longer number), as typed or as 1234.56.782.
# Nine digits standing as a word of their own: inside a longer token (a hex request id, a
# delivery key) a run of digits is part of that token, not a BSN.
_NINE_DIGITS = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9]{9}|[0-9]{4}\.[0-9]{2}\.[0-9]{3})(?![0-9A-Za-z])"
)


def looks_like_bsn(text: str) -> bool:
    """Whether free text holds a run of nine digits that passes the 11-proef: a BSN, most
    likely, where none may be (a case reference, a user id, a reason)."""
    for found in _NINE_DIGITS.finditer(text):
        try:
            validate_bsn(found.group().replace(".", ""))
        except InvalidIdentifier:
            continue
        return True
    return False


def _surname_words(words: list[str]) -> list[str]:
    """`words` without their particles, full ("van der") or abbreviated ("v.d.", "i.t.")."""
    core: list[str] = []
    at = 0
    while at < len(words):
        if tuple(words[at : at + 2]) in ABBREVIATED_TUSSENVOEGSELS:
            at += 2
        elif (words[at],) in ABBREVIATED_TUSSENVOEGSELS or words[at] in TUSSENVOEGSELS:
            at += 1
        else:
            core.append(words[at])
            at += 1
    return core


def normalise_surname(surname: str) -> str:
    """Surname as a stable matching key: no case, diacritics, punctuation or tussenvoegsels.

    "Van der Berg", "van den berg" and "VAN DER BERG" differ only in the particle, and all give
    "berg"; "Çelik" gives "celik"; "in 't Veld" gives "veld". Particles go wherever they stand,
    so the sorted form of a register ("Berg, van der") is the same key; abbreviated particles
    ("v.d. Berg", "vd Berg", "v/d Berg", "Berg, v.d.", "i.t. Veld") go too. A particle written
    joined to the surname is part of it: "Vanderbilt" stays "vanderbilt", not "van der Bilt".
    """
    decomposed = unicodedata.normalize("NFKD", surname)
    ascii_letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    words = _WORD.findall(ascii_letters.replace("ß", "ss").translate(_UNDECOMPOSABLE))
    core = _surname_words(words)
    # A surname that is nothing but particles ("Van", "De") keeps them.
    normalised = "".join(core or words)
    if not normalised:
        raise InvalidIdentifier("surname", "SURNAME_EMPTY", "the surname has no letters")
    return normalised


def _validate_birth_date(birth_date: date, today: date) -> date:
    if birth_date > today:
        raise InvalidIdentifier(
            "birth_date", "BIRTH_DATE_IN_FUTURE", "the date of birth lies in the future"
        )
    if birth_date.year < 1900:
        raise InvalidIdentifier("birth_date", "BIRTH_DATE_TOO_EARLY", "born before 1900")
    return birth_date


PSEUDONYM_BYTES = 32


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Identifier:
    """One checked, domain-separated identifier of a person: what is pseudonymised."""

    kind: PseudonymKind.ValueType
    message: bytes


def bsn_identifier(bsn: str) -> Identifier:
    return Identifier(PSEUDONYM_KIND_BSN, BSN_CONTEXT + validate_bsn(bsn).encode())


def name_birth_date_identifier(surname: str, birth_date: date, *, today: date) -> Identifier:
    identifier = (
        f"{normalise_surname(surname)}\x00{_validate_birth_date(birth_date, today).isoformat()}"
    )
    return Identifier(PSEUDONYM_KIND_NAME_BIRTH_DATE, NAME_BIRTH_DATE_CONTEXT + identifier.encode())


def pseudonymise(ring: KeyRing, persons: Sequence[Sequence[Identifier]]) -> list[list[Pseudonym]]:
    """Each person's pseudonyms: per identifier, one per key of the ring. The identifiers of all
    persons go to each OPRF key's service together (the ring's evaluator makes one Evaluate
    call per 1000), so a chunk of an export costs a call, not a call per person. KeyFileError
    when the ring has OPRF keys and is not served by an evaluator."""
    oprf = ring.evaluator
    if ring.oprf and oprf is None:
        raise KeyFileError("the key ring has OPRF keys: pseudonymise through the service")
    messages = [i.message for identifiers in persons for i in identifiers]
    outputs = {
        key_id: oprf.outputs(key_id, service, messages) if messages else []
        for key_id, service in ring.oprf.items()
        if oprf is not None
    }
    found: list[list[Pseudonym]] = []
    at = 0
    for identifiers in persons:
        pseudonyms: list[Pseudonym] = []
        for i in identifiers:
            pseudonyms += [Pseudonym(i.kind, k, _hmac(key, i.message)) for k, key in ring.items()]
            pseudonyms += [
                Pseudonym(i.kind, k, output[at][:PSEUDONYM_BYTES]) for k, output in outputs.items()
            ]
            at += 1
        found.append(pseudonyms)
    return found


def bsn_pseudonyms(ring: KeyRing, bsn: str) -> list[Pseudonym]:
    """One BSN pseudonym per key of the ring."""
    return pseudonymise(ring, [[bsn_identifier(bsn)]])[0]


def name_birth_date_pseudonyms(
    ring: KeyRing,
    surname: str,
    birth_date: date,
    *,
    today: date,
) -> list[Pseudonym]:
    """One surname + date-of-birth pseudonym per key of the ring."""
    identifier = name_birth_date_identifier(surname, birth_date, today=today)
    return pseudonymise(ring, [[identifier]])[0]


def person_identifiers(
    *,
    bsn: str | None = None,
    surname: str | None = None,
    birth_date: date | None = None,
    today: date,
) -> list[Identifier]:
    """A person's identifiers, checked: BSN, surname + date of birth, or both;
    InvalidIdentifier naming the field otherwise."""
    identifiers: list[Identifier] = []
    if bsn:
        identifiers.append(bsn_identifier(bsn))
    if surname or birth_date:
        if not surname:
            raise InvalidIdentifier("surname", "SURNAME_MISSING", "a date of birth needs a surname")
        if birth_date is None:
            raise InvalidIdentifier(
                "birth_date", "BIRTH_DATE_MISSING", "a surname needs a date of birth"
            )
        identifiers.append(name_birth_date_identifier(surname, birth_date, today=today))
    if not identifiers:
        raise InvalidIdentifier(
            "bsn", "IDENTIFIER_MISSING", "give a BSN, or a surname with a date of birth"
        )
    return identifiers


def person_pseudonyms(
    ring: KeyRing,
    *,
    bsn: str | None = None,
    surname: str | None = None,
    birth_date: date | None = None,
    today: date,
) -> list[Pseudonym]:
    """Every pseudonym the edge can make for a person (`person_identifiers`), those of the
    ring's OPRF keys through its evaluator."""
    identifiers = person_identifiers(bsn=bsn, surname=surname, birth_date=birth_date, today=today)
    return pseudonymise(ring, [identifiers])[0]
