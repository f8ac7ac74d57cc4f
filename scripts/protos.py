"""Generate, check and lint the wire contracts under proto/.

    python scripts/protos.py gen     regenerate the Python code and .pyi stubs in baken/
    python scripts/protos.py check   fail when the checked-in code differs from what proto/ gives
    python scripts/protos.py lint    buf lint, and buf breaking against proto/baken.binpb

The generated code is checked in and never edited by hand. Google's common protos
(google/rpc, google/type, google/api) are taken from the installed googleapis-common-protos
package. protovalidate's rules (proto/buf/validate/validate.proto) are vendored, as nothing here
can reach the Buf Schema Registry; its generated module lands in buf/validate/ at the top.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT  # protoc mirrors proto/baken/... into baken/...
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
FIELD_BEHAVIOR = Path("google/api/field_behavior.proto")
VENDORED = Path("buf")  # under proto/: third-party protos, generated but not linted as ours
API_IMAGE = PROTO / "baken.binpb"


def _site_root(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin).parents[2]


def _proto_files() -> list[Path]:
    return sorted(PROTO.rglob("*.proto"))


def _generate(out: Path) -> None:
    from grpc_tools import protoc

    # protoc finds the mypy-protobuf plugins on PATH, next to this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    includes = [
        str(PROTO),
        str(_site_root("google.rpc.status_pb2")),
        str(Path(protoc.__file__).parent / "_proto"),
    ]
    args = [
        "protoc",
        *(f"-I{i}" for i in includes),
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *(str(p.relative_to(PROTO)) for p in _proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in {p.parent.relative_to(PROTO) for p in _proto_files()}:
        for level in (package, *package.parents):
            if level not in (Path("."), Path("baken")):
                (out / level / "__init__.py").touch()


def _generated(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in {p.parent.relative_to(PROTO) for p in _proto_files()}:
        for path in (root / package).glob("*"):
            if path.name.endswith(GENERATED_SUFFIXES):
                found[str(path.relative_to(root))] = path
    return found


def gen() -> None:
    for path in _generated(OUT).values():
        path.unlink()
    _generate(OUT)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        _generate(Path(tmp))
        fresh, current = _generated(Path(tmp)), _generated(OUT)
        stale = sorted(
            name
            for name in fresh.keys() | current.keys()
            if name not in fresh
            or name not in current
            or not filecmp.cmp(fresh[name], current[name], shallow=False)
        )
    if stale:
        print("generated code is stale; run `python scripts/protos.py gen`:", *stale, sep="\n  ")
        return 1
    print(f"generated code matches proto/ ({len(current)} files)")
    return 0


def _buf(*args: str, cwd: Path) -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if buf is None:
        raise SystemExit("buf not found: install the dev extra (buf-bin)")
    done = subprocess.run([buf, *args], cwd=cwd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"buf {args[0]} failed")


def lint() -> None:
    # buf cannot reach a registry here: stage Google's protos beside ours as a second module.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(
            PROTO, work / "proto", ignore=shutil.ignore_patterns("*.binpb", str(VENDORED))
        )
        deps = work / "deps"
        shutil.copytree(PROTO / VENDORED, deps / VENDORED)
        for sub in ("rpc", "type"):
            shutil.copytree(
                _site_root("google.rpc.status_pb2") / "google" / sub,
                deps / "google" / sub,
                ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__", "context"),
            )
        (deps / FIELD_BEHAVIOR).parent.mkdir()
        shutil.copy(_site_root("google.rpc.status_pb2") / FIELD_BEHAVIOR, deps / FIELD_BEHAVIOR)
        shutil.copy(ROOT / "buf.yaml", work / "buf.yaml")
        _buf("lint", cwd=work)
        if API_IMAGE.exists():
            _buf("breaking", "proto", "--against", str(API_IMAGE), cwd=work)
        _buf("build", "proto", "-o", str(work / "image.binpb"), cwd=work)
        if not API_IMAGE.exists():
            shutil.copy(work / "image.binpb", API_IMAGE)
    print("buf lint and buf breaking passed")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "gen":
        gen()
    elif command == "check":
        raise SystemExit(check())
    elif command == "lint":
        lint()
    else:
        raise SystemExit(__doc__)
