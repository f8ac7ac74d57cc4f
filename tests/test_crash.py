"""A crash says where, never what: no value a message quotes (a BSN in an adapter, a pseudonym or
case reference in a service, a failed statement's parameters) reaches the crash output."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, text

from baken import crash
from cli import main as cli

BSN = "123456782"
CASE = "ZSM-2026-XYZZY-0042"


def _fail_with_values() -> None:
    try:
        raise KeyError(BSN)
    except KeyError as error:
        raise ValueError(f"record of {BSN} in case {CASE}: no such house") from error


def test_a_command_that_crashes_names_the_type_and_the_place_but_no_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = cli.parser()
    args = parser.parse_args(["health", "127.0.0.1:1"])
    monkeypatch.setattr(args, "run", lambda _args: _fail_with_values(), raising=False)
    monkeypatch.setattr(cli, "parser", lambda: _Fixed(args))

    assert cli.main(["health"]) == 70

    err = capsys.readouterr().err
    assert "baken health: crashed: ValueError (message withheld)" in err
    assert "which came from KeyError" in err
    assert "test_crash.py:" in err and "_fail_with_values" in err
    assert BSN not in err and CASE not in err


def test_a_thread_that_crashes_says_where_but_no_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    crash.install()

    worker = threading.Thread(target=_fail_with_values, name="receiver")
    worker.start()
    worker.join()

    err = capsys.readouterr().err
    assert "thread receiver crashed: ValueError (message withheld)" in err
    assert BSN not in err and CASE not in err


def test_a_process_that_crashes_prints_no_value(tmp_path: Path) -> None:
    """The real thing: `baken` in a process of its own, crashing in a thread and in main."""
    script = tmp_path / "crash.py"
    script.write_text(
        "import threading, sys\n"
        "from cli import main as cli\n"
        f"def fail():\n    raise RuntimeError('BSN {BSN}')\n"
        "def run(args):\n"
        "    t = threading.Thread(target=fail); t.start(); t.join()\n"
        "    fail()\n"
        "parser = cli.parser\n"
        "def patched():\n"
        "    p = parser()\n"
        "    original = p.parse_args\n"
        "    def parse(argv=None):\n"
        "        a = original(argv); a.run = run; return a\n"
        "    p.parse_args = parse\n"
        "    return p\n"
        "cli.parser = patched\n"
        "sys.exit(cli.main(['health', '127.0.0.1:1']))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 70
    assert done.stderr.count("RuntimeError (message withheld)") == 2
    assert BSN not in done.stderr + done.stdout


def test_a_failed_statement_does_not_quote_its_parameters(
    database_url: str, engines: Callable[[str], Engine]
) -> None:
    engine = engines(database_url)
    with pytest.raises(sqlalchemy.exc.DBAPIError) as caught, engine.connect() as connection:
        connection.execute(text("SELECT :bsn FROM no_such_table"), {"bsn": BSN})
    assert "no_such_table" in str(caught.value)
    assert BSN not in str(caught.value)


class _Fixed:
    def __init__(self, args: object) -> None:
        self._args = args

    def parse_args(self, _argv: object = None) -> object:
        return self._args
