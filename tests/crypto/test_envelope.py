"""Specification of accord.crypto.envelope: seal to a recipient, open or refuse."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto import envelope
from accord.crypto.agreement import generate_keypair
from accord.errors import IntegrityError, InternalError

AAD = b"fed|epoch 3|from P1|to P2"
REASONS = ("tag", "key", "aad", "version", "length", "truncat", "invalid", "decrypt", "mac")


def byte_source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


RECIPIENT = generate_keypair(byte_source(1))
OTHER = generate_keypair(byte_source(2))


def assert_refused(data: bytes, private: bytes = RECIPIENT.private, aad: bytes = AAD) -> None:
    with pytest.raises(IntegrityError) as caught:
        envelope.open(data, private, aad=aad, what="the shares from P1")
    message = str(caught.value)
    assert message == "the shares from P1 could not be opened"
    assert not any(reason in message.replace("opened", "") for reason in REASONS)


@given(
    plaintext=st.binary(max_size=2000), aad=st.binary(max_size=100), seed=st.integers(0, 2**32 - 1)
)
def test_round_trip(plaintext: bytes, aad: bytes, seed: int) -> None:
    sealed = envelope.seal(plaintext, RECIPIENT.public, aad=aad, random_bytes=byte_source(seed))
    assert len(sealed) == len(plaintext) + envelope.OVERHEAD_BYTES
    assert sealed[0] == 1
    assert envelope.open(sealed, RECIPIENT.private, aad=aad) == plaintext


def test_seal_is_deterministic_only_given_the_randomness() -> None:
    one = envelope.seal(b"hi", RECIPIENT.public, aad=AAD, random_bytes=byte_source(5))
    assert one == envelope.seal(b"hi", RECIPIENT.public, aad=AAD, random_bytes=byte_source(5))
    assert one != envelope.seal(b"hi", RECIPIENT.public, aad=AAD)


def test_plaintext_does_not_appear_in_the_envelope() -> None:
    plaintext = b"secret share bytes " * 4
    sealed = envelope.seal(plaintext, RECIPIENT.public, aad=AAD)
    assert b"secret share" not in sealed


def test_wrong_key_is_refused() -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    assert_refused(sealed, private=OTHER.private)


@pytest.mark.parametrize("aad", [b"", AAD + b"x", AAD[:-1], b"fed|epoch 3|from P1|to P3"])
def test_wrong_aad_is_refused(aad: bytes) -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    assert_refused(sealed, aad=aad)


def test_a_flipped_bit_anywhere_is_refused() -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    for position in range(len(sealed)):
        for bit in (0x01, 0x80):
            altered = bytearray(sealed)
            altered[position] ^= bit
            assert_refused(bytes(altered))


def test_every_truncation_is_refused() -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    for length in range(len(sealed)):
        assert_refused(sealed[:length])
    assert_refused(sealed + b"\x00")


def test_unknown_version_is_refused() -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    assert_refused(b"\x02" + sealed[1:])


def test_default_name_is_envelope() -> None:
    with pytest.raises(IntegrityError) as caught:
        envelope.open(b"", RECIPIENT.private, aad=AAD)
    assert str(caught.value) == "envelope could not be opened"


def test_low_order_recipient_key_is_refused_when_sealing() -> None:
    with pytest.raises(IntegrityError) as caught:
        envelope.seal(b"x", bytes(32), aad=AAD, what="the encryption key of P2")
    assert str(caught.value) == "the encryption key of P2 was refused"


def test_malformed_private_key_is_a_usage_error() -> None:
    sealed = envelope.seal(b"payload", RECIPIENT.public, aad=AAD)
    with pytest.raises(InternalError):
        envelope.open(sealed, bytes(31), aad=AAD)


def test_short_randomness_is_a_usage_error() -> None:
    with pytest.raises(InternalError):
        envelope.seal(b"x", RECIPIENT.public, aad=AAD, random_bytes=lambda n: bytes(n - 1))
