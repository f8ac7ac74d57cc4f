"""Several processes of one service behind one address (`baken serve registry --instances N`).

One process holds one core: the GIL lets one thread run Python at a time. Instances on one
machine share the port (SO_REUSEPORT: the kernel spreads the connections over them) and the
database, where everything that must be serialised already is: the access log's lock and head
(services/accesslog/store.py), the rate buckets (services/common/shared_rates.py) and the
sync's lock (services/registry/repository.py). Instances on several machines do the same behind
a load balancer, on PostgreSQL.

The launcher prepares once what each instance would otherwise race to make (the schema, the
at-rest and signing keys), starts the instances as children with the same settings, and stops
them together: at SIGTERM or SIGINT, and when one of them ends (then with its exit code, so
that the supervisor above restarts the whole).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

from baken.errors import UserError
from services.common.settings import ServiceSettings

log = structlog.get_logger("baken.instances")
Settings = TypeVar("Settings", bound=ServiceSettings)
STOP_TIMEOUT_S = 15.0


def instance_environment(settings: ServiceSettings, instance: int) -> dict[str, str]:
    """The settings as the instance's environment, sharing the address; the metrics endpoint
    of instance i on the given port + i (each instance counts its own calls)."""
    prefix = str(settings.model_config["env_prefix"])
    values = settings.model_dump(exclude_none=True)
    values["reuse_port"] = True
    if settings.metrics_address:
        host, port = settings.metrics_address.rsplit(":", 1)
        if int(port):
            values["metrics_address"] = f"{host}:{int(port) + instance}"
    return {f"{prefix}{name.upper()}": _text(value) for name, value in values.items()}


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def serve_instances(
    settings: Settings,
    instances: int,
    *,
    command: list[str],
    prepare: Callable[[Settings], None],
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Run `instances` children (`command`, e.g. ["serve", "registry"] of `baken`) until a
    signal or until one ends; the exit code."""
    if settings.address.rsplit(":", 1)[-1] == "0":
        raise UserError("--instances needs a fixed port to share: give --address host:port")
    prepare(settings)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", *command],
            env={**environ, **instance_environment(settings, i)},
        )
        for i in range(instances)
    ]
    log.info("instances started", instances=instances, pids=[c.pid for c in children])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    code = 0
    while not stop.wait(0.2):
        ended = [c for c in children if c.poll() is not None]
        if ended:
            code = ended[0].returncode or 1
            log.error("an instance ended; stopping the others", pid=ended[0].pid, code=code)
            break
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code
