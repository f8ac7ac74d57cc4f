"""The baselines: a trivial unary service on the same kind of server as the registry's, with
the same mTLS."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from baken import pki
from baken.registry.v1 import registry_service_pb2
from services.common.grpc_server import create_grpc_server


def _identity(data: bytes) -> bytes:
    return data


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def _credentials(pki_dir: Path) -> grpc.ServerCredentials:
    return pki.server_credentials(pki.TlsFiles.of(pki_dir, "registry"))


def _serve_echo(
    server: grpc.Server, pki_dir: Path, parse: Any = _identity, serialise: Any = _identity
) -> tuple[grpc.Server, int]:
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(_echo, parse, serialise)},
    )
    server.add_generic_rpc_handlers((handler,))
    return server, server.add_secure_port("127.0.0.1:0", _credentials(pki_dir))


def create_echo_server(max_workers: int, pki_dir: Path) -> tuple[grpc.Server, int]:
    """A sync server (ThreadPoolExecutor) whose /bench.Echo/Echo returns the request's bytes."""
    return _serve_echo(grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers)), pki_dir)


def create_stack_echo_server(max_workers: int, pki_dir: Path) -> tuple[grpc.Server, int]:
    """The same echo on the project's server stack (services.common.grpc_server: error-mapping
    and logging interceptor, request id in trailing metadata, health, reflection), to show what
    it costs. The stack checks every message against the contract's field rules, so this echo
    parses the request as what it is, a LookupRequest, and returns it."""
    server, _health = create_grpc_server(max_workers, [])
    request = registry_service_pb2.LookupRequest
    return _serve_echo(server, pki_dir, request.FromString, request.SerializeToString)
