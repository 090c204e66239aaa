"""The coordinator's server interceptors: each wraps the behaviour of every handler.

- `AccordErrorInterceptor` is the one place where an `AccordError` becomes a gRPC
  status (`grpc_status` on its class) answering `TypeName: message`; an `InternalError`
  or anything else is a bug: logged, and answered INTERNAL without its detail (the peer
  is not told it was its fault).
- `DateHeaderInterceptor` sends the server's wall clock as `date` initial metadata on
  every call, from which `accord kit check` reports the participant's clock skew
  (certificates are back-dated only five minutes). It sends the initial metadata
  itself, so a handler behind it must not call `context.send_initial_metadata`.
- `AdmissionInterceptor` authenticates the caller from its peer certificate when a
  call of the Coordinator service opens, before any request message is read (an
  unknown or revoked identity gets PERMISSION_DENIED from every RPC, `GetStatus`
  included), then counts the call against the identity's caps (`call_limits.py`).
  Health checks and reflection pass untouched.

A handler has one behaviour out of four (unary or streamed request, unary or streamed
response). An interceptor here says how to wrap a behaviour that answers once and one
that streams its answers; `_WrappingInterceptor` applies the right one.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from accord.coordinator.call_limits import CallLimits
from accord.errors import AccordError, InternalError

__all__ = ["AccordErrorInterceptor", "AdmissionInterceptor", "DateHeaderInterceptor"]

Behaviour = Callable[..., Any]
"""A handler's `(request or request iterator, context) -> response or iterator`."""


class _WrappingInterceptor(grpc.ServerInterceptor):
    """Wraps each handler's behaviour with `wrap_unary` or `wrap_stream`."""

    def wrap_unary(self, behaviour: Behaviour) -> Behaviour:
        """Wrap a behaviour that returns one response."""
        raise NotImplementedError

    def wrap_stream(self, behaviour: Behaviour) -> Behaviour:
        """Wrap a behaviour that returns an iterator of responses."""
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary:
            return handler._replace(unary_unary=self.wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self.wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self.wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=self.wrap_stream(handler.stream_stream))
        return handler


class AccordErrorInterceptor(_WrappingInterceptor):
    """Answers an `AccordError` with its class's gRPC status and `TypeName: message`."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def wrap_unary(self, behaviour: Behaviour) -> Behaviour:
        log = self._log

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behaviour(request, context)
            except Exception as error:
                _answer(context, error, log)

        return call

    def wrap_stream(self, behaviour: Behaviour) -> Behaviour:
        log = self._log

        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except Exception as error:
                _answer(context, error, log)

        return call


class DateHeaderInterceptor(_WrappingInterceptor):
    """Sends ``date: <RFC 7231 time>`` as initial metadata on every call.

    Args:
        clock: seconds since the epoch (tests inject one); default the current time.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock

    def wrap_unary(self, behaviour: Behaviour) -> Behaviour:
        clock = self._clock

        def with_date(request: Any, context: grpc.ServicerContext) -> Any:
            now = clock() if clock is not None else None
            context.send_initial_metadata((("date", email.utils.formatdate(now, usegmt=True)),))
            return behaviour(request, context)

        return with_date

    # The metadata goes out when the call starts, before the first streamed response.
    wrap_stream = wrap_unary


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Authenticates each call of `service` when it opens and holds it to its caps.

    Args:
        service: the full service name whose methods are admitted (others pass).
        identify: the caller's participant id from the call's context; raises
            `NotAllowed` for no, an unknown or a revoked certificate.
        limits: the per-identity caps on open calls.

    Sits inside `AccordErrorInterceptor`, which answers its refusals.
    """

    def __init__(
        self,
        service: str,
        identify: Callable[[grpc.ServicerContext], str],
        limits: CallLimits,
    ) -> None:
        self._prefix = f"/{service}/"
        self._identify = identify
        self._limits = limits

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        full_name: str = handler_call_details.method
        if handler is None or not full_name.startswith(self._prefix):
            return handler
        method = full_name[len(self._prefix) :]
        identify, limits = self._identify, self._limits

        def wrap_unary(behaviour: Behaviour) -> Behaviour:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                identity = identify(context)
                limits.acquire(identity, method)
                try:
                    return behaviour(request, context)
                finally:
                    limits.release(identity, method)

            return call

        def wrap_stream(behaviour: Behaviour) -> Behaviour:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                identity = identify(context)
                limits.acquire(identity, method)
                try:
                    yield from behaviour(request, context)
                finally:
                    limits.release(identity, method)

            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
        return handler


def _answer(context: grpc.ServicerContext, error: Exception, log: logging.Logger) -> NoReturn:
    """Turn `error` into the call's status (re-raising what already is one)."""
    if isinstance(error, grpc.RpcError) or context.code() is not None:
        raise error  # a cancelled stream, or `context.abort` already chose the status
    if isinstance(error, AccordError) and not isinstance(error, InternalError):
        code = getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)
        context.abort(code, f"{type(error).__name__}: {error}")
    log.error("unexpected error in a gRPC handler", exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the coordinator's log")
    raise AssertionError("context.abort raises")  # pragma: no cover
