"""One sum worker process and the pipe protocol between it and the coordinator.

Each request gets one answer (after `Part`s for `Finish`), in order. An upload's bytes
never cross the pipe: `Check` carries the offsets of the worker's chunks and the spool
file's descriptor follows it (SCM_RIGHTS); the worker reads them with `os.pread`. A
worker that raises answers `Failed`, which the coordinator raises again as the same
`AccordError` class (`as_error`); a worker that dies or does not answer is `Lost`.
The pool that drives the workers: `coordinator/aggregation/sum_workers.py`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess

from accord import errors
from accord.coordinator.aggregation.sum_ranges import SumSpec, finish_sum, holding, prepare_extents
from accord.crypto import masks
from accord.crypto.aggregate import PreparedChunk, UpdateSum
from accord.errors import AccordError, InternalError, RoundAborted

__all__ = [
    "STOP_GRACE_S",
    "Begin",
    "Check",
    "Commit",
    "Describe",
    "Done",
    "Failed",
    "Finish",
    "Lost",
    "Part",
    "Stop",
    "Worker",
    "as_error",
    "serve",
    "stop_all",
]

STOP_GRACE_S = 5.0
"""How long `close` lets a worker exit by itself before killing it."""


# ---- the pipe protocol: one request, one answer (after `Part`s for `Finish`), in order ----


@dataclass(frozen=True)
class Begin:
    """Hold an empty sum of `owned` chunks of `spec`'s round (nothing for `range(0)`)."""

    spec: SumSpec
    owned: range


@dataclass(frozen=True)
class Check:
    """Read these chunks of an upload and validate them completely (the payload's decoding,
    SEAL's load of each ciphertext), keeping them decoded for `Commit`; nothing is added.
    The spool file's descriptor follows (SCM_RIGHTS)."""

    extents: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Commit:
    """Add the chunks the last `Check` validated."""


@dataclass(frozen=True)
class Finish:
    """Add the correction, send the range's aggregate chunks (one `Part` each), drop the sum.

    The answer is the number of uploads summed. Chunks go one by one so that a worker
    never holds its serialized range besides its sum.
    """

    correction: tuple[masks.MaskTerm, ...]


@dataclass(frozen=True)
class Describe:
    """Answer a `Holding`."""


@dataclass(frozen=True)
class Stop:
    """Exit (no answer)."""


@dataclass(frozen=True)
class Part:
    chunk: bytes


@dataclass(frozen=True)
class Done:
    value: object


@dataclass(frozen=True)
class Failed:
    error_type: str
    message: str


def serve(conn: Connection) -> None:
    """A worker's life: answer requests in order until `Stop` or the pipe closes."""
    # Ctrl-C reaches the whole process group; the coordinator decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    total: UpdateSum | None = None
    staged: list[PreparedChunk] = []  # the chunks the last Check validated
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the coordinator is gone
        if isinstance(request, Stop):
            return
        try:
            fd = reduction.recv_handle(conn) if isinstance(request, Check) else None
            answer: object
            try:
                if not isinstance(request, (Commit, Describe)):
                    staged = []
                if isinstance(request, Begin):
                    total = None  # free the last round's sum first
                    total = request.spec.new_sum(request.owned) if request.owned else None
                    answer = Done(None)
                elif total is None:
                    raise InternalError("this worker holds no sum (no round began, or it finished)")
                elif isinstance(request, Check):
                    assert fd is not None
                    staged = prepare_extents(total, fd, request.extents)
                    answer = Done(None)
                elif isinstance(request, Commit):
                    committed, staged = staged, []
                    for prepared in committed:
                        total.add_prepared(prepared)
                    answer = Done(None)
                elif isinstance(request, Finish):
                    for chunk in finish_sum(total, request.correction):
                        conn.send(Part(chunk))
                    answer = Done(total.uploads)
                    total = None
                elif isinstance(request, Describe):
                    answer = Done(holding(total))
                else:
                    raise InternalError(f"unknown request {type(request).__name__}")
            except OSError:
                raise  # the pipe: handled below
            except Exception as error:  # every other failure is answered; the worker lives on
                answer = Failed(type(error).__name__, str(error))
            finally:
                if fd is not None:
                    os.close(fd)
            conn.send(answer)
        except OSError:
            return  # the pipe broke: the coordinator is gone


class Lost(Exception):
    """A worker died, closed its pipe or did not answer in time (internal)."""


class Worker:
    """The coordinator's end of one worker process."""

    def __init__(self, context: SpawnContext, number: int) -> None:
        self.number = number
        self.owned = range(0)
        parent, child = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=serve, args=(child,), name=f"accord-sum-{number}", daemon=True
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
        """The answer to the last request, and the `Part` chunks sent before it."""
        parts: list[bytes] = []
        answer = self.receive(deadline, timeout_s)
        while isinstance(answer, Part):
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
        raise Lost(f"{self.describe()} did not answer within {timeout_s:g} s")

    def _lost(self, otherwise: str) -> Lost:
        """The error for a worker whose pipe failed: it died, most likely."""
        self.process.join(STOP_GRACE_S)
        if self.process.exitcode is not None:
            return Lost(f"{self.describe()} died (exit code {self.process.exitcode})")
        return Lost(f"{self.describe()} {otherwise}")

    def kill(self) -> None:
        """Kill the process (if it still runs), reap it and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def stop_all(workers: list[Worker]) -> None:
    """Ask every worker to exit, wait up to `STOP_GRACE_S`, kill those left; empty `workers`.

    Also the pool's finalizer, so it runs at interpreter exit for a pool never closed.
    """
    for worker in workers:
        with contextlib.suppress(OSError):  # already gone
            worker.conn.send(Stop())
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        worker.kill()
    workers.clear()


def as_error(failed: Failed, where: str) -> AccordError:
    """A worker's error as the coordinator raises it: the same class where it is ours."""
    kind = getattr(errors, failed.error_type, None)
    if isinstance(kind, type) and issubclass(kind, AccordError):
        return kind(f"{where}: {failed.message}")
    return RoundAborted(f"{where} failed: {failed.error_type}: {failed.message}")
