"""Aggregation workers: the spread sum equals the in-process sum, byte for byte, and fails loudly.

A `RoundSum` given a `SumWorkers` pool spreads the round's running sum over worker
processes by chunk range; these tests feed the same uploads to an in-process sum and
to a spread one and compare the aggregates' bytes, check that each worker holds only
its range, and that a lost worker, a stalled one, a worker's error, a closed pool and
a killed coordinator all end cleanly: a clear exception, never a hang, no process left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accord.coordinator import server
from accord.coordinator.aggregation.round_sum import RoundSum
from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_ranges import SumSpec, split
from accord.coordinator.aggregation.sum_workers import SumWorkers, worker_count
from accord.coordinator.orchestrator import Orchestrator
from accord.core import logs
from accord.crypto import masks, pipeline, wire, wire_payload
from accord.crypto.aggregate import UpdateSum
from accord.crypto.ckks import PublicContext, SecretContext
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.masks import MaskTerm
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import ConfigError, InternalError, Malformed, RoundAborted
from accord.wire.headers import Header
from tests.support.ckks import shared_secret_context

from ..crypto.harness import FederationHarness
from .plaintext_federation import MODEL_HASH, make_config, make_keys, upload_chunks

B = 16
NAMES = ("p0", "p1", "p2")
TARGET = 40_000  # one ciphertext per CKKS chunk, 10,000 elements per masks chunk
COUNT = 6 * 8192 + 123  # 7 CKKS chunks, 5 masks chunks: ranges of unequal length
SECURE = [Profile.CKKS_MASKS, Profile.CKKS, Profile.MASKS]


@cache
def secret() -> SecretContext:
    return shared_secret_context()


def round_config(profile: Profile, round: int = 1) -> RoundConfig:
    return RoundConfig(
        federation_id="fed-workers",
        round=round,
        profile=profile,
        selected=NAMES,
        threshold=2,
        quant=QuantSpec(modulus_bits=B, max_participants=len(NAMES)),
        element_count=COUNT,
        packing=choose_packing(B, len(NAMES)) if profile.uses_ckks else None,
        graph_seed=b"\x01" * 32 if profile.uses_masks else b"",
    )


SELF_SEEDS = {name: bytes([10 + i]) * 16 for i, name in enumerate(NAMES)}
PAIR_SEEDS = {("p0", "p1"): b"\x01" * 16, ("p0", "p2"): b"\x02" * 16, ("p1", "p2"): b"\x03" * 16}


def terms_of(name: str) -> list[MaskTerm]:
    """`name`'s masks: its self mask and one pairwise mask with each other participant."""
    pairwise = {
        v: seed for (a, b), seed in PAIR_SEEDS.items() for u, v in ((a, b), (b, a)) if u == name
    }
    return masks.participant_terms(name, SELF_SEEDS[name], pairwise)


def dropout_correction(profile: Profile) -> list[MaskTerm]:
    """The correction once p2 dropped after masking: p0's and p1's self masks, pairs with p2."""
    if not profile.uses_masks:
        return []
    survivors = {name: SELF_SEEDS[name] for name in ("p0", "p1")}
    return masks.correction_terms(
        survivors, [("p0", "p2", PAIR_SEEDS[("p0", "p2")]), ("p1", "p2", PAIR_SEEDS[("p1", "p2")])]
    )


def inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**B, COUNT).astype(np.uint32)


def upload(config: RoundConfig, name: str, values: np.ndarray) -> list[bytes]:
    return list(
        pipeline.protect(
            values,
            profile=config.profile,
            federation_id=config.federation_id,
            round=config.round,
            mask_terms=terms_of(name) if config.profile.uses_masks else [],
            modulus_bits=B,
            packing=config.packing,
            secret=secret() if config.profile.uses_ckks else None,
            target_chunk_bytes=TARGET,
        )
    )


def new_sum(config: RoundConfig, workers: SumWorkers | None, **change: object) -> RoundSum:
    kwargs: dict[str, object] = dict(
        public=secret().public() if config.profile.uses_ckks else None,
        max_chunk_bytes=8 << 20,
        workers=workers,
        target_chunk_bytes=TARGET,
    )
    kwargs.update(change)
    return RoundSum(config, **kwargs)


def spooled(directory: Path, chunks: list[bytes]) -> Spool:
    spool = Spool(directory)
    for chunk in chunks:
        spool.append(chunk)
    return spool


def add_all(total: RoundSum, directory: Path, uploads: list[list[bytes]]) -> None:
    """Check each upload chunk by chunk, spool it, add it: as `Orchestrator` does."""
    for chunks in uploads:
        for index, chunk in enumerate(chunks):
            total.check(chunk, index=index)
        spool = spooled(directory, chunks)
        try:
            total.add(spool)
        finally:
            spool.close()


def reveal(config: RoundConfig, chunks: list[bytes]) -> np.ndarray:
    return pipeline.reveal(
        chunks,
        profile=config.profile,
        element_count=COUNT,
        modulus_bits=B,
        packing=config.packing,
        secret=secret() if config.profile.uses_ckks else None,
        federation_id=config.federation_id,
        round=config.round,
        target_chunk_bytes=TARGET,
    )


@pytest.fixture(scope="module")
def pool() -> Iterator[SumWorkers]:
    """Two workers for the module, spreading vectors of two chunks or more."""
    with SumWorkers(2, min_chunks_per_worker=1) as workers:
        yield workers


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaps counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until_gone(pids: list[int], limit_s: float = 60.0) -> bool:
    """Poll until every pid has exited; False if some still run after `limit_s` (no hang)."""
    deadline = time.monotonic() + limit_s
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- the same sum, byte for byte ----


@pytest.mark.parametrize("profile", SECURE)
def test_a_spread_sum_with_a_dropout_correction_equals_the_in_process_sum(
    profile: Profile, pool: SumWorkers, tmp_path: Path
) -> None:
    config = round_config(profile)
    values = [inputs(0), inputs(1)]
    uploads = [upload(config, name, x) for name, x in zip(("p0", "p1"), values, strict=True)]
    correction = dropout_correction(profile)

    alone = new_sum(config, None)
    add_all(alone, tmp_path, uploads)
    expected = list(alone.finish(correction))

    spread = new_sum(config, pool)
    assert spread.workers == 2 and spread.fallback_reason == ""
    add_all(spread, tmp_path, uploads)
    aggregate = list(spread.finish(correction))

    assert aggregate == expected
    total = (values[0].astype(np.uint64) + values[1]) % (1 << B)
    np.testing.assert_array_equal(reveal(config, aggregate), total.astype(np.uint32))


class RecordingHarness(FederationHarness):
    """The in-memory federation, keeping each upload the coordinator added."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uploads: list[list[bytes]] = []

    def _new_sum(self) -> UpdateSum:
        uploads = self.uploads
        total = super()._new_sum()
        add = total.add

        def recording_add(chunk: bytes) -> wire.ChunkHeader:
            header = add(chunk)
            if header.chunk_index == 0:
                uploads.append([])
            uploads[-1].append(chunk)
            return header

        total.add = recording_add
        return total


def test_a_round_with_dropouts_sums_the_same_over_workers(pool: SumWorkers, tmp_path: Path) -> None:
    # 600,000 elements: three 1 MiB CKKS chunks, so both workers get a range.
    harness = RecordingHarness(5, threshold=3, element_count=600_000, seed=7)
    result = harness.run({Stage.UPLOAD: {"p01"}, Stage.UNMASK: {"p03"}})
    assert result.stage is Stage.AGGREGATE and len(harness.uploads) == 4
    correction = harness.coordinator.outcome.correction
    assert correction  # self masks, and the pairs of p01's masks no survivor cancelled
    sums = []
    for workers in (None, pool):
        total = RoundSum(
            harness.config, public=secret().public(), max_chunk_bytes=8 << 20, workers=workers
        )
        add_all(total, tmp_path, harness.uploads)
        sums.append(list(total.finish(correction)))
    assert sums[0] == sums[1]
    aggregate = pipeline.reveal(
        sums[1],
        profile=harness.config.profile,
        element_count=harness.config.element_count,
        modulus_bits=harness.config.quant.modulus_bits,
        packing=harness.packing,
        secret=harness.secret,
    )
    np.testing.assert_array_equal(aggregate, result.expected)


# ---- ownership: O(model) in all ----


@pytest.mark.parametrize("profile", [Profile.CKKS_MASKS, Profile.MASKS])
def test_each_worker_holds_only_its_chunk_range(
    profile: Profile, pool: SumWorkers, tmp_path: Path
) -> None:
    config = round_config(profile)
    total = new_sum(config, pool)
    add_all(total, tmp_path, [upload(config, "p0", inputs(0))])
    holdings = total.holdings()
    assert [h.pid for h in holdings] == pool.pids and os.getpid() not in pool.pids
    # The ranges cover the plan once, in order; each worker holds its chunks' elements only.
    assert [h.owned for h in holdings] == split(total.chunk_count, 2)
    assert holdings[0].elements.start == 0 and holdings[-1].elements.stop == COUNT
    assert holdings[0].elements.stop == holdings[1].elements.start
    assert all(h.uploads == 1 for h in holdings)
    if config.packing is not None:
        per = config.packing.elements_per_ciphertext
        assert [h.ciphertexts for h in holdings] == [-(-len(h.elements) // per) for h in holdings]
        assert sum(h.ciphertexts for h in holdings) == config.packing.ciphertext_count(COUNT)
    else:
        assert all(h.ciphertexts == 0 for h in holdings)


def test_the_coordinator_itself_holds_nothing_when_the_sum_is_spread(pool: SumWorkers) -> None:
    config = round_config(Profile.CKKS_MASKS)
    spec = SumSpec(config, secret().public().to_bytes(), max_chunk_bytes=8 << 20)
    checker = spec.new_sum(range(0))
    assert checker.elements == range(0) and checker.ciphertexts == 0
    with pytest.raises(InternalError, match="owns no chunks"):
        checker.chunks()
    # `RoundSum` builds its checker this way when it spreads the sum.
    assert new_sum(config, pool).workers == 2


def test_small_vectors_are_summed_in_process() -> None:
    config = round_config(Profile.CKKS)
    # At the participants' usual 1 MiB chunks the vector is one chunk: no gain from workers.
    workers = SumWorkers(2)
    total = RoundSum(config, public=secret().public(), max_chunk_bytes=8 << 20, workers=workers)
    assert total.workers == 1 and workers.pids == []
    assert [h.pid for h in total.holdings()] == [os.getpid()]
    workers.close()


def test_worker_counts_and_chunk_ranges() -> None:
    assert split(7, 2) == [range(0, 4), range(4, 7)]
    assert split(8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert 1 <= worker_count("auto") <= 4
    assert worker_count(0) == 0 and worker_count(3) == 3
    with pytest.raises(InternalError, match="at least 2"):
        SumWorkers(1)


def test_the_setting_takes_auto_or_a_count(tmp_path: Path) -> None:
    keys = make_keys()
    assert make_config(tmp_path, keys).aggregation_workers == "auto"
    assert make_config(tmp_path, keys, aggregation_workers=3).aggregation_workers == 3
    for wrong in (-1, "all"):
        with pytest.raises(ConfigError, match="aggregation_workers"):
            make_config(tmp_path, keys, aggregation_workers=wrong)


# ---- failures: a clear error, never a hang, nothing left behind ----


def test_a_killed_worker_fails_the_round_and_the_next_round_starts_fresh(tmp_path: Path) -> None:
    config = round_config(Profile.CKKS_MASKS)
    uploads = [upload(config, "p0", inputs(0)), upload(config, "p1", inputs(1))]
    with SumWorkers(2, min_chunks_per_worker=1) as workers:
        total = new_sum(config, workers)
        add_all(total, tmp_path, uploads[:1])
        victim = workers.pids[1]
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(
            RoundAborted, match=r"aggregation worker 1 \(pid \d+, chunks 4-6\) died"
        ):
            add_all(total, tmp_path, uploads[1:])
        assert workers.pids == [] and gone(victim)
        with pytest.raises(RoundAborted, match="sum is lost"):
            total.finish(dropout_correction(config.profile))
        # The next round gets new processes, and sums as before.
        again = new_sum(config, workers)
        assert again.workers == 2 and victim not in workers.pids
        add_all(again, tmp_path, uploads)
        alone = new_sum(config, None)
        add_all(alone, tmp_path, uploads)
        correction = dropout_correction(config.profile)
        assert list(again.finish(correction)) == list(alone.finish(correction))


def test_a_stalled_worker_times_out_instead_of_hanging(tmp_path: Path) -> None:
    config = round_config(Profile.MASKS)
    with SumWorkers(2, min_chunks_per_worker=1, reply_timeout_s=1.0) as workers:
        total = new_sum(config, workers)
        stalled = workers.pids[0]
        os.kill(stalled, signal.SIGSTOP)
        try:
            with pytest.raises(RoundAborted, match=r"worker 0 .* did not answer within 1 s"):
                add_all(total, tmp_path, [upload(config, "p0", inputs(0))])
        finally:
            if not gone(stalled):
                os.kill(stalled, signal.SIGKILL)
        assert workers.pids == [] and wait_until_gone([stalled])


def test_a_worker_error_is_raised_as_its_own_class_and_the_sum_refuses_to_finish(
    pool: SumWorkers, tmp_path: Path
) -> None:
    config = round_config(Profile.CKKS)
    total = new_sum(config, pool)
    # Spooled without `check` (which would refuse them): chunks of another round.
    spool = spooled(tmp_path, upload(round_config(Profile.CKKS, round=2), "p0", inputs(0)))
    with pytest.raises(Malformed, match=r"aggregation worker 0 \(pid \d+, chunks 0-3\): .*round"):
        total.add(spool)
    spool.close()
    # Every worker checks before any adds: the refused upload left the sum empty.
    with pytest.raises(InternalError, match="empty: no upload has been added"):
        total.finish([])
    # The workers live on for the next round.
    assert len(pool.pids) == 2 and new_sum(config, pool).workers == 2


def _with_bad_ciphertext(chunk: bytes, config: RoundConfig) -> bytes:
    """`chunk` with its first ciphertext zeroed: a sound frame around a bad payload."""
    head, payload = wire.decode_chunk(chunk)
    assert config.packing is not None
    blobs = wire_payload.decode_ciphertext_payload(
        payload, config.packing.ciphertext_count(head.element_count), chunk_index=head.chunk_index
    )
    blobs[0] = bytes(len(blobs[0]))
    body = wire_payload.encode_ciphertext_payload(blobs)
    return wire.encode_chunk(replace(head, payload_len=len(body)), body)


def test_a_bad_payload_is_refused_in_the_workers_with_the_same_class_and_nothing_is_added(
    pool: SumWorkers, tmp_path: Path
) -> None:
    config = round_config(Profile.CKKS)
    good = upload(config, "p0", inputs(0))
    bad = list(good)
    bad[5] = _with_bad_ciphertext(good[5], config)  # in the second worker's range
    alone, spread = new_sum(config, None), new_sum(config, pool)
    assert spread.workers == 2
    with pytest.raises(Malformed) as in_process:
        alone.check(bad[5], index=5)
    # The receiving thread only checks the frame; the workers refuse the payload.
    for index, chunk in enumerate(bad):
        spread.check(chunk, index=index)
    spool = spooled(tmp_path, bad)
    with pytest.raises(Malformed) as in_workers:
        spread.stage(spool)
    with pytest.raises(Malformed, match="chunk 5: ciphertext 0"):
        spread.add(spool)
    spool.close()
    assert in_workers.value.grpc_status == in_process.value.grpc_status
    assert "chunk 5: ciphertext 0" in str(in_workers.value)
    # Nothing of the refused upload was added, in either worker: the next upload sums alone.
    add_all(spread, tmp_path, [good])
    add_all(alone, tmp_path, [good])
    assert list(spread.finish([])) == list(alone.finish([]))


def test_a_later_round_takes_the_workers_over(pool: SumWorkers, tmp_path: Path) -> None:
    config = round_config(Profile.CKKS)
    first = new_sum(config, pool)
    new_sum(round_config(Profile.CKKS, round=2), pool)
    spool = spooled(tmp_path, upload(config, "p0", inputs(0)))
    with pytest.raises(RoundAborted, match="later round"):
        first.add(spool)
    spool.close()


def test_close_stops_every_worker(tmp_path: Path) -> None:
    workers = SumWorkers(2, min_chunks_per_worker=1)
    new_sum(round_config(Profile.MASKS), workers)
    pids = workers.pids
    assert len(pids) == 2 and not any(gone(pid) for pid in pids)
    workers.close()
    assert all(gone(pid) for pid in pids)  # reaped by close, not eventually
    workers.close()  # idempotent
    with pytest.raises(InternalError, match="closed"):
        workers.spread(SumSpec(round_config(Profile.MASKS), b"", 8 << 20, TARGET))


def test_server_stop_stops_the_aggregation_workers(tmp_path: Path) -> None:
    config = make_config(tmp_path, make_keys(), aggregation_workers=2)
    running = server.start(config, log=logs.configure("coordinator", tmp_path / "log"))
    try:
        assert running.sum_workers is not None and running.sum_workers.size == 2
        # A round large enough for the pool (20 chunks) starts its processes.
        spec = SumSpec(round_config(Profile.MASKS), b"", 8 << 20, TARGET // 4)
        assert running.sum_workers.spread(spec) is not None
        pids = running.sum_workers.pids
        assert len(pids) == 2
    finally:
        running.stop(grace_s=0)
    assert all(gone(pid) for pid in pids)


def test_one_worker_means_no_pool(tmp_path: Path) -> None:
    config = make_config(tmp_path, make_keys(), aggregation_workers=1)
    running = server.start(config, log=logs.configure("coordinator", tmp_path / "log"))
    running.stop(grace_s=0)
    assert running.sum_workers is None


def test_workers_exit_when_the_coordinator_is_killed(tmp_path: Path) -> None:
    # The smallest coordinator that has workers: no gRPC, no test modules.
    script = textwrap.dedent(
        f"""
        import time
        from accord.coordinator.aggregation.sum_ranges import SumSpec
        from accord.coordinator.aggregation.sum_workers import SumWorkers
        from accord.crypto.messages import RoundConfig
        from accord.crypto.profile import Profile
        from accord.crypto.quantize import QuantSpec

        if __name__ == "__main__":
            config = RoundConfig(
                federation_id="fed-workers",
                round=1,
                profile=Profile.NONE,
                selected=("p0", "p1"),
                threshold=2,
                quant=QuantSpec(modulus_bits=16, max_participants=2),
                element_count={COUNT},
            )
            workers = SumWorkers(2, min_chunks_per_worker=1)
            workers.spread(SumSpec(config, b"", 8 << 20, {TARGET}))
            print(*workers.pids, flush=True)
            time.sleep(600)
        """
    )
    path = tmp_path / "coordinator.py"
    path.write_text(script)
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, str(path)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            pids = [int(pid) for pid in child.stdout.readline().split()]
            assert len(pids) == 2 and not any(gone(pid) for pid in pids)
        finally:
            child.kill()  # SIGKILL: the coordinator gets no chance to stop its workers
    assert wait_until_gone(pids), "a worker outlived its coordinator"


def test_public_context_travels_as_bytes() -> None:
    spec = SumSpec(round_config(Profile.CKKS), secret().public().to_bytes(), 8 << 20, TARGET)
    total = spec.new_sum(range(2, 5))
    assert total.owned == range(2, 5) and total.ciphertexts == 3
    assert isinstance(PublicContext.from_bytes(spec.public_context), PublicContext)


# ---- through the orchestrator ----

PLAIN_PARAMETERS = 300_000  # two 1 MiB chunks in `none`: one per worker


def header(name: str, round: int = 0, stage: Stage | None = None) -> Header:
    return Header(federation_id="accord-demo", round=round, stage=stage, participant=name)


def plain_upload(orchestrator: Orchestrator, keys, name: str, delta: np.ndarray) -> bytes:
    task = orchestrator.next_task(header(name), wait_s=0)
    assert task.config is not None
    chunks, sequence, signature = upload_chunks(task.config, name, keys, delta)
    route = header(name, task.round, Stage.UPLOAD)
    session = orchestrator.open_upload(route)
    try:
        for chunk in chunks:
            orchestrator.take_chunk(session, route, chunk)
        return orchestrator.finish_upload(
            session, replace(route, sequence=sequence, signature=signature)
        )
    finally:
        session.chunks.close()  # as the service does


def test_a_lost_worker_aborts_the_round_and_the_next_round_completes(tmp_path: Path) -> None:
    keys = make_keys()
    names = tuple(keys)
    config = make_config(tmp_path, keys, rounds=1)
    with SumWorkers(2, min_chunks_per_worker=1) as workers:
        orchestrator = Orchestrator(
            config, log=logs.configure("coordinator", tmp_path / "log"), sum_workers=workers
        )
        for name in names:
            orchestrator.enroll(
                header(name), base_model_hash=MODEL_HASH, adapter_parameters=PLAIN_PARAMETERS
            )
        delta = np.full(PLAIN_PARAMETERS, 0.01, np.float32)
        plain_upload(orchestrator, keys, names[0], delta)
        os.kill(workers.pids[0], signal.SIGKILL)
        with pytest.raises(RoundAborted, match=r"aggregation worker 0 .* died"):
            plain_upload(orchestrator, keys, names[1], delta)
        status = orchestrator.status()
        assert status.recent_rounds[-1].outcome is Stage.ABORTED
        assert "aggregation failed" in status.recent_rounds[-1].message
        # Round 2 began at once, on fresh workers, and sums as if nothing had happened.
        assert (status.lifecycle, status.round) == (Lifecycle.ROUND, 2)
        assert len(workers.pids) == 2
        for name in names:
            plain_upload(orchestrator, keys, name, delta)
        _, chunks, _ = orchestrator.aggregate_for(header(names[0], 2, Stage.AGGREGATE))
        sums = pipeline.reveal(
            list(chunks),
            profile=Profile.NONE,
            element_count=PLAIN_PARAMETERS + 1,
            modulus_bits=16,
            packing=None,
            secret=None,
        )
        np.testing.assert_allclose(sums[:-1] / sums[-1], 0.01, rtol=1e-5)
