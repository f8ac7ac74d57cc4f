"""Every refusal's ErrorInfo carries the dynamic values of its message as metadata (AIP-193), so
that a client never parses a message."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from baken.errors import (
    DOMAIN,
    BakenError,
    FieldViolation,
    InvalidArgument,
    RateLimited,
    TooManyCalls,
)


def _all_subclasses(cls: type[BakenError]) -> list[type[BakenError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _all_subclasses(sub))]


# The errors built as BakenError is (reason, message template, metadata).
PLAIN = [c for c in _all_subclasses(BakenError) if c.__init__ is BakenError.__init__]
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("baken", "services", "adapters", "cli", "dev")
KEY = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def error_info(error: BakenError) -> error_details_pb2.ErrorInfo:
    (info,) = [
        found
        for detail in error.to_status().details
        if detail.Unpack(found := error_details_pb2.ErrorInfo())
    ]
    return info


def test_every_plain_error_kind_is_checked() -> None:
    names = {c.__name__ for c in PLAIN}
    assert {"BakenError", "NotFound", "PermissionDenied", "FailedPrecondition"} <= names
    assert {"Unavailable", "DeadlineExceeded"} <= names


@pytest.mark.parametrize("kind", PLAIN, ids=lambda c: c.__name__)
def test_an_error_built_with_metadata_carries_it_in_its_error_info(
    kind: type[BakenError],
) -> None:
    error = kind(
        "SOME_REASON",
        "{house} has no {purpose} for party {party}",
        metadata={"house": "houses/vh-x", "purpose": "triage", "party": "p-1"},
    )

    info = error_info(error)
    assert (info.reason, info.domain) == ("SOME_REASON", DOMAIN)
    assert dict(info.metadata) == {"house": "houses/vh-x", "purpose": "triage", "party": "p-1"}
    # The message is the template filled from the metadata: the two say the same.
    assert error.message == "houses/vh-x has no triage for party p-1"
    assert error.to_status().message == error.message == str(error)
    assert error.to_status().code == kind.code.value[0]


def test_metadata_is_the_errors_own_copy() -> None:
    given = {"house": "houses/vh-x"}
    error = BakenError("R", "{house}", metadata=given)
    given["house"] = "houses/other"
    assert dict(error_info(error).metadata) == {"house": "houses/vh-x"}
    with pytest.raises(TypeError):
        error.metadata["house"] = "houses/other"  # type: ignore[index]


def test_an_error_without_metadata_has_an_empty_map_and_its_message_as_it_is() -> None:
    error = BakenError("R", "no {braces} filled here")
    assert error.message == "no {braces} filled here"
    assert not error_info(error).metadata


def test_a_rate_limit_names_party_rate_and_delay_in_metadata() -> None:
    error = RateLimited("zsm-kpc", 0.15, 2.01)
    assert dict(error_info(error).metadata) == {
        "party": "zsm-kpc",
        "callsPerSecond": "0.15",
        "retryAfterSeconds": "2.1",  # rounded up: waiting this long is enough
    }
    assert "limit of 0.15 calls a second" in error.message
    assert "retry after 2.1 s" in error.message
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_too_many_calls_names_party_and_limit_in_metadata() -> None:
    error = TooManyCalls("zsm-kpc", 2)
    assert dict(error_info(error).metadata) == {"party": "zsm-kpc", "inFlightLimit": "2"}
    assert error.message.startswith("party zsm-kpc holds 2 calls at once")


def test_invalid_argument_names_its_fields_in_bad_request_not_in_metadata() -> None:
    error = InvalidArgument([FieldViolation("subject.pseudonyms[0].value", "required")])
    assert not error_info(error).metadata
    assert error.message == "invalid request: subject.pseudonyms[0].value"


def _constructions() -> list[tuple[str, ast.Call, bool]]:
    """Every call that builds a Baken error in the code base: (where, the call, whether its
    second argument is a message template). In baken/errors.py, the subclasses' calls of
    BakenError.__init__ too."""
    names = {c.__name__ for c in _all_subclasses(BakenError)}
    plain = {c.__name__ for c in PLAIN}
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if name in names:
                    found.append((where, node, name in plain))
                elif name == "__init__" and path == ROOT / "baken" / "errors.py":
                    found.append((where, node, any(k.arg == "metadata" for k in node.keywords)))
    return found


CONSTRUCTIONS = _constructions()


def test_the_scan_finds_the_raise_sites() -> None:
    assert len(CONSTRUCTIONS) > 30
    assert sum(any(k.arg == "metadata" for k in c.keywords) for _, c, _ in CONSTRUCTIONS) > 10


def test_every_metadata_key_is_lower_camel_case() -> None:
    """AIP-193: ErrorInfo.metadata keys are lowerCamelCase. Every map is a literal, so that
    this scan sees each key."""
    wrong = []
    for where, call, _ in CONSTRUCTIONS:
        for keyword in call.keywords:
            if keyword.arg != "metadata":
                continue
            if not isinstance(keyword.value, ast.Dict):
                wrong.append(f"{where}: metadata is not a dict literal")
                continue
            for key in keyword.value.keys:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    wrong.append(f"{where}: a key that is not a string literal")
                elif not KEY.match(key.value):
                    wrong.append(f"{where}: {key.value!r}")
    assert not wrong


def test_dynamic_values_reach_a_message_only_through_metadata() -> None:
    """A message is a literal template: no f-string puts a value into it that the metadata
    lacks, and each of its fields is a key of the metadata."""
    wrong = []
    for where, call, templated in CONSTRUCTIONS:
        if not templated or len(call.args) < 2:
            continue
        message = call.args[1]
        if not (isinstance(message, ast.Constant) and isinstance(message.value, str)):
            wrong.append(f"{where}: the message is not a string literal")
            continue
        fields = {f for _, f, _, _ in string.Formatter().parse(message.value) if f is not None}
        metadata = next((k.value for k in call.keywords if k.arg == "metadata"), None)
        keys = (
            {k.value for k in metadata.keys if isinstance(k, ast.Constant)}
            if isinstance(metadata, ast.Dict)
            else set()
        )
        if not fields <= keys:
            wrong.append(f"{where}: {sorted(fields - keys)} not in the metadata")
    assert not wrong


def test_every_metadata_key_is_documented_for_clients() -> None:
    doc = (ROOT / "docs" / "REGISTRY.md").read_text(encoding="utf-8")
    table = doc.split("### ErrorInfo.metadata", 1)[1].split("\n## ", 1)[0]
    keys = {
        key.value
        for _, call, _ in CONSTRUCTIONS
        for keyword in call.keywords
        if keyword.arg == "metadata" and isinstance(keyword.value, ast.Dict)
        for key in keyword.value.keys
        if isinstance(key, ast.Constant)
    }
    assert {k for k in keys if f"`{k}`" not in table} == set()
