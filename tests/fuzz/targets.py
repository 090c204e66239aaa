"""Fuzz targets shared by the atheris harness (`harness.py`) and the Hypothesis tests.

Each target takes arbitrary bytes, feeds them to one of the decoders that read what a
peer sent, and returns normally when the decoder either accepts the input or refuses it
with one of the typed errors its contract names. Any other exception (an
`IndexError`, a `struct.error`, a numpy or TenSEAL error, a `MemoryError`) escapes and is
a crash: it would reach the gRPC servicer as INTERNAL, or kill a participant's daemon.

- `chunk_decoder`: `crypto.wire.decode_chunk`, then the payload decoder its header
  names. The first input byte picks a mode: raw bytes (the CRC guards the fields), or
  the same bytes with the CRC recomputed, so that the field checks behind it are reached.
- `envelope_opener`: `crypto.envelope.open` of raw bytes for a fixed recipient.
- `ceremony_opener`: `crypto.ceremony.open_secret`; the harness holds the maker's
  identity key, so the input is signed correctly and the checks behind the signature
  are reached: either the sealed bytes are the input, or the input is sealed properly
  as the plaintext (then `SecretContext.from_bytes` reads it: TenSEAL parses it).

Nothing here imports atheris: the targets are plain functions.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Callable

from accord.crypto import ceremony, envelope, identity, wire, wire_payload
from accord.crypto.agreement import public_key
from accord.crypto.profile import Profile
from accord.errors import BadSignature, IntegrityError, Malformed, Oversized

FEDERATION = "fuzz-federation"
RECIPIENT_PRIVATE = hashlib.sha256(b"fuzz recipient").digest()
RECIPIENT_PUBLIC = public_key(RECIPIENT_PRIVATE)
AAD = b"accord fuzz aad"
MAKER = identity.generate_identity(lambda n: hashlib.sha256(b"fuzz maker").digest()[:n])
MAX_CHUNK_BYTES = 1 << 16

CHUNK_ERRORS = (Malformed, IntegrityError, Oversized)
ENVELOPE_ERRORS = (IntegrityError,)
CEREMONY_ERRORS = (BadSignature, IntegrityError, Malformed)

_ID_OFFSET = 40  # the federation id's length byte follows the fixed header fields


def with_crc(data: bytes) -> bytes:
    """`data` with the chunk CRC recomputed over its header and payload (if long enough)."""
    if len(data) <= _ID_OFFSET:
        return data
    end = _ID_OFFSET + 1 + data[_ID_OFFSET]
    if len(data) < end + 4:
        return data
    payload = data[end + 4 :]
    crc = zlib.crc32(payload, zlib.crc32(data[:end]))
    return data[:end] + struct.pack("<I", crc) + payload


def chunk_decoder(data: bytes) -> None:
    """Decode a chunk and its payload; only Malformed, IntegrityError, Oversized may escape."""
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        body = with_crc(body)
    try:
        header, payload = wire.decode_chunk(body, max_bytes=MAX_CHUNK_BYTES)
        index = header.chunk_index
        if header.profile is Profile.NONE:
            wire_payload.decode_float_payload(payload, header.element_count, chunk_index=index)
        elif header.profile is Profile.MASKS:
            wire_payload.decode_field_payload(
                payload, header.modulus_bits, header.element_count, chunk_index=index
            )
        else:
            per_ciphertext = max(1, header.poly_degree * header.fields_per_real)
            count = -(-header.element_count // per_ciphertext)
            wire_payload.decode_ciphertext_payload(payload, count, chunk_index=index)
    except CHUNK_ERRORS:
        return


def envelope_opener(data: bytes) -> None:
    """Open raw bytes as an envelope; only IntegrityError may escape."""
    try:
        envelope.open(data, RECIPIENT_PRIVATE, aad=AAD, what="the fuzzed envelope")
    except ENVELOPE_ERRORS:
        return


def ceremony_opener(data: bytes) -> None:
    """Open a correctly signed CKKS key envelope made of the input (see the module doc)."""
    if not data:
        return
    mode, body = data[0], data[1:]
    public = b"fuzzed public context"
    if mode & 1:
        aad = ceremony._aad(FEDERATION, 1, "urban")
        sealed = envelope.seal(body, RECIPIENT_PUBLIC, aad=aad)
    else:
        sealed = body
    statement = ceremony.sealed_statement(
        federation_id=FEDERATION, key_epoch=1, recipient="urban", sealed=sealed, public=public
    )
    signature = identity.sign(MAKER.private, statement)
    try:
        ceremony.open_secret(
            sealed,
            RECIPIENT_PRIVATE,
            federation_id=FEDERATION,
            key_epoch=1,
            recipient="urban",
            public=public,
            signature=signature,
            maker="energy",
            maker_identity_public=MAKER.public,
        )
    except CEREMONY_ERRORS:
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "chunk": chunk_decoder,
    "envelope": envelope_opener,
    "ceremony": ceremony_opener,
}


@functools.cache
def seeds(target: str) -> tuple[bytes, ...]:
    """Valid inputs to start from: what each decoder accepts, in each mode (made once)."""
    if target == "chunk":
        found = []
        for profile, payload, extra in (
            (Profile.NONE, wire_payload.encode_float_payload([1.5, -2.0]), {}),
            (Profile.MASKS, wire_payload.encode_field_payload([1, 2], 16), {"modulus_bits": 16}),
        ):
            header = wire.ChunkHeader(
                profile=profile,
                round=3,
                chunk_index=0,
                chunk_count=1,
                element_start=0,
                element_count=2,
                payload_len=len(payload),
                federation_id=FEDERATION,
                **extra,
            )
            found += [bytes([0]) + wire.encode_chunk(header, payload)]
            found += [bytes([1]) + wire.encode_chunk(header, payload)]
        return tuple(found)
    if target == "envelope":
        return (envelope.seal(b"a share", RECIPIENT_PUBLIC, aad=AAD),)
    from accord.crypto.ckks import SecretContext

    secret = SecretContext.generate(4096).to_bytes()
    return (bytes([1]) + secret,)
