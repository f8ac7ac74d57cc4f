"""`baken desk`: the ZSM desk's screen for the KPC'er and the OvJ (docs/DESK.md)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from baken.errors import UserError
from cli.options import FEEDBACK_TARGET_ENV, PKI_DIR_ENV, registry_option

USERS_ENV = "BAKEN_DESK_USERS"
PORT_ENV = "BAKEN_DESK_PORT"


def _desk(args: argparse.Namespace) -> None:
    from desk.users import UsersError, hash_password, load_users

    if args.hash_password:
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise UserError("the passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        if len(password) < 12:
            raise UserError("a password of at least 12 characters")
        print(hash_password(password))
        return
    if not args.users:
        raise UserError(f"--users FILE (env {USERS_ENV}): who may sign in")
    from baken.clock import clock_from_env
    from desk.gateway import Gateway
    from desk.server import DeskServer, serve

    try:
        users = load_users(Path(args.users))
    except UsersError as error:
        raise UserError(str(error)) from None
    gateway = Gateway(
        args.pki_dir,
        {u.party for u in users.values()},
        registry=args.registry,
        feedback=args.feedback,
        clock=clock_from_env(),
    )
    try:
        server = DeskServer(("127.0.0.1", args.port), gateway, users)
    except OSError as error:
        gateway.close()
        raise UserError(f"127.0.0.1:{args.port}: cannot listen ({error.strerror})") from None
    except ValueError as error:
        gateway.close()
        raise UserError(str(error)) from None

    def ready(url: str) -> None:
        print(f"the ZSM desk's screen: {url}", flush=True)

    serve(server, ready)


def add_parser(sub: Any) -> None:
    desk = sub.add_parser(
        "desk",
        help="the ZSM desk's screen (KPC'er, OvJ) on http://127.0.0.1:PORT/",
        description="Serves the ZSM desk's screen on 127.0.0.1: the shift's inflow with each "
        "suspect's look-up, decisions with their per-house advice lines, advice requests. A "
        "client of the registry and the feedback service only; each call goes with the "
        "certificate of the signed-in user's party. --hash-password reads a password (stdin) "
        "and prints its hash for the users file.",
    )
    registry_option(desk)
    desk.add_argument(
        "--feedback",
        default=os.environ.get(FEEDBACK_TARGET_ENV, "127.0.0.1:50052"),
        metavar="HOST:PORT",
        help=f"the feedback service (env {FEEDBACK_TARGET_ENV}, default 127.0.0.1:50052)",
    )
    desk.add_argument(
        "--pki-dir",
        type=Path,
        default=Path(os.environ.get(PKI_DIR_ENV, "var/pki")),
        help=f"the CA and the desk parties' certificates (env {PKI_DIR_ENV}, default var/pki)",
    )
    desk.add_argument(
        "--users",
        default=os.environ.get(USERS_ENV),
        help=f"the users file, TOML (env {USERS_ENV}); docs/DESK.md",
    )
    desk.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(PORT_ENV, "8080")),
        help=f"on 127.0.0.1 (env {PORT_ENV}, default 8080; 0 for a free one)",
    )
    desk.add_argument(
        "--hash-password", action="store_true", help="print a password's hash and exit"
    )
    desk.set_defaults(run=_desk)
