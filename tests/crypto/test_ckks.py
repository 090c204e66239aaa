"""CKKS: exact packed sums, versioned contexts, hostile bytes, a coordinator that cannot decrypt."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tenseal.sealapi as sealapi

from accord.crypto.ckks import (
    FORMAT_VERSION,
    CiphertextAccumulator,
    PublicContext,
    SecretContext,
)
from accord.crypto.packing import PackingSpec, choose_packing, pack
from accord.errors import IntegrityError, InternalError, Malformed
from tests.support.ckks import shared_secret_context, stranger_secret_context

N = 4096


def values(spec: PackingSpec, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**spec.modulus_bits, count).astype(np.uint32)


def encrypt(spec: PackingSpec, v: np.ndarray, ctx: SecretContext | None = None) -> bytes:
    return (ctx or shared_secret_context()).encrypt(pack(v, spec), spec)


def test_encrypt_then_decrypt_packed_is_exact() -> None:
    spec = choose_packing(16, 10)
    v = values(spec, 5000, 1)
    out = shared_secret_context().decrypt_packed(encrypt(spec, v), spec, 5000)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, v)


def test_a_seeded_ciphertext_is_about_8_bytes_per_coefficient() -> None:
    spec = choose_packing(16, 10)
    size = len(encrypt(spec, values(spec, 10, 2)))
    assert 8 * N < size < 8 * N + 400
    assert size / spec.elements_per_ciphertext < 4.1


@pytest.mark.parametrize(("b", "n"), [(16, 10), (8, 10), (16, 100), (32, 3)])
def test_the_coordinator_sums_n_uploads_and_a_correction_exactly(b: int, n: int) -> None:
    spec = choose_packing(b, n)
    count = spec.elements_per_ciphertext - 7
    inputs = [values(spec, count, seed) for seed in range(n)]
    correction = values(spec, count, 999)
    public = PublicContext.from_bytes(shared_secret_context().public().to_bytes())
    total = public.accumulator(spec)
    for v in inputs:
        total.add(encrypt(spec, v))
    total.add_plain(pack(correction, spec), spec)
    assert total.summands == n + 1
    expected = (np.sum(inputs, axis=0, dtype=np.uint64) + correction) % 2**b
    out = shared_secret_context().decrypt_packed(total.to_bytes(), spec, count)
    np.testing.assert_array_equal(out, expected)


def test_public_add_of_two_ciphertexts() -> None:
    spec = choose_packing(12, 4)
    a, b = values(spec, 300, 3), values(spec, 300, 4)
    summed = shared_secret_context().public().add(encrypt(spec, a), encrypt(spec, b))
    np.testing.assert_array_equal(
        shared_secret_context().decrypt_packed(summed, spec, 300), (a + b) % 2**12
    )


def test_accumulator_takes_preloaded_ciphertexts() -> None:
    spec = choose_packing(16, 10)
    v = values(spec, 50, 5)
    public = shared_secret_context().public()
    ciphertext = encrypt(spec, v)
    loaded = public.load(ciphertext, spec)
    total = CiphertextAccumulator(public, spec)
    assert total.is_empty
    total.add(loaded)
    with pytest.raises(InternalError, match="only once"):
        total.add(loaded)  # the sum took it over
    total.add(public.load(ciphertext, spec))
    np.testing.assert_array_equal(
        shared_secret_context().decrypt_packed(total.to_bytes(), spec, 50),
        (2 * v.astype(np.uint64)) % 2**16,
    )


def test_an_empty_accumulator_refuses_plaintexts_and_serialization() -> None:
    spec = choose_packing(16, 10)
    total = shared_secret_context().public().accumulator(spec)
    with pytest.raises(InternalError):
        total.add_plain(pack(values(spec, 5, 6), spec), spec)
    with pytest.raises(InternalError):
        total.to_bytes()


def test_secret_context_round_trips_through_versioned_bytes() -> None:
    data = shared_secret_context().to_bytes()
    assert data[0] == FORMAT_VERSION
    loaded = SecretContext.from_bytes(data)
    spec = choose_packing(16, 10)
    v = values(spec, 100, 7)
    np.testing.assert_array_equal(loaded.decrypt_packed(encrypt(spec, v), spec, 100), v)
    np.testing.assert_array_equal(
        shared_secret_context().decrypt_packed(loaded.encrypt(pack(v, spec), spec), spec, 100), v
    )


def test_public_context_round_trips_and_is_tiny() -> None:
    data = shared_secret_context().public().to_bytes()
    assert data[0] == FORMAT_VERSION
    assert len(data) < 200
    assert PublicContext.from_bytes(data).to_bytes() == data


def test_one_kind_of_context_never_loads_as_the_other() -> None:
    with pytest.raises(Malformed, match="different kind"):
        PublicContext.from_bytes(shared_secret_context().to_bytes())
    with pytest.raises(Malformed, match="different kind"):
        SecretContext.from_bytes(shared_secret_context().public().to_bytes())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: bytes([2]) + d[1:],  # unknown version
        lambda d: d[:-1],  # truncated
        lambda d: d + b"\x00",  # trailing byte
        lambda d: d[:2] + struct.pack("<I", 2048) + d[6:],  # unknown ring degree
        lambda d: d[:3],
    ],
)
def test_context_bytes_are_checked(mutate: Any) -> None:
    with pytest.raises(Malformed):
        SecretContext.from_bytes(mutate(shared_secret_context().to_bytes()))
    with pytest.raises(Malformed):
        PublicContext.from_bytes(mutate(shared_secret_context().public().to_bytes()))


def test_a_context_with_foreign_parameters_is_refused(tmp_path: Path) -> None:
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(N)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(N, [40, 40]))
    parms.save(str(tmp_path / "p"))
    blob = (tmp_path / "p").read_bytes()
    data = struct.pack("<BBI", FORMAT_VERSION, 2, N) + struct.pack("<I", len(blob)) + blob
    with pytest.raises(Malformed, match="not Accord's parameters"):
        PublicContext.from_bytes(data)


# ---- the coordinator cannot decrypt -------------------------------------------------

KEY_TYPES = (
    sealapi.SecretKey,
    sealapi.PublicKey,
    sealapi.RelinKeys,
    sealapi.GaloisKeys,
    sealapi.KeyGenerator,
    sealapi.Decryptor,
    sealapi.Encryptor,
)


def reachable(root: object) -> list[object]:
    """Every object reachable from root through attributes, slots and containers."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None))):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, dict):
            stack += list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += list(obj)
        if hasattr(obj, "__dict__"):
            stack += list(vars(obj).values())
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                stack.append(getattr(obj, name))
    return list(seen.values())


def test_the_public_context_holds_no_key_of_any_kind() -> None:
    spec = choose_packing(16, 10)
    public = PublicContext.from_bytes(shared_secret_context().public().to_bytes())
    total = public.accumulator(spec)
    total.add(encrypt(spec, values(spec, 10, 8)))
    objects = reachable(public) + reachable(total)
    assert not [o for o in objects if isinstance(o, KEY_TYPES)]
    assert not [name for name in dir(public) + dir(total) if "decrypt" in name]
    # The secret context, by contrast, does hold one: the walk would find it.
    assert [o for o in reachable(shared_secret_context()) if isinstance(o, sealapi.SecretKey)]


def test_the_public_bytes_contain_no_secret_key() -> None:
    secret_bytes = shared_secret_context().to_bytes()
    key_blob = secret_bytes[-60000:]  # the tail of the serialized secret key
    public_bytes = shared_secret_context().public().to_bytes()
    assert len(public_bytes) < 200 < len(key_blob)
    assert not any(key_blob[i : i + 32] in public_bytes for i in range(0, len(key_blob) - 32, 32))


def test_a_fresh_key_of_the_same_parameters_decrypts_garbage(tmp_path: Path) -> None:
    spec = choose_packing(16, 10)
    v = values(spec, spec.elements_per_ciphertext, 9)
    ciphertext = encrypt(spec, v)
    # Through the only decryption path: refused, never a wrong answer.
    with pytest.raises(IntegrityError):
        stranger_secret_context().decrypt_packed(ciphertext, spec, v.size)
    # Through raw SEAL, as a coordinator that made its own key would: garbage.
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(N)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(N, [60, 49]))
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
    loaded = sealapi.Ciphertext(context)
    (tmp_path / "c").write_bytes(ciphertext)
    loaded.load(context, str(tmp_path / "c"))
    plain = sealapi.Plaintext()
    sealapi.Decryptor(context, sealapi.KeyGenerator(context).secret_key()).decrypt(loaded, plain)
    slots = np.asarray(sealapi.CKKSEncoder(context).decode_complex(plain))
    decoded = np.concatenate([slots.real, slots.imag])
    assert np.median(np.abs(decoded - pack(v, spec))) > 2.0**30


# ---- hostile ciphertext bytes ---------------------------------------------------------


def seal_blob(body: bytes, compr: int = 2) -> bytes:
    return struct.pack("<HBBBBHQ", 0xA15E, 16, 4, 3, compr, 0, 16 + len(body)) + body


def zstd_frame(blocks: list[bytes]) -> bytes:
    # Frame header: no content size, window descriptor 2^(10+17) bytes.
    return struct.pack("<I", 0xFD2FB528) + bytes([0x00, 17 << 3]) + b"".join(blocks)


def zstd_block(last: bool, kind: int, size: int, body: bytes) -> bytes:
    return (int(last) | kind << 1 | size << 3).to_bytes(3, "little") + body


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not a ciphertext at all",
        seal_blob(b"\x00" * 100, compr=0),  # SEAL header, garbage body
        seal_blob(b"\x00" * 100, compr=1),  # zlib is not accepted
        # A decompression bomb: 4096 run-length blocks of 128 KiB = 512 MiB.
        seal_blob(zstd_frame([zstd_block(i == 4095, 1, 128 * 1024, b"\x00") for i in range(4096)])),
        # Three compressed blocks may regenerate 3 x 128 KiB: refused before inflating.
        seal_blob(zstd_frame([zstd_block(i == 2, 2, 1, b"\x00") for i in range(3)])),
    ],
)
def test_hostile_ciphertext_bytes_are_refused_before_seal_parses_them(blob: bytes) -> None:
    spec = choose_packing(16, 10)
    with pytest.raises(Malformed):
        shared_secret_context().public().load(blob, spec)
    with pytest.raises(Malformed):
        shared_secret_context().decrypt_packed(blob, spec, 1)


def test_a_ciphertext_that_lies_about_its_length_is_refused() -> None:
    spec = choose_packing(16, 10)
    good = encrypt(spec, values(spec, 10, 10))
    for bad in (good[:-1], good + b"\x00", good[:100]):
        with pytest.raises(Malformed):
            shared_secret_context().public().load(bad, spec)


def test_a_ciphertext_for_another_packing_or_ring_is_refused() -> None:
    spec16 = choose_packing(16, 10)
    spec8 = choose_packing(8, 100)  # scale 2^17 instead of 2^15
    ciphertext = encrypt(spec16, values(spec16, 10, 11))
    with pytest.raises(Malformed, match="packing"):
        shared_secret_context().public().load(ciphertext, spec8)
    total = shared_secret_context().public().accumulator(spec8)
    with pytest.raises(Malformed):
        total.add(ciphertext)
    assert total.is_empty


def test_the_larger_ring_works_end_to_end_and_rejects_the_smaller() -> None:
    big = SecretContext.generate(8192)
    spec = choose_packing(16, 10, 8192)
    v = values(spec, 10000, 12)
    ciphertext = big.encrypt(pack(v, spec), spec)
    np.testing.assert_array_equal(big.decrypt_packed(ciphertext, spec, 10000), v)
    with pytest.raises(Malformed):
        shared_secret_context().public().load(ciphertext)
    with pytest.raises(InternalError):
        shared_secret_context().encrypt(pack(v[:10], spec), spec)


@pytest.mark.parametrize(
    "reals",
    [np.zeros(100), np.full(N, -1.0), np.full(N, 2.0**40), np.full(N, np.nan)],
)
def test_encrypt_refuses_reals_outside_the_packing(reals: np.ndarray) -> None:
    with pytest.raises(InternalError):
        shared_secret_context().encrypt(reals, choose_packing(16, 10))


def test_generate_refuses_an_unknown_ring_degree() -> None:
    with pytest.raises(InternalError):
        SecretContext.generate(2048)
