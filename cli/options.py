"""What several commands take alike: where the key file and the PKI are, who asks, and a person
as --bsn or --surname/--birth-date turned into pseudonyms at this edge."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from baken.client import connect, subject_proto
from baken.clock import SystemClock
from baken.errors import UserError
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from baken.pseudonym import Identifier, person_identifiers, pseudonymise
from baken.pseudonymiser_client import ServiceOprf
from baken.type.v1 import pseudonym_pb2, purpose_pb2
from services.common.settings import RegistrySettings

KEY_FILE_ENV = "BAKEN_PSEUDONYM_KEY_FILE"
PKI_DIR_ENV = "BAKEN_PKI_DIR"
PARTY_ENV = "BAKEN_PARTY"
REGISTRY_TARGET_ENV = "BAKEN_REGISTRY_TARGET"
USER_ENV = "BAKEN_USER"
FEEDBACK_TARGET_ENV = "BAKEN_FEEDBACK_TARGET"
HOUSE_KEYS_ENV = "BAKEN_HOUSE_KEYS_DIR"


def registry_settings(**options: Any) -> RegistrySettings:
    """The registry's settings from its environment (BAKEN_REGISTRY_*), overridden by the
    command-line options that were given (None: not given)."""
    return RegistrySettings(**{k: v for k, v in options.items() if v is not None})


def key_file(args: argparse.Namespace) -> Path:
    path = args.key_file or os.environ.get(KEY_FILE_ENV)
    if not path:
        raise UserError(f"give --key-file or set {KEY_FILE_ENV}")
    return Path(path)


def registry_option(p: argparse.ArgumentParser, env: str = REGISTRY_TARGET_ENV) -> None:
    """--registry: where the registry answers."""
    p.add_argument(
        "--registry",
        default=os.environ.get(env, "127.0.0.1:50051"),
        metavar="HOST:PORT",
        help=f"the registry (env {env}, default 127.0.0.1:50051)",
    )


def add_party(p: argparse.ArgumentParser) -> None:
    """--party for a command that acts as a party: no default, so nobody is one unawares."""
    p.add_argument(
        "--party",
        default=os.environ.get(PARTY_ENV),
        help=f"whose certificate to call with, e.g. zsm-midden-nederland-kpc (env {PARTY_ENV}); "
        "required",
    )


def party(args: argparse.Namespace) -> str:
    """The party of --party or BAKEN_PARTY; refused when neither names one."""
    if not args.party:
        raise UserError(
            f"say which party you act as: --party or {PARTY_ENV} (e.g. zsm-midden-nederland-kpc)"
        )
    return str(args.party)


def pki_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(PKI_DIR_ENV, "var/pki")),
        help=f"the CA and the party's certificate (env {PKI_DIR_ENV}, default var/pki)",
    )


def person_options(p: argparse.ArgumentParser) -> None:
    """--bsn, --surname and --birth-date: the person, pseudonymised at this edge."""
    p.add_argument("--bsn", help="the person's BSN: 9 digits (8: the leading 0 left off)")
    p.add_argument("--surname", help="the person's surname, with --birth-date (or besides --bsn)")
    p.add_argument(
        "--birth-date", type=birth_date, help="YYYY-MM-DD: the date of birth, with --surname"
    )


def age_options(p: argparse.ArgumentParser) -> None:
    """--minor or --adult: the person's age as the desk knows it."""
    age = p.add_mutually_exclusive_group()
    age.add_argument(
        "--minor", dest="minor", action="store_true", default=None, help="the person is under 18"
    )
    age.add_argument("--adult", dest="minor", action="store_false", help="the person is 18 or over")


def birth_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD") from None


def served_ring(
    ring: KeyRing,
    pki_dir: Path,
    party_id: str,
    user: str | None,
    purpose: purpose_pb2.Purpose.ValueType = purpose_pb2.PURPOSE_UNSPECIFIED,
) -> KeyRing:
    """The ring served by the party's client of the pseudonymisation services its key file
    names (their addresses are in the file; the party's own certificate for mTLS), on behalf of
    `user`; a ring without OPRF keys as it is."""
    if not ring.oprf:
        return ring
    if not user:
        raise UserError("an OPRF key pseudonymises on behalf of someone: --user (or BAKEN_USER)")
    tls = TlsFiles.of(pki_dir, party_id)
    tls.read()  # a missing certificate is said now, not by the service's call
    return ring.served_by(
        ServiceOprf(lambda address: connect(address, tls), on_behalf_of=user, purpose=purpose)
    )


def person(args: argparse.Namespace) -> tuple[KeyRing, list[Identifier]]:
    """The key ring of --key-file and the identifiers of --bsn or --surname/--birth-date,
    checked: a mistyped BSN is refused before anything is read or sent."""
    ring = KeyRing.load(key_file(args))
    identifiers = person_identifiers(
        bsn=args.bsn,
        surname=args.surname,
        birth_date=args.birth_date,
        today=SystemClock().today(),
    )
    return ring, identifiers


def subject_of(
    args: argparse.Namespace,
    ring: KeyRing,
    identifiers: list[Identifier],
    purpose: purpose_pb2.Purpose.ValueType = purpose_pb2.PURPOSE_UNSPECIFIED,
) -> pseudonym_pb2.Subject:
    """The pseudonyms of `person`'s identifiers (those of an OPRF key through the
    pseudonymisation service, as --party for --user)."""
    ring = served_ring(ring, args.pki_dir, party(args), args.user, purpose)
    return subject_proto(pseudonymise(ring, [identifiers])[0])


def person_subject(
    args: argparse.Namespace,
    purpose: purpose_pb2.Purpose.ValueType = purpose_pb2.PURPOSE_UNSPECIFIED,
) -> tuple[KeyRing, pseudonym_pb2.Subject]:
    """`person` and `subject_of` in one."""
    ring, identifiers = person(args)
    return ring, subject_of(args, ring, identifiers, purpose)


def pages(call: Any, request: Any, field: str, timeout: float) -> Iterator[Any]:
    """Every item a List call has, page after page (AIP-158)."""
    while True:
        page = call(request, timeout=timeout)
        yield from getattr(page, field)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token
