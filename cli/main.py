"""The `baken` command: the parser of every command group, and how errors reach the user.

A command that runs a service or the demo imports it inside its function, so that a desk's
`baken lookup` starts without loading them."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import ValidationError

from baken import crash, logs, pki, sealed
from baken.age import claimed_minor
from baken.client import RegistryClient, connect, error_reason
from baken.clock import SystemClock
from baken.errors import ListenError, UserError
from baken.houses import load_houses
from baken.keyring import KeyFileError, KeyRing
from baken.pki import PkiError, TlsFiles
from baken.pseudonym import InvalidIdentifier
from baken.purposes import INTAKE, PURPOSES
from baken.render import lookup_json, lookup_text
from cli import adapter as adapter_cli
from cli import audit as audit_cli
from cli import desk as desk_cli
from cli import feedback as feedback_cli
from cli import inflow as inflow_cli
from cli import operations as operations_cli
from cli import register as register_cli
from cli import report as management_cli
from cli.options import (
    FEEDBACK_TARGET_ENV,
    KEY_FILE_ENV,
    PARTY_ENV,
    PKI_DIR_ENV,
    REGISTRY_TARGET_ENV,
    USER_ENV,
    add_party,
    age_options,
    key_file,
    party,
    person,
    person_options,
    pki_dir_option,
    registry_option,
    registry_settings,
    subject_of,
)
from services.accesslog.signing import SigningKeyError
from services.common import covenants
from services.common.at_rest import SealError
from services.common.covenants import CovenantError
from services.common.db import SchemaError
from services.common.settings import FeedbackSettings


def _serve(args: argparse.Namespace) -> None:
    options = {
        "address": args.address,
        "metrics_address": args.metrics_address,
        "data_dir": args.data_dir,
        "database_url": args.database_url,
        "max_workers": args.max_workers,
        "pki_dir": args.pki_dir,
        "covenants_dir": args.covenants_dir,
        "allow_signing_key_in_data_dir": args.allow_signing_key_in_data_dir,
    }
    logs.configure()
    if args.service == "feedback":
        from services.feedback.server import serve as serve_feedback

        options["registry"] = args.registry
        serve_feedback(FeedbackSettings(**{k: v for k, v in options.items() if v is not None}))
        return
    if args.service == "pseudonymiser":
        from services.common.settings import PseudonymiserSettings
        from services.pseudonymiser.server import serve as serve_pseudonymiser

        options["key_file"] = args.oprf_key_file
        serve_pseudonymiser(
            PseudonymiserSettings(**{k: v for k, v in options.items() if v is not None})
        )
        return
    from services.registry.server import prepare, serve

    settings = registry_settings(**options)
    if args.instances < 1:
        raise UserError("--instances: 1 or more")
    if args.instances == 1:
        serve(settings)
        return
    from services.instances import serve_instances

    code = serve_instances(settings, args.instances, command=["serve", "registry"], prepare=prepare)
    if code:
        raise SystemExit(code)


def _keys(args: argparse.Namespace) -> None:
    if args.action == "reseal":
        _reseal(args)
        return
    path = key_file(args)
    if not args.key_id:
        raise UserError(f"{args.action} needs --key-id")
    kind = args.kind or ("oprf" if args.action == "init" or args.service else "hmac")
    oprf = kind == "oprf" and args.action in ("init", "add")
    if oprf and not args.service:
        raise UserError("an OPRF key needs --service host:port (the pseudonymisation service)")
    if args.action == "init":
        if path.exists():
            raise UserError(f"{path} exists already; use `baken keys add` to rotate")
        ring = KeyRing({}, {args.key_id: args.service}) if oprf else KeyRing.generate(args.key_id)
        ring.save(path)
    elif args.action == "add" and oprf:
        KeyRing.load(path).with_oprf_key(args.key_id, args.service).save(path)
    elif args.action == "add":
        KeyRing.load(path).with_new_key(args.key_id).save(path)
    else:
        KeyRing.load(path).without_key(args.key_id).save(path)
    print(f"{path}: keys {', '.join(KeyRing.load(path).ids)}")


def _reseal(args: argparse.Namespace) -> None:
    """Seal all waarom-informatie under the newest key of the registry's at-rest key ring."""
    from services.common import db
    from services.common.at_rest import Sealer
    from services.registry.repository import reseal

    settings = registry_settings(
        data_dir=args.data_dir, database_url=args.database_url, at_rest_key_file=args.key_file
    )
    sealer = Sealer(KeyRing.load(settings.resolved_at_rest_key_file()))
    engine = db.make_engine(settings.resolved_database_url(), pool_size=1)
    try:
        changed = reseal(engine, sealer)
    finally:
        engine.dispose()
    print(f"{changed} markers resealed under key {sealer.current}; retire the old key now")


def _lookup(args: argparse.Namespace) -> None:
    ring, identifiers = person(args)
    try:
        minor = claimed_minor(args.minor, args.birth_date, SystemClock().today())
    except ValueError as error:
        raise UserError(str(error)) from None
    if minor is None and args.purpose == INTAKE:
        raise UserError(f"at {INTAKE}, say --minor or --adult (or give --surname and --birth-date)")
    subject = subject_of(args, ring, identifiers, PURPOSES[args.purpose])
    with connect(args.registry, TlsFiles.of(args.pki_dir, party(args))) as channel:
        client = RegistryClient(channel, ring, on_behalf_of=args.user, timeout_s=args.timeout)
        response = client.lookup_subject(
            subject,
            purpose=PURPOSES[args.purpose],
            case_reference=args.case or "",
            minor=minor,
            break_glass_reason=args.break_glass or "",
        )
    print(lookup_json(response) if args.json else lookup_text(response))


def _pki(args: argparse.Namespace) -> None:
    if (args.dir / "ca.pem").exists():
        raise UserError(f"{args.dir} holds a CA already; remove it to start afresh")
    now = dt.datetime.now(dt.UTC)
    issued = pki.init(args.dir, covenants.identities(), now=now, service_hosts=args.host or ())
    houses = load_houses()
    sealed.init_house_keys(args.dir / "houses", houses, now=now)
    systems = sealed.share_private_keys_by_source(args.dir, houses)
    print(f"{args.dir}: development CA and certificates for {', '.join(issued)}")
    print(f"{args.dir / 'houses'}: an X25519 key pair per Safety House (aanmeldingen)")
    print(f"{args.dir}/houses-{{{','.join(systems)}}}: each source's houses' private keys alone")


def _demo(args: argparse.Namespace) -> None:
    """Registry, feedback service and adapters as processes, a shift, the month's report."""
    from dev.demo import run

    def say(text: str) -> None:
        print(text, flush=True)

    code = run(args.data_dir, seed=args.seed, say=say, keep_running=args.keep_running)
    if code:
        raise SystemExit(code)  # stopped by Ctrl-C or SIGTERM: it said so, and stopped it all


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baken", description="Baken: ZSM <-> Veiligheidshuizen registry."
    )
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`baken COMMAND --help` for more"
    )

    serve = sub.add_parser("serve", help="run a service")
    serve.add_argument(
        "service", choices=["registry", "feedback", "pseudonymiser"], help="which service"
    )
    serve.add_argument("--address", help="host:port (env BAKEN_<SERVICE>_ADDRESS)")
    serve.add_argument(
        "--metrics-address",
        help="host:port of the Prometheus metrics endpoint, HTTPS for an operator's "
        "certificate (env BAKEN_<SERVICE>_METRICS_ADDRESS; default none)",
    )
    serve.add_argument(
        "--data-dir", type=Path, help="SQLite data dir (env BAKEN_<SERVICE>_DATA_DIR)"
    )
    serve.add_argument("--database-url", help="PostgreSQL URL (env BAKEN_<SERVICE>_DATABASE_URL)")
    serve.add_argument(
        "--max-workers", type=int, help="threads serving calls (env BAKEN_<SERVICE>_MAX_WORKERS)"
    )
    serve.add_argument(
        "--pki-dir", type=Path, help="CA and certificates (env BAKEN_<SERVICE>_PKI_DIR)"
    )
    serve.add_argument(
        "--covenants-dir",
        type=Path,
        help="party register and covenant files (env BAKEN_<SERVICE>_COVENANTS_DIR)",
    )
    serve.add_argument(
        "--registry", help="(feedback) the registry, host:port (env BAKEN_FEEDBACK_REGISTRY)"
    )
    serve.add_argument(
        "--oprf-key-file",
        type=Path,
        help="(pseudonymiser) its OPRF keys, made when absent (env BAKEN_PSEUDONYMISER_KEY_FILE; "
        "default keys/pseudonymiser-keys.json beside the data dir)",
    )
    serve.add_argument(
        "--allow-signing-key-in-data-dir",
        action="store_true",
        default=None,
        help="start although the audit signing key lies in the data dir, where a copy of the "
        "database can re-sign a rewritten access log (env BAKEN_<SERVICE>_ALLOW_SIGNING_KEY_IN_"
        "DATA_DIR)",
    )
    serve.add_argument(
        "--instances",
        type=int,
        default=1,
        help="(registry) processes sharing the address and the database, one core each "
        "(docs/DEPLOYMENT.md); the metrics endpoint of instance i on its port + i",
    )
    serve.set_defaults(run=_serve)

    lookup = sub.add_parser("lookup", help="is this person known at any Safety House?")
    registry_option(lookup)
    lookup.add_argument("--key-file", help=f"pseudonym key file (env {KEY_FILE_ENV})")
    person_options(lookup)
    lookup.add_argument(
        "--purpose",
        choices=sorted(PURPOSES),
        default=INTAKE,
        help=f"why you look (doelbinding); default {INTAKE}",
    )
    lookup.add_argument("--case", help="the ZSM case reference (required but at intake)")
    lookup.add_argument(
        "--user",
        default=os.environ.get(USER_ENV) or os.environ.get("USER"),
        help=f"you, the responsible user, e.g. an employee number (env {USER_ENV})",
    )
    age_options(lookup)
    lookup.add_argument(
        "--break-glass",
        metavar="REASON",
        help="noodknop (OvJ, afdoeningsbeslissing): see waarom-informatie beyond the covenant; "
        "the privacy officer reviews every use",
    )
    lookup.add_argument("--json", action="store_true", help="machine-readable output")
    lookup.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    pki_dir_option(lookup)
    add_party(lookup)
    lookup.set_defaults(run=_lookup)

    keys = sub.add_parser(
        "keys",
        help="manage a key file: an edge party's pseudonym keys or the registry's at-rest keys",
        description="init/add/retire keys of a key ring file; `reseal` seals the registry's "
        "waarom-informatie under the newest key of its at-rest ring (after `add`, before "
        "`retire`).",
    )
    keys.add_argument(
        "action",
        choices=["init", "add", "retire", "reseal"],
        help="init a new key file, add a key (it becomes the current one), retire a key, or "
        "reseal the registry's waarom-informatie",
    )
    keys.add_argument(
        "--key-file",
        help=f"(env {KEY_FILE_ENV}); for reseal the registry's at-rest key file "
        "(env BAKEN_REGISTRY_AT_REST_KEY_FILE, default data-dir/at-rest-keys.json)",
    )
    keys.add_argument("--key-id", help="e.g. k2026-11 (init, add, retire)")
    keys.add_argument(
        "--kind",
        choices=["oprf", "hmac"],
        help="(init, add) oprf: no secret here, the pseudonymisation service at --service "
        "holds the key (the default of init, and of add with --service); hmac: a secret in the "
        "file (the default of add without --service: an at-rest key, or an edge's that still "
        "has one until it rotates; docs/SECURITY.md)",
    )
    keys.add_argument(
        "--service", help="(init/add --kind oprf) the pseudonymisation service, host:port"
    )
    keys.add_argument(
        "--data-dir",
        type=Path,
        help="(reseal) the registry's data dir (env BAKEN_REGISTRY_DATA_DIR, default var/registry)",
    )
    keys.add_argument(
        "--database-url",
        help="(reseal) PostgreSQL instead of data-dir's SQLite (env BAKEN_REGISTRY_DATABASE_URL)",
    )
    keys.set_defaults(run=_keys)

    pki_init = sub.add_parser("pki", help="development PKI: a CA and a certificate per party")
    pki_init.add_argument("action", choices=["init"], help="make the CA and the certificates")
    pki_init.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get(PKI_DIR_ENV, "var/pki")),
        help=f"where (env {PKI_DIR_ENV}, default var/pki); refused if it holds a CA already",
    )
    pki_init.add_argument(
        "--host",
        action="append",
        help="a host name clients dial the services by, besides localhost and 127.0.0.1 "
        "(repeatable; e.g. registry and feedback in docker-compose)",
    )
    pki_init.set_defaults(run=_pki)

    operations_cli.add_parsers(sub, PKI_DIR_ENV, PARTY_ENV)

    audit_cli.add_parser(sub, KEY_FILE_ENV, PKI_DIR_ENV, REGISTRY_TARGET_ENV)
    feedback_cli.add_parsers(sub, KEY_FILE_ENV, PKI_DIR_ENV)
    management_cli.add_parser(sub, PKI_DIR_ENV, REGISTRY_TARGET_ENV, FEEDBACK_TARGET_ENV)
    register_cli.add_parser(sub)
    adapter_cli.add_parser(sub, KEY_FILE_ENV, PKI_DIR_ENV, REGISTRY_TARGET_ENV)
    adapter_cli.add_synth_parser(sub)
    desk_cli.add_parser(sub)

    demo = sub.add_parser(
        "demo",
        help="a ZSM night shift across the four pilot regions, every component a process",
        description="Starts the registry, the feedback service and the three adapters as "
        "processes of their own (SQLite, mTLS on localhost), plays a ZSM night shift across "
        "the four pilot regions, and ends with the month's management report. Ctrl-C stops "
        "everything.",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="keep everything here: databases, PKI, sources, deliveries, logs, report.html "
        "(default: a temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--seed", type=int, default=2014, help="of the synthetic population (default 2014)"
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the report, the next morning's inflow on the ZSM desk's screen (its address "
        "and sign-in are printed), and everything keeps running until Ctrl-C",
    )
    demo.set_defaults(run=_demo)
    return p


# A request field the server names, as the option the user typed (the first name of its path).
OPTIONS = {
    "on_behalf_of": "--user",
    "case_reference": "--case",
    "subject_age": "--minor/--adult",
    "purpose": "--purpose",
    "break_glass_reason": "--break-glass",
    "code": "--code",
    "sepot_code": "--sepot-code",
    "stage": "--stage",
    "advice_followed": "--advice",
    "house_advice": "--advice HOUSE=",
    "deviation_reason": "--reason",
    "residence_municipality": "--municipality",
    "referral": "--complex-problems",
    "request_key": "--request-key",
    "triage": "--triage",
    "house": "--house",
    "term": "--term",
    "question": "--question",
    "finding": "--finding",
    "sequence": "--close",
    "month": "--month",
    "region": "--region",
    "bsn": "--bsn",
    "surname": "--surname",
    "birth_date": "--birth-date",
}


def option_of(field: str, args: argparse.Namespace) -> str:
    """The option the user typed for the request field `field` (`subject.pseudonyms[0]`: the
    person's options given); `field` itself when none."""
    name = field.split(".", 1)[0].split("[", 1)[0]
    if name == "subject":
        given = [
            o
            for o, v in (("--bsn", "bsn"), ("--surname/--birth-date", "surname"))
            if getattr(args, v, None)
        ]
        return "/".join(given) or "--bsn/--surname/--birth-date"
    return OPTIONS.get(name, field)


def _rpc_message(error: grpc.RpcError, args: argparse.Namespace) -> str:
    code = error.code()
    # The service the command called: `calls` where a command with --feedback calls the
    # registry (adapter sync and watch), else the feedback service where it is given.
    called = getattr(args, "calls", None)
    called = called or ("feedback" if getattr(args, "feedback", None) else "registry")
    if called == "feedback":
        service = f"the feedback service at {args.feedback}"
    else:
        service = f"the registry at {args.registry}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{service} is not reachable (UNAVAILABLE)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{service} did not answer within {args.timeout:g} s"
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    fields = []
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [
                    f"{option_of(v.field, args)}: {v.description}" for v in bad.field_violations
                ]
    # A refusal names its reason (CASE_REFERENCE_REQUIRED); bad input, the fields to fix.
    reason = error_reason(error) if code != grpc.StatusCode.INVALID_ARGUMENT else None
    head = f"{code.name} ({reason})" if reason else code.name
    return f"{head}: " + ("; ".join(fields) or str(error.details()))


def main(argv: Sequence[str] | None = None) -> int:
    # What Baken writes is its own user's only: databases, logs, state files, deliveries and
    # keys 0600, directories 0700 (docs/DEPLOYMENT.md, "File permissions"). The processes
    # `baken up` starts inherit it.
    os.umask(0o077)
    args = parser().parse_args(argv)
    crash.install()
    try:
        args.run(args)
    except InvalidIdentifier as error:
        print(f"baken {args.command}: {option_of(error.field, args)}: {error}", file=sys.stderr)
        return 2
    except (
        UserError,
        KeyFileError,
        SchemaError,
        PkiError,
        ListenError,
        CovenantError,
        SigningKeyError,
        SealError,
        ValidationError,
    ) as error:
        print(f"baken {args.command}: {error}", file=sys.stderr)
        return 2
    except (audit_cli.VerifyFailed, adapter_cli.Rejected, inflow_cli.Unfinished) as error:
        print(f"baken {args.command}: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"baken {args.command}: {_rpc_message(error, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: where it happened, never what it quoted
        print(f"baken {args.command}: crashed: {crash.report(error)}", file=sys.stderr)
        return 70
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
