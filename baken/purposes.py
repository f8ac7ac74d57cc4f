"""The purposes a call names, as covenant files and the access log spell them: one token per
value of the wire's `Purpose` enum (PURPOSE_INTAKE_EN_SELECTIE -> "intake-en-selectie")."""

from __future__ import annotations

from collections.abc import Mapping

from baken.type.v1 import purpose_pb2

PURPOSES: Mapping[str, purpose_pb2.Purpose.ValueType] = {
    v.name.removeprefix("PURPOSE_").lower().replace("_", "-"): purpose_pb2.Purpose.ValueType(
        v.number
    )
    for v in purpose_pb2.Purpose.DESCRIPTOR.values
    if v.number
}
PURPOSE_TOKENS: Mapping[int, str] = {number: token for token, number in PURPOSES.items()}
# The purposes the code itself treats apart, by token.
INTAKE = "intake-en-selectie"
AFDOENING = "afdoeningsbeslissing"
TERUGKOPPELING = "terugkoppeling"
MONITORING = "monitoring"
AUDIT = "audit"
INZAGE = "inzage"
assert {INTAKE, AFDOENING, TERUGKOPPELING, MONITORING, AUDIT, INZAGE} <= PURPOSES.keys()
