"""The wire contract's field rules, declared in the .proto files as protovalidate rules (and
google.api.field_behavior for readers), so that a client in any language sees them. They are
checked here, once, for every request message of every RPC before a servicer sees it
(grpc_server.ErrorAndLogInterceptor). What needs the covenants, the clock, the database or
several fields at once stays in each service's validation module.

A repeated field whose items are answered one by one (BatchLookup's entries, SyncMarkers'
changes) declares `items: {ignore: IGNORE_ALWAYS}`; its service checks each item with
`violations` and answers a bad one alone."""

from __future__ import annotations

import json

import protovalidate
from google.protobuf.message import Message

from baken.errors import FieldViolation, InvalidArgument

_validator = protovalidate.Validator()


def violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every declared rule `message` breaks, each naming its field as AIP-193 spells paths
    ("subject.pseudonyms[0].value"), after `prefix`."""
    return [
        FieldViolation(prefix + _path(v.proto.field), v.proto.message)
        for v in _validator.collect_violations(message)
    ]


def check(message: Message) -> None:
    """InvalidArgument naming every field of `message` that breaks a declared rule."""
    found = violations(message)
    if found:
        raise InvalidArgument(found)


def _path(field: protovalidate.FieldPathPb | None) -> str:
    path = ""
    for element in field.elements if field else ():
        path += f".{element.field_name}" if path else element.field_name
        subscript = element.subscript
        if subscript is None:
            continue
        value = subscript.value
        path += f"[{json.dumps(value) if isinstance(value, str) else value}]"
    return path
