"""Protos stop at a service's wire boundary: only the modules listed here import generated
protobuf code (`*_pb2`, `*_pb2_grpc`); the domain beneath them works on plain values."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Per package, the modules (paths under it) that may import protos.
BOUNDARY = {
    # The servicer, the conversions either way (convert: domain -> proto; validation: proto ->
    # checked values) and the wiring.
    "services/registry": {"servicer.py", "convert.py", "validation.py", "server.py"},
    # The servicer, the requests turned into checked values (validation), the wiring, the
    # registry's client (upstream: the registry's wire is its boundary) and the delivery items
    # the outbox stores and streams (wire).
    "services/feedback": {"servicer.py", "validation.py", "server.py", "upstream.py", "wire.py"},
}
_GENERATED = re.compile(r"\w+_pb2(_grpc)?")
_IMPORTERS = {"import_module", "__import__"}


def proto_imports(source: str) -> list[str]:
    """The generated modules a module's source imports, wherever in it: import statements and
    importlib.import_module or __import__ of a literal name."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names += [f"{base}.{alias.name}".lstrip(".") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in _IMPORTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return [n for n in names if any(_GENERATED.fullmatch(part) for part in n.split("."))]


def _modules(package: str) -> dict[str, list[str]]:
    """Every module under the package (migrations too), by path under it: its proto imports."""
    base = ROOT / package
    return {
        path.relative_to(base).as_posix(): proto_imports(path.read_text("utf-8"))
        for path in sorted(base.rglob("*.py"))
    }


@pytest.mark.parametrize("package", sorted(BOUNDARY))
def test_only_the_boundary_modules_import_protos(package: str) -> None:
    modules = _modules(package)
    beyond = {
        name: found for name, found in modules.items() if found and name not in BOUNDARY[package]
    }
    assert beyond == {}, f"import protos beyond the boundary of {package}"
    # The list says what is true: a module that no longer imports protos leaves it.
    assert {name for name, found in modules.items() if found} == BOUNDARY[package]


@pytest.mark.parametrize(
    "source",
    [
        "from baken.registry.v1 import marker_pb2",
        "from baken.registry.v1 import house_pb2, marker_pb2 as pb",
        "from baken.registry.v1.marker_pb2 import MarkerChange",
        "import baken.registry.v1.registry_service_pb2_grpc",
        "from google.protobuf import timestamp_pb2",
        "from . import marker_pb2",
        "def f():\n    from baken.type.v1 import pseudonym_pb2",
        "if TYPE_CHECKING:\n    from baken.registry.v1 import marker_pb2",
        "importlib.import_module('baken.registry.v1.marker_pb2')",
    ],
)
def test_an_import_of_a_proto_is_found(source: str) -> None:
    assert proto_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "# from baken.registry.v1 import marker_pb2",
        '"""Takes no marker_pb2.MarkerChange."""',
        "from baken.registry import v1_pb2_notes",
        "from services.registry.markers import SyncChange",
    ],
)
def test_a_mention_that_is_not_an_import_is_not(source: str) -> None:
    assert proto_imports(source) == []
