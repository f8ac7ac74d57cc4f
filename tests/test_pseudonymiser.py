"""The pseudonymisation service over real mTLS: the RFC's math, the party register and the
per-element rate, the access log (an entry per call, never an element), bad elements."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pseudonymiser_harness import KEY_ID, RunningPseudonymiser, running_pseudonymiser

from baken import oprf, pki
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2 as pb
from baken.pseudonymiser.v1 import pseudonymiser_service_pb2_grpc as pb_grpc

ADAPTER = "adapter-pga"
KPC = "zsm-midden-nederland-kpc"


@pytest.fixture
def service(tmp_path: Path, pki_dir: Path) -> Iterator[RunningPseudonymiser]:
    with running_pseudonymiser(tmp_path, pki_dir) as running:
        yield running


def _request(elements: list[bytes], user: str = "sync", key_id: str = KEY_ID) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(key_id=key_id, blinded_elements=elements, on_behalf_of=user)


def _refusal(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    status = rpc_status.from_call(call)  # type: ignore[arg-type]
    reason, fields = "", []
    for detail in status.details if status else ():
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return call.code(), reason, fields


def test_a_batch_evaluates_as_the_rfc_says_and_the_log_holds_no_element(
    service: RunningPseudonymiser,
) -> None:
    inputs = [b"bsn:111222333", b"name:berg\x001990-04-01", b"bsn:123456782"]
    blinded = [oprf.blind(x) for x in inputs]
    response = service.stub_for(ADAPTER).Evaluate(
        _request([b.element for b in blinded]), timeout=10
    )
    assert response.key_id == KEY_ID
    outputs = [
        oprf.finalize(b, e) for b, e in zip(blinded, response.evaluated_elements, strict=True)
    ]
    keys = service.keys()
    secret = keys._secrets[KEY_ID]
    assert outputs == [oprf.evaluate(secret, x) for x in inputs]

    (logged,) = service.log_entries()
    assert logged.party_id == ADAPTER
    assert logged.outcome == "evaluated"
    assert logged.body["role"] == "source-adapter"
    assert logged.body["elements"] == 3
    assert logged.body["key_id"] == KEY_ID
    text = repr(logged.body)
    for b, e in zip(blinded, response.evaluated_elements, strict=True):
        for value in (b.element, e):
            assert value.hex() not in text
            assert value not in text.encode()


def test_the_key_file_is_the_owners_alone(service: RunningPseudonymiser) -> None:
    mode = stat.S_IMODE(os.stat(service.settings.resolved_key_file()).st_mode)
    assert mode == 0o600


def test_a_party_over_its_rate_is_refused_per_element(tmp_path: Path, pki_dir: Path) -> None:
    # A desk's burst is 2000 elements: the third batch of 1000 goes over it.
    with running_pseudonymiser(tmp_path, pki_dir) as service:
        stub = service.stub_for(KPC)
        elements = [oprf.blind(b"x").element] * 1000
        stub.Evaluate(_request(elements, "kpc-0117"), timeout=10)
        stub.Evaluate(_request(elements, "kpc-0117"), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Evaluate(_request(elements, "kpc-0117"), timeout=10)
        code, reason, _ = _refusal(caught.value)
        assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert [e.body["elements"] for e in service.log_entries()] == [1000, 1000]


def test_an_unregistered_certificate_is_refused(service: RunningPseudonymiser) -> None:
    ca = pki.Issued(
        (service.pki_dir / "ca.pem").read_bytes(), (service.pki_dir / "ca.key").read_bytes()
    )
    issued = pki.issue(
        ca, pki.Identity("zsm-nowhere-kpc", "OM ZSM Nergens", "kpc"), now=dt.datetime.now(dt.UTC)
    )
    credentials = grpc.ssl_channel_credentials(ca.cert_pem, issued.key_pem, issued.cert_pem)
    with grpc.secure_channel(service.address, credentials) as channel:
        stub = pb_grpc.PseudonymiserServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Evaluate(_request([oprf.blind(b"x").element], "kpc-0117"), timeout=10)
    assert _refusal(caught.value)[:2] == (grpc.StatusCode.PERMISSION_DENIED, "PARTY_UNKNOWN")
    assert service.log_entries() == []


def test_a_role_that_does_not_pseudonymise_is_refused_and_logged(
    service: RunningPseudonymiser,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub_for("landelijke-stuurgroep").Evaluate(
            _request([oprf.blind(b"x").element], "sg-01"), timeout=10
        )
    assert _refusal(caught.value)[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_DOES_NOT_PSEUDONYMISE",
    )
    (logged,) = service.log_entries()
    assert (logged.outcome, logged.body["denial_reason"]) == (
        "denied",
        "ROLE_DOES_NOT_PSEUDONYMISE",
    )


@pytest.mark.parametrize(
    "bad",
    [bytes(32), b"\xff" * 32, b"\x01" + bytes(31)],
    ids=["identity", "not-canonical", "not-a-point"],
)
def test_an_invalid_element_is_named_and_changes_nothing(
    service: RunningPseudonymiser, bad: bytes
) -> None:
    good = oprf.blind(b"x").element
    with pytest.raises(grpc.RpcError) as caught:
        service.stub_for(ADAPTER).Evaluate(_request([good, good, bad]), timeout=10)
    assert _refusal(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["blinded_elements[2]"],
    )
    assert service.log_entries() == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_request([b"\x01" * 31]), "blinded_elements[0]"),
        (_request([]), "blinded_elements"),
        (_request([b"\x01" * 32] * 1001), "blinded_elements"),
        (_request([b"\x01" * 32], key_id="K1"), "key_id"),
    ],
    ids=["short", "none", "too-many", "key-id"],
)
def test_the_field_rules_hold(
    service: RunningPseudonymiser, request_: pb.EvaluateRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub_for(ADAPTER).Evaluate(request_, timeout=10)
    code, _, fields = _refusal(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields


def test_an_unknown_key_id_is_refused(service: RunningPseudonymiser) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        service.stub_for(ADAPTER).Evaluate(
            _request([oprf.blind(b"x").element], key_id="k1999-01"), timeout=10
        )
    assert _refusal(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "KEY_UNKNOWN", ["key_id"])
