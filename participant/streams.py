"""A round's two streams, pipelined: chunks travel while the next ones are protected or revealed.

    UploadStream(chunks, header, seal)     the `UploadUpdate` request stream: each chunk
                                           is sent as soon as it is protected, while the
                                           worker pool protects the next ones; after the
                                           last, `seal(digest, count, bytes)` records the
                                           upload and signs the receipt the last chunk
                                           carries
    AggregateStream.open(responses, round) the `DownloadAggregate` response stream: the
                                           first message (the round config and the
                                           survivor evidence) before any chunk, then the
                                           chunks as they arrive, for reveal to decrypt
                                           while the rest streams in

A failure while the upload is being produced (the ledger cannot be written, a chunk
cannot be protected) ends the request stream early: the coordinator, which accepts an
upload only with the receipt its last chunk carries, discards it, and the daemon raises
the failure itself (`UploadStream.raise_failure`), not gRPC's cancellation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import grpc

from accord import errors
from accord.errors import ProtocolError
from accord.participant.rpc_errors import accord_error
from accord.proto.v1 import federation_pb2 as pb


class Receipt(NamedTuple):
    """What the last chunk's header carries: the signed receipt's sequence and signature."""

    sequence: int
    signature: bytes


class UploadStream:
    """The request stream of one upload (iterate `messages()` once).

    Args:
        chunks: the protected update's wire chunks, in order, produced lazily.
        header: a fresh request header for the next message.
        seal: called once, after the last chunk is produced and before it is yielded,
            with the SHA-256 over all chunks, their count and total bytes; records the
            upload and returns the signed receipt.
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        header: Callable[[], pb.RequestHeader],
        seal: Callable[[bytes, int, int], Receipt],
    ) -> None:
        self._chunks = chunks
        self._header = header
        self._seal = seal
        self._digest = hashlib.sha256()
        self.count = 0
        self.sent = 0
        self.failure: BaseException | None = None

    @property
    def digest(self) -> bytes:
        """SHA-256 over the chunks produced so far (all of them once the stream ended)."""
        return self._digest.digest()

    def messages(self) -> Iterator[pb.UpdateChunk]:
        """The `UpdateChunk` messages; a failure ends them early (see `raise_failure`)."""
        try:
            for chunk, last in with_last(self._chunks):
                self._digest.update(chunk)
                self.count += 1
                self.sent += len(chunk)
                header = self._header()
                if last:
                    receipt = self._seal(self._digest.digest(), self.count, self.sent)
                    header.sequence = receipt.sequence
                    header.signature = receipt.signature
                yield pb.UpdateChunk(header=header, chunk=chunk)
        except Exception as error:  # raised by the daemon, not lost in gRPC's thread
            self.failure = error

    def raise_failure(self) -> None:
        """Raise what ended the stream early, if anything did."""
        if self.failure is not None:
            raise self.failure


class AggregateStream:
    """The response stream of one aggregate download (use `AggregateStream.open`).

    Args:
        first: the first message (it carries the round config and the evidence).
        rest: the responses after it.
    """

    def __init__(self, first: pb.AggregateChunk, rest: Iterator[pb.AggregateChunk]) -> None:
        self.first = first
        self._rest = rest
        self.received = 0

    @classmethod
    def open(cls, responses: Iterator[pb.AggregateChunk], round: int) -> AggregateStream:
        """Read the first message of round `round`'s aggregate.

        Raises:
            AccordError: the coordinator refused the download (the error it named).
            ProtocolError: the stream is empty or opens with another round's config.
        """
        try:
            first = next(responses, None)
        except grpc.RpcError as error:
            raise _refusal(error) from None
        if first is None or first.config.round != round:
            raise ProtocolError(f"the aggregate of round {round} came without its round config")
        return cls(first, responses)

    def chunks(self) -> Iterator[bytes]:
        """The aggregate's chunks as they arrive, the first message's included."""
        self.received += len(self.first.chunk)
        yield self.first.chunk
        for message in _translated(self._rest):
            self.received += len(message.chunk)
            yield message.chunk


def _translated(responses: Iterator[pb.AggregateChunk]) -> Iterator[pb.AggregateChunk]:
    """The responses; a refusal raised as the `AccordError` it names."""
    try:
        yield from responses
    except grpc.RpcError as error:
        raise _refusal(error) from None


def _refusal(error: grpc.RpcError) -> Exception:
    """The `AccordError` a refusal names, else the `RpcError` itself."""
    what = accord_error(error)
    return what if isinstance(what, errors.AccordError) else error


def with_last(items: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Yield each item with a flag that is True for the last one (one item of lookahead)."""
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for item in iterator:
        yield previous, False
        previous = item
    yield previous, True
