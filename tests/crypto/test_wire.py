"""Wire chunks: round trips, and every kind of damage refused with the right error class."""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto import wire, wire_layout, wire_payload
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.wire import ChunkHeader, decode_chunk, encode_chunk
from accord.crypto.wire_layout import chunk_plan
from accord.errors import IntegrityError, InternalError, Malformed, Oversized

SPEC = choose_packing(16, 10)


def header(**change: object) -> ChunkHeader:
    fields: dict[str, object] = dict(
        profile=Profile.CKKS_MASKS,
        round=7,
        chunk_index=2,
        chunk_count=5,
        element_start=2 * 31 * 8192,
        element_count=31 * 8192,
        payload_len=11,
        federation_id="fed-α",
        modulus_bits=16,
        fields_per_real=2,
        field_bits=20,
        scale_bits=15,
        poly_degree=4096,
    )
    fields.update(change)
    return ChunkHeader(**fields)


def chunk(**change: object) -> bytes:
    h = header(**change)
    return encode_chunk(h, bytes(i % 251 for i in range(h.payload_len)))


def recrc(data: bytes) -> bytes:
    """Recompute the CRC of a (tampered) chunk, so only the tampering is checked."""
    id_len = data[40]
    end = 41 + id_len
    payload = data[end + 4 :]
    crc = zlib.crc32(payload, zlib.crc32(data[:end]))
    return data[:end] + struct.pack("<I", crc) + payload


def test_the_header_layout_is_the_documented_one() -> None:
    data = header().to_bytes()
    assert data[:4] == bytes([1, 1, 0, 0])  # version, profile ckks+masks, flags, reserved
    assert struct.unpack_from("<IIIQI", data, 4) == (7, 2, 5, 2 * 31 * 8192, 31 * 8192)
    assert tuple(data[28:32]) == (16, 2, 20, 15)
    assert struct.unpack_from("<II", data, 32) == (4096, 11)
    assert data[40] == len("fed-α".encode()) and data[41:] == "fed-α".encode()
    assert ChunkHeader.from_bytes(data) == header()


headers = st.builds(
    ChunkHeader,
    profile=st.just(Profile.MASKS),
    round=st.integers(0, 2**32 - 1),
    chunk_index=st.integers(0, 1000),
    chunk_count=st.just(1001),
    element_start=st.integers(0, 2**63),
    element_count=st.integers(1, 2**32 - 1),
    payload_len=st.integers(0, 64),
    federation_id=st.text(max_size=60),
    modulus_bits=st.integers(1, 32),
    flags=st.sampled_from([0, wire.FLAG_AGGREGATE]),
)


@given(h=headers, data=st.data())
def test_chunks_round_trip(h: ChunkHeader, data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=h.payload_len, max_size=h.payload_len))
    assert ChunkHeader.from_bytes(h.to_bytes()) == h
    assert decode_chunk(encode_chunk(h, payload)) == (h, payload)


@settings(max_examples=300)
@given(data=st.data())
def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    good = chunk()
    bit = data.draw(st.integers(0, 8 * len(good) - 1))
    bad = bytearray(good)
    bad[bit // 8] ^= 1 << (bit % 8)
    # CRC-32 catches every single-bit error; a flip in a length field may be caught
    # earlier as a structural error (or as a payload announced above the limit).
    with pytest.raises((IntegrityError, Malformed, Oversized)):
        decode_chunk(bytes(bad))


def test_a_flipped_payload_bit_is_a_crc_error_naming_the_chunk() -> None:
    bad = bytearray(chunk())
    bad[-1] ^= 0x10
    with pytest.raises(IntegrityError, match="chunk 2: CRC"):
        decode_chunk(bytes(bad))


@given(cut=st.integers(0, 10**6))
def test_every_truncation_is_malformed(cut: int) -> None:
    good = chunk()
    with pytest.raises(Malformed):
        decode_chunk(good[: cut % len(good)])


def test_truncation_names_the_chunk_once_the_header_is_readable() -> None:
    with pytest.raises(Malformed, match="chunk 2: is truncated"):
        decode_chunk(chunk()[:-1])
    with pytest.raises(Malformed, match="chunk 2: is followed by trailing bytes"):
        decode_chunk(chunk() + b"\x00")


def test_an_unknown_version_is_malformed_even_with_a_valid_crc() -> None:
    bad = recrc(bytes([2]) + chunk()[1:])
    with pytest.raises(Malformed, match="chunk 2: format version 2"):
        decode_chunk(bad)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (1, 9, "unknown profile"),
        (2, 0x80, "unknown flags"),
        (3, 1, "reserved"),
        (28, 0, "modulus_bits"),  # a CKKS chunk needs b
        (29, 0, "needs every packing field"),
    ],
)
def test_inconsistent_header_fields_are_malformed(offset: int, value: int, message: str) -> None:
    bad = bytearray(chunk())
    bad[offset] = value
    with pytest.raises(Malformed, match=message):
        decode_chunk(recrc(bytes(bad)))


def test_oversized_chunks_are_refused_before_parsing() -> None:
    big = chunk(payload_len=2000)
    with pytest.raises(Oversized, match="chunk 2: is"):
        decode_chunk(big, max_bytes=1000)
    with pytest.raises(Oversized):
        decode_chunk(b"\x00" * 2000, max_bytes=1000)
    # A short chunk that announces a huge payload is refused as oversized too.
    lying = bytearray(chunk())
    struct.pack_into("<I", lying, 36, 10**9)
    with pytest.raises(Oversized, match="announces"):
        decode_chunk(bytes(lying))


def test_headers_refuse_out_of_range_fields() -> None:
    for change in (
        {"round": 2**32},
        {"chunk_index": 5},
        {"element_count": 0},
        {"federation_id": "x" * 256},
        {"fields_per_real": 0},
        {"profile": Profile.MASKS},  # masks carries no packing fields
        {"flags": 2},
    ):
        with pytest.raises(InternalError):
            header(**change)
    with pytest.raises(InternalError):
        encode_chunk(header(), b"short")
    with pytest.raises(Malformed, match="trailing"):
        ChunkHeader.from_bytes(header().to_bytes() + b"\x00")


@pytest.mark.parametrize("profile", list(Profile))
@given(count=st.integers(1, 3 * 10**6))
def test_chunk_plan_covers_the_vector_in_order(profile: Profile, count: int) -> None:
    spec = SPEC if profile.uses_ckks else None
    plan = chunk_plan(count, profile, spec)
    assert plan[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(plan))
    assert plan[-1][0] + plan[-1][1] == count
    if spec is not None:
        # Whole ciphertexts per chunk, about 1 MiB of seeded ciphertexts each.
        assert all(n % spec.elements_per_ciphertext == 0 for _, n in plan[:-1])
        assert all(n == 31 * spec.elements_per_ciphertext for _, n in plan[:-1])
    else:
        assert all(n == 1 << 18 for _, n in plan[:-1])


def test_chunk_plan_refuses_bad_arguments() -> None:
    with pytest.raises(InternalError):
        chunk_plan(0, Profile.MASKS)
    with pytest.raises(InternalError):
        chunk_plan(10, Profile.CKKS)
    with pytest.raises(InternalError):
        chunk_plan(10, Profile.MASKS, target_bytes=0)


@pytest.mark.parametrize(("b", "width"), [(8, 2), (16, 2), (24, 4), (32, 4)])
def test_field_payloads_use_the_narrowest_width(b: int, width: int) -> None:
    values = np.array([0, 1, 2**b - 1], dtype=np.uint32)
    payload = wire_payload.encode_field_payload(values, b)
    assert len(payload) == 3 * width == 3 * wire_payload.element_width(Profile.MASKS, b)
    np.testing.assert_array_equal(wire_payload.decode_field_payload(payload, b, 3), values)
    with pytest.raises(Malformed):
        wire_payload.decode_field_payload(payload, b, 4)


def test_field_payloads_refuse_values_outside_the_group() -> None:
    payload = wire_payload.encode_field_payload(np.array([300], dtype=np.uint32), 12)
    with pytest.raises(Malformed, match="chunk 4: payload holds values outside"):
        wire_payload.decode_field_payload(payload, 8, 1, chunk_index=4)


def test_float_payloads_refuse_non_finite_values() -> None:
    good = wire_payload.encode_float_payload(np.array([1.5, -2.0], dtype=np.float32))
    np.testing.assert_array_equal(wire_payload.decode_float_payload(good, 2), [1.5, -2.0])
    for bad in (np.nan, np.inf):
        with pytest.raises(Malformed):
            wire_payload.decode_float_payload(wire_payload.encode_float_payload(np.array([bad])), 1)


def test_ciphertext_payload_framing() -> None:
    blobs = [b"abc", b"defgh"]
    payload = wire_payload.encode_ciphertext_payload(blobs)
    assert wire_payload.decode_ciphertext_payload(payload, 2) == blobs
    for bad, count in ((payload, 1), (payload, 3), (payload[:-1], 2), (payload + b"\x00", 2)):
        with pytest.raises(Malformed):
            wire_payload.decode_ciphertext_payload(bad, count)
    with pytest.raises(Malformed):
        wire_payload.decode_ciphertext_payload(struct.pack("<I", 0), 1)


def test_require_layout_names_the_first_wrong_field() -> None:
    plan = [(0, 100), (100, 50)]
    kwargs = dict(
        profile=Profile.MASKS,
        federation_id="f",
        round=3,
        plan=plan,
        modulus_bits=16,
        spec=None,
        aggregate=False,
    )
    good = wire_layout.layout_header(chunk_index=1, payload_len=100, **kwargs)
    wire_layout.require_layout(good, **kwargs)
    for change, field in (
        ({"round": 4}, "round"),
        ({"federation_id": "g"}, "federation_id"),
        ({"element_count": 49}, "element_count"),
        ({"modulus_bits": 8}, "modulus_bits"),
        ({"flags": wire.FLAG_AGGREGATE}, "flags"),
        ({"chunk_count": 3, "chunk_index": 1}, "chunk_count"),
    ):
        bad = ChunkHeader(**{**good.__dict__, **change})
        with pytest.raises(Malformed, match=f"chunk 1: {field} = "):
            wire_layout.require_layout(bad, **kwargs)
