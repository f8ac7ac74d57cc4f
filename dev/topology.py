"""The whole of Baken as separate local processes (`baken up`): the registry, the feedback
service, the pseudonymisation service, and the GCOS, Amazone and PGA adapters, each syncing a
directory of exports into the registry and receiving the feedback service's deliveries into a
directory of its source; and the ZSM desk's screen (`baken desk`) for ZSM Midden-Nederland's
KPC'er and OvJ.

`Topology` makes what is missing in its run directory (development PKI, house keys, the
pseudonymisation service's OPRF key file), migrates both databases once (`baken migrate all`),
starts the registry, the feedback service and the pseudonymisation service and waits until their
health service says SERVING, then starts the adapters. The edges' key file
(`pseudonym-keys.json`) is written at every start: the service's OPRF keys at this run's address,
no secret. It supervises the processes: a child that dies is reported (name, exit code, last
lines of its log) and started again after a backoff. `stop()` ends the adapters, then the
pseudonymisation service, the feedback service and the registry: SIGTERM, and SIGKILL for one
that has not ended within the timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType

from adapters.sources import SOURCES
from baken import pki, sealed
from baken.backoff import Backoff
from baken.houses import load_houses
from baken.keyring import KeyRing
from baken.pki import TlsFiles
from desk.users import users_toml
from services.accesslog.signing import public_path
from services.common import covenants
from services.operations import SERVING, health_status, with_search_path

# Whose certificate the topology checks health with.
OPERATOR = "operator"
# The desk's screen's users when none are given: ZSM Midden-Nederland's KPC'er and OvJ, each
# with a password made for the run (desk-sign-in.txt in the run directory).
DESK_USERS = (
    ("kpc", "zsm-midden-nederland-kpc", "kpc-mn-0117"),
    ("ovj", "zsm-midden-nederland-ovj", "ovj-utrecht-0042"),
)
CLOCK_FILE_ENV = "BAKEN_CLOCK_FILE"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# After the n-th death in a row: 0.5 s, 1 s, 2 s ... up to 30 s. A child that ran for
# STEADY_S before it died starts from the beginning again.
RESTART_BACKOFF = Backoff(0.5, 30.0)
STEADY_S = 30.0
TAIL_LINES = 12

# Where things are is the topology's to say; every other setting (covenants, tuning) comes
# from the environment `baken up` runs in.
_PLACES = frozenset(
    {
        *(
            f"BAKEN_{service}_{name}"
            for service in ("REGISTRY", "FEEDBACK", "PSEUDONYMISER")
            for name in (
                "ADDRESS",
                "METRICS_ADDRESS",
                "DATA_DIR",
                "DATABASE_URL",
                "PKI_DIR",
                "PARTY",
                "AT_REST_KEY_FILE",
                "AUDIT_SIGNING_KEY",
                "KEY_FILE",
            )
        ),
        "BAKEN_FEEDBACK_REGISTRY",
        "BAKEN_PKI_DIR",
        "BAKEN_PARTY",
        "BAKEN_PSEUDONYM_KEY_FILE",
        "BAKEN_REGISTRY_TARGET",
        "BAKEN_FEEDBACK_TARGET",
        "BAKEN_ADAPTER_DELIVERY_DIR",
        "BAKEN_ADAPTER_STATE_DIR",
        "BAKEN_HOUSE_KEYS_DIR",
        CLOCK_FILE_ENV,
    }
)


# A run whose clock the demo moves keeps to a compressed retention schedule, so that one
# moved day shows a lapse (docs/RETENTION.md); the environment's own values come first.
MOVED_CLOCK_RETENTION = {
    "BAKEN_RETENTION_MARKER_LAPSE_DAYS": "1",
    "BAKEN_RETENTION_INTERVAL_SECONDS": "2",
}


class TopologyError(Exception):
    """A process would not start or migrate; the message says which, and what its log says."""


class Interrupted(TopologyError):
    """interrupt() came while starting: everything started was stopped again."""


# How often `baken up`'s witnesses ask for a signed head: as often as a head is signed while
# entries are written (CheckpointPolicy.seconds).
WITNESS_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Endpoints:
    """Where the running system is, for clients (the demo, tests, an operator's shell)."""

    registry: str  # "127.0.0.1:PORT"
    feedback: str  # "127.0.0.1:PORT"
    pki_dir: Path  # ca.pem and {party}.pem/.key for every party of the register
    # The key file ZSM clients and adapters pseudonymise with: OPRF keys only, each naming the
    # pseudonymisation service (no secret at any edge).
    pseudonym_key_file: Path
    house_keys_dir: Path  # private X25519 keys of the houses (to open sealed aanmeldingen)
    # "gcos"/"amazone"/"pga" -> the directory the adapter syncs: every file in it is part of
    # the export (hidden files excepted: write under a hidden name, then rename into place).
    sources: Mapping[str, Path]
    # "gcos"/"amazone"/"pga" -> where the adapter writes the deliveries: GCOS {house}/,
    # Amazone {house}.mutaties.csv, PGA {house}.beslissingen.jsonl (adapters/receive.py).
    deliveries: Mapping[str, Path]
    clock_file: Path | None  # env BAKEN_CLOCK_FILE of the registry and the feedback service
    # "registry"/"feedback" -> "127.0.0.1:PORT" of its metrics endpoint (HTTPS, GET /metrics
    # under the operator's certificate).
    # Region -> the directory its ZSM desk's inflow adapter (adapters/zsm) watches: every
    # suspects monitor in it (hidden files excepted) is the desk's inflow and its decisions.
    inflow: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    metrics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # "registry"/"feedback" -> the public half of the key that signs its access log's
    # checkpoints, for `baken audit verify --public-key`; the private half lies beside it, in
    # keys/ of the run directory, never in the service's data dir.
    audit_public_keys: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    # The ZSM desk's screen, "http://127.0.0.1:PORT/", and its users file; with the users the
    # topology made, desk_sign_in holds their names and passwords ("name password" a line).
    desk: str = ""
    desk_users: Path | None = None
    desk_sign_in: Path | None = None
    pseudonymiser: str = ""  # "127.0.0.1:PORT" of the pseudonymisation service


class Supervised:
    """One child process: how it is started, where its output goes, how often it came back."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_file: Path
    ) -> None:
        self.name = name
        self.log_file = log_file
        self.restarts = 0
        self._argv = list(argv)
        self._env = dict(env)
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._deaths = 0  # in a row, without STEADY_S in between
        self._due: float | None = None  # when to start again, after it died

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """In a session of its own: a Ctrl-C at the terminal reaches `baken up` only, which
        stops the children in order."""
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started = time.monotonic()

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text("utf-8", errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:]) or "    (empty)"

    def check(self, now: float, say: Callable[[str], None]) -> None:
        """Start it again when due; when it died, say so and when it comes back."""
        if self._due is not None:
            if now >= self._due:
                self._due = None
                self.restarts += 1
                try:
                    self.start()
                except OSError as error:
                    self._process = None
                    delay = self._died(now)
                    say(f"{self.name}: cannot start ({error.strerror}); again in {delay:.1f} s")
                    return
                say(f"{self.name}: restarted (pid {self.pid}, restart {self.restarts})")
            return
        code = self.exit_code()
        if code is not None:
            ran = now - self._started
            delay = self._died(now)
            say(
                f"{self.name} (pid {self.pid}) exited unexpectedly with {describe_exit(code)} "
                f"after {ran:.0f} s; restarting in {delay:.1f} s. Last lines of "
                f"{self.log_file}:\n{self.tail()}"
            )

    def _died(self, now: float) -> float:
        """Plan the restart after a backoff; the delay."""
        self._deaths = 1 if now - self._started >= STEADY_S else self._deaths + 1
        delay = RESTART_BACKOFF.delay(self._deaths)
        self._due = now + delay
        return delay

    def terminate(self) -> None:
        self._due = None
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """Ended within `timeout` seconds (or not running); SIGKILLed otherwise."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout=max(timeout, 0.0))
            return True
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            return False


def _private(path: Path, text: str) -> None:
    """A file only its owner reads (passwords, their hashes), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def zsm_desks() -> list[covenants.Party]:
    """The KPC party of each region's ZSM desk in the register the services run with."""
    directory = Path(os.environ.get("BAKEN_REGISTRY_COVENANTS_DIR", covenants.DEFAULT_DIR))
    houses = load_houses()
    parties = covenants.load_parties(
        directory / covenants.PARTIES_FILE, {h.region for h in houses.values()}
    )
    return list(covenants.kpc_desks(parties, houses).values())


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` different ports that are free on 127.0.0.1 now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


class Topology:
    """The registry, the feedback service and the three adapters as child processes, with
    everything they keep under `run_dir`. Use as a context manager: entering starts it all,
    leaving stops it all. `endpoints` says where things are; `processes` are the children by
    name (registry, feedback, adapter-{system}-watch, adapter-{system}-receive, one
    adapter-zsm-{region}-watch per ZSM desk, desk, witness-{service})."""

    def __init__(
        self,
        run_dir: Path = Path("var/up"),
        *,
        database_url: str | None = None,
        schema_prefix: str = "baken",
        registry_port: int = 0,
        feedback_port: int = 0,
        desk_port: int = 0,
        desk_users: Path | None = None,
        watch_interval: float = 1.0,
        clock_file: Path | None = None,
        stop_timeout: float = STOP_TIMEOUT_S,
        say: Callable[[str], None] = print,
    ) -> None:
        """`database_url`: a PostgreSQL server (postgresql://...) instead of SQLite files in
        `run_dir`; the registry and the feedback service each get a schema of their own in it,
        {schema_prefix}_registry and {schema_prefix}_feedback (made by `baken migrate`).
        Port 0: a free one. `say` gets what the supervisor has to say (a child died)."""
        self.run_dir = run_dir.absolute()
        self.log_dir = self.run_dir / "logs"
        self._say = say
        self._stop_timeout = stop_timeout
        self._interval = watch_interval
        self._clock_file = clock_file.absolute() if clock_file else None
        try:
            urls = {
                service: with_search_path(database_url, f"{schema_prefix}_{service}")
                if database_url
                else None
                for service in ("registry", "feedback")
            }
        except ValueError as error:
            raise TopologyError(str(error)) from None
        self.database_urls: Mapping[str, str | None] = MappingProxyType(urls)
        self._ports = (registry_port, feedback_port)
        self._desk_port = desk_port
        self._desk_users = desk_users.absolute() if desk_users else None
        self._places: dict[str, str] = {}  # the environment that says where things are
        self._children: dict[str, Supervised] = {}
        self._endpoints: Endpoints | None = None
        self._interrupted = False
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise RuntimeError("the topology is not running: start() it first")
        return self._endpoints

    @property
    def processes(self) -> Mapping[str, Supervised]:
        return MappingProxyType(self._children)

    def start(self) -> Endpoints:
        """Everything up and healthy; raises TopologyError (after stopping what had started)
        when a step fails, Interrupted when interrupt() came first."""
        if self._endpoints is not None:
            return self._endpoints
        self._stopping.clear()
        try:
            endpoints = self._prepare()
            self._migrate(endpoints)
            registry = self._spawn("registry", ["serve", "registry"], service=True)
            self._await_healthy(registry, endpoints.registry)
            feedback = self._spawn("feedback", ["serve", "feedback"], service=True)
            self._await_healthy(feedback, endpoints.feedback)
            pseudonymiser = self._spawn("pseudonymiser", ["serve", "pseudonymiser"], service=True)
            self._await_healthy(pseudonymiser, endpoints.pseudonymiser)
            for system in SOURCES:
                exports, deliveries = endpoints.sources[system], endpoints.deliveries[system]
                interval = f"{self._interval:g}"
                self._spawn(
                    f"adapter-{system}-watch",
                    ["adapter", system, "watch", "--source", str(exports), "--interval", interval],
                )
                self._spawn(
                    f"adapter-{system}-receive",
                    ["adapter", system, "receive", "--target", str(deliveries)],
                )
            for kpc in zsm_desks():
                assert kpc.region is not None
                self._spawn(
                    f"adapter-zsm-{kpc.region}-watch",
                    [
                        "adapter", "zsm", "watch",
                        "--source", str(endpoints.inflow[kpc.region]),
                        "--party", kpc.id,
                        "--interval", f"{self._interval:g}",
                    ],
                    service=True,  # arrest times are checked against the services' clock
                )  # fmt: skip
            desk_port = endpoints.desk.rsplit(":", 1)[1].rstrip("/")
            desk = self._spawn(
                "desk",
                ["desk", "--users", str(endpoints.desk_users), "--port", desk_port],
                service=True,  # its checks are dated by the services' clock
            )
            self._await_http(desk, endpoints.desk + "healthz")
            # The privacy officer's witnesses: each keeps its service's signed heads in a
            # store of its own, outside the service's database.
            for service, target in (
                ("registry", endpoints.registry),
                ("feedback", endpoints.feedback),
            ):
                self._spawn(
                    f"witness-{service}",
                    [
                        "audit", "witness", "--service", service, "--target", target,
                        "--public-key", str(endpoints.audit_public_keys[service]),
                        "--store", str(self.run_dir / "witnesses" / service),
                        "--interval", f"{WITNESS_INTERVAL_S:g}",
                    ],
                )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self._endpoints = endpoints
        self._supervisor = threading.Thread(
            target=self._supervise, name="baken-up-supervisor", daemon=True
        )
        self._supervisor.start()
        return endpoints

    def interrupt(self) -> None:
        """Ask start() to give up and wait() to return; safe in a signal handler."""
        self._interrupted = True

    def wait(self, timeout: float | None = None) -> bool:
        """Until interrupt() (True) or `timeout` seconds (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._interrupted:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        """The services' clients (adapters, witnesses), then the pseudonymisation service, the
        feedback service and the registry: each SIGTERM, then SIGKILL after the stop timeout.
        Idempotent."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        services = ("pseudonymiser", "feedback", "registry")
        clients = [c for name, c in self._children.items() if name not in services]
        groups: list[list[Supervised]] = [clients]
        groups += [[self._children[name]] for name in services if name in self._children]
        for members in groups:
            for child in members:
                child.terminate()
            deadline = time.monotonic() + self._stop_timeout
            for child in members:
                if not child.wait(deadline - time.monotonic()):
                    self._say(f"{child.name} did not stop within {self._stop_timeout:g} s: killed")
        self._children.clear()
        self._endpoints = None

    # -- starting ------------------------------------------------------------------------------

    def _prepare(self) -> Endpoints:
        """The run directory: PKI, house keys and the pseudonymisation service's key file when
        missing, the edges' key file afresh; the ports."""
        run = self.run_dir
        pki_dir = run / "pki"
        houses_dir = pki_dir / "houses"
        key_file = run / "pseudonym-keys.json"
        for directory in (run, self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        if not (pki_dir / "ca.pem").exists():
            directory = Path(os.environ.get("BAKEN_REGISTRY_COVENANTS_DIR", covenants.DEFAULT_DIR))
            pki.init(pki_dir, covenants.identities(directory), now=now)
        if not houses_dir.is_dir() or not any(houses_dir.iterdir()):
            sealed.init_house_keys(houses_dir, load_houses(), now=now)
        oprf_keys = self._oprf_key_file()
        if not oprf_keys.exists():
            KeyRing.generate(now.strftime("k%Y-%m")).save(oprf_keys)  # 0600
        sources = {s: run / "sources" / s for s in SOURCES}
        deliveries = {s: run / "deliveries" / s for s in SOURCES}
        inflow = {d.region: run / "inflow" / d.region for d in zsm_desks() if d.region}
        for directory in (*sources.values(), *deliveries.values(), *inflow.values()):
            directory.mkdir(parents=True, exist_ok=True)
        # The metrics endpoints always on free ports; the services' on theirs, or free ones.
        free = iter(free_ports(3 + self._ports.count(0) + (self._desk_port == 0)))
        registry_port, feedback_port = (port or next(free) for port in self._ports)
        pseudonymiser = f"127.0.0.1:{next(free)}"
        # The edges' keys: every key of the service, at this run's address; an HMAC key of an
        # earlier run is dropped (the adapters resync under the OPRF key on their next run).
        KeyRing({}, dict.fromkeys(KeyRing.load(oprf_keys).ids, pseudonymiser)).save(key_file)
        metrics = {service: f"127.0.0.1:{next(free)}" for service in ("registry", "feedback")}
        desk_port = self._desk_port or next(free)
        desk_users, desk_sign_in = self._desk_users, None
        if desk_users is None:
            desk_users, desk_sign_in = run / "desk-users.toml", run / "desk-sign-in.txt"
            if not desk_users.exists():
                passwords = [(*u, secrets.token_urlsafe(9)) for u in DESK_USERS]
                _private(desk_users, users_toml(passwords))
                _private(
                    desk_sign_in,
                    "".join(f"{name} {password}\n" for name, _, _, password in passwords),
                )
        endpoints = Endpoints(
            registry=f"127.0.0.1:{registry_port}",
            feedback=f"127.0.0.1:{feedback_port}",
            pki_dir=pki_dir,
            pseudonym_key_file=key_file,
            house_keys_dir=houses_dir,
            sources=MappingProxyType(sources),
            inflow=MappingProxyType(inflow),
            deliveries=MappingProxyType(deliveries),
            clock_file=self._clock_file,
            metrics=MappingProxyType(metrics),
            audit_public_keys=MappingProxyType(
                {s: public_path(self._signing_key(s)) for s in ("registry", "feedback")}
            ),
            desk=f"http://127.0.0.1:{desk_port}/",
            desk_users=desk_users,
            desk_sign_in=desk_sign_in,
            pseudonymiser=pseudonymiser,
        )
        self._places = self._environment(endpoints)
        return endpoints

    def _signing_key(self, service: str) -> Path:
        return self.run_dir / "keys" / f"{service}-audit-signing.key"

    def _oprf_key_file(self) -> Path:
        """The pseudonymisation service's key file: keys/ of the run, never an edge's."""
        return self.run_dir / "keys" / "pseudonymiser-keys.json"

    def _environment(self, e: Endpoints) -> dict[str, str]:
        run = self.run_dir
        places = {
            "BAKEN_REGISTRY_ADDRESS": e.registry,
            "BAKEN_REGISTRY_METRICS_ADDRESS": e.metrics["registry"],
            "BAKEN_REGISTRY_DATA_DIR": str(run / "registry"),
            "BAKEN_REGISTRY_PKI_DIR": str(e.pki_dir),
            "BAKEN_REGISTRY_AUDIT_SIGNING_KEY": str(self._signing_key("registry")),
            "BAKEN_FEEDBACK_ADDRESS": e.feedback,
            "BAKEN_FEEDBACK_METRICS_ADDRESS": e.metrics["feedback"],
            "BAKEN_FEEDBACK_DATA_DIR": str(run / "feedback"),
            "BAKEN_FEEDBACK_PKI_DIR": str(e.pki_dir),
            "BAKEN_FEEDBACK_AUDIT_SIGNING_KEY": str(self._signing_key("feedback")),
            "BAKEN_FEEDBACK_REGISTRY": e.registry,
            "BAKEN_PSEUDONYMISER_ADDRESS": e.pseudonymiser,
            "BAKEN_PSEUDONYMISER_DATA_DIR": str(run / "pseudonymiser"),
            "BAKEN_PSEUDONYMISER_PKI_DIR": str(e.pki_dir),
            "BAKEN_PSEUDONYMISER_KEY_FILE": str(self._oprf_key_file()),
            "BAKEN_PSEUDONYMISER_AUDIT_SIGNING_KEY": str(self._signing_key("pseudonymiser")),
            "BAKEN_PKI_DIR": str(e.pki_dir),
            "BAKEN_PSEUDONYM_KEY_FILE": str(e.pseudonym_key_file),
            "BAKEN_REGISTRY_TARGET": e.registry,
            "BAKEN_FEEDBACK_TARGET": e.feedback,
            "BAKEN_ADAPTER_STATE_DIR": str(run / "adapters"),
            "BAKEN_HOUSE_KEYS_DIR": str(e.house_keys_dir),
        }
        for service, url in self.database_urls.items():
            if url:
                places[f"BAKEN_{service.upper()}_DATABASE_URL"] = url
        return places

    def _env(self, *, service: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PLACES}
        env.update(self._places, PYTHONUNBUFFERED="1")
        if service and self._clock_file is not None:
            env[CLOCK_FILE_ENV] = str(self._clock_file)
            env = {**MOVED_CLOCK_RETENTION, **env}
        return env

    def _spawn(self, name: str, args: list[str], *, service: bool = False) -> Supervised:
        child = Supervised(
            name,
            [sys.executable, "-m", "cli.main", *args],
            self._env(service=service),
            self.log_dir / f"{name}.log",
        )
        self._children[name] = child
        child.start()
        return child

    def _migrate(self, endpoints: Endpoints) -> None:
        """`baken migrate all`, once, with the services' settings."""
        migrate = Supervised(
            "migrate",
            [sys.executable, "-m", "cli.main", "migrate", "all"],
            self._env(service=True),
            self.log_dir / "migrate.log",
        )
        migrate.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while (code := migrate.exit_code()) is None:
            if self._interrupted or time.monotonic() > deadline:
                migrate.terminate()
                migrate.wait(STOP_TIMEOUT_S)
                if self._interrupted:
                    raise Interrupted("interrupted while migrating")
                raise TopologyError(f"baken migrate all: not done within {START_TIMEOUT_S:g} s")
            time.sleep(0.05)
        if code != 0:
            raise TopologyError(
                f"baken migrate all failed ({describe_exit(code)}). Last lines of "
                f"{migrate.log_file}:\n{migrate.tail()}"
            )

    def _await_healthy(self, child: Supervised, target: str) -> None:
        """Until the service at `target` reports SERVING to its health check."""
        tls = TlsFiles.of(self.run_dir / "pki", OPERATOR)
        status = "not asked"

        def serving() -> bool:
            nonlocal status
            status = health_status(target, tls, timeout=1.0)
            return status == SERVING

        self._await(child, serving, lambda: f"at {target}: not {SERVING} ({status})")

    def _await_http(self, child: Supervised, url: str) -> None:
        """Until GET `url` answers 200 (the desk's screen listens)."""

        def listening() -> bool:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=1.0) as answer,  # noqa: S310 (our own)
            ):
                return bool(answer.status == 200)
            return False

        self._await(child, listening, lambda: f"at {url}: not listening")

    def _await(self, child: Supervised, ready: Callable[[], bool], late: Callable[[], str]) -> None:
        """Until `ready()`; TopologyError with `late()` and the child's last lines when it
        exits first or START_TIMEOUT_S pass, Interrupted at Ctrl-C."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._interrupted:
                raise Interrupted(f"interrupted while {child.name} was starting")
            code = child.exit_code()
            if code is not None:
                raise TopologyError(
                    f"{child.name} exited with {describe_exit(code)} while starting. Last lines "
                    f"of {child.log_file}:\n{child.tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"{child.name} {late()} within {START_TIMEOUT_S:g} s. Last lines of "
                    f"{child.log_file}:\n{child.tail()}"
                )
            time.sleep(0.1)

    # -- supervising ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for child in list(self._children.values()):
                if self._stopping.is_set():
                    return
                with contextlib.suppress(OSError):  # `say` to a closed terminal: restart anyway
                    child.check(now, self._say)
