"""protect -> UpdateSum -> reveal: the decoded aggregate is the exact sum mod 2^b."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto import pipeline, wire, wire_layout
from accord.crypto.aggregate import UpdateSum
from accord.crypto.masks import MaskTerm, correction, correction_terms, pairwise_sign
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError, Malformed
from tests.support.ckks import shared_secret_context, stranger_secret_context

SECURE = [Profile.CKKS_MASKS, Profile.CKKS, Profile.MASKS]
FED = "fed-pipe"


def run_round(
    profile: Profile,
    n: int,
    count: int,
    b: int,
    *,
    dropped: int = 0,
    target: int = wire.DEFAULT_TARGET_CHUNK_BYTES,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """One round over a complete mask graph; the last `dropped` participants never upload."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i:03d}" for i in range(n)]
    spec = choose_packing(b, n) if profile.uses_ckks else None
    ctx = shared_secret_context() if profile.uses_ckks else None
    pair_seed = {(u, v): rng.bytes(16) for u, v in itertools.combinations(ids, 2)}
    self_seed = {u: rng.bytes(16) for u in ids}

    def terms(u: str) -> list[MaskTerm]:
        if not profile.uses_masks:
            return []
        out = [MaskTerm(self_seed[u], 1)]
        for v in ids:
            if v != u:
                out.append(MaskTerm(pair_seed[min(u, v), max(u, v)], pairwise_sign(u, v)))
        return out

    survivors = ids[: n - dropped]
    if profile is Profile.NONE:
        inputs = {u: rng.standard_normal(count).astype(np.float32) for u in survivors}
    else:
        inputs = {u: rng.integers(0, 2**b, count).astype(np.uint32) for u in survivors}
    total = UpdateSum(
        profile,
        count,
        modulus_bits=b,
        packing=spec,
        public=ctx.public() if ctx else None,
        federation_id=FED,
        round=9,
        target_chunk_bytes=target,
    )
    sizes = {}
    for u in survivors:
        chunks = list(
            pipeline.protect(
                inputs[u],
                profile=profile,
                federation_id=FED,
                round=9,
                mask_terms=terms(u),
                modulus_bits=b,
                packing=spec,
                secret=ctx,
                target_chunk_bytes=target,
            )
        )
        for chunk in chunks:  # the whole upload is verified before any of it is added
            total.check(chunk)
        for chunk in chunks:
            total.add(chunk)
        sizes[u] = sum(len(c) for c in chunks)
    if profile.uses_masks:
        fix = correction_terms(
            {u: self_seed[u] for u in survivors},
            [
                (u, v, pair_seed[min(u, v), max(u, v)])
                for u in survivors
                for v in ids[n - dropped :]
            ],
        )
        for start, size in wire_layout.chunk_plan(count, profile, spec, target):
            total.add_correction(start, correction(start, size, fix, b))
    out = pipeline.reveal(
        total.chunks(),
        profile=profile,
        element_count=count,
        modulus_bits=b,
        packing=spec,
        secret=ctx,
        federation_id=FED,
        round=9,
        target_chunk_bytes=target,
    )
    if profile is Profile.NONE:
        expected = np.sum([inputs[u] for u in survivors], axis=0, dtype=np.float32)
    else:
        expected = np.sum([inputs[u] for u in survivors], axis=0, dtype=np.uint64) % 2**b
    return out, np.asarray(expected), sizes


@settings(max_examples=60, deadline=None)
@given(
    profile=st.sampled_from(SECURE),
    n=st.integers(2, 30),
    count=st.one_of(st.integers(1, 100), st.integers(4000, 3 * 8192 + 100)),
    b=st.sampled_from([8, 12, 16, 24, 32]),
    dropped_fraction=st.floats(0, 0.5),
    target=st.sampled_from([40_000, 100_000, 1 << 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_decoded_aggregate_is_the_exact_sum_mod_2b(
    profile: Profile, n: int, count: int, b: int, dropped_fraction: float, target: int, seed: int
) -> None:
    dropped = int(dropped_fraction * (n - 1)) if profile.uses_masks else 0
    out, expected, _ = run_round(profile, n, count, b, dropped=dropped, target=target, seed=seed)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    profile=st.sampled_from(SECURE),
    n=st.integers(2, 100),
    count=st.integers(1, 200_000),
    b=st.sampled_from([8, 12, 16, 24, 32]),
    dropped_fraction=st.floats(0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_decoded_aggregate_is_exact_at_scale(
    profile: Profile, n: int, count: int, b: int, dropped_fraction: float, seed: int
) -> None:
    dropped = int(dropped_fraction * (n - 1)) if profile.uses_masks else 0
    out, expected, _ = run_round(profile, n, count, b, dropped=dropped, seed=seed)
    np.testing.assert_array_equal(out, expected)


def test_plaintext_profile_sums_floats() -> None:
    out, expected, sizes = run_round(Profile.NONE, 5, 1000, 16)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert all(size < 4 * 1000 + 200 for size in sizes.values())


@pytest.mark.parametrize(("b", "limit"), [(16, 4.1), (8, 2.8)])
def test_upload_bytes_per_parameter_meet_the_target_for_ten_participants(
    b: int, limit: float
) -> None:
    spec = choose_packing(b, 10)
    count = 31 * spec.elements_per_ciphertext * 3 + 1000  # three full chunks and a bit
    chunks = list(
        pipeline.protect(
            np.zeros(count, dtype=np.uint32),
            profile=Profile.CKKS_MASKS,
            federation_id=FED,
            round=1,
            mask_terms=[MaskTerm(b"k" * 16, 1)],
            modulus_bits=b,
            packing=spec,
            secret=shared_secret_context(),
        )
    )
    assert len(chunks) == 4
    full = sum(len(c) for c in chunks[:3]) / (count - 1000)
    assert full <= limit
    assert all(len(c) <= wire.DEFAULT_TARGET_CHUNK_BYTES for c in chunks)


def protect_kwargs(profile: Profile, **change: object) -> dict[str, object]:
    kwargs: dict[str, object] = dict(
        profile=profile,
        federation_id=FED,
        round=1,
        mask_terms=[],
        modulus_bits=16,
        packing=choose_packing(16, 4) if profile.uses_ckks else None,
        secret=shared_secret_context() if profile.uses_ckks else None,
    )
    kwargs.update(change)
    return kwargs


@pytest.mark.parametrize(
    ("profile", "values", "change"),
    [
        (Profile.MASKS, np.array([2**16], dtype=np.uint32), {}),
        (Profile.MASKS, np.array([1.0], dtype=np.float32), {}),
        (Profile.NONE, np.array([1], dtype=np.uint32), {}),
        (Profile.NONE, np.array([np.nan], dtype=np.float32), {}),
        (Profile.MASKS, np.zeros((2, 2), dtype=np.uint32), {}),
        (Profile.MASKS, np.zeros(0, dtype=np.uint32), {}),
        (Profile.CKKS, np.zeros(3, dtype=np.uint32), {"mask_terms": [MaskTerm(b"s" * 16, 1)]}),
        (Profile.CKKS, np.zeros(3, dtype=np.uint32), {"secret": None}),
        (Profile.CKKS, np.zeros(3, dtype=np.uint32), {"modulus_bits": 12}),
        (Profile.MASKS, np.zeros(3, dtype=np.uint32), {"packing": choose_packing(16, 4)}),
        (Profile.MASKS, np.zeros(3, dtype=np.uint32), {"round": 2**32}),
    ],
)
def test_protect_refuses_a_wrong_call_before_producing_anything(
    profile: Profile, values: np.ndarray, change: dict[str, object]
) -> None:
    with pytest.raises(InternalError):
        pipeline.protect(values, **protect_kwargs(profile, **change))


def aggregate_of_one(
    profile: Profile, count: int = 20_000
) -> tuple[list[bytes], dict[str, object]]:
    spec = choose_packing(16, 4) if profile.uses_ckks else None
    total = UpdateSum(
        profile,
        count,
        modulus_bits=16,
        packing=spec,
        public=shared_secret_context().public() if spec else None,
        federation_id=FED,
        round=1,
        target_chunk_bytes=40_000,
    )
    values = np.arange(count, dtype=np.uint32) % 2**16
    kwargs = protect_kwargs(profile, target_chunk_bytes=40_000)
    for chunk in pipeline.protect(values, **kwargs):
        total.add(chunk)
    reveal_kwargs = dict(
        profile=profile,
        element_count=count,
        modulus_bits=16,
        packing=spec,
        secret=shared_secret_context() if spec else None,
        federation_id=FED,
        round=1,
        target_chunk_bytes=40_000,
    )
    return list(total.chunks()), reveal_kwargs


@pytest.mark.parametrize("profile", [Profile.CKKS, Profile.MASKS])
def test_reveal_takes_chunks_in_any_order(profile: Profile) -> None:
    chunks, kwargs = aggregate_of_one(profile)
    out = pipeline.reveal(reversed(chunks), **kwargs)
    np.testing.assert_array_equal(out, np.arange(20_000) % 2**16)


@pytest.mark.parametrize("profile", [Profile.CKKS, Profile.MASKS])
def test_reveal_refuses_a_missing_or_repeated_chunk(profile: Profile) -> None:
    chunks, kwargs = aggregate_of_one(profile)
    with pytest.raises(Malformed, match="chunk 1: missing"):
        pipeline.reveal(chunks[:1] + chunks[2:], **kwargs)
    with pytest.raises(Malformed, match="chunk 0: received twice"):
        pipeline.reveal([chunks[0], *chunks], **kwargs)


def test_reveal_refuses_an_upload_in_place_of_the_aggregate() -> None:
    _, kwargs = aggregate_of_one(Profile.MASKS)
    upload = list(
        pipeline.protect(
            np.zeros(20_000, dtype=np.uint32),
            **protect_kwargs(Profile.MASKS, target_chunk_bytes=40_000),
        )
    )
    with pytest.raises(Malformed, match="flags = 0, expected 1"):
        pipeline.reveal(upload, **kwargs)


def test_reveal_refuses_another_round_or_federation() -> None:
    chunks, kwargs = aggregate_of_one(Profile.MASKS)
    with pytest.raises(Malformed, match="round = 1, expected 2"):
        pipeline.reveal(chunks, **{**kwargs, "round": 2})
    with pytest.raises(Malformed, match="federation_id"):
        pipeline.reveal(chunks, **{**kwargs, "federation_id": "other"})


def test_reveal_with_the_wrong_key_names_the_chunk_and_ciphertext() -> None:
    chunks, kwargs = aggregate_of_one(Profile.CKKS)
    with pytest.raises(IntegrityError, match="chunk 0: ciphertext 0"):
        pipeline.reveal(chunks, **{**kwargs, "secret": stranger_secret_context()})


def test_protect_is_lazy() -> None:
    count = 31 * 8192 * 3
    chunks = pipeline.protect(
        np.zeros(count, dtype=np.uint32),
        **protect_kwargs(Profile.CKKS),
    )
    first = next(iter(chunks))
    header, _ = wire.decode_chunk(first)
    assert (header.chunk_index, header.chunk_count) == (0, 3)


def test_both_sides_refuse_settings_that_do_not_fit_naming_their_own_context() -> None:
    spec = choose_packing(16, 10)
    values = np.zeros(10, dtype=np.uint32)
    common = dict(federation_id=FED, round=1, mask_terms=[], modulus_bits=16)
    with pytest.raises(InternalError, match="needs a packing spec and a secret context"):
        pipeline.protect(values, profile=Profile.CKKS, packing=spec, secret=None, **common)
    with pytest.raises(InternalError, match="takes no packing spec and no secret context"):
        pipeline.protect(values, profile=Profile.MASKS, packing=spec, secret=None, **common)
    with pytest.raises(InternalError, match="ring degrees"):
        pipeline.reveal(
            [],
            profile=Profile.CKKS,
            element_count=10,
            modulus_bits=16,
            packing=choose_packing(16, 10, poly_modulus_degree=8192),
            secret=shared_secret_context(),
        )
    with pytest.raises(InternalError, match="needs a packing spec and a public context"):
        UpdateSum(
            Profile.CKKS, 10, modulus_bits=16, packing=spec, public=None, federation_id=FED, round=1
        )
    with pytest.raises(InternalError, match=r"must be an integer in 1\.\.32"):
        UpdateSum(
            Profile.MASKS,
            10,
            modulus_bits=40,
            packing=None,
            public=None,
            federation_id=FED,
            round=1,
        )
