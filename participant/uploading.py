"""What leaves this member in a round: its training, the privacy ledger's say, its upload.

    before_round  the privacy ledger allows the round, or the daemon stops (budget spent)
    upload        refuse tower settings whose update would exceed the round's clip_norm
                  (`ConfigError`, before anything is trained or recorded), then
                  train (once per round, even across restarts: `upload.json`), record the
                  round in the privacy ledger, then protect the update
                  (`accord.crypto.pipeline`, on the workers) while it streams
                  (`transfers.UploadStream`); the upload is recorded too before the last
                  chunk carries the signed receipt (guarantee 4, DESIGN.md)

A refusal of the privacy budget (the ledger's `max_epsilon`, or the trainer's own plan)
is recorded in the ledger, then raised as `BudgetExhausted`: the daemon takes part no
more.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import numpy as np

from accord.core import logs
from accord.crypto.messages import Stage
from accord.crypto.participant_round import ParticipantRound
from accord.errors import BudgetExhausted, RoundAborted
from accord.participant import exchange, transfers
from accord.participant import privacy_ledger as ledger
from accord.participant.ceremony_keys import CeremonyKeys
from accord.participant.clock import Clock
from accord.participant.config import ParticipantConfig
from accord.participant.session import Session
from accord.participant.state_files import read_round_uploaded, write_json
from accord.participant.terms import check_clip_norm
from accord.participant.training.protocol import LocalUpdate, Trainer
from accord.participant.workers import ChunkWorkers

UPLOAD_STATE = "upload.json"
"""In the state folder: the last round this participant trained and uploaded for."""


class Uploader:
    """Trains and uploads this member's update, at most once per round.

    Args:
        config: the member's settings.
        session: the connection to the coordinator (and the daemon's state).
        keys: the federation secret the update is protected under.
        trainer: local training.
        workers: where chunks are protected.
        identity_private: its raw Ed25519 identity key (signs the privacy ledger).
        clock: where durations are read.
        log: structured logger.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        *,
        session: Session,
        keys: CeremonyKeys,
        trainer: Trainer,
        workers: ChunkWorkers,
        identity_private: bytes,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self._session = session
        self._keys = keys
        self._trainer = trainer
        self._workers = workers
        self._identity_private = identity_private
        self._clock = clock
        self._log = log
        self.round_uploaded = read_round_uploaded(config.state_dir / UPLOAD_STATE)
        """The last round trained and uploaded for (0: none), across restarts."""
        self._metrics: dict[str, Any] = {}

    def metrics_of(self, number: int) -> dict[str, Any]:
        """Training and upload metrics of round `number` ({} unless uploaded by this process)."""
        return self._metrics if self.round_uploaded == number else {}

    def before_round(self, round: int) -> None:
        """Ask the privacy ledger whether round `round` may start.

        Raises:
            BudgetExhausted: it may not (the ledger recorded why); the daemon stops.
        """
        refused = ledger.before_round(self._config, self._identity_private, round)
        if refused is not None:
            self._stop_contributing(round, refused)

    def upload(self, current: ParticipantRound) -> bool:
        """Train the round of `current`, then protect and stream the update.

        Returns:
            False, without training, when this round was trained (or began to be) before a
            restart: never twice for one round.

        Raises:
            ConfigError: the trainer's settings would make its update exceed the round's
                clip_norm (nothing trained, recorded or sent; the daemon stops, exit 2).
        """
        config = current.config
        if config.round <= self.round_uploaded:
            logs.event(self._log, "upload_skipped", round=config.round, stage=Stage.UPLOAD.value)
            return False
        check_clip_norm(self._trainer, config.quant.clip_norm)
        self.round_uploaded = config.round
        write_json(self._config.state_dir / UPLOAD_STATE, {"round_uploaded": config.round})
        started = self._clock.monotonic()
        update = self._train(config.round)
        train_s = self._clock.monotonic() - started
        session = self._session
        session.set_state("uploading")
        started = self._clock.monotonic()
        stream = self._send(current, update)
        self._metrics = {
            **update.metrics,
            "sample_count": update.sample_count,
            "train_s": round(train_s, 4),
            "upload_s": round(self._clock.monotonic() - started, 4),
            "bytes_up": stream.sent,
        }
        session.set_state("uploaded")
        logs.event(
            self._log,
            "uploaded",
            round=config.round,
            stage=Stage.UPLOAD.value,
            participant=self._config.name,
            bytes=stream.sent,
            chunks=stream.count,
        )
        return True

    def _send(self, current: ParticipantRound, update: LocalUpdate) -> transfers.UploadStream:
        """Protect `update` chunk by chunk while it streams to the coordinator; return the
        stream sent (its bytes and chunks).

        Raises:
            BudgetExhausted: the privacy ledger refuses the upload (it recorded why).
        """
        config = current.config
        session = self._session
        # Protection is validated here and runs lazily, chunk by chunk, as the stream asks.
        chunks = exchange.protect_update(
            update,
            config,
            current.mask_terms(),
            secret=self._keys.secret,
            integrity_key=self._keys.integrity_key,
            participant=self._config.name,
            runner=self._workers,
        )
        # The privacy ledger records the round before its first chunk leaves (guarantee 4),
        # and the upload's digest after its last chunk is made, before the receipt leaves.
        over_budget = ledger.before_upload(self._config, self._identity_private, config, update)
        if over_budget is not None:
            self._stop_contributing(config.round, over_budget)
        stream = transfers.UploadStream(
            chunks,
            header=lambda: session.header(round=config.round, stage=Stage.UPLOAD),
            before_receipt=lambda digest, count, size: ledger.upload_sent(
                self._config, self._identity_private, config.round, digest, count, size
            ),
            receipt=current.upload_done,
        )
        transfers.send_upload(
            session.stub, stream, round=config.round, timeout_s=session.transfer_timeout_s
        )
        return stream

    def _train(self, round: int) -> LocalUpdate:
        """Train `round`; a trainer out of its own budget (e.g. target_epsilon's planned steps)
        is a refusal like max_epsilon's, recorded before the daemon stops."""
        self._session.set_state("training")
        try:
            update = self._trainer.train_round(round)
        except BudgetExhausted as error:
            refused = ledger.trainer_refused(
                self._config, self._identity_private, round, str(error)
            )
            self._stop_contributing(round, refused)
        if not np.isfinite(update.delta).all():
            raise RoundAborted(
                f"round {round}: local training diverged, the update holds a NaN or an "
                "infinity (nothing was recorded or sent); lower learning_rate, or check the "
                "global adapter (e.g. client-level noise too large for this federation)"
            )
        return update

    def _stop_contributing(self, round: int, reason: str) -> NoReturn:
        """End the daemon: the privacy budget forbids this round (the ledger recorded why)."""
        logs.event(
            self._log, "privacy_budget_refused", round=round, reason=reason, level=logging.WARNING
        )
        self._session.set_state("budget exhausted")
        raise BudgetExhausted(f"privacy budget: {reason}")
