"""docker-compose.yml: valid for docker-compose (1.29, from Debian: it validates without a Docker
engine), and built so that it cannot drift from the code: every service healthy or one-shot,
migrated before anything serves, restarted by policy, certificates on a volume, every BAKEN_*
variable one the code reads and every `baken` command one the CLI knows."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import parser
from services.common.settings import FeedbackSettings, PseudonymiserSettings, RegistrySettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ONE_SHOT = {"certs", "migrate"}
ADAPTERS = {"adapter-gcos", "adapter-amazone", "adapter-pga"}
# A ZSM desk's inflow adapter calls with the desk's KPC certificate.
INFLOW = {"inflow-midden-nederland": "zsm-midden-nederland-kpc"}
SERVICES = ("registry", "feedback", "pseudonymiser")
BAKEN_SERVICES = {*SERVICES, *ADAPTERS, *INFLOW}
CODE_DIRS = ("baken", "services", "adapters", "cli", "dev", "desk", "buf")
_NAME = re.compile(r"\bBAKEN_[A-Z0-9_]+\b")


# The operator's one required setting; the tests give it, as the operator must.
PASSWORD = "from-the-operator"


def _docker_compose(*args: str, password: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: bash scripts/system-packages.sh installs it")
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        # Nothing from outside: no POSTGRES_PASSWORD, PUBLISH_ADDRESS or COMPOSE_*.
        env={"PATH": "/usr/bin:/bin", **({"POSTGRES_PASSWORD": PASSWORD} if password else {})},
    )


@cache
def _config() -> dict[str, Any]:
    """The file as docker-compose resolves it: anchors merged, variables substituted."""
    done = _docker_compose("config")
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _config()["services"]
    return services


def known_names() -> set[str]:
    """Every BAKEN_* environment variable the code reads: the settings' fields under their
    prefixes, and each name the code spells out."""
    names = {
        f"{settings.model_config['env_prefix']}{field.upper()}"
        for settings in (RegistrySettings, FeedbackSettings, PseudonymiserSettings)
        for field in settings.model_fields
    }
    for directory in CODE_DIRS:
        for source in (ROOT / directory).rglob("*.py"):
            names |= set(re.findall(r"[\"'](BAKEN_[A-Z0-9_]+)[\"']", source.read_text("utf-8")))
    return {name for name in names if not name.endswith("_")}  # not a prefix


def test_docker_compose_accepts_the_file() -> None:
    done = _docker_compose("config", "-q")
    assert done.returncode == 0, done.stderr
    assert set(_services()) == {"postgres", *ONE_SHOT, *BAKEN_SERVICES}


def test_every_service_is_healthchecked_or_one_shot_and_restarted_by_policy() -> None:
    for name, service in _services().items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", name
            assert "healthcheck" not in service, name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_nothing_serves_before_the_databases_are_migrated() -> None:
    services = _services()

    def condition(service: str, on: str) -> str | None:
        dependency = services[service].get("depends_on", {}).get(on)
        return None if dependency is None else str(dependency["condition"])

    assert condition("migrate", "postgres") == "service_healthy"
    assert condition("migrate", "certs") == "service_completed_successfully"
    assert services["migrate"]["command"] == ["migrate", "all"]
    for name in BAKEN_SERVICES:
        assert condition(name, "migrate") == "service_completed_successfully", name
    assert condition("feedback", "registry") == "service_healthy"
    for name in (*ADAPTERS, *INFLOW):
        for service in SERVICES:
            assert condition(name, service) == "service_healthy", name
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert _mounts("postgres") == {"/var/lib/postgresql/data": "pgdata"}


def _mounts(service: str) -> dict[str, str]:
    """Mount point -> named volume, of the named volumes a service mounts."""
    found = {}
    for volume in _services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source in _config().get("volumes", {}):
            found[target] = source
    return found


def test_certificates_and_keys_are_secrets_and_state_lives_on_volumes() -> None:
    assert [v.split(":")[1] for v in _services()["certs"]["volumes"]] == ["/certs", "/keys"]
    for name in BAKEN_SERVICES:
        party = INFLOW.get(name, name)
        assert _secrets(name) >= {"ca.pem", f"{party}.pem", f"{party}.key"}, name
    # The registry's at-rest key ring is made by migrate and used by the registry: one volume.
    assert _mounts("migrate")["/var/lib/baken/registry"] == "registry-data"
    assert _mounts("registry")["/var/lib/baken/registry"] == "registry-data"
    assert _mounts("feedback")["/var/lib/baken/feedback"] == "feedback-data"
    assert _mounts("pseudonymiser")["/var/lib/baken/pseudonymiser"] == "pseudonymiser-data"
    # The OPRF key on a volume only the pseudonymisation service mounts.
    oprf_key = _services()["pseudonymiser"]["environment"]["BAKEN_PSEUDONYMISER_KEY_FILE"]
    assert oprf_key.startswith("/var/lib/baken/oprf-key/")
    assert [s for s in _services() if "pseudonymiser-oprf-key" in _mounts(s).values()] == [
        "pseudonymiser"
    ]
    # Each access log's signing key on a volume of its own, never beside the data.
    for name in SERVICES:
        key = _services()[name]["environment"][f"BAKEN_{name.upper()}_AUDIT_SIGNING_KEY"]
        assert key.startswith("/var/lib/baken/audit-key/"), name
        assert _mounts(name)["/var/lib/baken/audit-key"] == f"{name}-audit-key"
        assert [s for s in _services() if f"{name}-audit-key" in _mounts(s).values()] == [name]
    for name in INFLOW:
        assert _mounts(name)["/inflow"] == f"zsm-{name.removeprefix('inflow-')}-inflow"
        assert "pseudonym-keys.json" in _secrets(name) and "houses" not in _secrets(name)
    for name in ADAPTERS:
        system = name.removeprefix("adapter-")
        assert _mounts(name)["/exports"] == f"{system}-exports"
        assert _mounts(name)["/deliveries"] == f"{system}-deliveries"
        assert {"houses", "pseudonym-keys.json"} <= _secrets(name)
        # Its own source's houses' keys, never another source's.
        houses = [s["source"] for s in _services()[name]["secrets"] if s.get("target") == "houses"]
        assert houses == [f"house-keys-{system}"], name
        host_dir = _config()["secrets"][houses[0]]["file"]
        assert host_dir.endswith(f"/var/docker/certs/houses-{system}")


def _secrets(service: str) -> set[str]:
    """The file names a service finds under /run/secrets."""
    return {s.get("target", s["source"]) for s in _services()[service].get("secrets", [])}


def _files(service: str) -> set[str]:
    """The host files behind a service's secrets and the host paths it mounts."""
    files = {
        _config()["secrets"][s["source"]]["file"] for s in _services()[service].get("secrets", [])
    }
    for volume in _services()[service].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("/"):
            files.add(source)
    return files


def test_no_service_sees_the_ca_key_or_another_partys_key() -> None:
    secrets = _config()["secrets"]
    keys = {Path(s["file"]).name for s in secrets.values() if s["file"].endswith(".key")}
    parties = {INFLOW.get(name, name) for name in BAKEN_SERVICES}
    assert "ca.key" not in keys and {f"{party}.key" for party in parties} == keys
    for name, service in _services().items():
        if name == "certs":
            continue  # it makes them
        seen = {Path(f).name for f in _files(name)}
        assert "ca.key" not in seen and "certs" not in seen, name
        assert {k for k in seen if k.endswith(".key")} <= {f"{INFLOW.get(name, name)}.key"}, name
        assert not any(
            v.split(":")[1].startswith(("/certs", "/keys")) for v in service.get("volumes", [])
        ), name
    # The edges' key file is for the edges only, and holds no secret: an OPRF key naming the
    # pseudonymisation service and the key id it makes on its first start.
    for name in (*SERVICES, "migrate"):
        assert "pseudonym-keys.json" not in {Path(f).name for f in _files(name)}, name
    certs = "\n".join(_services()["certs"]["command"])
    environment = _services()["pseudonymiser"]["environment"]
    assert "--kind oprf" in certs and "--host pseudonymiser" in certs
    assert f"--key-id {environment['BAKEN_PSEUDONYMISER_FIRST_KEY_ID']}" in certs
    assert "--service pseudonymiser:50053" in certs


def test_no_port_is_published_on_every_interface_by_default() -> None:
    published = [
        (name, port) for name, service in _services().items() for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} == set(SERVICES)
    for name, port in published:
        host = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
        assert host == "127.0.0.1", f"{name}: {port}"


def test_there_is_no_default_database_password() -> None:
    done = _docker_compose("config", "-q", password=False)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD" in done.stderr
    text = COMPOSE_FILE.read_text("utf-8")
    assert ":-baken}" not in text and "POSTGRES_PASSWORD:-" not in text
    for service in _services().values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or key.endswith("_DATABASE_URL"):
                assert PASSWORD in str(value), key


def test_every_baken_variable_is_one_the_code_reads() -> None:
    known = known_names()
    used = {
        key
        for service in _services().values()
        for key in service.get("environment", {})
        if key.startswith("BAKEN_")
    }
    texts = [COMPOSE_FILE, *sorted((ROOT / "docker").iterdir())]
    mentioned = {name for path in texts for name in _NAME.findall(path.read_text("utf-8"))}
    assert used, "no BAKEN_* variables at all"
    assert not (used | mentioned) - known, f"not read by the code: {(used | mentioned) - known}"
    for name, service in _services().items():
        for key, value in service.get("environment", {}).items():
            if key.endswith("_DATABASE_URL"):
                assert value.startswith("postgresql://"), name
                assert "search_path%3Dbaken_" in value, f"{name}: {key} needs its own schema"


def _baken_commands(name: str, service: dict[str, Any]) -> list[list[str]]:
    """The `baken ...` command lines of a service: its command (when the entrypoint is baken)
    and those of its healthcheck."""
    found = []
    entrypoint = service.get("entrypoint")
    if entrypoint in (None, ["baken"]) and name != "postgres":
        found.append(["baken", *service.get("command", [])])
    test = service.get("healthcheck", {}).get("test", [])
    if test[:1] == ["CMD"]:
        found.append(test[1:])
    elif test[:1] == ["CMD-SHELL"]:
        found += [shlex.split(part) for part in test[1].split("&&")]
    script = " ".join(service.get("command", [])) if entrypoint == ["/bin/sh", "-c"] else ""
    for line in script.replace("$$", "$").splitlines():
        if "baken " in line:
            found.append(shlex.split(line[line.index("baken ") :]))
    return [argv for argv in found if argv[:1] == ["baken"]]


def test_every_baken_command_is_one_the_cli_knows() -> None:
    commands = [
        argv for name, service in _services().items() for argv in _baken_commands(name, service)
    ]
    assert {argv[1] for argv in commands} >= {"serve", "migrate", "health", "pki", "keys"}
    for argv in commands:
        try:
            parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"`{shlex.join(argv)}`: the baken CLI refuses it")
    # The adapters run docker/adapter.sh with the source system and the interval.
    script = (ROOT / "docker" / "adapter.sh").read_text("utf-8")
    assert 'baken adapter "$system" watch --source /exports' in script
    assert 'baken adapter "$system" receive' in script
    for name in ADAPTERS:
        service = _services()[name]
        assert service["entrypoint"] == ["baken-adapter"]
        assert service["command"][0] == name.removeprefix("adapter-")
        parser().parse_args(["adapter", service["command"][0], "watch", "--source", "/exports"])


def test_the_image_installs_the_package_on_python_3_11() -> None:
    builds = {
        service["build"]["dockerfile"] for service in _services().values() if "build" in service
    }
    assert builds == {"docker/Dockerfile"}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text("utf-8")
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert "COPY docker/adapter.sh /usr/local/bin/baken-adapter" in dockerfile
