"""Worker processes that hold a round's running sum by chunk range and add uploads in parallel.

Why processes. The coordinator's heavy work is parsing and adding CKKS ciphertexts
(`UpdateSum.add`). TenSEAL holds the GIL while it works, so threads cannot share it
out, but chunk ranges are independent of each other (DESIGN.md section 6). A
`SumWorkers` pool is started once per coordinator, on the first round that needs
it, with the 'spawn' start method: the coordinator is a multithreaded gRPC process,
which must not fork. For a round with enough chunks `SumWorkers.spread` splits the
chunk plan into contiguous ranges, one per worker, and each worker holds an
`UpdateSum` that owns only its range (`UpdateSum(owned=...)`): together they hold one
model, whatever the number of workers or uploads.

Data path. An upload waits in its `Spool` file until its receipt verifies. To add it,
the coordinator passes every worker the file's descriptor (SCM_RIGHTS over the
worker's pipe) and the offsets of that worker's chunks; the worker reads them with
`os.pread` and adds them, so upload bytes never cross a pipe. Finishing is per range
too: each worker adds the mask correction over its own chunks (expanding the PRG
streams itself) and streams its aggregate chunks back one at a time, which the
coordinator joins in range order. The same two functions, `add_extents` and
`finish_sum`, serve a worker's range and the coordinator's in-process sum
(`aggregation.RoundSum`), so the two paths sum identically.

Failure. Each worker answers its requests in order, one at a time. A worker that
raises answers with the error, which the coordinator raises again as the same
`AccordError` class naming the worker and its chunks; a spread sum whose add failed
is incomplete and refuses to finish (`RoundAborted`). A worker that dies, or does
not answer within `reply_timeout_s`, fails the pool: every worker is killed, the
round's sum is lost (`RoundAborted`), and the next round starts fresh processes. A
worker exits when its pipe closes, so even a coordinator killed by SIGKILL leaves
none behind; `close` (at server stop) stops them all and waits for them.

Here is the pool (`SumWorkers`, `SpreadSum`); a worker process and its pipe protocol are
in `worker_pipe.py`, the sum of one chunk range in `sum_ranges.py`.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Literal

from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_ranges import Holding, SumSpec, split
from accord.coordinator.aggregation.worker_pipe import (
    Begin,
    Check,
    Commit,
    Describe,
    Done,
    Failed,
    Finish,
    Lost,
    Worker,
    as_error,
    stop_all,
)
from accord.crypto import masks
from accord.errors import AccordError, InternalError, RoundAborted

AUTO_MAX_WORKERS = 4
"""`aggregation_workers = "auto"` uses this many workers at most (fewer on fewer CPUs)."""
MIN_CHUNKS_PER_WORKER = 4
"""A round is spread only over workers that each get at least this many chunks (about
1 MiB each); smaller vectors are summed in process, where the pipes cost more than
they save."""
DEFAULT_REPLY_TIMEOUT_S = 300.0
"""How long the coordinator waits for a live worker's answer before giving up on it."""
START_TIMEOUT_S = 120.0
"""How long new workers may take to start (import numpy and TenSEAL) and answer."""


def worker_count(setting: int | Literal["auto"]) -> int:
    """The workers `[coordinator] aggregation_workers` asks for.

    Returns:
        `setting` itself, or for "auto" the CPUs this process may use, at most
        `AUTO_MAX_WORKERS`. Fewer than 2 means summing in process.
    """
    if setting != "auto":
        return setting
    # The CPUs this process may run on (a container's or taskset's share), not the host's.
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return min(AUTO_MAX_WORKERS, cpus)


class SumWorkers:
    """A pool of aggregation worker processes, started on first use, kept until `close`.

    Thread-safe; one spread sum (round) at a time: `spread` hands the workers to a new
    round, and the previous round's `SpreadSum` can no longer be used.

    Args:
        count: worker processes (at least 2; summing in process needs no pool).
        min_chunks_per_worker: a round is spread over at most `chunks // this` workers.
        reply_timeout_s: the longest wait for the workers' answers to one request
            (new workers get at least `START_TIMEOUT_S` for their first).

    Raises:
        UsageError: fewer than 2 workers, or a bound below 1.
    """

    def __init__(
        self,
        count: int,
        *,
        min_chunks_per_worker: int = MIN_CHUNKS_PER_WORKER,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
    ) -> None:
        if count < 2:
            raise InternalError(f"count = {count}: a pool needs at least 2 workers")
        if min_chunks_per_worker < 1 or reply_timeout_s <= 0:
            raise InternalError("min_chunks_per_worker must be >= 1 and reply_timeout_s > 0")
        self.size = count
        self.min_chunks_per_worker = min_chunks_per_worker
        self.reply_timeout_s = reply_timeout_s
        # Never fork: the coordinator runs gRPC threads, which a forked child would not have.
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[Worker] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, stop_all, self._workers)

    @property
    def pids(self) -> list[int]:
        """The worker processes now running (none before the first spread round)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def spread(self, spec: SumSpec) -> SpreadSum | None:
        """Begin `spec`'s round on the workers, one contiguous chunk range each.

        Returns:
            The round's sum, or None when the vector has too few chunks to gain from
            workers (fewer than 2 x `min_chunks_per_worker`): sum it in process.

        Raises:
            RoundAborted: a worker could not be started or did not answer.
            UsageError: the pool is closed.
        """
        chunk_count = spec.chunk_count()
        used = min(self.size, chunk_count // self.min_chunks_per_worker)
        if used < 2:
            return None
        with self._lock:
            if self._closed:
                raise InternalError("the aggregation workers are closed")
            self._generation += 1
            timeout_s = self.reply_timeout_s
            if len(self._workers) < self.size or not all(
                w.process.is_alive() for w in self._workers
            ):
                stop_all(self._workers)
                self._workers.extend(Worker(self._context, i) for i in range(self.size))
                timeout_s = max(timeout_s, START_TIMEOUT_S)
            ranges = split(chunk_count, used) + [range(0)] * (self.size - used)
            for worker, owned in zip(self._workers, ranges, strict=True):
                worker.owned = owned
            # Every worker begins, so that spare ones drop the last round's sum.
            self._call([(w, Begin(spec, w.owned)) for w in self._workers], timeout_s=timeout_s)
            return SpreadSum(self, self._generation, self._workers[:used])

    def close(self) -> None:
        """Stop every worker and wait for it; later `spread` calls raise. Idempotent."""
        with self._lock:
            self._closed = True
            self._generation += 1
            self._finalizer()

    def __enter__(self) -> SumWorkers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(
        self,
        calls: list[tuple[Worker, object]],
        fd: int | None = None,
        timeout_s: float | None = None,
    ) -> list[tuple[object, list[bytes]]]:
        """Send each request, then collect every answer (so the pipes stay in step).

        Args:
            calls: a request for each worker.
            fd: a descriptor passed to each worker after its request.
            timeout_s: how long all answers may take; `reply_timeout_s` when None.

        Returns:
            Each worker's answer, with the chunks it sent before it (`Finish`).

        Raises:
            RoundAborted: a worker was lost; then every worker is killed.
            AccordError: the first error a worker answered with, as its own class.
        """
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            for worker, request in calls:
                worker.send(request, fd)
            answers = [worker.answer(deadline, timeout_s) for worker, _ in calls]
        except Lost as lost:
            self._generation += 1
            for worker in self._workers:
                worker.kill()
            self._workers.clear()
            raise RoundAborted(f"{lost}; this round's sum is lost") from None
        replies = []
        for (worker, _), (answer, parts) in zip(calls, answers, strict=True):
            if isinstance(answer, Failed):
                raise as_error(answer, worker.describe())
            assert isinstance(answer, Done)
            replies.append((answer.value, parts))
        return replies


class SpreadSum:
    """One round's running sum, held by the pool's workers in contiguous chunk ranges."""

    def __init__(self, pool: SumWorkers, generation: int, workers: list[Worker]) -> None:
        """Internal; use `SumWorkers.spread`."""
        self._pool = pool
        self._generation = generation
        self._workers = list(workers)
        self.ranges = [w.owned for w in workers]
        """The workers' chunk ranges, in order (they cover the plan)."""
        self._failure = ""
        self._staged: Spool | None = None  # the upload the workers hold checked

    def check(self, upload: Spool) -> None:
        """Validate a whole upload completely, each worker its own chunks, in parallel;
        keep it decoded in the workers for `add`. The sum is unchanged.

        Raises:
            RoundAborted: a worker was lost, or an earlier add failed.
            AccordError: a chunk is refused, as `UpdateSum.check` refuses it (same class;
                the message names the worker and the chunk). Nothing was added.
        """
        extents = upload.extents()
        calls: list[tuple[Worker, object]] = [
            (w, Check(tuple(extents[w.owned.start : w.owned.stop]))) for w in self._workers
        ]
        with self._pool._lock:
            self._require_usable()
            self._staged = None
            self._pool._call(calls, fd=upload.fileno())
            self._staged = upload

    def add(self, upload: Spool) -> None:
        """Add a whole upload: `check` it unless it was the last one checked, then add it.

        Raises:
            RoundAborted: a worker was lost, or an earlier add failed.
            AccordError: as `check` (nothing added); or a worker's add failed (the sum is
                then incomplete).
        """
        if self._staged is not upload:
            self.check(upload)
        calls: list[tuple[Worker, object]] = [(w, Commit()) for w in self._workers]
        with self._pool._lock:
            self._require_usable()
            self._staged = None
            try:
                self._pool._call(calls)
            except AccordError as error:
                self._failure = str(error)
                raise

    def finish(self, correction: Sequence[masks.MaskTerm]) -> list[bytes]:
        """Add the correction per range and return the aggregate's chunks, in order.

        Raises:
            RoundAborted: a worker was lost, or an earlier add failed.
            UsageError: no upload was added, or the ranges summed different numbers of
                uploads.
        """
        request = Finish(tuple(correction))
        with self._pool._lock:
            self._require_usable()
            answers = self._pool._call([(w, request) for w in self._workers])
        counts = sorted({uploads for uploads, _ in answers if isinstance(uploads, int)})
        if len(counts) != 1:
            raise InternalError(
                f"the aggregate is incomplete: chunk ranges summed different numbers of "
                f"uploads {counts}"
            )
        return [chunk for _, chunks in answers for chunk in chunks]

    def holdings(self) -> list[Holding]:
        """What each worker holds, in range order."""
        with self._pool._lock:
            self._require_usable()
            answers = self._pool._call([(w, Describe()) for w in self._workers])
        return [value for value, _ in answers if isinstance(value, Holding)]

    def _require_usable(self) -> None:
        if self._pool._generation != self._generation:
            raise RoundAborted(
                "the aggregation workers were restarted, closed or given to a later round "
                "since this round began; its sum is lost"
            )
        if self._failure:
            raise RoundAborted(f"the round's sum is incomplete: an add failed ({self._failure})")
