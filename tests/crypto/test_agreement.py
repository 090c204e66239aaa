"""Specification of accord.crypto.agreement: X25519 and the pairwise seeds s_uv."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto.agreement import (
    KeyPair,
    encode_fields,
    generate_keypair,
    pairwise_seed,
    public_key,
    shared_key,
)
from accord.errors import IntegrityError, InternalError

# RFC 7748, section 6.1.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
RFC_SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

# Points of small order (and their non-canonical encodings): X25519 with any of them
# yields the all-zero secret, which would make a seed known to everyone.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def byte_source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


def test_rfc7748_public_keys() -> None:
    assert public_key(ALICE_PRIVATE) == ALICE_PUBLIC
    assert public_key(BOB_PRIVATE) == BOB_PUBLIC


def test_shared_key_is_hkdf_of_the_rfc7748_shared_secret() -> None:
    info = b"accord/test"
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(RFC_SHARED)
    assert shared_key(ALICE_PRIVATE, BOB_PUBLIC, info=info, length=32) == expected
    assert shared_key(BOB_PRIVATE, ALICE_PUBLIC, info=info, length=32) == expected


def test_generate_keypair_uses_the_injected_randomness() -> None:
    first = generate_keypair(byte_source(1))
    again = generate_keypair(byte_source(1))
    other = generate_keypair(byte_source(2))
    assert first == again
    assert first != other
    assert len(first.private) == len(first.public) == 32
    assert public_key(first.private) == first.public


def test_keypair_repr_hides_the_private_key() -> None:
    pair = KeyPair(private=b"\xaa" * 32, public=b"\xbb" * 32)
    assert "private" not in repr(pair)
    assert repr(b"\xaa" * 32) not in repr(pair)


def test_generate_keypair_refuses_short_randomness() -> None:
    with pytest.raises(InternalError):
        generate_keypair(lambda n: bytes(n - 1))


@given(
    seed=st.integers(0, 2**32 - 1),
    u=st.text(min_size=1, max_size=8),
    v=st.text(min_size=1, max_size=8),
    round_number=st.integers(0, 2**64 - 1),
)
def test_pairwise_seed_is_the_same_from_both_ends(
    seed: int, u: str, v: str, round_number: int
) -> None:
    if u == v:
        v = u + "'"
    source = byte_source(seed)
    a, b = generate_keypair(source), generate_keypair(source)
    from_u = pairwise_seed(a.private, b.public, federation_id="fed", round=round_number, u=u, v=v)
    from_v = pairwise_seed(b.private, a.public, federation_id="fed", round=round_number, u=v, v=u)
    assert from_u == from_v
    assert len(from_u) == 16


def test_pairwise_seed_binds_federation_round_and_pair() -> None:
    source = byte_source(3)
    a, b = generate_keypair(source), generate_keypair(source)

    def seed(**overrides: object) -> bytes:
        args: dict[str, object] = {"federation_id": "fed", "round": 1, "u": "P1", "v": "P2"}
        args.update(overrides)
        return pairwise_seed(a.private, b.public, **args)  # type: ignore[arg-type]

    base = seed()
    variants = [seed(federation_id="fed2"), seed(round=2), seed(u="P0"), seed(v="P3")]
    assert len({base, *variants}) == 5


def test_pairwise_seed_framing_is_unambiguous() -> None:
    source = byte_source(4)
    a, b = generate_keypair(source), generate_keypair(source)
    one = pairwise_seed(a.private, b.public, federation_id="f", round=1, u="ab", v="c")
    two = pairwise_seed(a.private, b.public, federation_id="f", round=1, u="a", v="bc")
    assert one != two


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_peer_keys_are_refused_naming_the_key_only(point: bytes) -> None:
    with pytest.raises(IntegrityError) as caught:
        pairwise_seed(ALICE_PRIVATE, point, federation_id="f", round=1, u="P1", v="P3")
    assert str(caught.value) == "the masking key of P3 was refused"


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), "not bytes"])
def test_malformed_peer_keys_are_refused(key: object) -> None:
    with pytest.raises(IntegrityError) as caught:
        pairwise_seed(ALICE_PRIVATE, key, federation_id="f", round=1, u="P1", v="P3")  # type: ignore[arg-type]
    assert str(caught.value) == "the masking key of P3 was refused"


def test_shared_key_error_uses_the_callers_name() -> None:
    with pytest.raises(IntegrityError) as caught:
        shared_key(ALICE_PRIVATE, bytes(32), info=b"", length=16, what="the encryption key of P9")
    assert str(caught.value) == "the encryption key of P9 was refused"


def test_malformed_private_key_is_a_usage_error() -> None:
    with pytest.raises(InternalError):
        pairwise_seed(bytes(31), BOB_PUBLIC, federation_id="f", round=1, u="P1", v="P2")


@pytest.mark.parametrize("round_number", [-1, 2**64])
def test_round_must_fit_u64(round_number: int) -> None:
    with pytest.raises(InternalError):
        pairwise_seed(
            ALICE_PRIVATE, BOB_PUBLIC, federation_id="f", round=round_number, u="A", v="B"
        )


def test_a_pair_needs_two_participants() -> None:
    with pytest.raises(InternalError):
        pairwise_seed(ALICE_PRIVATE, BOB_PUBLIC, federation_id="f", round=1, u="A", v="A")


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_shared_key_length_range(length: int) -> None:
    with pytest.raises(InternalError):
        shared_key(ALICE_PRIVATE, BOB_PUBLIC, info=b"", length=length)


def test_encode_fields_frames_each_field() -> None:
    assert encode_fields("ab", 1, b"\x00") == (
        b"\x00\x00\x00\x02ab"
        + b"\x00\x00\x00\x08"
        + (1).to_bytes(8, "big")
        + b"\x00\x00\x00\x01\x00"
    )
    with pytest.raises(InternalError):
        encode_fields(True)
