"""The preflight's online checks: the coordinator answers its health service over mTLS,
and this machine's clock agrees with the coordinator's.

It calls the standard health service (``grpc.health.v1.Health/Check``), reads the clock
skew from the ``date`` initial metadata when the coordinator sends it, and turns a
failed call into what went wrong and how to fix it. Time is an argument (``clock``).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accord.participant.kit.check_report import Check, CheckStatus
from accord.participant.kit.startup_kit import (
    Kit,
    secure_channel,
)

__all__ = ["MAX_CLOCK_SKEW_S", "WARN_CLOCK_SKEW_S", "check_coordinator"]

MAX_CLOCK_SKEW_S = 300.0
"""Skew beyond which ``check`` fails: certificates start only five minutes back-dated."""

WARN_CLOCK_SKEW_S = 60.0
"""Skew beyond which ``check`` warns."""


def check_coordinator(kit: Kit, timeout_s: float, clock: Callable[[], float]) -> list[Check]:
    channel = secure_channel(kit)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        started = clock()
        try:
            reply, call = stub.Check.with_call(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError as error:
            detail, fix = _diagnose(kit.coordinator, error, timeout_s)
            return [
                Check("coordinator", CheckStatus.FAIL, detail, fix),
                Check("clock skew", CheckStatus.SKIP, "unknown (the coordinator did not answer)"),
            ]
        finished = clock()
        metadata = dict(call.initial_metadata() or ())
    finally:
        channel.close()
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    coordinator = (
        Check("coordinator", CheckStatus.PASS, f"{kit.coordinator} answers over mTLS: {name}")
        if serving
        else Check(
            "coordinator",
            CheckStatus.FAIL,
            f"{kit.coordinator} answers over mTLS but is {name}",
            "the coordinator is starting or shutting down; retry, or ask the operator",
        )
    )
    return [coordinator, _clock_skew(metadata.get("date"), (started + finished) / 2)]


def _clock_skew(date_header: Any, local_s: float) -> Check:
    if not isinstance(date_header, str):
        return Check("clock skew", CheckStatus.SKIP, "unknown (the coordinator sends no `date`)")
    try:
        server_s = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Check("clock skew", CheckStatus.SKIP, f"unknown (unreadable date {date_header!r})")
    skew = server_s - local_s
    detail = f"{skew:+.0f} s (coordinator minus this machine, ±1 s)"
    fix = "synchronise this machine's clock (NTP: `timedatectl set-ntp true`, chrony)"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return Check("clock skew", CheckStatus.FAIL, detail, fix)
    if abs(skew) > WARN_CLOCK_SKEW_S:
        return Check("clock skew", CheckStatus.WARN, detail, fix)
    return Check("clock skew", CheckStatus.PASS, detail)


def _diagnose(address: str, error: Any, timeout_s: float) -> tuple[str, str]:
    """Turn a failed health call into what went wrong and how to fix it."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = str(error.details() if callable(getattr(error, "details", None)) else error)
    lowered = details.lower()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"no answer from {address} within {timeout_s:g} s",
            "check the address in kit.toml, the firewall, and that the coordinator runs",
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"{address} does not serve grpc.health.v1.Health",
            "this is not an Accord coordinator, or an old one: check the address and version",
        )
    if "connection refused" in lowered:
        return (
            f"nothing listens at {address} (connection refused)",
            "start the coordinator (`accord coordinator serve`), or correct `coordinator` "
            "in kit.toml",
        )
    if "dns" in lowered or "resolve" in lowered or "name or service not known" in lowered:
        return (
            f"cannot resolve the host of {address}",
            "correct `coordinator` in kit.toml, or fix this machine's DNS",
        )
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return (
            f"{address} presents a certificate the pinned CA did not issue",
            "you are not talking to your federation's coordinator: check the address, and ask "
            "the operator which CA its server certificate comes from",
        )
    if "handshake" in lowered or "ssl" in lowered or "tls" in lowered:
        return (
            f"the TLS handshake with {address} failed ({details})",
            "check that the coordinator's certificate names this host and that it runs with "
            "this federation's CA",
        )
    if "socket closed" in lowered or "connection reset" in lowered:
        return (
            f"{address} closed the connection during the TLS handshake",
            "the coordinator does not accept this kit's certificate: check that it runs with "
            "this federation's CA and that you packaged the operator's current response",
        )
    return (
        f"{address}: {code.name if code is not None else 'error'}: {details}",
        "check that the coordinator runs and is reachable from this machine",
    )
