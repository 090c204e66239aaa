"""The chunk wire format under hostile input (issue 12, "Fuzzing").

`tests/crypto/test_wire.py` states the format; here Hypothesis attacks it: whatever the
bytes, `decode_chunk` and the payload decoders either accept them or refuse them with
`Malformed`, `IntegrityError` or `Oversized`, never another exception. What they
accept is canonical: it re-encodes to the very same bytes, so no two encodings of one
chunk exist. Every truncation, every single-bit flip, every lie in a length field is
refused, for each profile. The same targets drive the atheris harness
(`test_harnesses.py`).
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.crypto import wire, wire_payload
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.wire import ChunkHeader, decode_chunk, encode_chunk
from accord.errors import IntegrityError, Malformed, Oversized

from . import targets

REFUSALS = (Malformed, IntegrityError, Oversized)
SPEC = choose_packing(16, 10)
PAYLOAD_LEN_OFFSET = 36
ID_LENGTH_OFFSET = 40


@st.composite
def valid_chunks(draw: st.DrawFn) -> tuple[ChunkHeader, bytes]:
    """A consistent header of any profile and a payload of the length it announces."""
    profile = draw(st.sampled_from(list(Profile)))
    count = draw(st.integers(1, 2**32 - 1))
    fields: dict[str, object] = {}
    if profile is Profile.MASKS:
        fields = {"modulus_bits": draw(st.integers(1, 32))}
    elif profile in (Profile.CKKS, Profile.CKKS_MASKS):
        fields = {
            "modulus_bits": SPEC.modulus_bits,
            "fields_per_real": SPEC.fields_per_real,
            "field_bits": SPEC.field_bits,
            "scale_bits": SPEC.scale_bits,
            "poly_degree": SPEC.poly_modulus_degree,
        }
    index = draw(st.integers(0, 50))
    payload = draw(st.binary(max_size=64))
    header = ChunkHeader(
        profile=profile,
        round=draw(st.integers(0, 2**32 - 1)),
        chunk_index=index,
        chunk_count=draw(st.integers(index + 1, 2**32 - 1)),
        element_start=draw(st.integers(0, 2**63)),
        element_count=count,
        payload_len=len(payload),
        federation_id=draw(st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)),
        flags=draw(st.sampled_from([0, wire.FLAG_AGGREGATE])),
        **fields,  # type: ignore[arg-type]
    )
    return header, payload


def refused_or_canonical(data: bytes) -> None:
    """`data` is refused with a typed error, or decodes to what re-encodes as `data`."""
    try:
        header, payload = decode_chunk(data)
    except REFUSALS:
        return
    assert encode_chunk(header, payload) == data


@given(chunk=valid_chunks())
def test_every_profile_round_trips(chunk: tuple[ChunkHeader, bytes]) -> None:
    header, payload = chunk
    data = encode_chunk(header, payload)
    assert decode_chunk(data) == (header, payload)


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_typed_or_canonical(data: bytes) -> None:
    refused_or_canonical(data)
    refused_or_canonical(targets.with_crc(data))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=valid_chunks(), data=st.data())
def test_random_damage_is_refused_typed_or_canonical(
    chunk: tuple[ChunkHeader, bytes], data: st.DataObject
) -> None:
    good = bytearray(encode_chunk(*chunk))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        where = data.draw(st.integers(0, len(good)), label="where")
        edit = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]), label="edit")
        if edit == "flip" and where < len(good):
            good[where] ^= 1 << data.draw(st.integers(0, 7))
        elif edit == "set" and where < len(good):
            good[where] = data.draw(st.integers(0, 255))
        elif edit == "insert":
            good[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del good[where : where + data.draw(st.integers(1, 8))]
    refused_or_canonical(bytes(good))
    refused_or_canonical(targets.with_crc(bytes(good)))  # the checks behind the CRC


@settings(max_examples=50)
@given(chunk=valid_chunks())
def test_every_truncation_and_every_bit_flip_is_refused(chunk: tuple[ChunkHeader, bytes]) -> None:
    good = encode_chunk(*chunk)
    for cut in range(len(good)):
        with pytest.raises(Malformed):
            decode_chunk(good[:cut])
    for bit in range(8 * len(good)):
        bad = bytearray(good)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(REFUSALS):
            decode_chunk(bytes(bad))


@settings(max_examples=100)
@given(chunk=valid_chunks(), lie=st.integers(0, 2**32 - 1))
def test_a_lying_payload_length_is_refused_even_with_a_valid_crc(
    chunk: tuple[ChunkHeader, bytes], lie: int
) -> None:
    header, payload = chunk
    if lie == header.payload_len:
        lie = header.payload_len + 1
    bad = bytearray(encode_chunk(header, payload))
    struct.pack_into("<I", bad, PAYLOAD_LEN_OFFSET, lie)
    with pytest.raises((Malformed, Oversized)):
        decode_chunk(targets.with_crc(bytes(bad)))


@settings(max_examples=100)
@given(chunk=valid_chunks(), lie=st.integers(0, 255))
def test_a_lying_federation_id_length_is_refused_even_with_a_valid_crc(
    chunk: tuple[ChunkHeader, bytes], lie: int
) -> None:
    header, payload = chunk
    length = len(header.federation_id.encode())
    if lie == length:
        lie = (length + 1) % 256
    bad = bytearray(encode_chunk(header, payload))
    bad[ID_LENGTH_OFFSET] = lie
    with pytest.raises(REFUSALS):
        decode_chunk(targets.with_crc(bytes(bad)))


@settings(max_examples=200)
@given(
    payload=st.binary(max_size=64),
    count=st.integers(0, 40),
    bits=st.integers(1, 32),
    ciphertexts=st.integers(0, 5),
)
def test_payload_decoders_refuse_anything_but_their_layout_with_malformed(
    payload: bytes, count: int, bits: int, ciphertexts: int
) -> None:
    for decode in (
        lambda: wire_payload.decode_float_payload(payload, count, chunk_index=1),
        lambda: wire_payload.decode_field_payload(payload, bits, count, chunk_index=1),
        lambda: wire_payload.decode_ciphertext_payload(payload, ciphertexts, chunk_index=1),
    ):
        with contextlib.suppress(Malformed):
            decode()


# ---- the atheris targets, driven by Hypothesis (runs without atheris) ----


@pytest.mark.parametrize("target", ["chunk", "envelope"])
@settings(max_examples=300)
@given(data=st.data())
def test_fuzz_targets_only_raise_typed_errors(target: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(targets.seeds(target)), label="seed")
    damaged = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, max(0, len(damaged) - 1)))
        if damaged and data.draw(st.booleans()):
            damaged[where] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del damaged[where:]
    targets.TARGETS[target](bytes(damaged))
    targets.TARGETS[target](data.draw(st.binary(max_size=300)))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_ceremony_opener_only_raises_typed_errors(data: st.DataObject) -> None:
    # Mode 1 seals the input properly, so TenSEAL parses it as a secret context.
    (seed,) = targets.seeds("ceremony")
    damaged = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        if len(damaged) < 2:
            break
        where = data.draw(st.integers(1, len(damaged) - 1))
        if data.draw(st.booleans()):
            damaged[where] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del damaged[where:]
    targets.ceremony_opener(bytes(damaged))
    targets.ceremony_opener(data.draw(st.binary(max_size=300)))
