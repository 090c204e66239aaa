"""The library reproduces every stored vector byte for byte, both ways.

The JSON files are written by ``tests/vectors/generate.py``, which checks each row
against an independent reference implementation. Here each row is encoded again with
the library (must give the same bytes) and decoded (must give back the inputs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.crypto import agreement, envelope, identity, prg, shamir
from accord.errors import IntegrityError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    assert document["version"] == 1
    return document


def stream_source(data: bytes) -> tuple[Callable[[int], bytes], Callable[[], bool]]:
    """A fixed ``random_bytes`` and a check that it was read to the end exactly."""
    position = 0

    def take(count: int) -> bytes:
        nonlocal position
        assert position + count <= len(data), "the fixed random stream ran out"
        chunk = data[position : position + count]
        position += count
        return chunk

    return take, lambda: position == len(data)


AGREEMENT = load("agreement.json")
PRG = load("prg.json")
SHAMIR = load("shamir.json")
ENVELOPE = load("envelope.json")
IDENTITY = load("identity.json")


@pytest.mark.parametrize("row", AGREEMENT["rows"])
def test_agreement_rows(row: dict[str, Any]) -> None:
    private_u, private_v = bytes.fromhex(row["private_u"]), bytes.fromhex(row["private_v"])
    public_u, public_v = bytes.fromhex(row["public_u"]), bytes.fromhex(row["public_v"])
    source, exhausted = stream_source(private_u)
    assert agreement.generate_keypair(source) == agreement.KeyPair(private_u, public_u)
    assert exhausted()
    assert agreement.public_key(private_v) == public_v
    context = {"federation_id": row["federation_id"], "round": row["round"]}
    from_u = agreement.pairwise_seed(private_u, public_v, **context, u=row["u"], v=row["v"])
    from_v = agreement.pairwise_seed(private_v, public_u, **context, u=row["v"], v=row["u"])
    assert from_u.hex() == from_v.hex() == row["seed"]


@pytest.mark.parametrize("key", AGREEMENT["refused_public_keys"])
def test_agreement_refused_keys(key: str) -> None:
    private = bytes.fromhex(AGREEMENT["rows"][0]["private_u"])
    with pytest.raises(IntegrityError):
        agreement.pairwise_seed(
            private, bytes.fromhex(key), federation_id="f", round=0, u="a", v="b"
        )


@pytest.mark.parametrize("row", PRG["rows"])
def test_prg_rows(row: dict[str, Any]) -> None:
    values = prg.expand(bytes.fromhex(row["seed"]), row["start"], row["count"], row["modulus_bits"])
    assert values.astype("<u4").tobytes().hex() == row["values"]
    decoded = np.frombuffer(bytes.fromhex(row["values"]), dtype="<u4")
    np.testing.assert_array_equal(values, decoded)


@pytest.mark.parametrize("row", SHAMIR["rows"])
def test_shamir_rows(row: dict[str, Any]) -> None:
    secret = bytes.fromhex(row["secret"])
    source, exhausted = stream_source(bytes.fromhex(row["random"]))
    shares = shamir.split(secret, row["threshold"], row["count"], random_bytes=source)
    assert exhausted()
    assert [share.to_bytes().hex() for share in shares] == row["shares"]
    decoded = [shamir.Share.from_bytes(bytes.fromhex(text)) for text in row["shares"]]
    assert decoded == shares
    threshold = row["threshold"]
    assert shamir.combine(decoded[-threshold:], threshold, len(secret)) == secret


@pytest.mark.parametrize("row", ENVELOPE["rows"])
def test_envelope_rows(row: dict[str, Any]) -> None:
    private = bytes.fromhex(row["recipient_private"])
    public = bytes.fromhex(row["recipient_public"])
    assert agreement.public_key(private) == public
    plaintext, aad = bytes.fromhex(row["plaintext"]), bytes.fromhex(row["aad"])
    source, exhausted = stream_source(bytes.fromhex(row["random"]))
    sealed = envelope.seal(plaintext, public, aad=aad, random_bytes=source)
    assert exhausted()
    assert sealed.hex() == row["envelope"]
    assert envelope.open(bytes.fromhex(row["envelope"]), private, aad=aad) == plaintext


@pytest.mark.parametrize("row", IDENTITY["signatures"])
def test_identity_signature_rows(row: dict[str, Any]) -> None:
    private, message = bytes.fromhex(row["private"]), bytes.fromhex(row["message"])
    source, exhausted = stream_source(private)
    assert identity.generate_identity(source).public.hex() == row["public"]
    assert exhausted()
    assert identity.sign(private, message).hex() == row["signature"]
    identity.verify(
        bytes.fromhex(row["public"]), message, bytes.fromhex(row["signature"]), what="a vector"
    )


@pytest.mark.parametrize("row", IDENTITY["message_digests"])
def test_message_digest_rows(row: dict[str, Any]) -> None:
    digest = identity.message_digest(
        federation_id=row["federation_id"],
        round=row["round"],
        stage=row["stage"],
        participant=row["participant"],
        sequence=row["sequence"],
        payload_digest=bytes.fromhex(row["payload_digest"]),
    )
    assert digest.hex() == row["digest"]


@pytest.mark.parametrize("row", IDENTITY["keys_statements"])
def test_keys_statement_rows(row: dict[str, Any]) -> None:
    statement = identity.keys_statement(
        federation_id=row["federation_id"],
        round=row["round"],
        participant=row["participant"],
        encryption_public=bytes.fromhex(row["encryption_public"]),
        masking_public=bytes.fromhex(row["masking_public"]),
    )
    assert statement.hex() == row["statement"]
