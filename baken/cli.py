"""The `baken` command."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_status import rpc_status

from baken import logs, pki
from baken.db import SchemaError
from baken.grpc_server import ListenError
from baken.keyring import KeyFileError, KeyRing
from baken.pki import PkiError, TlsFiles
from baken.pseudonym import InvalidIdentifier

KEY_FILE_ENV = "BAKEN_PSEUDONYM_KEY_FILE"
PKI_DIR_ENV = "BAKEN_PKI_DIR"
PARTY_ENV = "BAKEN_PARTY"
REGISTRY_TARGET_ENV = "BAKEN_REGISTRY_TARGET"


class UserError(Exception):
    """Something the user can fix; printed as one line, without a traceback."""


def _serve(args: argparse.Namespace) -> None:
    from baken.settings import RegistrySettings
    from services.registry.server import serve

    overrides = {
        "address": args.address,
        "data_dir": args.data_dir,
        "database_url": args.database_url,
        "max_workers": args.max_workers,
        "pki_dir": args.pki_dir,
    }
    logs.configure()
    serve(RegistrySettings(**{k: v for k, v in overrides.items() if v is not None}))


def _key_file(args: argparse.Namespace) -> Path:
    path = args.key_file or os.environ.get(KEY_FILE_ENV)
    if not path:
        raise UserError(f"give --key-file or set {KEY_FILE_ENV}")
    return Path(path)


def _keys(args: argparse.Namespace) -> None:
    path = _key_file(args)
    if args.action == "init":
        if path.exists():
            raise UserError(f"{path} exists already; use `baken keys add` to rotate")
        KeyRing.generate(args.key_id).save(path)
    elif args.action == "add":
        KeyRing.load(path).with_new_key(args.key_id).save(path)
    else:
        KeyRing.load(path).without_key(args.key_id).save(path)
    print(f"{path}: keys {', '.join(KeyRing.load(path))}")


def _birth_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM-DD") from None


def _lookup(args: argparse.Namespace) -> None:
    from baken.client import RegistryClient, connect, subject_proto
    from baken.clock import SystemClock
    from baken.pseudonym import person_pseudonyms
    from baken.render import lookup_json, lookup_text

    ring = KeyRing.load(_key_file(args))
    # Pseudonymise first: a mistyped BSN is refused before anything is read or sent.
    subject = subject_proto(
        person_pseudonyms(
            ring,
            bsn=args.bsn,
            surname=args.surname,
            birth_date=args.birth_date,
            today=SystemClock().today(),
        )
    )
    with connect(args.registry, TlsFiles.of(args.pki_dir, args.party)) as channel:
        response = RegistryClient(channel, ring, timeout_s=args.timeout).lookup_subject(subject)
    print(lookup_json(response) if args.json else lookup_text(response))


def _pki(args: argparse.Namespace) -> None:
    if (args.dir / "ca.pem").exists():
        raise UserError(f"{args.dir} holds a CA already; remove it to start afresh")
    issued = pki.init(args.dir, now=dt.datetime.now(dt.UTC))
    print(f"{args.dir}: development CA and certificates for {', '.join(issued)}")


def _demo(args: argparse.Namespace) -> None:
    from baken.demo import run

    run(args.data_dir, seed=args.seed)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baken", description="Baken: ZSM <-> Veiligheidshuizen registry."
    )
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a service")
    serve.add_argument("service", choices=["registry"])
    serve.add_argument("--address", help="host:port (env BAKEN_REGISTRY_ADDRESS)")
    serve.add_argument(
        "--data-dir", type=Path, help="SQLite data dir (env BAKEN_REGISTRY_DATA_DIR)"
    )
    serve.add_argument("--database-url", help="PostgreSQL URL (env BAKEN_REGISTRY_DATABASE_URL)")
    serve.add_argument("--max-workers", type=int)
    serve.add_argument(
        "--pki-dir", type=Path, help="CA and certificates (env BAKEN_REGISTRY_PKI_DIR)"
    )
    serve.set_defaults(run=_serve)

    lookup = sub.add_parser("lookup", help="is this person known at any Safety House?")
    lookup.add_argument(
        "--registry", default=os.environ.get(REGISTRY_TARGET_ENV, "127.0.0.1:50051")
    )
    lookup.add_argument("--key-file", help=f"pseudonym key file (env {KEY_FILE_ENV})")
    lookup.add_argument("--bsn")
    lookup.add_argument("--surname")
    lookup.add_argument("--birth-date", type=_birth_date, help="YYYY-MM-DD")
    lookup.add_argument("--json", action="store_true", help="machine-readable output")
    lookup.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    lookup.add_argument(
        "--pki-dir", type=Path, default=Path(os.environ.get(PKI_DIR_ENV, "var/pki"))
    )
    lookup.add_argument(
        "--party",
        default=os.environ.get(PARTY_ENV, "zsm-midden-nederland-kpc"),
        help="whose certificate to call with (env BAKEN_PARTY)",
    )
    lookup.set_defaults(run=_lookup)

    keys = sub.add_parser("keys", help="manage an edge party's pseudonym key file")
    keys.add_argument("action", choices=["init", "add", "retire"])
    keys.add_argument("--key-file", help=f"(env {KEY_FILE_ENV})")
    keys.add_argument("--key-id", required=True, help="e.g. k2026-11")
    keys.set_defaults(run=_keys)

    pki_init = sub.add_parser("pki", help="development PKI: a CA and a certificate per party")
    pki_init.add_argument("action", choices=["init"])
    pki_init.add_argument("--dir", type=Path, default=Path(os.environ.get(PKI_DIR_ENV, "var/pki")))
    pki_init.set_defaults(run=_pki)

    demo = sub.add_parser("demo", help="a ZSM night shift against all four pilot regions")
    demo.add_argument("--data-dir", type=Path, help="keep the data here (default: a temp dir)")
    demo.add_argument("--seed", type=int, default=2014)
    demo.set_defaults(run=_demo)
    return p


def _rpc_message(error: grpc.RpcError, args: argparse.Namespace) -> str:
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"the registry at {args.registry} is not reachable (UNAVAILABLE)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the registry at {args.registry} did not answer within {args.timeout:g} s"
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    fields = []
    if status is not None:
        from google.rpc import error_details_pb2

        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [f"{v.field}: {v.description}" for v in bad.field_violations]
    return f"{code.name}: " + ("; ".join(fields) or str(error.details()))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except InvalidIdentifier as error:
        print(f"baken {args.command}: {error.field}: {error}", file=sys.stderr)
        return 2
    except (UserError, KeyFileError, SchemaError, PkiError, ListenError) as error:
        print(f"baken {args.command}: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"baken {args.command}: {_rpc_message(error, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
