"""How the daemon reads a failed call to the coordinator: retry, stop, or an `AccordError`.

    UNAVAILABLE, DEADLINE_EXCEEDED          retry (the coordinator is restarting)
    RESOURCE_EXHAUSTED "RateLimited: ..."   retry (slow down); also "TooManyCalls: ..."
    UNAUTHENTICATED, PERMISSION_DENIED,     stop: a `ConfigError` no retry can fix
      or a failed TLS handshake
    details "TypeName: message"             the `AccordError` of that name

Each `AccordError` names its status (`grpc_status`) and the coordinator applies it in one
place; this module is the participant's inverse of that mapping.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from accord import errors
from accord.errors import ConfigError

RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""Statuses after which an idempotent call is tried again (coordinator restarting)."""

REFUSED_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
"""Statuses by which the coordinator refuses this participant's certificate or identity."""


def retryable(error: grpc.RpcError) -> bool:
    """The coordinator is unreachable (restarting), or asks this participant to slow down."""
    if error.code() in RETRY_CODES:
        return True
    # RateLimited, or TooManyCalls: a call of this member's is still open at the coordinator.
    return error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and isinstance(
        accord_error(error), errors.RateLimited
    )


def accord_error(error: grpc.RpcError) -> Exception:
    """The `AccordError` a refusal names (`TypeName: message`), else the `RpcError` itself.

    The coordinator maps each `AccordError` to a status in one place; this is the inverse,
    so that a refused enrolment ends the daemon with `ConfigError: ...`, not a traceback.
    """
    name, _, message = (error.details() or "").partition(": ")
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.AccordError):
        return kind(message)
    return error


def refusal(error: grpc.RpcError, *, kit: Path | None = None) -> ConfigError | None:
    """The `ConfigError` that ends the daemon when no retry can help, else None.

    Such refusals must never be retried: UNAUTHENTICATED or PERMISSION_DENIED (the
    coordinator's roster does not know, or has revoked, this certificate, or it may not
    speak for the id it claims), and a failed TLS handshake, which gRPC reports as
    UNAVAILABLE naming the handshake (the coordinator's certificate is not from the kit's
    CA, or does not name the host dialled). A client certificate the coordinator refuses
    at the handshake looks like a closed socket and cannot be told from a restart;
    `accord kit check` names it.

    Args:
        error: a failed call.
        kit: the startup kit folder, named in the fix.
    """
    check = f"`accord kit check {kit}`" if kit is not None else "`accord kit check KIT_DIR`"
    details = error.details() or ""
    code = error.code()
    if code in REFUSED_CODES:
        return ConfigError(
            f"the coordinator refuses this participant ({code.name}, {details}); run {check}, "
            "and if the kit passes, ask the federation's operator whether this participant is "
            "approved and not revoked (a revoked one needs new keys: `accord kit request`)"
        )
    if code is grpc.StatusCode.UNAVAILABLE and "handshake" in details.lower():
        return ConfigError(
            f"the TLS handshake with the coordinator failed ({details}); run {check}: the "
            "coordinator's certificate must come from the kit's CA and name the host in the "
            "coordinator address"
        )
    return None
