"""The participant's chunk workers: protect and reveal spread over its cores.

TenSEAL holds the GIL while it encrypts and decrypts, so threads would not help; this
pool runs `accord.crypto.pipeline`'s per-chunk functions (`protect_chunk`,
`reveal_chunk`) in processes started with 'spawn' (the daemon is a multithreaded gRPC
client, and fork would copy its locks), once, and reused round after round. Each
process holds the federation's secret CKKS context, installed when it starts; a new
secret (another federation, a re-keyed one) restarts the processes.

`ChunkWorkers.map` keeps at most `window` chunks in flight and yields results in job
order, so the caller streams chunk k while chunks k+1 .. k+window are being computed,
and memory stays bounded by the window, not the model. The work is the same pure
function on the same job as in the calling thread, so the chunks are byte-identical
with 1 and N workers. A chunk's error is raised as the same class with the same
message (naming the chunk); a worker that dies is a `RoundAborted` naming the chunk.

With one worker, or an update of one chunk, nothing is started: `map` runs the chunks
in the calling thread.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Literal, TypeVar

from accord.crypto.ckks import SecretContext
from accord.errors import ConfigError, RoundAborted

__all__ = ["ChunkWorkers", "worker_count"]

_J = TypeVar("_J")
_R = TypeVar("_R")

_SECRET: SecretContext | None = None
"""The secret context of this worker process (set by `_install`)."""


def worker_count(setting: int | Literal["auto"]) -> int:
    """Processes for `[participant] workers`: "auto" is the cores this process may use.

    Raises:
        ConfigError: neither "auto" nor an integer >= 1.
    """
    if setting == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError(
            f'[participant] workers = {setting!r}: must be "auto" or an integer >= 1 '
            "(processes that protect and reveal chunks)"
        )
    return setting


def _install(secret: bytes | None) -> None:
    global _SECRET
    _SECRET = SecretContext.from_bytes(secret) if secret is not None else None


def _run(fn: Callable[[SecretContext | None, _J], _R], job: _J) -> _R:
    return fn(_SECRET, job)


class ChunkWorkers:
    """A reusable pool of 'spawn' processes implementing `pipeline.ChunkRunner`.

    Args:
        count: processes, or "auto" (one per usable core); 1 runs every chunk in the
            calling thread.
        window: chunks in flight at most; default twice the processes.
    """

    def __init__(self, count: int | Literal["auto"], window: int | None = None) -> None:
        self._count = worker_count(count)
        self._window = window if window is not None else 2 * self._count
        if self._window < 1:
            raise ConfigError(f"window = {window!r}: must be >= 1")
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._secret_digest: bytes | None = None

    @property
    def count(self) -> int:
        """The processes this pool runs chunks on (1: the calling thread)."""
        return self._count

    def map(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        """``fn(secret, job)`` for each job on the pool, lazily, in job order.

        `fn` must be a module-level function (it is pickled by name) and each job
        picklable with an ``index`` attribute (the chunk, named if its worker dies).
        """
        if self._count == 1:
            return (fn(secret, job) for job in jobs)
        return self._spread(fn, iter(jobs), secret)

    def _spread(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterator[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        first = next(jobs, None)
        if first is None:
            return
        second = next(jobs, None)
        if second is None:  # one chunk: not worth a process (small updates, tests)
            yield fn(secret, first)
            return
        executor = self._executor_for(secret)
        yield from self._ordered(executor, fn, itertools.chain((first, second), jobs))

    def close(self) -> None:
        """Stop the processes (a later `map` starts new ones)."""
        with self._lock:
            executor, self._executor, self._secret_digest = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ChunkWorkers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _executor_for(self, secret: SecretContext | None) -> ProcessPoolExecutor:
        blob = secret.to_bytes() if secret is not None else None
        digest = hashlib.sha256(blob).digest() if blob is not None else b""
        with self._lock:
            if self._executor is not None and self._secret_digest == digest:
                return self._executor
            stale, self._executor = (
                self._executor,
                ProcessPoolExecutor(
                    max_workers=self._count,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_install,
                    initargs=(blob,),
                ),
            )
            self._secret_digest = digest
            executor = self._executor
        if stale is not None:
            stale.shutdown(wait=False, cancel_futures=True)
        return executor

    def _ordered(
        self,
        executor: ProcessPoolExecutor,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
    ) -> Iterator[_R]:
        pending: deque[tuple[int, Future[_R]]] = deque()
        source = iter(jobs)
        try:
            while True:
                while len(pending) < self._window:
                    job = next(source, None)
                    if job is None:
                        break
                    index = int(getattr(job, "index", -1))
                    try:
                        pending.append((index, executor.submit(_run, fn, job)))
                    except (BrokenProcessPool, RuntimeError) as err:
                        self._discard(executor)
                        raise RoundAborted(
                            f"chunk {index}: the participant's chunk workers stopped ({err})"
                        ) from err
                if not pending:
                    return
                index, future = pending.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool as err:
                    self._discard(executor)
                    raise RoundAborted(
                        f"chunk {index}: a participant chunk worker died ({err})"
                    ) from err
                yield result
        finally:
            for _, future in pending:
                future.cancel()

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor, self._secret_digest = None, None
        executor.shutdown(wait=False, cancel_futures=True)
