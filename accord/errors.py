"""The one error tree of Accord (standard library only, so every part may import it).

    AccordError                  base; never raised itself
    ├── ConfigError              a setting is wrong; the message names field, value and fix
    ├── InternalError            an internal API was called against its contract: a bug
    ├── UsageError               a user or caller at a public boundary asked wrongly
    ├── RoundAborted             a round cannot complete (too few participants or shares)
    │   └── BudgetExhausted      this participant's privacy budget forbids the round
    ├── IntegrityError           data failed an integrity check (CRC, AEAD tag, ledger chain)
    └── ProtocolError            a message broke the protocol; state is unchanged
        ├── OutOfStage           legal message, wrong stage
        ├── Expired              what was asked for existed but is no longer kept
        ├── BadSignature         signature missing or wrong
        ├── Replayed             (round, stage, participant, sequence) seen before
        ├── Malformed            the message does not decode or has the wrong shape
        ├── Oversized            the message exceeds a configured limit
        ├── RateLimited          the sender made more requests than its rate allows
        │   └── TooManyCalls     the sender holds as many calls of this kind open as it may
        ├── NotAllowed           the sender may not send this (unknown, revoked, not selected)
        ├── StreamIdle           a stream sent nothing for `stream_idle_s`
        └── TermsDeparted        a round, enrolment or config departs from the signed terms

Each class names the gRPC status a service answers with; the mapping is applied in
one place per service. Anything else that escapes is a bug and maps to INTERNAL.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base of every error Accord raises on purpose."""

    grpc_status = "INTERNAL"


class InternalError(AccordError):
    """An internal API was called against its contract: a bug in Accord, not the user's or
    a peer's mistake. Services answer INTERNAL with a generic message (the detail goes to
    their log only); the CLI keeps its traceback."""

    grpc_status = "INTERNAL"


class ConfigError(AccordError):
    grpc_status = "INVALID_ARGUMENT"


class UsageError(AccordError):
    grpc_status = "INVALID_ARGUMENT"


class RoundAborted(AccordError):
    grpc_status = "ABORTED"


class BudgetExhausted(RoundAborted):
    """The privacy budget forbids this participant's round (the trainer's or `max_epsilon`)."""


class IntegrityError(AccordError):
    grpc_status = "DATA_LOSS"


class ProtocolError(AccordError):
    grpc_status = "INVALID_ARGUMENT"


class OutOfStage(ProtocolError):
    grpc_status = "FAILED_PRECONDITION"


class Expired(ProtocolError):
    """What was asked for existed but is no longer kept (e.g. an old round's aggregate)."""

    grpc_status = "NOT_FOUND"


class BadSignature(ProtocolError):
    grpc_status = "UNAUTHENTICATED"


class Replayed(ProtocolError):
    grpc_status = "ALREADY_EXISTS"


class Malformed(ProtocolError):
    grpc_status = "INVALID_ARGUMENT"


class Oversized(ProtocolError):
    grpc_status = "RESOURCE_EXHAUSTED"


class RateLimited(ProtocolError):
    """The sender exceeded its request rate (`[coordinator] rate_limit_per_s`, burst)."""

    grpc_status = "RESOURCE_EXHAUSTED"


class NotAllowed(ProtocolError):
    """The sender is not permitted to send this (unknown, revoked or not selected)."""

    grpc_status = "PERMISSION_DENIED"


class TermsDeparted(ProtocolError):
    """A round, enrolment or config departs from the CA-signed federation terms.

    The message names who departed and from what term (`crypto/terms.py`).
    """

    grpc_status = "FAILED_PRECONDITION"


class TooManyCalls(RateLimited):
    """The sender already holds its cap of open calls of this kind (`call_limits.py`)."""


class StreamIdle(ProtocolError):
    """A request stream sent nothing for `[coordinator] stream_idle_s`; it was ended."""

    grpc_status = "DEADLINE_EXCEEDED"
