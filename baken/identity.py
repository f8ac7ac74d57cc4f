"""Who is calling: the party named by the caller's verified client certificate."""

from __future__ import annotations

import functools

import grpc

from baken.errors import BakenError
from baken.pki import Party, PkiError, party_of


class Unauthenticated(BakenError):
    code = grpc.StatusCode.UNAUTHENTICATED


@functools.lru_cache(maxsize=1024)
def _party(cert_pem: bytes) -> Party:
    return party_of(cert_pem)


def caller(context: grpc.ServicerContext) -> Party:
    """The calling party. The TLS layer has verified the chain and validity before any handler
    runs; this reads the identity from the subject and refuses a certificate that names none."""
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        raise Unauthenticated("NO_CLIENT_CERTIFICATE", "a client certificate is required")
    try:
        return _party(certs[0])
    except (PkiError, ValueError):
        raise Unauthenticated(
            "CERTIFICATE_NAMES_NO_PARTY", "the client certificate names no Baken party"
        ) from None
