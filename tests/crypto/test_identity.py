"""Specification of accord.crypto.identity: Ed25519 identities and what they sign."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.crypto.identity import (
    dump_private,
    generate_identity,
    keys_statement,
    load_private,
    message_digest,
    public_from_private,
    request_statement,
    sign,
    verify,
)
from accord.errors import BadSignature, ConfigError, InternalError, UsageError

# RFC 8032, section 7.1, tests 1 and 2.
RFC_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]

DIGEST_ARGS: dict[str, object] = {
    "federation_id": "fed",
    "round": 3,
    "stage": "UPLOAD",
    "participant": "P1",
    "sequence": 0,
    "payload_digest": hashlib.sha256(b"payload").digest(),
}


def byte_source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


@pytest.mark.parametrize(("private", "public", "message", "signature"), RFC_VECTORS)
def test_rfc8032_vectors(private: str, public: str, message: str, signature: str) -> None:
    assert public_from_private(bytes.fromhex(private)) == bytes.fromhex(public)
    assert sign(bytes.fromhex(private), bytes.fromhex(message)) == bytes.fromhex(signature)
    verify(bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature), what="rfc")


def test_sign_then_verify() -> None:
    pair = generate_identity(byte_source(1))
    signature = sign(pair.private, b"hello")
    assert len(signature) == 64
    verify(pair.public, b"hello", signature, what="the greeting")


def test_generate_identity_uses_the_injected_randomness() -> None:
    assert generate_identity(byte_source(5)) == generate_identity(byte_source(5))
    assert generate_identity(byte_source(5)) != generate_identity(byte_source(6))


def test_tampered_message_is_refused() -> None:
    pair = generate_identity(byte_source(1))
    signature = sign(pair.private, b"hello")
    with pytest.raises(BadSignature) as caught:
        verify(pair.public, b"hellO", signature, what="the upload from P3")
    assert str(caught.value) == "bad signature on the upload from P3"


@pytest.mark.parametrize("position", [0, 1, 31, 32, 63])
def test_tampered_signature_is_refused(position: int) -> None:
    pair = generate_identity(byte_source(1))
    signature = bytearray(sign(pair.private, b"hello"))
    signature[position] ^= 0x01
    with pytest.raises(BadSignature) as caught:
        verify(pair.public, b"hello", bytes(signature), what="x")
    assert str(caught.value) == "bad signature on x"


def test_wrong_key_is_refused() -> None:
    signer = generate_identity(byte_source(1))
    other = generate_identity(byte_source(2))
    with pytest.raises(BadSignature):
        verify(other.public, b"hello", sign(signer.private, b"hello"), what="x")


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (None, b""),
        (None, bytes(63)),
        (None, bytes(65)),
        (None, bytes(64)),
        (bytes(31), None),
        (b"", None),
    ],
)
def test_malformed_inputs_are_bad_signatures(public: bytes | None, signature: bytes | None) -> None:
    pair = generate_identity(byte_source(1))
    good = sign(pair.private, b"m")
    with pytest.raises(BadSignature) as caught:
        verify(
            pair.public if public is None else public,
            b"m",
            good if signature is None else signature,
            what="the keys of P2",
        )
    assert str(caught.value) == "bad signature on the keys of P2"


def test_message_digest_is_sha256_of_the_framed_fields() -> None:
    digest = message_digest(**DIGEST_ARGS)  # type: ignore[arg-type]
    payload = hashlib.sha256(b"payload").digest()
    framed = (
        b"\x00\x00\x00\x03fed"
        + b"\x00\x00\x00\x08"
        + (3).to_bytes(8, "big")
        + b"\x00\x00\x00\x06UPLOAD"
        + b"\x00\x00\x00\x02P1"
        + b"\x00\x00\x00\x08"
        + bytes(8)
        + b"\x00\x00\x00\x20"
        + payload
    )
    assert digest == hashlib.sha256(b"accord/v1/msg" + framed).digest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("federation_id", "fed2"),
        ("round", 4),
        ("stage", "UNMASK"),
        ("participant", "P2"),
        ("sequence", 1),
        ("payload_digest", bytes(32)),
    ],
)
def test_message_digest_changes_with_every_field(field: str, value: object) -> None:
    changed = {**DIGEST_ARGS, field: value}
    assert message_digest(**changed) != message_digest(**DIGEST_ARGS)  # type: ignore[arg-type]


def test_message_digest_framing_is_unambiguous() -> None:
    one = {**DIGEST_ARGS, "stage": "UPLOADP", "participant": "1"}
    assert message_digest(**one) != message_digest(**DIGEST_ARGS)  # type: ignore[arg-type]


@pytest.mark.parametrize("sequence", [-1, 2**64])
def test_message_digest_refuses_out_of_range_integers(sequence: int) -> None:
    with pytest.raises(InternalError):
        message_digest(**{**DIGEST_ARGS, "sequence": sequence})  # type: ignore[arg-type]


def test_keys_statement_is_domain_separated_and_signable() -> None:
    pair = generate_identity(byte_source(1))
    statement = keys_statement(
        federation_id="fed",
        round=9,
        participant="P1",
        encryption_public=b"\x01" * 32,
        masking_public=b"\x02" * 32,
    )
    assert statement.startswith(b"accord/v1/keys")
    verify(pair.public, statement, sign(pair.private, statement), what="the keys of P1")
    swapped = keys_statement(
        federation_id="fed",
        round=9,
        participant="P1",
        encryption_public=b"\x02" * 32,
        masking_public=b"\x01" * 32,
    )
    assert swapped != statement


def test_keys_statement_refuses_short_keys() -> None:
    with pytest.raises(UsageError):
        keys_statement(
            federation_id="fed",
            round=9,
            participant="P1",
            encryption_public=bytes(31),
            masking_public=bytes(32),
        )


def test_request_statement_frames_the_id_the_request_digest_and_both_keys() -> None:
    statement = request_statement(
        participant_id="energy",
        csr_der=b"csr",
        identity_public=b"\x01" * 32,
        ceremony_public=b"\x02" * 32,
    )
    assert statement == (
        b"accord/v1/kit-request"
        + b"\x00\x00\x00\x06energy"
        + b"\x00\x00\x00\x20"
        + hashlib.sha256(b"csr").digest()
        + b"\x00\x00\x00\x20"
        + b"\x01" * 32
        + b"\x00\x00\x00\x20"
        + b"\x02" * 32
    )
    swapped = request_statement(
        participant_id="energy",
        csr_der=b"csr",
        identity_public=b"\x02" * 32,
        ceremony_public=b"\x01" * 32,
    )
    assert swapped != statement


def test_private_key_pem_round_trip() -> None:
    pair = generate_identity(byte_source(3))
    pem = dump_private(pair.private)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_private(pem) == pair.private
    assert load_private(pair.private) == pair.private


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key",
        bytes(33),
        X25519PrivateKey.from_private_bytes(bytes(32)).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
)
def test_load_private_refuses_other_data(data: bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        load_private(data, what="kit/identity.pem")
    assert "kit/identity.pem" in str(caught.value)


def test_sign_refuses_malformed_private_keys() -> None:
    with pytest.raises(InternalError):
        sign(bytes(31), b"m")
