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
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Literal

from accord import errors
from accord.coordinator.aggregation.spool import Spool
from accord.crypto import masks, wire, wire_layout
from accord.crypto.aggregate import PreparedChunk, UpdateSum
from accord.crypto.ckks import PublicContext
from accord.crypto.messages import RoundConfig
from accord.errors import AccordError, IntegrityError, InternalError, RoundAborted

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
STOP_GRACE_S = 5.0
"""How long `close` lets a worker exit by itself before killing it."""


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


@dataclass(frozen=True)
class SumSpec:
    """What it takes to hold (part of) one round's sum; picklable, holds no key of any kind.

    Attributes:
        config: the round.
        public_context: `PublicContext.to_bytes()` for the CKKS profiles, else empty.
        max_chunk_bytes: larger chunks are refused.
        target_chunk_bytes: the chunk size the participants plan with.
    """

    config: RoundConfig
    public_context: bytes
    max_chunk_bytes: int
    target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES

    def chunk_count(self) -> int:
        """Chunks in one complete upload."""
        config = self.config
        plan = wire_layout.chunk_plan(
            config.element_count, config.profile, config.packing, self.target_chunk_bytes
        )
        return len(plan)

    def new_sum(
        self, owned: range | None = None, *, public: PublicContext | None = None
    ) -> UpdateSum:
        """An empty sum holding chunks `owned` (all when None; `range(0)` only checks).

        Args:
            owned: contiguous chunk indices.
            public: the loaded public context, when the caller has it already.
        """
        config = self.config
        if public is None and self.public_context:
            public = PublicContext.from_bytes(self.public_context)
        return UpdateSum(
            config.profile,
            config.element_count,
            modulus_bits=config.quant.modulus_bits,
            packing=config.packing,
            public=public,
            federation_id=config.federation_id,
            round=config.round,
            target_chunk_bytes=self.target_chunk_bytes,
            max_chunk_bytes=self.max_chunk_bytes,
            owned=owned,
        )


@dataclass(frozen=True)
class Holding:
    """What one process holds of a round's sum (for tests and diagnostics).

    Attributes:
        pid: the process.
        owned: its chunk indices.
        elements: the elements of those chunks, the only ones it holds.
        ciphertexts: the ciphertext sums it holds (0 outside the CKKS profiles).
        uploads: uploads it has added to its chunks.
    """

    pid: int
    owned: range
    elements: range
    ciphertexts: int
    uploads: int


def holding(total: UpdateSum) -> Holding:
    """Describe what `total` holds, in this process."""
    return Holding(os.getpid(), total.owned, total.elements, total.ciphertexts, total.uploads)


def split(chunk_count: int, parts: int) -> list[range]:
    """Contiguous chunk ranges of near-equal length (the first ones one longer), in order."""
    base, extra = divmod(chunk_count, parts)
    ranges, start = [], 0
    for part in range(parts):
        stop = start + base + (1 if part < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def add_extents(total: UpdateSum, fd: int, extents: Sequence[tuple[int, int]]) -> None:
    """Read chunks from file descriptor `fd` at `(offset, length)` each, and add them in order.

    Raises:
        IntegrityError: the file is shorter than an extent.
        Malformed, UsageError, ...: from `UpdateSum.add`.
    """
    for offset, length in extents:
        chunk = os.pread(fd, length, offset)
        if len(chunk) != length:
            raise IntegrityError(f"the spool file ends inside the chunk at offset {offset}")
        total.add(chunk)


def prepare_extents(
    total: UpdateSum, fd: int, extents: Sequence[tuple[int, int]]
) -> list[PreparedChunk]:
    """Read chunks from `fd` at `(offset, length)` each and validate them completely.

    Raises:
        IntegrityError: the file is shorter than an extent.
        Malformed, Oversized, UsageError: from `UpdateSum.prepare`.
    """
    prepared = []
    for offset, length in extents:
        chunk = os.pread(fd, length, offset)
        if len(chunk) != length:
            raise IntegrityError(f"the spool file ends inside the chunk at offset {offset}")
        prepared.append(total.prepare(chunk))
    return prepared


def finish_sum(total: UpdateSum, correction: Sequence[masks.MaskTerm]) -> Iterator[bytes]:
    """Add the mask correction over `total`'s own chunks, then return its aggregate chunks.

    Returns:
        The chunks, serialized one at a time as they are taken.

    Raises:
        UsageError: from `UpdateSum.add_correction` and `UpdateSum.chunks` (e.g. an
            upload was only partly added), before any chunk is returned.
    """
    if correction:
        plan = total.plan
        for index in total.owned:
            start, count = plan[index]
            values = masks.correction(start, count, correction, total.modulus_bits)
            total.add_correction(start, values)
    return total.chunks()


# ---- the pipe protocol: one request, one answer (after `_Part`s for `_Finish`), in order ----


@dataclass(frozen=True)
class _Begin:
    """Hold an empty sum of `owned` chunks of `spec`'s round (nothing for `range(0)`)."""

    spec: SumSpec
    owned: range


@dataclass(frozen=True)
class _Check:
    """Read these chunks of an upload and validate them completely (the payload's decoding,
    SEAL's load of each ciphertext), keeping them decoded for `_Commit`; nothing is added.
    The spool file's descriptor follows (SCM_RIGHTS)."""

    extents: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Commit:
    """Add the chunks the last `_Check` validated."""


@dataclass(frozen=True)
class _Finish:
    """Add the correction, send the range's aggregate chunks (one `_Part` each), drop the sum.

    The answer is the number of uploads summed. Chunks go one by one so that a worker
    never holds its serialized range besides its sum.
    """

    correction: tuple[masks.MaskTerm, ...]


@dataclass(frozen=True)
class _Describe:
    """Answer a `Holding`."""


@dataclass(frozen=True)
class _Stop:
    """Exit (no answer)."""


@dataclass(frozen=True)
class _Part:
    chunk: bytes


@dataclass(frozen=True)
class _Done:
    value: object


@dataclass(frozen=True)
class _Failed:
    error_type: str
    message: str


def _serve(conn: Connection) -> None:
    """A worker's life: answer requests in order until `_Stop` or the pipe closes."""
    # Ctrl-C reaches the whole process group; the coordinator decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    total: UpdateSum | None = None
    staged: list[PreparedChunk] = []  # the chunks the last _Check validated
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the coordinator is gone
        if isinstance(request, _Stop):
            return
        try:
            fd = reduction.recv_handle(conn) if isinstance(request, _Check) else None
            answer: object
            try:
                if not isinstance(request, (_Commit, _Describe)):
                    staged = []
                if isinstance(request, _Begin):
                    total = None  # free the last round's sum first
                    total = request.spec.new_sum(request.owned) if request.owned else None
                    answer = _Done(None)
                elif total is None:
                    raise InternalError("this worker holds no sum (no round began, or it finished)")
                elif isinstance(request, _Check):
                    assert fd is not None
                    staged = prepare_extents(total, fd, request.extents)
                    answer = _Done(None)
                elif isinstance(request, _Commit):
                    committed, staged = staged, []
                    for prepared in committed:
                        total.add_prepared(prepared)
                    answer = _Done(None)
                elif isinstance(request, _Finish):
                    for chunk in finish_sum(total, request.correction):
                        conn.send(_Part(chunk))
                    answer = _Done(total.uploads)
                    total = None
                elif isinstance(request, _Describe):
                    answer = _Done(holding(total))
                else:
                    raise InternalError(f"unknown request {type(request).__name__}")
            except OSError:
                raise  # the pipe: handled below
            except Exception as error:  # every other failure is answered; the worker lives on
                answer = _Failed(type(error).__name__, str(error))
            finally:
                if fd is not None:
                    os.close(fd)
            conn.send(answer)
        except OSError:
            return  # the pipe broke: the coordinator is gone


class _Lost(Exception):
    """A worker died, closed its pipe or did not answer in time (internal)."""


class _Worker:
    """The coordinator's end of one worker process."""

    def __init__(self, context: SpawnContext, number: int) -> None:
        self.number = number
        self.owned = range(0)
        parent, child = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child,), name=f"accord-sum-{number}", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent

    def describe(self) -> str:
        owned = f"chunks {self.owned.start}-{self.owned.stop - 1}" if self.owned else "no chunks"
        return f"aggregation worker {self.number} (pid {self.process.pid}, {owned})"

    def send(self, request: object, fd: int | None) -> None:
        try:
            self.conn.send(request)
            if fd is not None:
                reduction.send_handle(self.conn, fd, self.process.pid)
        except OSError as error:
            raise self._lost(f"is unreachable ({error})") from None

    def answer(self, deadline: float, timeout_s: float) -> tuple[object, list[bytes]]:
        """The answer to the last request, and the `_Part` chunks sent before it."""
        parts: list[bytes] = []
        answer = self.receive(deadline, timeout_s)
        while isinstance(answer, _Part):
            parts.append(answer.chunk)
            answer = self.receive(deadline, timeout_s)
        return answer, parts

    def receive(self, deadline: float, timeout_s: float) -> object:
        ready = wait([self.conn, self.process.sentinel], max(0.0, deadline - time.monotonic()))
        if self.conn in ready:
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass  # it died while answering
        if ready:
            raise self._lost("closed its pipe")
        raise _Lost(f"{self.describe()} did not answer within {timeout_s:g} s")

    def _lost(self, otherwise: str) -> _Lost:
        """The error for a worker whose pipe failed: it died, most likely."""
        self.process.join(STOP_GRACE_S)
        if self.process.exitcode is not None:
            return _Lost(f"{self.describe()} died (exit code {self.process.exitcode})")
        return _Lost(f"{self.describe()} {otherwise}")

    def kill(self) -> None:
        """Kill the process (if it still runs), reap it and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _stop_all(workers: list[_Worker]) -> None:
    """Ask every worker to exit, wait up to `STOP_GRACE_S`, kill those left; empty `workers`.

    Also the pool's finalizer, so it runs at interpreter exit for a pool never closed.
    """
    for worker in workers:
        with contextlib.suppress(OSError):  # already gone
            worker.conn.send(_Stop())
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        worker.kill()
    workers.clear()


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
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

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
                _stop_all(self._workers)
                self._workers.extend(_Worker(self._context, i) for i in range(self.size))
                timeout_s = max(timeout_s, START_TIMEOUT_S)
            ranges = split(chunk_count, used) + [range(0)] * (self.size - used)
            for worker, owned in zip(self._workers, ranges, strict=True):
                worker.owned = owned
            # Every worker begins, so that spare ones drop the last round's sum.
            self._call([(w, _Begin(spec, w.owned)) for w in self._workers], timeout_s=timeout_s)
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
        calls: list[tuple[_Worker, object]],
        fd: int | None = None,
        timeout_s: float | None = None,
    ) -> list[tuple[object, list[bytes]]]:
        """Send each request, then collect every answer (so the pipes stay in step).

        Args:
            calls: a request for each worker.
            fd: a descriptor passed to each worker after its request.
            timeout_s: how long all answers may take; `reply_timeout_s` when None.

        Returns:
            Each worker's answer, with the chunks it sent before it (`_Finish`).

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
        except _Lost as lost:
            self._generation += 1
            for worker in self._workers:
                worker.kill()
            self._workers.clear()
            raise RoundAborted(f"{lost}; this round's sum is lost") from None
        replies = []
        for (worker, _), (answer, parts) in zip(calls, answers, strict=True):
            if isinstance(answer, _Failed):
                raise _as_error(answer, worker.describe())
            assert isinstance(answer, _Done)
            replies.append((answer.value, parts))
        return replies


class SpreadSum:
    """One round's running sum, held by the pool's workers in contiguous chunk ranges."""

    def __init__(self, pool: SumWorkers, generation: int, workers: list[_Worker]) -> None:
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
        calls: list[tuple[_Worker, object]] = [
            (w, _Check(tuple(extents[w.owned.start : w.owned.stop]))) for w in self._workers
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
        calls: list[tuple[_Worker, object]] = [(w, _Commit()) for w in self._workers]
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
        request = _Finish(tuple(correction))
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
            answers = self._pool._call([(w, _Describe()) for w in self._workers])
        return [value for value, _ in answers if isinstance(value, Holding)]

    def _require_usable(self) -> None:
        if self._pool._generation != self._generation:
            raise RoundAborted(
                "the aggregation workers were restarted, closed or given to a later round "
                "since this round began; its sum is lost"
            )
        if self._failure:
            raise RoundAborted(f"the round's sum is incomplete: an add failed ({self._failure})")


def _as_error(failed: _Failed, where: str) -> AccordError:
    """A worker's error as the coordinator raises it: the same class where it is ours."""
    kind = getattr(errors, failed.error_type, None)
    if isinstance(kind, type) and issubclass(kind, AccordError):
        return kind(f"{where}: {failed.message}")
    return RoundAborted(f"{where} failed: {failed.error_type}: {failed.message}")
