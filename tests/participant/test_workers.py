"""The participant's chunk workers: the same chunks and aggregates with 1 and N processes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from accord.crypto import pipeline
from accord.crypto.aggregate import UpdateSum
from accord.crypto.ckks import SecretContext
from accord.crypto.masks import MaskTerm, pairwise_sign
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError, RoundAborted
from accord.participant.workers import ChunkWorkers, worker_count
from tests.support.ckks import shared_secret_context, stranger_secret_context

FED = "fed-workers"
B = 16
TARGET = 40_000  # small chunks: several per update


@pytest.fixture(scope="module")
def pool() -> Iterator[ChunkWorkers]:
    with ChunkWorkers(2) as workers:
        yield workers


def _pair_terms(ids: list[str], seed: int) -> dict[str, list[MaskTerm]]:
    rng = np.random.default_rng(seed)
    pair = {(u, v): rng.bytes(16) for u, v in itertools.combinations(ids, 2)}
    return {
        u: [MaskTerm(pair[min(u, v), max(u, v)], pairwise_sign(u, v)) for v in ids if v != u]
        for u in ids
    }


def _protect(values: np.ndarray, profile: Profile, terms: list[MaskTerm], runner) -> list[bytes]:
    uses_ckks = profile.uses_ckks
    return list(
        pipeline.protect(
            values,
            profile=profile,
            federation_id=FED,
            round=3,
            mask_terms=terms,
            modulus_bits=B,
            packing=choose_packing(B, 3) if uses_ckks else None,
            secret=shared_secret_context() if uses_ckks else None,
            target_chunk_bytes=TARGET,
            runner=runner,
        )
    )


def _reveal(chunks: list[bytes], count: int, runner, key: SecretContext) -> np.ndarray:
    return pipeline.reveal(
        chunks,
        profile=Profile.CKKS_MASKS,
        element_count=count,
        modulus_bits=B,
        packing=choose_packing(B, 3),
        secret=key,
        federation_id=FED,
        round=3,
        target_chunk_bytes=TARGET,
        runner=runner,
    )


def _update_sum(count: int) -> UpdateSum:
    return UpdateSum(
        Profile.CKKS_MASKS,
        count,
        modulus_bits=B,
        packing=choose_packing(B, 3),
        public=shared_secret_context().public(),
        federation_id=FED,
        round=3,
        target_chunk_bytes=TARGET,
    )


def test_masked_chunks_are_byte_identical_and_in_order_with_one_and_two_workers(
    pool: ChunkWorkers,
) -> None:
    count = 50_001
    values = np.random.default_rng(1).integers(0, 2**B, count).astype(np.uint32)
    terms = _pair_terms(["a", "b", "c"], 7)["b"]
    serial = _protect(values, Profile.MASKS, terms, pipeline.SERIAL)
    spread = _protect(values, Profile.MASKS, terms, pool)
    assert len(serial) > 4
    assert spread == serial


def test_ckks_masks_aggregate_is_byte_identical_with_one_and_two_workers(
    pool: ChunkWorkers,
) -> None:
    ids = ["a", "b", "c"]
    count = 30_000
    rng = np.random.default_rng(2)
    inputs = {u: rng.integers(0, 2**B, count).astype(np.uint32) for u in ids}
    terms = _pair_terms(ids, 3)
    total = _update_sum(count)
    for number, u in enumerate(ids):  # one participant serial, the others on the pool
        runner = pipeline.SERIAL if number == 0 else pool
        chunks = _protect(inputs[u], Profile.CKKS_MASKS, terms[u], runner)
        assert len(chunks) > 2
        for chunk in chunks:
            total.check(chunk)
        for chunk in chunks:
            total.add(chunk)
    aggregate = list(total.chunks())
    serial = _reveal(aggregate, count, pipeline.SERIAL, shared_secret_context())
    spread = _reveal(list(reversed(aggregate)), count, pool, shared_secret_context())
    expected = (np.sum([inputs[u].astype(np.int64) for u in ids], axis=0) % 2**B).astype(np.uint32)
    assert serial.tobytes() == expected.tobytes()
    assert spread.tobytes() == serial.tobytes()


def test_a_worker_error_is_the_same_class_and_message_naming_the_chunk(
    pool: ChunkWorkers,
) -> None:
    count = 20_000
    values = np.random.default_rng(4).integers(0, 2**B, count).astype(np.uint32)
    total = _update_sum(count)
    for chunk in _protect(values, Profile.CKKS_MASKS, [], pool):
        total.add(chunk)
    chunks = list(total.chunks())
    errors = []
    for runner in (pipeline.SERIAL, pool):
        with pytest.raises(IntegrityError) as caught:
            _reveal(chunks, count, runner, stranger_secret_context())
        errors.append(str(caught.value))
    assert errors[0].startswith("chunk 0: ciphertext 0:")
    assert errors[1] == errors[0]


@dataclass(frozen=True)
class _Job:
    index: int


def _die(_secret: SecretContext | None, job: _Job) -> int:
    if job.index == 1:
        os._exit(3)
    return job.index


def test_a_dead_worker_is_round_aborted_naming_its_chunk() -> None:
    with ChunkWorkers(2, window=1) as workers:
        results = workers.map(_die, [_Job(0), _Job(1), _Job(2)], None)
        assert next(results) == 0
        with pytest.raises(RoundAborted, match="chunk 1: a participant chunk worker died"):
            next(results)
        # The pool starts afresh on the next call.
        assert list(workers.map(_die, [_Job(0), _Job(2)], None)) == [0, 2]


def test_worker_count_auto_and_refusals() -> None:
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3
    for bad in (0, -1, True, "many"):
        with pytest.raises(ConfigError, match="workers"):
            worker_count(bad)  # type: ignore[arg-type]
