"""The daemon's streams: each chunk is protected as the upload stream asks for it, the
privacy ledger is written around it (guarantee 4), and the aggregate is the same with one
and two chunk workers.

Laziness is observed through the order of events, never through timing: a chunk source
that notes each chunk it makes, and chunk workers that note, as each protect job is
taken, which entries the privacy ledger holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from accord.core import configfile
from accord.crypto import identity, pipeline
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant import exchange
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.training.protocol import LocalUpdate
from accord.participant.transfers import UploadStream
from accord.participant.workers import ChunkWorkers
from accord.proto.v1 import federation_pb2 as pb

_J = TypeVar("_J")
_R = TypeVar("_R")

NAMES = ("energy", "residential", "urban")
PARAMETERS = 600_000  # profile none: 4 bytes each, three chunks of about 1 MiB
SAMPLES = 4


def keypair(name: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(name.encode()).digest()[:n])


KEYS = {name: keypair(name) for name in NAMES}


def ledger_kinds(state_dir: Path) -> list[tuple[str, Any]]:
    """(kind, round) of every entry of a privacy ledger, checkpoints left out."""
    path = state_dir / ledger.LEDGER_FILE
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(e["kind"], e["body"].get("round")) for e in lines if e["kind"] != "checkpoint"]


# ---- the stream alone ----


def round_config(element_count: int) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=1,
        profile=Profile.NONE,
        selected=NAMES,
        threshold=2,
        quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=1e6),
        element_count=element_count,
    )


class NotingRunner:
    """The in-thread runner, noting each chunk as it is protected."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def map(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        for job in jobs:
            result = fn(secret, job)
            self.events.append(f"protected {getattr(job, 'index', '?')}")
            yield result


def test_the_upload_is_protected_as_the_stream_takes_it_and_recorded_before_its_receipt(
    tmp_path,
) -> None:
    config = round_config(PARAMETERS + 1)
    settings = configfile.validate(
        {"name": "energy", "state_dir": str(tmp_path)}, ParticipantConfig, "participant"
    )
    machine = ParticipantRound(
        config, "energy", KEYS["energy"].private, {n: k.public for n, k in KEYS.items()}
    )
    machine.start()
    delta = np.random.default_rng(1).normal(size=PARAMETERS).astype(np.float32)
    update = LocalUpdate(delta=delta, sample_count=SAMPLES, metrics={})
    events: list[str] = []
    chunks = exchange.protect_update(update, config, [], runner=NotingRunner(events))
    assert events == []  # nothing is protected before the stream asks
    assert ledger.before_upload(settings, KEYS["energy"].private, config, update) is None

    def before_receipt(digest: bytes, count: int, size: int) -> None:
        events.append("recorded")
        ledger.upload_sent(settings, KEYS["energy"].private, 1, digest, count, size)

    def receipt(digest: bytes, count: int):
        events.append("receipt signed")
        return machine.upload_done(digest, count)

    stream = UploadStream(
        chunks,
        header=lambda: pb.RequestHeader(participant_id="energy", round=1),
        before_receipt=before_receipt,
        receipt=receipt,
    )
    messages = stream.messages()
    first = next(messages)
    # The first chunk is handed to gRPC with one chunk of lookahead: the last one of the
    # upload is not protected yet.
    assert events == ["protected 0", "protected 1"]
    assert first.chunk and not first.header.signature
    rest = list(messages)
    count = 1 + len(rest)
    assert count >= 3
    assert events == [f"protected {k}" for k in range(count)] + ["recorded", "receipt signed"]
    assert [m.header.signature != b"" for m in rest] == [False] * (count - 2) + [True]
    sent = [first.chunk] + [m.chunk for m in rest]
    digest = hashlib.sha256(b"".join(sent)).digest()
    assert stream.digest == digest and stream.count == count
    assert rest[-1].header.sequence == machine.receipt.sequence  # type: ignore[union-attr]
    # The privacy entry came before any chunk; the digest of what was sent after the last.
    assert ledger_kinds(tmp_path) == [("open", None), ("round", 1), ("upload", 1)]
    upload = ledger.ParticipantLedger.open(settings, KEYS["energy"].private).book.entries[-2]
    assert upload.kind == ledger.UPLOAD
    assert upload.body["upload"] == {
        "sha256": digest.hex(),
        "chunks": count,
        "bytes": sum(map(len, sent)),
    }


def test_an_error_while_protecting_ends_the_stream_and_is_kept(tmp_path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first"
        raise OSError("disk full")

    stream = UploadStream(
        chunks(),
        header=pb.RequestHeader,
        before_receipt=lambda *_: pytest.fail("recorded an upload that was not all made"),
        receipt=lambda *_: pytest.fail("signed a receipt for an upload not all made"),
    )
    with pytest.raises(OSError, match="disk full"):
        list(stream.messages())
    assert isinstance(stream.error, OSError)


# ---- through a real coordinator ----


class NotingWorkers(ChunkWorkers):
    """Real chunk workers that note, as each protect job is taken, the ledger's entries."""

    def __init__(self, count: int, state_dir: Path) -> None:
        super().__init__(count)
        self.state_dir = state_dir
        self.notes: list[tuple[int, list[tuple[str, Any]]]] = []

    def map(
        self,
        fn: Callable[[SecretContext | None, _J], _R],
        jobs: Iterable[_J],
        secret: SecretContext | None,
    ) -> Iterator[_R]:
        def noted() -> Iterator[_J]:
            for job in jobs:
                if fn is pipeline.protect_chunk:
                    self.notes.append((job.index, ledger_kinds(self.state_dir)))  # type: ignore[attr-defined]
                yield job

        return super().map(fn, noted(), secret)


class ExactTrainer:
    """A trainer whose updates sum exactly in float32, in any order (multiples of 2^-10)."""

    parameter_count = PARAMETERS
    base_model_hash = "ab" * 32

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.applied: list[bytes] = []

    def train_round(self, round: int) -> LocalUpdate:
        steps = np.random.default_rng(self._seed).integers(-8, 9, PARAMETERS)
        delta = (steps / 1024).astype(np.float32)
        return LocalUpdate(delta=delta, sample_count=SAMPLES, metrics={"local_steps": 1.0})

    def apply(self, mean_delta: Any) -> None:
        self.applied.append(np.asarray(mean_delta, dtype=np.float32).tobytes())

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": 0.5}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def load(self, directory: Path) -> None:
        pass


def run_federation(tmp_path: Path, energy_workers: int) -> tuple[ExactTrainer, NotingWorkers]:
    """One round of the `none` profile; energy's chunks go through `energy_workers`."""
    from accord.coordinator import server
    from accord.coordinator.config import CoordinatorConfig

    coordinator = configfile.validate(
        {
            "participants": list(NAMES),
            "identity_keys": {name: pair.public.hex() for name, pair in KEYS.items()},
            "profile": "none",
            "insecure_plaintext": True,
            "state_dir": str(tmp_path / "coordinator"),
            "rounds": 1,
            "threshold": 2,
            "stage_deadline_s": 20.0,
            "heartbeat_interval_s": 0.2,
        },
        CoordinatorConfig,
        "coordinator",
    )
    coordinator.state_dir.mkdir(parents=True)
    log = logging.getLogger("accord.test-daemon-transfers")
    running = server.start(coordinator, log=log)
    outcomes: dict[str, BaseException | None] = {}
    trainers = {name: ExactTrainer(seed) for seed, name in enumerate(NAMES)}
    energy = NotingWorkers(energy_workers, tmp_path / "energy")
    daemons = {}
    for name in NAMES:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "identity.pem").write_bytes(identity.dump_private(KEYS[name].private))
        config = configfile.validate(
            {
                "name": name,
                "state_dir": str(folder),
                "coordinator": f"127.0.0.1:{running.port}",
                "identity_key": str(folder / "identity.pem"),
                "insecure_plaintext": True,
                "poll_s": 1.0,
                "workers": 1,
            },
            ParticipantConfig,
            "participant",
        )
        workers = energy if name == "energy" else None
        daemons[name] = ParticipantDaemon(config, log=log, trainer=trainers[name], workers=workers)  # type: ignore[arg-type]

    def work(name: str) -> None:
        try:
            daemons[name].run()
            outcomes[name] = None
        except BaseException as error:
            outcomes[name] = error

    threads = [threading.Thread(target=work, args=(name,), daemon=True) for name in NAMES]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        status = running.orchestrator.status()
    finally:
        for daemon in daemons.values():
            daemon.stop()
        running.stop(grace_s=0)
    assert outcomes == dict.fromkeys(NAMES), outcomes
    assert status.rounds_completed == 1
    return trainers["energy"], energy


@pytest.mark.e2e
def test_the_daemon_streams_its_upload_and_the_aggregate_is_the_same_with_one_and_two_workers(
    tmp_path,
) -> None:
    from accord.audit.ledgers import load

    one, _ = run_federation(tmp_path / "one", energy_workers=1)
    two, noting = run_federation(tmp_path / "two", energy_workers=2)
    # Every protect job was taken after the round's privacy entry was written, and the
    # last one before the upload's digest was: the chunks were made while streaming.
    indexes = [index for index, _ in noting.notes]
    assert indexes == list(range(len(indexes))) and len(indexes) >= 3
    for index, kinds in noting.notes:
        assert ("round", 1) in kinds, index
        assert ("upload", 1) not in kinds, index
    assert ("upload", 1) in ledger_kinds(tmp_path / "two" / "energy")
    # The audit finds each upload the federation ledger received in its member's ledger.
    audit = load([tmp_path / "two"])
    assert audit.ok, [(x.name, [str(f) for f in x.findings]) for x in audit.ledgers]
    # The same aggregate, byte for byte, whether energy protected on 1 or 2 workers.
    assert len(one.applied) == len(two.applied) == 1
    assert one.applied[0] == two.applied[0]
    expected = np.mean(
        [ExactTrainer(seed).train_round(1).delta for seed in range(len(NAMES))], axis=0
    ).astype(np.float32)
    np.testing.assert_array_equal(np.frombuffer(two.applied[0], dtype=np.float32), expected)


def test_the_aggregate_stream_gives_its_config_before_any_chunk_and_counts_bytes() -> None:
    from accord.errors import ProtocolError
    from accord.participant.transfers import AggregateStream

    taken: list[int] = []

    def responses(round: int) -> Iterator[pb.AggregateChunk]:
        for index, chunk in enumerate((b"one", b"two", b"three")):
            taken.append(index)
            message = pb.AggregateChunk(chunk=chunk)
            if index == 0:
                message.config.round = round
            yield message

    stream = AggregateStream(responses(2), round=2)
    assert taken == [0] and stream.first.config.round == 2 and stream.received == 0
    chunks = stream.chunks()
    assert next(chunks) == b"one" and taken == [0]  # the rest is read as it is consumed
    assert list(chunks) == [b"two", b"three"] and stream.received == len(b"onetwothree")
    with pytest.raises(ProtocolError, match="round 3 came without its round config"):
        AggregateStream(responses(2), round=3)
    with pytest.raises(ProtocolError, match="round 1 came without its round config"):
        AggregateStream(iter([]), round=1)
