"""Specification of accord.crypto.masks: double masking and its removal after dropouts.

The round tests run the whole of Bonawitz et al.'s key flow in memory with the real
primitives: X25519 masking keys, pairwise seeds, Shamir shares of every masking
private key and self-mask seed held by the owner's neighbours, dropouts after key
sharing, reconstruction from the survivors' shares, and the correction.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto import shamir
from accord.crypto.agreement import KeyPair, generate_keypair, pairwise_seed
from accord.crypto.graph import neighbours
from accord.crypto.masks import (
    MaskTerm,
    apply,
    correction,
    correction_terms,
    pairwise_sign,
    participant_terms,
)
from accord.crypto.prg import expand
from accord.errors import InternalError, RoundAborted

FEDERATION = "fed-test"
ROUND = 7


def byte_source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


@dataclass
class Participant:
    name: str
    masking: KeyPair
    self_mask_seed: bytes
    peers: tuple[str, ...]
    pairwise: dict[str, bytes]
    # Shares this participant holds, by owner: (share of s_owner^SK, share of b_owner).
    held: dict[str, tuple[shamir.Share, shamir.Share]]


def setup_round(names: list[str], degree: int, threshold: int, seed: int) -> dict[str, Participant]:
    """Advertise keys, agree pairwise seeds, and share keys among neighbours."""
    source = byte_source(seed)
    graph = neighbours(names, degree, source(32))
    keys = {name: generate_keypair(source) for name in names}
    people = {
        name: Participant(
            name=name,
            masking=keys[name],
            self_mask_seed=source(16),
            peers=graph[name],
            pairwise={
                peer: pairwise_seed(
                    keys[name].private,
                    keys[peer].public,
                    federation_id=FEDERATION,
                    round=ROUND,
                    u=name,
                    v=peer,
                )
                for peer in graph[name]
            },
            held={},
        )
        for name in names
    }
    for owner in people.values():
        holders = sorted((*owner.peers, owner.name))
        key_shares = shamir.split(
            owner.masking.private, threshold, len(holders), random_bytes=source
        )
        seed_shares = shamir.split(
            owner.self_mask_seed, threshold, len(holders), random_bytes=source
        )
        for position, holder in enumerate(holders):
            # The x-coordinate is the holder's 1-based position in sorted(N(u) + {u}).
            assert key_shares[position].x == position + 1
            people[holder].held[owner.name] = (key_shares[position], seed_shares[position])
    return people


def masked_input(person: Participant, values: np.ndarray, bits: int, chunk: int) -> np.ndarray:
    """Mask a participant's vector chunk by chunk, as the upload stream does."""
    terms = participant_terms(person.name, person.self_mask_seed, person.pairwise)
    pieces = [
        apply(values[start : start + chunk], start, terms, bits)
        for start in range(0, len(values), chunk)
    ]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint32)


def unmask_terms(
    people: dict[str, Participant], survivors: set[str], threshold: int
) -> list[MaskTerm]:
    """Rebuild b_u of survivors and s_v^SK of the dropped from survivors' shares."""
    self_mask_seeds = {}
    for name in sorted(survivors):
        shares = [people[h].held[name][1] for h in sorted(survivors) if name in people[h].held]
        self_mask_seeds[name] = shamir.combine(shares, threshold, 16, what=f"b of {name}")
    pairs = []
    for dropped in sorted(set(people) - survivors):
        shares = [
            people[h].held[dropped][0] for h in sorted(survivors) if dropped in people[h].held
        ]
        private = shamir.combine(shares, threshold, 32, what=f"the masking key of {dropped}")
        for survivor in sorted(survivors & set(people[dropped].peers)):
            # Rebuilt from the dropped side: its private key, the survivor's public key.
            seed = pairwise_seed(
                private,
                people[survivor].masking.public,
                federation_id=FEDERATION,
                round=ROUND,
                u=dropped,
                v=survivor,
            )
            pairs.append((survivor, dropped, seed))
    return correction_terms(self_mask_seeds, pairs)


def modular_sum(vectors: list[np.ndarray], bits: int, size: int) -> np.ndarray:
    total = np.zeros(size, dtype=np.uint64)
    for vector in vectors:
        total += vector
    return (total % (1 << bits)).astype(np.uint32)


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(2, 12),
    bits=st.sampled_from([8, 12, 16, 24, 32]),
    size=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_correction_unmasks_the_survivors_sum_after_dropouts(
    count: int, bits: int, size: int, seed: int, data: st.DataObject
) -> None:
    names = [f"P{i}" for i in range(count)]
    threshold = data.draw(st.integers(1, count), label="threshold")
    dropped = set(
        data.draw(
            st.lists(st.sampled_from(names), unique=True, max_size=count - threshold),
            label="dropped",
        )
    )
    chunk = data.draw(st.integers(1, size), label="chunk")
    people = setup_round(names, count - 1, threshold, seed)
    rng = np.random.default_rng(seed)
    raw = {name: rng.integers(0, 1 << bits, size, dtype=np.uint32) for name in names}
    survivors = set(names) - dropped
    uploads = [masked_input(people[name], raw[name], bits, chunk) for name in sorted(survivors)]

    terms = unmask_terms(people, survivors, threshold)
    masked_sum = modular_sum(uploads, bits, size)
    fix = np.concatenate(
        [
            correction(start, min(chunk, size - start), terms, bits)
            for start in range(0, size, chunk)
        ]
    )
    result = modular_sum([masked_sum, fix], bits, size)
    expected = modular_sum([raw[name] for name in sorted(survivors)], bits, size)
    np.testing.assert_array_equal(result, expected)


@settings(max_examples=15, deadline=None)
@given(count=st.integers(5, 16), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_sparse_graph_round_unmasks_or_aborts(count: int, seed: int, data: st.DataObject) -> None:
    names = [f"P{i:02d}" for i in range(count)]
    degree = data.draw(st.sampled_from(list(range(2, count - 1, 2))), label="degree")
    threshold = data.draw(st.integers(1, degree + 1), label="threshold")
    dropped = set(data.draw(st.lists(st.sampled_from(names), unique=True, max_size=count - 1)))
    bits, size = 16, 64
    people = setup_round(names, degree, threshold, seed)
    rng = np.random.default_rng(seed)
    raw = {name: rng.integers(0, 1 << bits, size, dtype=np.uint32) for name in names}
    survivors = set(names) - dropped

    def enough(owner: str) -> bool:
        holders = {*people[owner].peers, owner} & survivors
        return len(holders) >= threshold

    if not all(enough(name) for name in names if name in survivors or people[name].peers):
        with pytest.raises(RoundAborted):
            unmask_terms(people, survivors, threshold)
        return
    uploads = [masked_input(people[name], raw[name], bits, 17) for name in sorted(survivors)]
    terms = unmask_terms(people, survivors, threshold)
    result = modular_sum(
        [modular_sum(uploads, bits, size), correction(0, size, terms, bits)], bits, size
    )
    expected = modular_sum([raw[name] for name in sorted(survivors)], bits, size)
    np.testing.assert_array_equal(result, expected)


def test_a_late_upload_from_a_dropped_participant_stays_masked() -> None:
    names = [f"P{i}" for i in range(6)]
    bits, size, threshold = 16, 64, 3
    people = setup_round(names, 5, threshold, seed=11)
    rng = np.random.default_rng(11)
    raw = {name: rng.integers(0, 1 << bits, size, dtype=np.uint32) for name in names}
    survivors = set(names) - {"P3"}
    # P3 is declared dropped, so its masking key is rebuilt and its pairwise masks are
    # removed; its upload then arrives late and is (wrongly) added anyway.
    terms = unmask_terms(people, survivors, threshold)
    uploads = [masked_input(people[name], raw[name], bits, size) for name in names]
    result = modular_sum(
        [modular_sum(uploads, bits, size), correction(0, size, terms, bits)], bits, size
    )
    with_late = modular_sum(list(raw.values()), bits, size)
    without_late = modular_sum([raw[name] for name in sorted(survivors)], bits, size)
    leftover = (result.astype(np.int64) - without_late.astype(np.int64)) % (1 << bits)
    np.testing.assert_array_equal(leftover, uploads[names.index("P3")])
    # Even a coordinator that also strips P3's pairwise masks (it holds the rebuilt
    # s_P3^SK) is left with P3's input under its self mask PRG(b_P3), which is uniform
    # and was never revealed: the late input cannot be read off.
    p3 = people["P3"]
    pairwise_only = participant_terms("P3", p3.self_mask_seed, p3.pairwise)[1:]
    stripped = apply(leftover, 0, [MaskTerm(t.seed, -t.sign) for t in pairwise_only], bits)
    hidden = (raw["P3"].astype(np.int64) + expand(p3.self_mask_seed, 0, size, bits)) % (1 << bits)
    np.testing.assert_array_equal(stripped, hidden)
    assert not np.array_equal(result, with_late)
    assert not np.array_equal(stripped, raw["P3"])


def test_a_single_masked_vector_does_not_show_the_input() -> None:
    people = setup_round(["A", "B", "C"], 2, 2, seed=3)
    values = np.arange(256, dtype=np.uint32)
    masked = masked_input(people["A"], values, 8, 256)
    assert masked.dtype == np.uint32
    assert np.all(masked < 256)
    assert not np.array_equal(masked, values)
    # Not even a constant shift of it.
    assert len(np.unique((masked.astype(np.int64) - values) % 256)) > 1


def test_pairwise_masks_cancel_without_dropouts() -> None:
    people = setup_round(["A", "B", "C", "D"], 3, 3, seed=4)
    zeros = np.zeros(50, dtype=np.uint32)
    # With the self masks left out, the pairwise masks of all four sum to zero.
    uploads = [
        apply(zeros, 0, participant_terms(p.name, p.self_mask_seed, p.pairwise)[1:], 16)
        for p in people.values()
    ]
    np.testing.assert_array_equal(modular_sum(uploads, 16, 50), zeros)


def test_participant_terms_follow_the_string_order_of_ids() -> None:
    seeds = {"P10": b"\x01" * 16, "P2": b"\x02" * 16, "P1": b"\x03" * 16}
    terms = participant_terms("P1x", b"\x09" * 16, seeds)
    assert terms[0] == MaskTerm(b"\x09" * 16, 1)
    # "P10" < "P1x" < "P2" as strings.
    assert terms[1:] == [
        MaskTerm(b"\x03" * 16, -1),
        MaskTerm(b"\x01" * 16, -1),
        MaskTerm(b"\x02" * 16, 1),
    ]
    assert pairwise_sign("P1", "P10") == 1
    assert pairwise_sign("P10", "P1") == -1


def test_participant_cannot_be_its_own_neighbour() -> None:
    with pytest.raises(InternalError):
        participant_terms("A", bytes(16), {"A": bytes(16)})


@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.integers(1, 32),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
    start=st.integers(0, 10**12),
)
def test_chunked_masking_equals_whole_masking(
    seed: int, bits: int, cuts: list[int], start: int
) -> None:
    source = byte_source(seed)
    terms = [MaskTerm(source(16), 1), MaskTerm(source(16), -1), MaskTerm(source(16), 1)]
    values = np.random.default_rng(seed).integers(0, 1 << bits, 3000, dtype=np.uint32)
    whole = apply(values, start, terms, bits)
    bounds = [0, *sorted(cuts), 3000]
    pieces = [apply(values[a:b], start + a, terms, bits) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    expected = values.astype(np.int64)
    for term in terms:
        expected += term.sign * expand(term.seed, start, 3000, 32).astype(np.int64)
    np.testing.assert_array_equal(whole, expected % (1 << bits))


def test_chunks_longer_than_the_internal_piece_size() -> None:
    terms = [MaskTerm(b"\x05" * 16, 1), MaskTerm(b"\x06" * 16, -1)]
    values = np.arange(100_001, dtype=np.uint32) % 4096
    masked = apply(values, 5, terms, 12)
    expected = (
        values.astype(np.int64)
        + expand(b"\x05" * 16, 5, 100_001, 12).astype(np.int64)
        - expand(b"\x06" * 16, 5, 100_001, 12).astype(np.int64)
    ) % 4096
    np.testing.assert_array_equal(masked, expected)
    np.testing.assert_array_equal(
        apply(masked, 5, [MaskTerm(t.seed, -t.sign) for t in terms], 12), values
    )


def test_apply_reads_values_mod_two_to_the_b() -> None:
    negative = np.array([-1, -2, 5], dtype=np.int64)
    np.testing.assert_array_equal(apply(negative, 0, [], 8), [255, 254, 5])
    wide = np.array([2**40 + 3], dtype=np.uint64)
    np.testing.assert_array_equal(apply(wide, 0, [], 16), [3])


def test_apply_leaves_its_input_untouched() -> None:
    values = np.arange(10, dtype=np.uint32)
    apply(values, 0, [MaskTerm(bytes(16), 1)], 16)
    np.testing.assert_array_equal(values, np.arange(10, dtype=np.uint32))


def test_correction_is_apply_to_zeros() -> None:
    terms = [MaskTerm(b"\x07" * 16, -1), MaskTerm(b"\x08" * 16, 1)]
    np.testing.assert_array_equal(
        correction(40, 60, terms, 16), apply(np.zeros(60, dtype=np.uint32), 40, terms, 16)
    )
    assert correction(0, 0, terms, 16).shape == (0,)


def test_correction_terms_negate_what_survivors_added() -> None:
    terms = correction_terms(
        {"B": b"\x02" * 16, "A": b"\x01" * 16},
        [("A", "C", b"\x0a" * 16), ("D", "C", b"\x0b" * 16)],
    )
    assert terms == [
        MaskTerm(b"\x01" * 16, -1),
        MaskTerm(b"\x02" * 16, -1),
        MaskTerm(b"\x0a" * 16, -1),  # A added +s_AC (C > A), so subtract it.
        MaskTerm(b"\x0b" * 16, 1),  # D added -s_DC (C < D), so add it back.
    ]


@pytest.mark.parametrize(
    ("survivors", "pairs"),
    [
        ({"A": bytes(16), "B": bytes(16)}, [("A", "B", bytes(16))]),
        ({"A": bytes(16)}, [("A", "C", bytes(16)), ("A", "C", bytes(16))]),
        ({}, [("A", "A", bytes(16))]),
        ({}, [("A", "C", bytes(15))]),
        ({"A": bytes(17)}, []),
    ],
)
def test_correction_terms_refuse_inconsistent_input(
    survivors: dict[str, bytes], pairs: list[tuple[str, str, bytes]]
) -> None:
    with pytest.raises(InternalError):
        correction_terms(survivors, pairs)


@pytest.mark.parametrize(
    ("seed", "sign"),
    [(bytes(15), 1), (bytes(16), 0), (bytes(16), 2), (bytes(16), True), ("s" * 16, 1)],
)
def test_mask_term_checks_its_fields(seed: bytes, sign: int) -> None:
    with pytest.raises(InternalError):
        MaskTerm(seed, sign)


def test_mask_term_repr_hides_the_seed() -> None:
    assert "\\xab" not in repr(MaskTerm(b"\xab" * 16, 1))


@pytest.mark.parametrize(
    ("values", "start", "bits"),
    [
        (np.zeros((2, 2), dtype=np.uint32), 0, 16),
        (np.zeros(2, dtype=np.float32), 0, 16),
        (np.zeros(2, dtype=np.uint32), -1, 16),
        (np.zeros(2, dtype=np.uint32), 0, 0),
        (np.zeros(2, dtype=np.uint32), 0, 33),
    ],
)
def test_apply_refuses_bad_arguments(values: np.ndarray, start: int, bits: int) -> None:
    with pytest.raises(InternalError):
        apply(values, start, [], bits)
