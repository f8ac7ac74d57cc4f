"""The `baken` command: clear one-line errors, never a traceback; JSON for machines."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from builders import Marking, Person
from harness import ADAPTERS, secure_channel
from pseudonymiser_harness import RunningPseudonymiser

from baken import logs
from baken.clock import AMSTERDAM, FixedClock
from baken.keyring import KeyRing
from baken.pseudonymiser_client import ServiceOprf
from baken.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from cli.main import main, parser
from dev.topology import free_port
from services.common.db import sqlite_url
from services.common.settings import RegistrySettings
from services.registry.server import RegistryServer, create_server

BSN = "111222333"
ADVICE = "dagvaarden met het doel een voorwaardelijke straf met meldplicht"
REASON = "Decision due within 6 hours; the marking house cannot be reached at night."


@pytest.fixture
def key_file(tmp_path: Path, pseudonymiser: RunningPseudonymiser) -> Path:
    """An edge's key file: no secret, the run's pseudonymisation service's key k1."""
    path = tmp_path / "keys.json"
    init = ["keys", "init", "--key-file", str(path), "--key-id", "k1"]
    assert main([*init, "--service", pseudonymiser.address]) == 0
    return path


@pytest.fixture
def registry(tmp_path: Path, pki_dir: Path) -> Iterator[str]:
    logs.configure(json=True)  # to stderr, so stdout holds only the command's answer
    running = create_server(RegistrySettings(address="127.0.0.1:0", data_dir=tmp_path / "registry"))
    running.start()
    yield f"127.0.0.1:{running.port}"
    running.server.stop(grace=None).wait()


def _sync(
    registry: str, pki_dir: Path, key_file: Path, house: str, today: dt.date | None = None
) -> None:
    """The person with BSN marked at `house` (with ADVICE, a month before `today`), synced
    under the certificate of the house's adapter."""
    a_month_ago = (today or dt.date.today()) - dt.timedelta(days=30)
    marking = Marking(
        Person(BSN), "rec-1", house=house, mark_date=a_month_ago, advice_date=a_month_ago
    )
    (service,) = KeyRing.load(key_file).oprf.values()
    with secure_channel(pki_dir, int(service.rsplit(":", 1)[1]), "adapter-pga") as channel:
        oprf = ServiceOprf(lambda _address: channel, on_behalf_of="sync")
        change = marking.upsert(KeyRing.load(key_file).served_by(oprf))
    port = int(registry.rsplit(":", 1)[1])
    with secure_channel(pki_dir, port, ADAPTERS[change.upsert.source_system]) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        request = registry_service_pb2.SyncMarkersRequest(changes=[change])
        assert stub.SyncMarkers(iter([request]), timeout=10).created == 1


@pytest.fixture
def registry_on(tmp_path: Path, pki_dir: Path) -> Iterator[Callable[[dt.datetime], str]]:
    """Starts a registry whose clock stands at the time given."""
    logs.configure(json=True)
    started: list[RegistryServer] = []

    def start(now: dt.datetime) -> str:
        settings = RegistrySettings(address="127.0.0.1:0", data_dir=tmp_path / "registry")
        running = create_server(settings, FixedClock(now))
        running.start()
        started.append(running)
        return f"127.0.0.1:{running.port}"

    yield start
    for running in started:
        running.server.stop(grace=None).wait()


def _lookup(registry: str, key_file: Path, pki_dir: Path, *args: str) -> int:
    """`baken lookup` of BSN at `registry`, with `args` added."""
    return main(
        ["lookup", "--registry", registry, "--key-file", str(key_file), "--bsn", BSN,
         "--user", "zsm-0042", "--pki-dir", str(pki_dir), *_kpc(args)]
    )  # fmt: skip


def _kpc(args: tuple[str, ...]) -> list[str]:
    """`args`, as the Midden-Nederland KPC'er unless they name a party."""
    return [*args] if "--party" in args else [*args, "--party", "zsm-midden-nederland-kpc"]


def test_lookup_with_a_bad_bsn_names_the_field_and_sends_nothing(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["lookup", "--registry", "127.0.0.1:1", "--key-file", str(key_file), "--bsn", "111222334"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "bsn: the BSN fails the 11-proef" in err
    assert "111222334" not in err
    assert "Traceback" not in err


def test_lookup_says_plainly_when_the_registry_is_down(
    key_file: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main(
        ["lookup", "--registry", f"127.0.0.1:{free_port()}", "--key-file", str(key_file),
         "--bsn", "111222333", "--adult", "--user", "kpc-0042", "--timeout", "2",
         "--pki-dir", str(pki_dir), "--party", "zsm-midden-nederland-kpc"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "not reachable" in err or "did not answer within 2 s" in err
    assert time.monotonic() - started < 10


def test_lookup_prints_json_for_a_no_hit(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "lookup",
            "--registry",
            registry,
            "--key-file",
            str(key_file),
            "--bsn",
            "111222333",
            "--adult",
            "--user",
            "kpc-0042",
            "--json",
            "--pki-dir",
            str(pki_dir),
            "--party",
            "zsm-midden-nederland-kpc",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "LOOKUP_OUTCOME_NO_HIT"


def test_lookup_without_a_party_is_refused_naming_party_and_its_env(
    key_file: Path,
    registry: str,
    pki_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It acted as the Midden-Nederland KPC'er, silently, and was logged as one.
    monkeypatch.delenv("BAKEN_PARTY", raising=False)
    args = ["lookup", "--registry", registry, "--key-file", str(key_file), "--bsn", BSN,
            "--adult", "--user", "zsm-0042", "--pki-dir", str(pki_dir)]  # fmt: skip

    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--party or BAKEN_PARTY" in err and "Traceback" not in err

    monkeypatch.setenv("BAKEN_PARTY", "zsm-rotterdam-rijnmond-kpc")
    assert main(args) == 0, capsys.readouterr().err


def test_lookup_needs_a_surname_with_a_birth_date(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lookup", "--key-file", str(key_file), "--birth-date", "1990-01-01"])
    assert code == 2
    assert "surname" in capsys.readouterr().err


def test_missing_key_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lookup", "--key-file", str(tmp_path / "absent.json"), "--bsn", "111222333"])
    assert code == 2
    assert "no such key file" in capsys.readouterr().err


def test_keys_rotate_through_add_and_retire(key_file: Path) -> None:
    add = ["keys", "add", "--key-file", str(key_file), "--key-id", "k2"]
    assert main([*add, "--service", "pseudonymiser.internal:50053"]) == 0
    assert KeyRing.load(key_file).ids == ["k1", "k2"]
    assert main(["keys", "retire", "--key-file", str(key_file), "--key-id", "k1"]) == 0
    assert KeyRing.load(key_file).ids == ["k2"]
    init = ["keys", "init", "--key-file", str(key_file), "--key-id", "k3", "--service", "x:1"]
    assert main(init) == 2  # the file exists


def test_an_edge_key_file_holds_no_secret_unless_asked_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "init", "--key-file", str(path), "--key-id", "k1"]) == 2
    assert "needs --service" in capsys.readouterr().err
    assert not path.exists()
    hmac = ["keys", "init", "--key-file", str(path), "--key-id", "k1", "--kind", "hmac"]
    assert main(hmac) == 0  # only for the migration of an edge that still has one
    assert list(KeyRing.load(path)) == ["k1"]


def test_lookup_without_the_party_certificate_names_the_missing_file(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["lookup", "--key-file", str(key_file), "--bsn", "111222333", "--adult",
         "--user", "kpc-0042", "--pki-dir", str(tmp_path / "no-pki"),
         "--party", "zsm-midden-nederland-kpc"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "no-pki" in err and "baken pki init" in err
    assert "Traceback" not in err


def test_pki_init_makes_a_ca_and_refuses_to_overwrite_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    assert (tmp_path / "pki" / "ca.pem").exists()
    assert (tmp_path / "pki" / "zsm-midden-nederland-kpc.key").stat().st_mode & 0o077 == 0
    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 2
    assert "holds a CA already" in capsys.readouterr().err


def test_pki_init_gives_each_sources_adapter_only_its_own_houses_private_keys(
    tmp_path: Path,
) -> None:
    from baken.houses import load_houses

    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    houses = load_houses()
    for system in ("gcos", "amazone", "pga"):
        shared = tmp_path / "pki" / f"houses-{system}"
        own = {h.id for h in houses.values() if h.source_system_token == system}
        assert {p.name for p in shared.iterdir()} == {f"{h}.x25519.key" for h in own}, system
        assert shared.stat().st_mode & 0o077 == 0
        for key in shared.iterdir():
            assert key.stat().st_mode & 0o077 == 0
            assert key.read_bytes() == (tmp_path / "pki" / "houses" / key.name).read_bytes()


def test_serve_on_an_address_in_use_says_so_without_a_traceback(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "registry", "--address", registry, "--data-dir", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot listen on {registry}" in err
    assert "Traceback" not in err


def test_serve_stops_on_a_broken_covenant_naming_file_and_line(
    tmp_path: Path, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    covenants = tmp_path / "covenants"
    covenants.mkdir()
    shipped = Path(__file__).parent.parent / "covenants"
    for name in ("parties.toml", "national.toml"):
        (covenants / name).write_text((shipped / name).read_text())
    national = covenants / "national.toml"
    text = national.read_text().replace('"target_group"]', '"target_grup"]', 1)
    national.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "target_grup" in t)

    code = main(
        ["serve", "registry", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
         "--pki-dir", str(pki_dir), "--covenants-dir", str(covenants)]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert f"{national}:{line}: unknown field 'target_grup'" in err
    assert "Traceback" not in err


def test_lookup_with_break_glass_shows_the_advice_beyond_the_covenant(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sync(registry, pki_dir, key_file, "vh-rotterdam-rijnmond")  # outside Midden-Nederland

    code = _lookup(
        registry, key_file, pki_dir, "--party", "zsm-midden-nederland-ovj",
        "--purpose", "afdoeningsbeslissing", "--case", "ZSM-1", "--break-glass", REASON,
    )  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "BREAK-GLASS" in out
    assert ADVICE in out


@pytest.mark.parametrize(
    ("hour", "call_now", "other"),
    [
        (
            14,
            "    call now      +31 88 999 0105 (office, until 17:00)",
            "    after hours   +31 88 999 0905 (piket: nights, weekends, public holidays)",
        ),
        (
            2,
            "    call now      +31 88 999 0905 (piket: outside office hours)",
            "    office        +31 88 999 0105 (office hours Mon-Fri 08:30-17:00;"
            " closed on public holidays)",
        ),
    ],
    ids=["14h", "02h"],
)
def test_lookup_shows_the_number_to_call_now_and_the_piket_at_night(
    key_file: Path,
    registry_on: Callable[[dt.datetime], str],
    pki_dir: Path,
    capsys: pytest.CaptureFixture[str],
    hour: int,
    call_now: str,
    other: str,
) -> None:
    wednesday = dt.date(2026, 12, 2)
    registry = registry_on(dt.datetime.combine(wednesday, dt.time(hour), tzinfo=AMSTERDAM))
    _sync(registry, pki_dir, key_file, "vh-breda", today=wednesday)

    code = _lookup(registry, key_file, pki_dir, "--adult")

    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    contact = lines.index(
        "    contact       ZSM-contactpunt (procesregisseur) <zsm@vh-breda.example>"
    )
    assert lines[contact + 1 : contact + 3] == [call_now, other]


def test_lookup_of_a_minor_at_intake_shows_nothing_of_the_houses(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sync(registry, pki_dir, key_file, "vh-regio-utrecht-utrecht")  # the KPC's own region

    code = _lookup(registry, key_file, pki_dir, "--minor")

    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("MINOR AT INTAKE: ")
    assert "HIT" not in out
    assert ADVICE not in out


def test_lookup_refuses_an_age_the_date_of_birth_contradicts(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Measured before: `--birth-date 2010-05-05 --adult` showed a 16-year-old's advice.
    sixteen = (dt.date.today() - dt.timedelta(days=16 * 365 + 30)).isoformat()
    code = _lookup(
        "127.0.0.1:1", key_file, Path("no-pki"), "--surname", "Jansen",
        "--birth-date", sixteen, "--adult",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "the date of birth makes him a minor, not an adult" in err


def test_lookup_at_intake_needs_the_age_and_sends_nothing_without_it(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _lookup("127.0.0.1:1", key_file, Path("no-pki"))

    err = capsys.readouterr().err
    assert code == 2
    assert (
        "at intake-en-selectie, say --minor or --adult (or give --surname and --birth-date)" in err
    )


def test_the_hint_for_the_age_leads_to_a_lookup_that_works(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # With --bsn, "give --birth-date" led to "a date of birth needs a surname".
    assert _lookup(registry, key_file, pki_dir) == 2
    assert "(or give --surname and --birth-date)" in capsys.readouterr().err

    code = _lookup(registry, key_file, pki_dir, "--surname", "Jansen", "--birth-date", "1990-01-01")

    assert code == 0, capsys.readouterr().err


def test_a_bsn_with_a_space_is_told_so_and_eight_digits_get_their_leading_zero(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["lookup", "--registry", registry, "--key-file", str(key_file), "--adult",
            "--user", "zsm-0042", "--pki-dir", str(pki_dir),
            "--party", "zsm-midden-nederland-kpc"]  # fmt: skip
    assert main([*args, "--bsn", "1000 0008"]) == 2
    assert "the BSN contains a space" in capsys.readouterr().err
    assert main([*args, "--bsn", "10000008"]) == 0, capsys.readouterr().err


def test_lookup_for_a_decision_without_a_case_is_refused_naming_the_reason(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _lookup(
        registry, key_file, pki_dir, "--party", "zsm-midden-nederland-ovj",
        "--purpose", "afdoeningsbeslissing",
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 1
    assert "PERMISSION_DENIED (CASE_REFERENCE_REQUIRED)" in err
    assert "Traceback" not in err


def test_the_servers_field_violations_name_the_options_the_user_typed(
    key_file: Path, registry: str, pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # They quoted the wire: on_behalf_of, case_reference.
    ovj = ["--party", "zsm-midden-nederland-ovj", "--purpose", "afdoeningsbeslissing"]
    assert _lookup(registry, key_file, pki_dir, *ovj, "--case", "ZSM-1", "--user", "Jan") == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        "baken lookup: INVALID_ARGUMENT: --user: not a user id of the format the party register "
        "gives your party"
    )
    assert _lookup(registry, key_file, pki_dir, *ovj, "--case", "zaak twaalf") == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("baken lookup: INVALID_ARGUMENT: --case: not a case reference of")


def test_a_bad_bsn_names_the_option() -> None:
    import argparse as ap

    from cli.main import option_of

    given = ap.Namespace(bsn="111222333", surname=None)
    assert option_of("subject.pseudonyms[0]", given) == "--bsn"
    assert option_of("subject.pseudonyms[1].value", ap.Namespace(bsn=None, surname="X")) == (
        "--surname/--birth-date"
    )
    assert option_of("birth_date", given) == "--birth-date"
    assert option_of("page_token", given) == "page_token"


def test_keys_reseal_and_audit_verify_find_the_registry_through_its_environment(
    key_file: Path,
    tmp_path: Path,
    pki_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Database and keys each in their own place; nothing where the defaults look.
    monkeypatch.chdir(tmp_path)
    at_rest_keys = tmp_path / "vault" / "at-rest.json"
    signing_key = tmp_path / "vault" / "checkpoints.key"
    (tmp_path / "db").mkdir()
    monkeypatch.setenv("BAKEN_REGISTRY_DATABASE_URL", sqlite_url(tmp_path / "db", "baken.db"))
    monkeypatch.setenv("BAKEN_REGISTRY_AT_REST_KEY_FILE", str(at_rest_keys))
    monkeypatch.setenv("BAKEN_REGISTRY_AUDIT_SIGNING_KEY", str(signing_key))
    logs.configure(json=True)
    running = create_server(RegistrySettings(address="127.0.0.1:0", data_dir=tmp_path / "server"))
    running.start()
    try:
        registry = f"127.0.0.1:{running.port}"
        _sync(registry, pki_dir, key_file, "vh-rotterdam-rijnmond")
        assert _lookup(registry, key_file, pki_dir, "--adult") == 0
    finally:
        running.server.stop(grace=None).wait()
    assert main(["keys", "add", "--key-file", str(at_rest_keys), "--key-id", "k-next"]) == 0
    capsys.readouterr()

    assert main(["keys", "reseal"]) == 0
    assert "1 markers resealed under key k-next" in capsys.readouterr().out

    assert (
        main(["audit", "verify", "--public-key", str(tmp_path / "vault" / "checkpoints.pub")]) == 0
    )
    assert (
        "OK: the access log verifies: 1 entry, 0 checkpoints; entry 1 is not signed yet"
        in capsys.readouterr().out
    )
    assert not (tmp_path / "var").exists()


def _parsers(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_of_every_command_says_what_it_is() -> None:
    missing = [
        f"baken {' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
        for path, p in _parsers(parser())
        for a in p._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not missing, "\n".join(missing)


def test_adapter_sync_help_lists_the_options_of_sync_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It listed every option of sync, watch and receive.
    with pytest.raises(SystemExit):
        main(["adapter", "pga", "sync", "--help"])
    out = capsys.readouterr().out
    assert "--source" in out and "--confirm-deletions" in out and "Exit codes: 0" in out
    assert "--target" not in out and "--house" not in out and "--interval" not in out
    with pytest.raises(SystemExit):
        main(["adapter", "pga", "receive", "--help"])
    out = capsys.readouterr().out
    assert "--target" in out and "--house-keys" in out
    assert "--source" not in out and "--registry" not in out and "--batch" not in out
