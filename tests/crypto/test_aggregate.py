"""UpdateSum: the coordinator's running sum, and a refused chunk that changes nothing."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from accord.crypto import pipeline, wire, wire_payload
from accord.crypto.aggregate import UpdateSum
from accord.crypto.masks import MaskTerm, correction
from accord.crypto.packing import PackingSpec, choose_packing, pack
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError, Malformed, Oversized
from tests.support.ckks import shared_secret_context

FED = "fed-agg"
ROUND = 4
B = 16
N_MAX = 3
TARGET = 40_000  # one ciphertext per CKKS chunk, 10,000 elements per masks chunk
COUNT = 2 * 8192 + 123  # three ciphertexts at k = 2, three masks chunks


@cache
def spec() -> PackingSpec:
    return choose_packing(B, N_MAX)


def new_sum(profile: Profile, **change: object) -> UpdateSum:
    kwargs: dict[str, object] = dict(
        modulus_bits=B,
        packing=spec() if profile.uses_ckks else None,
        public=shared_secret_context().public() if profile.uses_ckks else None,
        federation_id=FED,
        round=ROUND,
        target_chunk_bytes=TARGET,
    )
    kwargs.update(change)
    return UpdateSum(profile, COUNT, **kwargs)


def inputs(profile: Profile, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if profile is Profile.NONE:
        return rng.standard_normal(COUNT).astype(np.float32)
    return rng.integers(0, 2**B, COUNT).astype(np.uint32)


def upload(
    profile: Profile, values: np.ndarray, terms: list[MaskTerm], **change: object
) -> list[bytes]:
    kwargs: dict[str, object] = dict(
        profile=profile,
        federation_id=FED,
        round=ROUND,
        mask_terms=terms if profile.uses_masks else [],
        modulus_bits=B,
        packing=spec() if profile.uses_ckks else None,
        secret=shared_secret_context() if profile.uses_ckks else None,
        target_chunk_bytes=TARGET,
    )
    kwargs.update(change)
    return list(pipeline.protect(values, **kwargs))


def reveal(profile: Profile, chunks: list[bytes]) -> np.ndarray:
    return pipeline.reveal(
        chunks,
        profile=profile,
        element_count=COUNT,
        modulus_bits=B,
        packing=spec() if profile.uses_ckks else None,
        secret=shared_secret_context() if profile.uses_ckks else None,
        federation_id=FED,
        round=ROUND,
        target_chunk_bytes=TARGET,
    )


SEEDS = [bytes([i]) * 16 for i in range(4)]
# Participant 0 adds the pair mask, participant 1 subtracts it; both add a self mask.
TERMS = [
    [MaskTerm(SEEDS[0], 1), MaskTerm(SEEDS[1], 1)],
    [MaskTerm(SEEDS[0], -1), MaskTerm(SEEDS[2], 1)],
]
UNMASK = [MaskTerm(SEEDS[1], -1), MaskTerm(SEEDS[2], -1)]
SECURE = [Profile.CKKS_MASKS, Profile.CKKS, Profile.MASKS]


def finish(total: UpdateSum) -> None:
    if total.profile.uses_masks:
        for start, count in total.plan:
            total.add_correction(start, correction(start, count, UNMASK, B))


@pytest.mark.parametrize("profile", [*SECURE, Profile.NONE])
def test_two_uploads_and_a_correction_sum_exactly(profile: Profile) -> None:
    total = new_sum(profile)
    a, b = inputs(profile, 1), inputs(profile, 2)
    for chunk in upload(profile, a, TERMS[0]) + upload(profile, b, TERMS[1]):
        assert total.add(chunk).profile is profile
    assert total.uploads == 2
    finish(total)
    out = reveal(profile, list(total.chunks()))
    if profile is Profile.NONE:
        np.testing.assert_allclose(out, a + b, rtol=1e-6)
    else:
        np.testing.assert_array_equal(out, (a.astype(np.uint64) + b) % 2**B)


@pytest.mark.parametrize("profile", SECURE)
def test_check_validates_without_adding(profile: Profile) -> None:
    total = new_sum(profile)
    chunks = upload(profile, inputs(profile, 3), TERMS[0])
    headers = [total.check(chunk) for chunk in chunks]
    assert [h.chunk_index for h in headers] == list(range(len(total.plan)))
    assert total.uploads == 0
    with pytest.raises(InternalError, match="empty"):
        total.chunks()


def tamper_ciphertext(chunk: bytes) -> bytes:
    """A chunk with a valid CRC whose last ciphertext is garbage."""
    header, payload = wire.decode_chunk(chunk)
    blobs = wire_payload.decode_ciphertext_payload(
        payload, spec().ciphertext_count(header.element_count)
    )
    blobs[-1] = blobs[-1][:16] + bytes(len(blobs[-1]) - 16)
    payload = wire_payload.encode_ciphertext_payload(blobs)
    fields = {**header.__dict__, "payload_len": len(payload)}
    return wire.encode_chunk(wire.ChunkHeader(**fields), payload)


def recrc(data: bytes) -> bytes:
    end = 41 + data[40]
    payload = data[end + 4 :]
    return data[:end] + struct.pack("<I", zlib.crc32(payload, zlib.crc32(data[:end]))) + payload


def flip_payload(chunk: bytes) -> bytes:
    bad = bytearray(chunk)
    bad[-5] ^= 1
    return bytes(bad)


def rewrite(offset: int, fmt: str, value: int) -> Callable[[bytes], bytes]:
    def apply(chunk: bytes) -> bytes:
        bad = bytearray(chunk)
        struct.pack_into(fmt, bad, offset, value)
        return recrc(bytes(bad))

    return apply


BAD_CHUNKS: list[tuple[str, Callable[[bytes], bytes], type[Exception], str]] = [
    ("crc", flip_payload, IntegrityError, "chunk 1: CRC"),
    ("truncated", lambda c: c[:-3], Malformed, "chunk 1: is truncated"),
    ("version", rewrite(0, "<B", 2), Malformed, "chunk 1: format version 2"),
    ("oversized", lambda c: c + bytes(9 << 20), Oversized, "chunk 1"),
    ("round", rewrite(4, "<I", ROUND + 1), Malformed, "chunk 1: round = 5, expected 4"),
    ("chunk_count", rewrite(12, "<I", 9), Malformed, "chunk 1: chunk_count = 9"),
    ("element_start", rewrite(16, "<Q", 7), Malformed, "chunk 1: element_start = 7"),
    ("modulus_bits", rewrite(28, "<B", 12), Malformed, "chunk 1: modulus_bits"),
    ("aggregate flag", rewrite(2, "<B", 1), Malformed, "chunk 1: flags = 1, expected 0"),
    (
        "federation",
        lambda c: recrc(c.replace(FED.encode(), b"fed-xyz")),
        Malformed,
        "federation_id",
    ),
]


CASES = [
    pytest.param(profile, *bad[1:], id=f"{profile.value}-{bad[0]}")
    for profile in [*SECURE, Profile.NONE]
    for bad in BAD_CHUNKS
    if not (profile is Profile.NONE and bad[0] == "modulus_bits")  # none carries no modulus
]


@pytest.mark.parametrize(("profile", "damage", "error", "message"), CASES)
def test_a_refused_chunk_leaves_the_sum_unchanged(
    profile: Profile,
    damage: Callable[[bytes], bytes],
    error: type[Exception],
    message: str,
) -> None:
    total = new_sum(profile)
    first = upload(profile, inputs(profile, 4), TERMS[0])
    for chunk in first:
        total.add(chunk)
    before = list(total.chunks())
    second = upload(profile, inputs(profile, 5), TERMS[1])
    with pytest.raises(error, match=message):
        total.check(damage(second[1]))
    with pytest.raises(error, match=message):
        total.add(damage(second[1]))
    assert list(total.chunks()) == before
    assert total.uploads == 1


@pytest.mark.parametrize("profile", [Profile.CKKS_MASKS, Profile.CKKS])
def test_a_chunk_with_one_bad_ciphertext_adds_none_of_them(profile: Profile) -> None:
    total = new_sum(profile, target_chunk_bytes=1 << 20)  # all three ciphertexts in one chunk
    chunks = upload(profile, inputs(profile, 6), TERMS[0], target_chunk_bytes=1 << 20)
    assert len(chunks) == 1
    total.add(chunks[0])
    before = list(total.chunks())
    bad = tamper_ciphertext(
        upload(profile, inputs(profile, 7), TERMS[1], target_chunk_bytes=1 << 20)[0]
    )
    with pytest.raises(Malformed, match="chunk 0: ciphertext 2"):
        total.add(bad)
    assert list(total.chunks()) == before


def test_a_ciphertext_at_another_scale_is_refused() -> None:
    other = choose_packing(B, 200)
    assert other.scale_bits != spec().scale_bits
    total = new_sum(Profile.CKKS)
    chunk = upload(Profile.CKKS, inputs(Profile.CKKS, 8), [])[0]
    header, payload = wire.decode_chunk(chunk)
    foreign = shared_secret_context().encrypt(pack(inputs(Profile.CKKS, 9)[:4096], other), other)
    payload = wire_payload.encode_ciphertext_payload([foreign])
    bad = wire.encode_chunk(
        wire.ChunkHeader(**{**header.__dict__, "payload_len": len(payload)}), payload
    )
    with pytest.raises(Malformed, match="chunk 0: ciphertext 0"):
        total.add(bad)


def test_a_chunk_of_another_profile_is_refused() -> None:
    total = new_sum(Profile.CKKS_MASKS)
    chunk = upload(Profile.CKKS, inputs(Profile.CKKS, 10), [])[0]
    with pytest.raises(Malformed, match="profile"):
        total.add(chunk)


def test_masks_payload_values_outside_the_group_are_refused() -> None:
    total = new_sum(Profile.MASKS, modulus_bits=12)
    chunk = upload(Profile.MASKS, inputs(Profile.MASKS, 11), [])[0]  # b = 16 values
    bad = rewrite(28, "<B", 12)(chunk)
    with pytest.raises(Malformed, match="outside"):
        total.add(bad)


def test_a_partly_added_upload_never_reaches_the_aggregate() -> None:
    total = new_sum(Profile.MASKS)
    chunks = upload(Profile.MASKS, inputs(Profile.MASKS, 12), TERMS[0])
    for chunk in chunks[:-1]:
        total.add(chunk)
    with pytest.raises(InternalError, match="incomplete"):
        total.chunks()


def test_ckks_sums_hold_at_most_n_max_plus_one_summands() -> None:
    total = new_sum(Profile.CKKS)
    chunks = upload(Profile.CKKS, inputs(Profile.CKKS, 13), [])
    for _ in range(N_MAX + 1):
        for chunk in chunks:
            total.add(chunk)
    before = list(total.chunks())
    with pytest.raises(InternalError, match="summands"):
        total.add(chunks[0])
    assert total.uploads == N_MAX + 1
    assert list(total.chunks()) == before


def test_ckks_corrections_must_cover_whole_ciphertexts_with_room_left() -> None:
    total = new_sum(Profile.CKKS_MASKS)
    values = np.zeros(8192, dtype=np.uint32)
    with pytest.raises(InternalError, match="no upload"):
        total.add_correction(0, values)
    for chunk in upload(Profile.CKKS_MASKS, inputs(Profile.CKKS_MASKS, 14), TERMS[0]):
        total.add(chunk)
    with pytest.raises(InternalError, match="whole ciphertexts"):
        total.add_correction(1, values)
    with pytest.raises(InternalError, match="whole ciphertexts"):
        total.add_correction(0, values[:100])
    with pytest.raises(InternalError, match=r"\[0, 2\^16\)"):
        total.add_correction(0, values + 2**16)
    with pytest.raises(InternalError, match="inside"):
        total.add_correction(2 * 8192, np.zeros(200, dtype=np.uint32))
    total.add_correction(2 * 8192, np.zeros(123, dtype=np.uint32))  # the partial last one


@pytest.mark.parametrize("profile", [Profile.CKKS, Profile.NONE])
def test_profiles_without_masks_take_no_correction(profile: Profile) -> None:
    with pytest.raises(InternalError, match="no masks"):
        new_sum(profile).add_correction(0, np.zeros(3, dtype=np.uint32))


def test_constructor_refuses_mismatched_settings() -> None:
    with pytest.raises(InternalError):
        new_sum(Profile.CKKS, public=None)
    with pytest.raises(InternalError):
        new_sum(Profile.MASKS, packing=spec())
    with pytest.raises(InternalError):
        new_sum(Profile.CKKS, modulus_bits=8)
    with pytest.raises(InternalError):
        new_sum(Profile.MASKS, modulus_bits=40)
    with pytest.raises(InternalError):
        new_sum(Profile.MASKS, round=-1)


@pytest.mark.parametrize("profile", [*SECURE, Profile.NONE])
def test_sums_of_chunk_ranges_join_into_the_whole_sum(profile: Profile) -> None:
    whole = new_sum(profile)
    count = len(whole.plan)
    parts = [new_sum(profile, owned=range(0, 1)), new_sum(profile, owned=range(1, count))]
    chunks = upload(profile, inputs(profile, 1), TERMS[0]) + upload(
        profile, inputs(profile, 2), TERMS[1]
    )
    for chunk in chunks:
        whole.add(chunk)
        index = whole.check(chunk).chunk_index
        parts[0 if index in parts[0].owned else 1].add(chunk)
    finish(whole)
    for part in parts:
        for index in part.owned if profile.uses_masks else ():
            start, count = part.plan[index]
            part.add_correction(start, correction(start, count, UNMASK, B))
    assert [c for part in parts for c in part.chunks()] == list(whole.chunks())
    # Each part holds its chunks' elements and nothing more.
    assert parts[0].elements == range(0, whole.plan[1][0])
    assert parts[1].elements == range(whole.plan[1][0], COUNT)


def test_a_range_sum_refuses_chunks_and_corrections_outside_its_range() -> None:
    part = new_sum(Profile.CKKS_MASKS, owned=range(1, 2))
    chunks = upload(Profile.CKKS_MASKS, inputs(Profile.CKKS_MASKS, 3), TERMS[0])
    part.check(chunks[0])  # checks any chunk of the plan
    with pytest.raises(InternalError, match="not one of this sum's chunks"):
        part.add(chunks[0])
    part.add(chunks[1])
    with pytest.raises(InternalError, match="inside"):
        part.add_correction(0, np.zeros(8192, dtype=np.uint32))
    assert part.uploads == 1 and part.ciphertexts == 1
    with pytest.raises(InternalError, match="contiguous range"):
        new_sum(Profile.MASKS, owned=range(0, 3, 2))
    with pytest.raises(InternalError, match="contiguous range"):
        new_sum(Profile.MASKS, owned=range(1, 9))
