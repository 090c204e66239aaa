"""The daemon's two streams: the upload, protected while it is sent, and the aggregate,
revealed while it arrives.

    upload    UploadStream.messages() is the request stream of `UploadUpdate`: gRPC takes
              one message at a time, and each chunk is protected only when it is asked
              for (the runner, `workers.ChunkWorkers`, a window ahead), so chunk k is
              encrypted while chunk k-1 is on the wire. Guarantee 4 (DESIGN.md): the
              round's privacy entry is in the ledger before the stream starts
              (`privacy_ledger.before_upload`, from uploading.py); the upload's digest,
              chunk count and bytes are recorded (`before_receipt`) after the last chunk is produced
              and before its message, which carries the signed receipt, is handed over.
    download  AggregateStream reads the first message of `DownloadAggregate` (the round
              config and the signed survivor set) before anything else, so every check
              that needs the config runs before a chunk is decrypted; `chunks()` then
              yields the chunks as they stream in, for `exchange.reveal_mean` to decrypt
              on the runner while the rest arrives.

An error raised while producing the upload (a worker died, the ledger cannot be
written) makes gRPC cancel the call; `send_upload` raises that error, not the
cancellation. A refusal on either stream is raised as its Accord error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import grpc

from accord.crypto.messages import UploadDone
from accord.errors import ProtocolError
from accord.participant.rpc_errors import accord_error
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc


class UploadStream:
    """One round's upload as a lazily produced request stream.

    Args:
        chunks: the protected chunks, in order, computed as they are asked for.
        header: a fresh request header of this round's upload stage.
        before_receipt: records ``(sha256, chunks, bytes)`` of the whole upload; called
            once, after the last chunk is produced, before the receipt is signed.
        receipt: signs the receipt over ``(sha256, chunks)`` (``ParticipantRound.upload_done``).
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        header: Callable[[], pb.RequestHeader],
        before_receipt: Callable[[bytes, int, int], None],
        receipt: Callable[[bytes, int], UploadDone],
    ) -> None:
        self._chunks = chunks
        self._header = header
        self._before_receipt = before_receipt
        self._receipt = receipt
        self._digest = hashlib.sha256()
        self.count = 0
        """Chunks produced so far."""
        self.sent = 0
        """Bytes of the chunks produced so far."""
        self.error: Exception | None = None
        """What ended the stream early (gRPC then cancels the call), or None."""

    @property
    def digest(self) -> bytes:
        """SHA-256 over the chunks produced so far, in order (the receipt's digest)."""
        return self._digest.digest()

    def messages(self) -> Iterator[pb.UpdateChunk]:
        """The `UploadUpdate` messages; the last one carries the signed receipt."""
        try:
            for chunk, last in with_last(self._chunks):
                self._digest.update(chunk)
                self.count += 1
                self.sent += len(chunk)
                header = self._header()
                if last:
                    digest = self.digest
                    self._before_receipt(digest, self.count, self.sent)
                    signed = self._receipt(digest, self.count)
                    header.sequence = signed.sequence
                    header.signature = signed.signature
                yield pb.UpdateChunk(header=header, chunk=chunk)
        except Exception as error:
            self.error = error
            raise


def send_upload(
    stub: pb_grpc.CoordinatorStub, stream: UploadStream, *, round: int, timeout_s: float
) -> None:
    """Stream the upload to the coordinator and check its receipt.

    Raises:
        ProtocolError: the coordinator's receipt names another digest.
        Exception: producing the stream failed (that error, e.g. RoundAborted for a
            dead worker).
        grpc.RpcError: the coordinator refused the upload, or the stream broke off.
    """
    try:
        response = stub.UploadUpdate(stream.messages(), timeout=timeout_s)
    except grpc.RpcError:
        if stream.error is not None:
            raise stream.error from None
        raise
    if response.digest != stream.digest:
        raise ProtocolError(f"the coordinator's receipt for round {round} differs")


class AggregateStream:
    """A `DownloadAggregate` response stream: its first message first, then its chunks.

    Args:
        responses: the call's response iterator (a gRPC call: `cancel()` ends it).
        round: the round whose aggregate was asked for.

    Raises:
        ProtocolError: the stream ends at once, or its first message carries no config
            of `round`.
        AccordError: the coordinator refused the download (e.g. RoundAborted, Expired).
    """

    def __init__(self, responses: Iterator[pb.AggregateChunk], *, round: int) -> None:
        self._responses = responses
        self.received = 0
        """Bytes of the chunks yielded so far."""
        try:
            first = next(responses, None)
        except grpc.RpcError as error:
            raise accord_error(error) from None
        if first is None or first.config.round != round:
            self.cancel()
            raise ProtocolError(f"the aggregate of round {round} came without its round config")
        self.first: pb.AggregateChunk = first
        """The first message: the round config and, in secure profiles, the evidence."""

    def chunks(self) -> Iterator[bytes]:
        """Every chunk, the first message's included, as it arrives."""
        self.received += len(self.first.chunk)
        yield self.first.chunk
        try:
            for message in self._responses:
                self.received += len(message.chunk)
                yield message.chunk
        except grpc.RpcError as error:
            raise accord_error(error) from None

    def cancel(self) -> None:
        """End the call (after an error, so the coordinator stops sending)."""
        cancel = getattr(self._responses, "cancel", None)
        if cancel is not None:
            cancel()


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
