"""The upload and aggregate streams: pipelined, sealed last, failures raised as themselves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from accord.errors import IntegrityError, ProtocolError
from accord.participant.streams import AggregateStream, Receipt, UploadStream, with_last
from accord.proto.v1 import federation_pb2 as pb

CHUNKS = [b"chunk-0", b"chunk-1!", b"chunk-2", b"chunk-3", b"chunk-4"]


class Producer:
    """Protected chunks, produced one at a time, with a log of what happened when."""

    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.log: list[str] = []

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise IntegrityError(f"chunk {index} cannot be protected")
            self.log.append(f"produced {index}")
            yield chunk

    def seal(self, digest: bytes, count: int, size: int) -> Receipt:
        self.log.append(f"sealed {digest.hex()} {count} {size}")
        return Receipt(sequence=7, signature=b"receipt")


def upload(producer: Producer) -> UploadStream:
    return UploadStream(iter(producer), lambda: pb.RequestHeader(round=3), producer.seal)


def test_the_last_chunk_is_flagged() -> None:
    assert list(with_last(iter([b"a", b"b", b"c"]))) == [
        (b"a", False),
        (b"b", False),
        (b"c", True),
    ]
    assert list(with_last(iter([]))) == []


def test_a_chunk_is_sent_before_the_later_ones_are_protected() -> None:
    producer = Producer(CHUNKS)
    messages = upload(producer).messages()
    first = next(messages)
    assert first.chunk == CHUNKS[0]
    # One chunk of lookahead (is this the last?), never the whole update.
    assert producer.log == ["produced 0", "produced 1"]


def test_the_upload_is_sealed_once_after_its_last_chunk_and_before_the_receipt_leaves() -> None:
    producer = Producer(CHUNKS)
    stream = upload(producer)
    sent: list[pb.UpdateChunk] = []
    for message in stream.messages():
        producer.log.append(f"sent {len(sent)}")
        sent.append(message)
    digest = hashlib.sha256(b"".join(CHUNKS)).digest()
    seal = f"sealed {digest.hex()} {len(CHUNKS)} {sum(map(len, CHUNKS))}"
    assert producer.log.count(seal) == 1
    assert (
        producer.log.index("produced 4") < producer.log.index(seal) < producer.log.index("sent 4")
    )
    assert [m.chunk for m in sent] == CHUNKS
    assert (sent[-1].header.sequence, sent[-1].header.signature) == (7, b"receipt")
    assert all(m.header.signature == b"" for m in sent[:-1])
    assert (stream.digest, stream.count, stream.sent) == (digest, 5, sum(map(len, CHUNKS)))
    stream.raise_failure()  # nothing failed: nothing raised


def test_a_failure_ends_the_stream_without_a_receipt_and_is_raised_as_itself() -> None:
    producer = Producer(CHUNKS, fail_at=3)
    stream = upload(producer)
    sent = list(stream.messages())
    assert [m.chunk for m in sent] == CHUNKS[:2]  # chunk 2 waits for its lookahead
    assert not any(entry.startswith("sealed") for entry in producer.log)
    assert all(m.header.signature == b"" for m in sent)
    with pytest.raises(IntegrityError, match="chunk 3 cannot be protected"):
        stream.raise_failure()


def aggregate(round: int, chunks: list[bytes]) -> Iterator[pb.AggregateChunk]:
    yield pb.AggregateChunk(config=pb.RoundConfig(round=round), chunk=chunks[0])
    for chunk in chunks[1:]:
        yield pb.AggregateChunk(chunk=chunk)


def test_the_aggregate_opens_with_its_config_and_yields_chunks_as_they_arrive() -> None:
    responses = aggregate(4, CHUNKS)
    stream = AggregateStream.open(responses, 4)
    assert stream.first.config.round == 4 and stream.received == 0
    chunks = stream.chunks()
    assert next(chunks) == CHUNKS[0] and next(chunks) == CHUNKS[1]
    assert stream.received == len(CHUNKS[0]) + len(CHUNKS[1])  # the rest not yet read
    assert [*chunks] == CHUNKS[2:]
    assert stream.received == sum(map(len, CHUNKS))


def test_an_aggregate_of_another_round_or_none_is_refused() -> None:
    with pytest.raises(ProtocolError, match="round 5 came without its round config"):
        AggregateStream.open(aggregate(4, CHUNKS), 5)
    with pytest.raises(ProtocolError, match="round 5 came without its round config"):
        AggregateStream.open(iter([]), 5)
