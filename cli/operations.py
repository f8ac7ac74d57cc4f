"""`baken migrate`, `baken up` and `baken health`: a deployment's databases, the whole system as
local processes, and whether a service is SERVING."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from pathlib import Path
from shlex import quote
from typing import Any

from adapters.sources import SOURCES
from baken.errors import UserError
from baken.pki import TlsFiles
from services.common.settings import FeedbackSettings, RegistrySettings


def _migrate(args: argparse.Namespace) -> None:
    """The databases to the newest schema, once, with the settings `baken serve` reads."""
    import psycopg
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from services.operations import migrate

    given = {
        k: v for k, v in (("data_dir", args.data_dir), ("database_url", args.database_url)) if v
    }
    if args.service == "all" and given:
        raise UserError("--data-dir and --database-url are one service's: name it")
    for service in ("registry", "feedback") if args.service == "all" else (args.service,):
        settings: RegistrySettings | FeedbackSettings = (
            RegistrySettings(**given) if service == "registry" else FeedbackSettings(**given)
        )
        where = make_url(settings.resolved_database_url()).render_as_string(hide_password=True)
        try:
            revision = migrate(settings)
        except (OperationalError, psycopg.OperationalError) as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise UserError(f"{service}: cannot reach {where}: {reason}") from None
        print(f"{service}: {where} at schema revision {revision}")


def _up(args: argparse.Namespace) -> None:
    """Everything as local processes until Ctrl-C or SIGTERM; then stopped in order."""
    from dev.topology import Interrupted, Topology, TopologyError

    def say(text: str) -> None:
        print(text, flush=True)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        topology = Topology(
            args.run_dir,
            database_url=args.database_url,
            schema_prefix=args.schema_prefix,
            registry_port=args.registry_port,
            feedback_port=args.feedback_port,
            watch_interval=args.interval,
            clock_file=args.clock_file,
            say=say,
        )
        for sig in previous:
            signal.signal(sig, lambda *_: topology.interrupt())
        with topology:
            _say_up(topology, args.database_url, say)
            topology.wait()
    except Interrupted:
        pass
    except TopologyError as error:
        raise UserError(str(error)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("baken up: stopped")


def _say_up(topology: Any, database_url: str | None, say: Callable[[str], None]) -> None:
    from sqlalchemy.engine import make_url

    from services.operations import search_path_schema

    e = topology.endpoints
    if database_url:
        schemas = " and ".join(str(search_path_schema(u)) for u in topology.database_urls.values())
        where = f"PostgreSQL {make_url(database_url).render_as_string(hide_password=True)}, "
        where += f"schemas {schemas}"
    else:
        where = "SQLite files in registry/ and feedback/"
    say(f"Baken is up in {topology.run_dir} ({where}):")
    say(f"  registry         {e.registry}  (mTLS, CA {e.pki_dir / 'ca.pem'})")
    say(f"  feedback         {e.feedback}")
    for system in SOURCES:
        say(f"  adapter-{system:<8} {e.sources[system]} -> {e.deliveries[system]}")
    say(
        f"  metrics          https://{e.metrics['registry']}/metrics (registry), "
        f"https://{e.metrics['feedback']}/metrics (feedback), for the operator's certificate"
    )
    sign_in = f"; sign-in names and passwords in {e.desk_sign_in}" if e.desk_sign_in else ""
    say(f"  desk's screen    {e.desk}  (ZSM Midden-Nederland's KPC'er and OvJ{sign_in})")
    say(f"  logs             {topology.log_dir}")
    say("For the other baken commands:")
    say(
        f"  export BAKEN_PKI_DIR={quote(str(e.pki_dir))} "
        f"BAKEN_PSEUDONYM_KEY_FILE={quote(str(e.pseudonym_key_file))} "
        f"BAKEN_REGISTRY_TARGET={e.registry} BAKEN_FEEDBACK_TARGET={e.feedback} "
        f"BAKEN_HOUSE_KEYS_DIR={quote(str(e.house_keys_dir))}"
    )
    say("Ctrl-C stops.")


def _health(args: argparse.Namespace) -> None:
    from services.operations import SERVING, health_status

    tls = TlsFiles.of(args.pki_dir, args.party)
    status = health_status(args.target, tls, service=args.service, timeout=args.timeout)
    print(f"{args.target}: {status}")
    if status != SERVING:
        raise SystemExit(1)  # unhealthy, as docker and kubernetes read an exit code


def add_parsers(sub: Any, pki_dir_env: str, party_env: str) -> None:
    migrate = sub.add_parser(
        "migrate",
        help="migrate the services' databases to the newest schema, once",
        description="What `baken serve` does at start, once: for a deployment that migrates "
        "before it starts the services. Settings from the environment, as `baken serve`.",
    )
    migrate.add_argument(
        "service",
        nargs="?",
        choices=["registry", "feedback", "all"],
        default="all",
        help="whose database (default all)",
    )
    migrate.add_argument(
        "--data-dir", type=Path, help="SQLite data dir (env BAKEN_<SERVICE>_DATA_DIR)"
    )
    migrate.add_argument("--database-url", help="PostgreSQL URL (env BAKEN_<SERVICE>_DATABASE_URL)")
    migrate.set_defaults(run=_migrate)

    up = sub.add_parser(
        "up",
        help="run the whole system locally: registry, feedback service and the three adapters",
        description="Makes what is missing in the run dir (development PKI, house keys, "
        "pseudonym key file), migrates, starts the registry and the feedback service, then the "
        "GCOS, Amazone and PGA adapters, and restarts a process that dies. Ctrl-C stops.",
    )
    up.add_argument("--run-dir", type=Path, default=Path("var/up"), help="default var/up")
    up.add_argument(
        "--database-url",
        help="a PostgreSQL server instead of SQLite files in the run dir; the registry and the "
        "feedback service each get a schema of their own in it",
    )
    up.add_argument(
        "--schema-prefix",
        default="baken",
        help="(PostgreSQL) schemas PREFIX_registry and PREFIX_feedback (default baken)",
    )
    up.add_argument("--registry-port", type=int, default=50051, help="0: a free one")
    up.add_argument("--feedback-port", type=int, default=50052, help="0: a free one")
    up.add_argument(
        "--interval", type=float, default=1.0, help="seconds between the adapters' sync runs"
    )
    up.add_argument(
        "--clock-file",
        type=Path,
        help="given to the registry and the feedback service as env BAKEN_CLOCK_FILE",
    )
    up.set_defaults(run=_up)

    health = sub.add_parser(
        "health", help="ask a service's gRPC health service; exit 0 only when SERVING"
    )
    health.add_argument("target", help="host:port")
    health.add_argument(
        "--service", default="", help="e.g. baken.registry.v1.RegistryService (default: the server)"
    )
    health.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(pki_dir_env, "var/pki")),
        help=f"the CA and the party's certificate (env {pki_dir_env}, default var/pki)",
    )
    health.add_argument(
        "--party",
        default=os.environ.get(party_env, "operator"),
        help="whose certificate to ask with (env BAKEN_PARTY, default operator)",
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    health.set_defaults(run=_health)
