"""The desk's screen over HTTP on 127.0.0.1: sign-in, the page and its JSON endpoints.

Sessions live in memory only (a restart signs everyone out). Every POST needs the session's
CSRF token (a form field at sign-in and sign-out, the X-CSRF-Token header on the JSON calls,
which also must be application/json); every answer carries a CSP without inline script,
frame-ancestors 'none' and no-store. The page renders every value with textContent: nothing
a service returns is ever parsed as HTML."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from baken import enums
from baken.client import error_reason
from baken.feedback.v1 import feedback_service_pb2 as fb
from baken.registry.v1 import registry_service_pb2
from desk import view
from desk.gateway import ACTING_ROLES, Gateway, Suspect
from desk.users import User, authenticate

COOKIE = "baken_desk"
LOGIN_COOKIE = "baken_desk_signin"
IDLE_S = 15 * 60  # signed out after a quarter of an hour without a call
SHIFT_S = 12 * 3600  # and after a shift, whatever
MAX_BODY = 64 * 1024
POLL_MS = 2000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends "Origin: null" with a form's POST, and the
    # same-origin check below could not tell the page's own form from another site's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_ENTRY = re.compile(r"inflow/[A-Za-z0-9_-]{1,64}")
_HOUSE = re.compile(r"houses/[a-z0-9-]{1,64}")
_ADVICE_REQUEST = re.compile(r"adviceRequests/[a-z0-9-]{1,32}")
CODES = enums.numbers(fb.DecisionCode, "DECISION_CODE_", "-")
STAGES = enums.numbers(fb.DecisionStage, "DECISION_STAGE_", "-")
STATIC = {
    "/static/desk.js": ("desk.js", "text/javascript; charset=utf-8"),
    "/static/desk.css": ("desk.css", "text/css; charset=utf-8"),
}
# A look-up that found a marker, shown or not.
KNOWN = frozenset(
    {registry_service_pb2.LOOKUP_OUTCOME_HIT, registry_service_pb2.LOOKUP_OUTCOME_WITHHELD}
)
ROLE_NAMES = {"kpc": "KPC'er", "zsm-officier": "OvJ"}


@dataclass
class Session:
    token: str
    user: User
    role: str
    csrf: str
    created: float
    seen: float
    # The inflow entries this session listed: the only suspects it can look up or act on.
    suspects: dict[str, Suspect] = field(default_factory=dict)


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def open(self, user: User, role: str) -> Session:
        now = self._clock()
        session = Session(
            secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), now, now
        )
        with self._lock:
            self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_token.get(token)
            if session is None:
                return None
            if now - session.seen > IDLE_S or now - session.created > SHIFT_S:
                del self._by_token[token]
                return None
            session.seen = now
            return session

    def close(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)


Route = Callable[[Session, dict[str, Any], dict[str, list[str]]], Any]


class BadInput(Exception):
    """The page sent something the screen does not take; the message says what."""


def _problem(error: grpc.RpcError) -> dict[str, Any]:
    """A refused call as the page shows it: the code, the reason, each field's problem. The
    services' messages never carry personal data; the page escapes them all the same."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    fields: list[dict[str, str]] = []
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [
                    {"field": v.field, "problem": v.description} for v in bad.field_violations
                ]
    message = ""
    if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        message = str(error.details()) if isinstance(error, grpc.Call) else ""
    else:
        message = "the service is not reachable now; try again"
    return {
        "error": code.name,
        "reason": error_reason(error) or "",
        "message": message,
        "fields": fields,
    }


def _page(title: str, body: str, *, csrf: str = "", script: bool = False) -> bytes:
    meta = f'<meta name="csrf-token" content="{html.escape(csrf)}">' if csrf else ""
    js = '<script src="/static/desk.js" defer></script>' if script else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>{meta}"
        f'<link rel="stylesheet" href="/static/desk.css">{js}</head>\n'
        f"<body>{body}</body></html>\n"
    ).encode()


def signin_page(login_csrf: str, message: str = "") -> bytes:
    error = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return _page(
        "Baken — ZSM desk: sign in",
        '<main class="signin"><h1>Baken — ZSM desk</h1>'
        f"{error}"
        '<form method="post" action="/signin">'
        f'<input type="hidden" name="csrf" value="{html.escape(login_csrf)}">'
        '<label for="name">Sign-in name</label>'
        '<input id="name" name="name" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button>'
        "</form></main>",
    )


def desk_page(session: Session, party: str) -> bytes:
    """The page's frame: who is signed in, the regions the script fills. No personal data."""
    user = session.user
    role = ROLE_NAMES.get(session.role, session.role)
    purpose = "intake-en-selectie" if session.role == "kpc" else "afdoeningsbeslissing"
    acts = session.role in ACTING_ROLES
    body = (
        '<a class="skip" href="#inflow">Skip to the inflow</a>'
        "<header><h1>Baken — ZSM desk</h1>"
        f'<p class="who">{html.escape(role)} <strong>{html.escape(user.user_id)}</strong> '
        f"({html.escape(party)}), looking up for <em>{html.escape(purpose)}</em></p>"
        '<form method="post" action="/signout" class="signout">'
        f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'
        '<button type="submit" accesskey="q">Sign out</button></form>'
        '<p class="keys">Keys: <kbd>Alt+Shift+I</kbd> inflow, <kbd>Alt+Shift+A</kbd> advice '
        "requests, <kbd>Alt+Shift+Q</kbd> sign out; <kbd>j</kbd>/<kbd>k</kbd> next/previous "
        "suspect; <kbd>Enter</kbd> submits a form.</p>"
        '<p id="status" role="status" aria-live="polite"></p></header>'
        '<main><section id="inflow" aria-labelledby="inflow-h" tabindex="-1">'
        '<h2 id="inflow-h" accesskey="i" tabindex="-1">Inflow, newest first</h2>'
        '<ol id="entries" class="entries"></ol></section>'
        + (
            '<aside id="advice" aria-labelledby="advice-h" tabindex="-1">'
            '<h2 id="advice-h" accesskey="a" tabindex="-1">Advice requests</h2>'
            '<label class="overdue"><input type="checkbox" id="overdue-only"> overdue only'
            '</label><ul id="requests" class="requests"></ul></aside>'
            if acts
            else '<aside id="advice"><p>The KPC\'er records the decisions and asks the houses '
            "for advice; this screen shows you what the covenants grant the OvJ.</p></aside>"
        )
        + "</main>"
    )
    return _page(
        "Baken — ZSM desk",
        f'<div id="desk" data-poll-ms="{POLL_MS}" data-acts="{int(acts)}">{body}</div>',
        csrf=session.csrf,
        script=True,
    )


class DeskServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway,
        users: dict[str, User],
        sessions: Sessions | None = None,
    ) -> None:
        super().__init__(address, Handler)
        self.gateway = gateway
        self.users = users
        self.sessions = sessions or Sessions()
        self.roles = {p.id: p.role for p in gateway.parties.values()}
        for user in users.values():
            if user.party not in self.roles:
                raise ValueError(f"user {user.name}: party {user.party} is not one of the desk's")

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: DeskServer
    server_version = "baken-desk"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    body: bytes | None = b""

    def log_message(self, format: str, *args: Any) -> None:
        """The request line only, never a query (names an inflow entry at most) or a body."""
        path = urlsplit(self.path).path
        print(f"desk: {self.command} {path} {args[1] if len(args) > 1 else ''}", flush=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        extra: dict[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=True).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _redirect(self, where: str, cookies: list[str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", extra={"Location": where}, cookies=cookies)

    def _cookie(self, name: str) -> str | None:
        jar = SimpleCookie()
        with contextlib.suppress(CookieError):
            jar.load(self.headers.get("Cookie", ""))
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def _session(self) -> Session | None:
        return self.server.sessions.get(self._cookie(COOKIE))

    def _read_body(self) -> None:
        """The whole body, read before any answer (so the connection stays in step), or the
        connection closed after the answer when it is too large."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length > MAX_BODY or length < 0:
            self.close_connection = True
            self.body = None
            return
        self.body = self.rfile.read(length)

    def _body(self) -> bytes:
        if self.body is None:
            raise BadInput("request too large")
        return self.body

    def _same_origin(self) -> bool:
        """A browser names the page's origin on every POST; it must be this server."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True  # not a browser's cross-site request: the CSRF token decides
        host = self.headers.get("Host", "")
        return origin in (f"http://{host}", f"https://{host}")

    # -- routes --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path in STATIC:
                name, content_type = STATIC[url.path]
                data = resources.files("desk").joinpath("static", name).read_bytes()
                self._send(HTTPStatus.OK, data, content_type)
            elif url.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            elif url.path == "/healthz":
                self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
            elif url.path == "/signin":
                self._signin_form()
            elif url.path == "/":
                session = self._session()
                if session is None:
                    self._redirect("/signin")
                else:
                    self._send(HTTPStatus.OK, desk_page(session, session.user.party))
            elif url.path.startswith("/api/"):
                self._api("GET", url.path, parse_qs(url.query))
            else:
                self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<p>Not found.</p>"))
        except BrokenPipeError:
            pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        self._read_body()
        try:
            if not self._same_origin():
                self._json(HTTPStatus.FORBIDDEN, {"error": "CROSS_ORIGIN"})
            elif url.path == "/signin":
                self._signin()
            elif url.path == "/signout":
                self._signout()
            elif url.path.startswith("/api/"):
                self._api("POST", url.path, {})
            else:
                self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<p>Not found.</p>"))
        except BadInput as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "BAD_INPUT", "message": str(error)})
        except BrokenPipeError:
            pass

    def _signin_form(self, message: str = "", status: int = HTTPStatus.OK) -> None:
        token = secrets.token_urlsafe(32)
        cookie = f"{LOGIN_COOKIE}={token}; Path=/signin; HttpOnly; SameSite=Strict"
        self._send(status, signin_page(token, message), cookies=[cookie])

    def _form(self) -> dict[str, str]:
        fields = parse_qs(self._body().decode("utf-8", errors="replace"), max_num_fields=10)
        return {k: v[0] for k, v in fields.items()}

    def _signin(self) -> None:
        form = self._form()
        expected = self._cookie(LOGIN_COOKIE) or ""
        if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
            self._signin_form("The sign-in form expired; try again.", HTTPStatus.FORBIDDEN)
            return
        user = authenticate(self.server.users, form.get("name", ""), form.get("password", ""))
        if user is None:
            self._signin_form("Unknown name or wrong password.", HTTPStatus.UNAUTHORIZED)
            return
        session = self.server.sessions.open(user, self.server.roles[user.party])
        self._redirect(
            "/",
            cookies=[
                f"{COOKIE}={session.token}; Path=/; HttpOnly; SameSite=Strict",
                f"{LOGIN_COOKIE}=; Path=/signin; Max-Age=0",
            ],
        )

    def _signout(self) -> None:
        session = self._session()
        form = self._form()
        if session is None or not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            self._json(HTTPStatus.FORBIDDEN, {"error": "CSRF"})
            return
        self.server.sessions.close(session.token)
        self._redirect("/signin", cookies=[f"{COOKIE}=; Path=/; Max-Age=0"])

    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        session = self._session()
        if session is None:
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "SIGNED_OUT"})
            return
        data: dict[str, Any] = {}
        if method == "POST":
            token = self.headers.get("X-CSRF-Token", "")
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if not hmac.compare_digest(token, session.csrf) or content_type != "application/json":
                self._json(HTTPStatus.FORBIDDEN, {"error": "CSRF"})
                return
            try:
                data = json.loads(self._body() or b"{}")
            except ValueError:
                raise BadInput("not JSON") from None
            if not isinstance(data, dict):
                raise BadInput("not a JSON object")
        routes: dict[
            tuple[str, str], Callable[[Session, dict[str, Any], dict[str, list[str]]], Any]
        ]
        routes = {
            ("GET", "/api/inflow"): self._inflow,
            ("GET", "/api/lookup"): self._lookup,
            ("GET", "/api/advice"): self._advice_list,
            ("POST", "/api/decision"): self._decide,
            ("POST", "/api/advice"): self._advice_request,
            ("POST", "/api/advice/cancel"): self._advice_cancel,
        }
        route = routes.get((method, path))
        acting = path.startswith(("/api/decision", "/api/advice"))
        if route is not None and acting and session.role not in ACTING_ROLES:
            self._json(HTTPStatus.FORBIDDEN, {"error": "NOT_FOR_YOUR_ROLE"})
            return
        if route is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "NOT_FOUND"})
            return
        try:
            self._json(HTTPStatus.OK, route(session, data, query))
        except BadInput as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "BAD_INPUT", "message": str(error)})
        except grpc.RpcError as error:
            self._json(HTTPStatus.BAD_GATEWAY, _problem(error))

    # -- the calls -----------------------------------------------------------------------------

    def _suspect(self, session: Session, name: object) -> Suspect:
        if not isinstance(name, str) or not _ENTRY.fullmatch(name):
            raise BadInput("entry: an inflow entry's name")
        suspect = session.suspects.get(name)
        if suspect is None:
            raise BadInput("entry: not in your inflow (reload it)")
        if not suspect.subject.pseudonyms:
            raise BadInput("entry: decided or older than 14 days; nothing to look up")
        return suspect

    def _inflow(self, s: Session, _d: dict[str, Any], _q: dict[str, list[str]]) -> Any:
        entries = self.server.gateway.inflow(s.user.party, s.user.user_id)
        s.suspects = {
            e.name: Suspect(
                e.name,
                e.case_reference,
                e.subject,
                e.subject_age,
                e.held_decision if e.HasField("held_decision") else None,
                e.arrest_time,
                e.HasField("checked_time"),
            )
            for e in entries
        }
        return {"entries": [view.inflow_entry(e) for e in entries]}

    def _lookup(self, s: Session, _d: dict[str, Any], q: dict[str, list[str]]) -> Any:
        suspect = self._suspect(s, (q.get("entry") or [""])[0])
        gateway = self.server.gateway
        response = gateway.lookup(s.user.party, s.user.user_id, suspect)
        if s.role == "kpc" and not suspect.checked:
            # The intake look-up is the inflow's check (coverage counts it); a failure to
            # record it does not keep the answer from the desk, and the next view tries again.
            known = response.outcome in KNOWN
            try:
                gateway.record_check(s.user.party, s.user.user_id, suspect, known=known)
                s.suspects[suspect.name] = dataclasses.replace(suspect, checked=True)
            except grpc.RpcError as error:
                print(f"desk: the check of {suspect.name} not recorded: {error.code().name}")
        return view.lookup(response)

    def _decide(self, s: Session, d: dict[str, Any], _q: dict[str, list[str]]) -> Any:
        suspect = self._suspect(s, d.get("entry"))
        held = suspect.held if d.get("held") else None
        if d.get("held") and held is None:
            raise BadInput("held: no decision is held for this entry")
        code: int
        stage: int
        if held is not None:
            code, stage, sepot = held.code, held.stage, held.sepot_code
            probation, key = held.probation_report_requested, held.request_key
        else:
            code = CODES.get(str(d.get("code")), 0)
            stage = STAGES.get(str(d.get("stage")), 0)
            if not code or not stage:
                raise BadInput("code and stage: choose one of each")
            sepot = str(d.get("sepot_code") or "")
            probation = bool(d.get("probation_report_requested"))
            key = uuid.uuid4().hex
        lines = []
        raw_lines = d.get("lines") or []
        if not isinstance(raw_lines, list) or len(raw_lines) > 64:
            raise BadInput("lines: a list")
        for line in raw_lines:
            if not isinstance(line, dict) or not _HOUSE.fullmatch(str(line.get("house"))):
                raise BadInput("lines: each names a house")
            followed = line.get("followed")
            if followed not in ("followed", "not-followed"):
                raise BadInput(f"{line['house']}: followed or not followed?")
            lines.append(
                fb.HouseAdvice(
                    house=str(line["house"]),
                    advice_followed=(
                        fb.ADVICE_FOLLOWED_FOLLOWED
                        if followed == "followed"
                        else fb.ADVICE_FOLLOWED_NOT_FOLLOWED
                    ),
                    deviation_reason=str(line.get("reason") or "")
                    if followed == "not-followed"
                    else "",
                )
            )
        response = self.server.gateway.decide(
            s.user.party,
            s.user.user_id,
            suspect,
            code=code,  # type: ignore[arg-type]
            stage=stage,  # type: ignore[arg-type]
            sepot_code=sepot,
            lines=lines,
            probation_report_requested=probation,
            request_key=key,
        )
        return view.decision(response)

    def _advice_request(self, s: Session, d: dict[str, Any], _q: dict[str, list[str]]) -> Any:
        suspect = self._suspect(s, d.get("entry"))
        house = str(d.get("house"))
        if not _HOUSE.fullmatch(house):
            raise BadInput("house: a marking house")
        try:
            hours = int(d.get("hours", 0))
        except (TypeError, ValueError):
            raise BadInput("hours: a whole number, 1 to 168") from None
        if not 1 <= hours <= 168:
            raise BadInput("hours: a whole number, 1 to 168")
        question = str(d.get("question") or "").strip()
        request = self.server.gateway.request_advice(
            s.user.party, s.user.user_id, suspect, house=house, hours=hours, question=question
        )
        return view.advice_request(request)

    def _advice_list(self, s: Session, _d: dict[str, Any], q: dict[str, list[str]]) -> Any:
        overdue = (q.get("overdue") or ["0"])[0] == "1"
        found = self.server.gateway.advice_requests(s.user.party, overdue_only=overdue)
        return {"advice_requests": [view.advice_request(r) for r in found]}

    def _advice_cancel(self, s: Session, d: dict[str, Any], _q: dict[str, list[str]]) -> Any:
        name = str(d.get("name"))
        if not _ADVICE_REQUEST.fullmatch(name):
            raise BadInput("name: an advice request's name")
        return view.advice_request(
            self.server.gateway.cancel_advice(s.user.party, s.user.user_id, name)
        )


def serve(server: DeskServer, ready: Callable[[str], None] | None = None) -> None:
    """Until SIGTERM or Ctrl-C (KeyboardInterrupt)."""
    if ready is not None:
        ready(f"http://127.0.0.1:{server.port}/")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.gateway.close()
