"""The tests' CKKS keys: made once per test process (key generation is the slow part)."""

from __future__ import annotations

from functools import cache

from accord.crypto.ckks import SecretContext


@cache
def shared_secret_context() -> SecretContext:
    """The federation's CKKS key, one for the whole test session."""
    return SecretContext.generate()


@cache
def stranger_secret_context() -> SecretContext:
    """A CKKS key of no member: what it encrypts the federation's key cannot read."""
    return SecretContext.generate()
