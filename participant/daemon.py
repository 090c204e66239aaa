"""The participant daemon: enrol, then do what the coordinator asks until it is finished.

    enrol -> heartbeat thread (separate from training)
          -> loop: long-poll NextTask
                UPLOAD     train locally, protect the update (accord.crypto.pipeline),
                           stream it in chunks; the last chunk carries the signed receipt
                AGGREGATE  stream the aggregate down, reveal it, apply the mean change,
                           checkpoint the global adapter (PEFT format) and metrics
                ABORTED    forget the round
                DONE       the federation finished: exit

The round's protocol decisions are `accord.crypto.participant_round.ParticipantRound`'s;
this daemon owns the network, the clock, the trainer and the state folder. After a
restart it resumes from `state.json` and the last saved adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc

from accord import __version__, errors, logs, transport
from accord.crypto import identity
from accord.crypto.messages import AggregateReady, RoundConfig, Stage
from accord.crypto.participant_round import ParticipantRound
from accord.errors import ConfigError, ProtocolError
from accord.participant import convert, exchange
from accord.participant.config import ParticipantConfig
from accord.participant.trainer import Trainer
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc

RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""Statuses after which an idempotent call is tried again (coordinator restarting)."""

T = TypeVar("T")


class ParticipantDaemon:
    """One participant's process.

    Args:
        config: its settings.
        trainer: local training (the default `LoraMlpTrainer` when None).
        log: structured logger.
    """

    def __init__(
        self, config: ParticipantConfig, *, log: logging.Logger, trainer: Trainer | None = None
    ) -> None:
        if not config.insecure_plaintext:
            raise ConfigError(
                "[participant] insecure_plaintext = false: mTLS arrives with provisioning "
                "(issue #4); until then only insecure_plaintext = true (loopback tests and "
                "demos) can connect"
            )
        self.config = config
        self._log = log
        self._identity_private = _load_identity(config.identity_key)
        if trainer is None:
            from accord.participant.trainer import LoraMlpTrainer

            trainer = LoraMlpTrainer(config)
        self._trainer = trainer
        self._state = "starting"
        self._stop = threading.Event()
        self._state_changed = threading.Event()
        self._identities: dict[str, bytes] = {}
        self._round: ParticipantRound | None = None
        self._pending_metrics: dict[str, float] = {}
        self._transfer_timeout_s = 120.0
        self._round_applied = self._resume()
        self._channel = grpc.insecure_channel(
            config.coordinator, options=transport.client_options(config.max_message_bytes)
        )
        self._stub = pb_grpc.CoordinatorStub(self._channel)

    # ---- lifecycle ----

    def run(self) -> None:
        """Take part until the federation finishes.

        Raises:
            ConfigError: the coordinator does not answer, or refuses this participant's
                settings.
        """
        try:
            self._connect()
            interval = self._enroll()
            heartbeat = threading.Thread(
                target=self._heartbeat, args=(interval,), name="accord-heartbeat", daemon=True
            )
            heartbeat.start()
            self._work()
        finally:
            self.stop()
            self._channel.close()

    def stop(self) -> None:
        """Ask `run` to return after the current call."""
        self._stop.set()
        self._state_changed.set()

    def _connect(self) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.config.connect_timeout_s)
        except grpc.FutureTimeoutError:
            raise ConfigError(
                f"[participant] coordinator = {self.config.coordinator!r}: no answer within "
                f"{self.config.connect_timeout_s:g} s (is the coordinator running there?)"
            ) from None

    def _enroll(self) -> float:
        request = pb.EnrollRequest(
            header=self._header(),
            base_model_hash=self._trainer.base_model_hash,
            software_version=__version__,
            adapter_parameters=self._trainer.parameter_count,
        )
        response = self._call(self._stub.Enroll, request)
        self._identities = {e.participant_id: e.identity_public_key for e in response.roster}
        self._set_state("enrolled")
        logs.event(
            self._log,
            "enrolled",
            participant=self.config.name,
            round=response.current_round,
            adapter_parameters=self._trainer.parameter_count,
        )
        return response.heartbeat_interval_s or 2.0

    def _heartbeat(self, interval_s: float) -> None:
        """Report liveness every `interval_s`, and at once when the state changes."""
        while not self._stop.is_set():
            self._state_changed.wait(interval_s)
            self._state_changed.clear()
            self._send_heartbeat(timeout_s=interval_s * 2)

    def _send_heartbeat(self, *, timeout_s: float) -> None:
        request = pb.HeartbeatRequest(header=self._header(), state=self._state)
        try:
            self._stub.Heartbeat(request, timeout=timeout_s)
        except grpc.RpcError as error:
            logs.event(self._log, "heartbeat_failed", code=error.code().name, level=logging.WARNING)

    def _work(self) -> None:
        seen_round, seen_stage = 0, pb.STAGE_UNSPECIFIED
        while not self._stop.is_set():
            header = self._header(round=seen_round)
            header.stage = seen_stage
            request = pb.TaskRequest(header=header, wait_s=self.config.poll_s)
            task = self._call(self._stub.NextTask, request, timeout=self.config.poll_s + 30)
            if task.stage == pb.DONE:
                self._state = "finished"
                self._send_heartbeat(timeout_s=5.0)
                logs.event(self._log, "finished", message=task.message)
                return
            seen_round, seen_stage = task.config.round, task.stage
            stage = convert.stage_from_proto(task.stage)
            if stage is None:
                self._set_state("waiting")
                continue
            self._transfer_timeout_s = max(30.0, 2 * task.config.stage_deadline_s)
            config = convert.round_config_from_proto(
                task.config, federation_id=self.config.federation_id
            )
            try:
                self._on_task(stage, config, task)
            except (ProtocolError, grpc.RpcError) as error:
                # The round moved on without us (deadline passed, aborted): wait for the next.
                what = accord_error(error) if isinstance(error, grpc.RpcError) else error
                logs.event(
                    self._log,
                    "round_step_refused",
                    round=config.round,
                    stage=stage.value,
                    reason=str(what),
                    level=logging.WARNING,
                )
                self._round = None

    def _on_task(self, stage: Stage, config: RoundConfig, task: pb.Task) -> None:
        if stage is Stage.ABORTED:
            logs.event(self._log, "round_aborted", round=config.round, reason=task.message)
            self._round = None
            self._set_state("waiting")
        elif stage is Stage.UPLOAD and config.round > self._round_applied:
            if self._round is None or self._round.config.round != config.round:
                self._round = ParticipantRound(
                    config, self.config.name, self._identity_private, self._identities
                )
                self._round.start()
            if self._round.stage is Stage.UPLOAD:
                self._upload(self._round)
        elif stage is Stage.AGGREGATE and self.config.name in task.survivors:
            current = self._round
            if current is not None and current.config.round == config.round:
                current.receive(AggregateReady(self.config.name, tuple(task.survivors)))
                self._download(config)

    # ---- one round ----

    def _upload(self, current: ParticipantRound) -> None:
        config = current.config
        self._set_state("training")
        started = time.monotonic()
        update = self._trainer.train_round(config.round)
        train_s = time.monotonic() - started
        self._set_state("uploading")
        started = time.monotonic()
        chunks = exchange.protect_update(update, config, current.mask_terms())
        digest, count, sent = hashlib.sha256(), 0, 0

        def messages() -> Iterator[pb.UpdateChunk]:
            nonlocal count, sent
            for chunk, last in _with_last(chunks):
                digest.update(chunk)
                count += 1
                sent += len(chunk)
                header = self._header(round=config.round, stage=Stage.UPLOAD)
                if last:
                    receipt = current.upload_done(digest.digest(), count)
                    header.sequence = receipt.sequence
                    header.signature = receipt.signature
                yield pb.UpdateChunk(header=header, chunk=chunk)

        response = self._stub.UploadUpdate(messages(), timeout=self._transfer_timeout_s)
        if response.digest != digest.digest():
            raise ProtocolError(f"the coordinator's receipt for round {config.round} differs")
        self._pending_metrics = {
            **update.metrics,
            "sample_count": update.sample_count,
            "train_s": round(train_s, 4),
            "upload_s": round(time.monotonic() - started, 4),
            "bytes_up": sent,
        }
        self._set_state("uploaded")
        logs.event(
            self._log,
            "uploaded",
            round=config.round,
            stage=Stage.UPLOAD.value,
            participant=self.config.name,
            bytes=sent,
            chunks=count,
        )

    def _download(self, config: RoundConfig) -> None:
        self._set_state("downloading")
        started = time.monotonic()
        request = pb.AggregateRequest(
            header=self._header(round=config.round, stage=Stage.AGGREGATE)
        )
        received: list[bytes] = []
        for message in self._stub.DownloadAggregate(request, timeout=self._transfer_timeout_s):
            received.append(message.chunk)
        mean_delta = exchange.reveal_mean(received, config)
        self._trainer.apply(mean_delta)
        adapter_dir = self.config.adapters_dir / f"round-{config.round:04d}"
        self._trainer.save(adapter_dir)
        self._round_applied = config.round
        _write_json(
            self.config.state_dir / "state.json",
            {
                "round_applied": config.round,
                "adapter": str(adapter_dir.relative_to(self.config.state_dir)),
            },
        )
        metrics = {
            "round": config.round,
            **self._pending_metrics,
            **{f"global_{k}": v for k, v in self._trainer.evaluate().items()},
            "download_s": round(time.monotonic() - started, 4),
            "bytes_down": sum(len(c) for c in received),
        }
        with self.config.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        self._round = None
        self._set_state("applied")
        logs.event(
            self._log,
            "applied",
            round=config.round,
            stage=Stage.AGGREGATE.value,
            participant=self.config.name,
            bytes=metrics["bytes_down"],
            global_eval_loss=metrics.get("global_eval_loss"),
        )

    # ---- helpers ----

    def _resume(self) -> int:
        """Load the last applied adapter from the state folder; return its round (0: none)."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        state_file = self.config.state_dir / "state.json"
        if not state_file.exists():
            return 0
        state = json.loads(state_file.read_text(encoding="utf-8"))
        self._trainer.load(self.config.state_dir / state["adapter"])
        logs.event(self._log, "resumed", round=state["round_applied"])
        return int(state["round_applied"])

    def _header(self, *, round: int = 0, stage: Stage | None = None) -> pb.RequestHeader:
        return convert.header_to_proto(
            federation_id=self.config.federation_id,
            participant=self.config.name,
            round=round,
            stage=stage,
        )

    def _set_state(self, state: str) -> None:
        self._state = state
        self._state_changed.set()

    def _call(self, method: Callable[..., T], request: object, *, timeout: float = 30.0) -> T:
        """Call an idempotent RPC, retrying while the coordinator is unreachable."""
        deadline = time.monotonic() + self.config.connect_timeout_s
        while True:
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                if error.code() not in RETRY_CODES or time.monotonic() > deadline:
                    raise accord_error(error) from None
                logs.event(self._log, "retrying", code=error.code().name, level=logging.WARNING)
                time.sleep(1.0)


def accord_error(error: grpc.RpcError) -> Exception:
    """The `AccordError` a refusal names (`TypeName: message`), else the `RpcError` itself.

    The coordinator maps each `AccordError` to a status in one place; this is the inverse,
    so that a refused enrolment ends the daemon with `ConfigError: ...`, not a traceback.
    """
    name, _, message = (error.details() or "").partition(": ")
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.AccordError):
        return kind(message)
    return error


def _with_last(items: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
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


def _load_identity(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"[participant] identity_key = {str(path)!r}: no such file (provisioning issues it; "
            "`accord demo` writes one)"
        ) from None
    return identity.load_private(data, what=f"identity key {path}")


def _write_json(path: Path, value: object) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
