"""Applying the federation's aggregates: download, check, reveal, apply, checkpoint.

    download   stream round N's aggregate down (`transfers.AggregateStream`: its config
               first), check whose sum it is (the survivor set `threshold` members
               signed), reveal it as it arrives (`exchange.reveal_mean`, on the workers),
               apply the mean change, checkpoint the global adapter (PEFT format) in
               `adapters/round-NNNN`, append the round's metrics to `metrics.jsonl`
    catch_up   apply the aggregates of closed rounds this member missed (not selected,
               dropped, restarted), in order; one that cannot be applied stops the daemon
               rather than let its adapter diverge from the federation's
    resume     after a restart, load the last applied adapter (`state.json`)

`AggregateApplier.round_applied` is the last round taken into account, kept in
`state.json` across restarts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import grpc

from accord import errors
from accord.core import logs
from accord.crypto import consistency
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.terms import FederationTerms
from accord.errors import ProtocolError, RoundAborted
from accord.participant import exchange, transfers
from accord.participant import privacy_ledger as ledger
from accord.participant.ceremony_keys import CeremonyKeys
from accord.participant.clock import Clock
from accord.participant.config import ParticipantConfig
from accord.participant.session import Session
from accord.participant.state_files import read_applied, write_applied
from accord.participant.terms import check_round
from accord.participant.training.protocol import Trainer
from accord.participant.uploading import Uploader
from accord.participant.workers import ChunkWorkers
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.evidence import evidence_from_proto
from accord.wire.round_config import round_config_from_proto


def resume(config: ParticipantConfig, trainer: Trainer, log: logging.Logger) -> int:
    """Load the last applied adapter from the state folder; return its round (0: none)."""
    applied = read_applied(config.state_dir)
    if applied is None:
        return 0
    number, adapter_dir = applied
    if adapter_dir is not None:
        trainer.load(adapter_dir)
    logs.event(log, "resumed", round=number)
    return number


class AggregateApplier:
    """Downloads and applies the aggregates of the federation's rounds, each once.

    Args:
        config: the member's settings.
        round_applied: the last round applied before this process started (`resume`).
        session: the connection to the coordinator, and the members' identity keys.
        keys: the federation secret the aggregate is revealed with.
        uploads: this member's uploads (their metrics join the round's).
        trainer: holds the global adapter.
        terms: the signed federation terms a round must keep (None without a kit).
        workers: where chunks are revealed.
        identity_private: its raw Ed25519 identity key (signs the privacy ledger).
        clock: where durations are read.
        log: structured logger.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        *,
        round_applied: int,
        session: Session,
        keys: CeremonyKeys,
        uploads: Uploader,
        trainer: Trainer,
        terms: FederationTerms | None,
        workers: ChunkWorkers,
        identity_private: bytes,
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self.round_applied = round_applied
        """The last round taken into account (0: none), across restarts."""
        self._session = session
        self._keys = keys
        self._uploads = uploads
        self._trainer = trainer
        self._terms = terms
        self._workers = workers
        self._identity_private = identity_private
        self._clock = clock
        self._log = log

    def download(self, number: int, *, machine: ParticipantRound | None) -> None:
        """Download round `number`'s aggregate (its config comes first), check, apply, save.

        `machine` is this member's round machine, if any: when it is of this round, its
        signed receipt must be in the survivor set the aggregate sums.

        Raises:
            RoundAborted, Expired, OutOfStage: the coordinator has no aggregate to give.
            ProtocolError: this participant lacks the round's CKKS key.
        """
        session = self._session
        session.set_state("downloading")
        started = self._clock.monotonic()
        request = pb.AggregateRequest(header=session.header(round=number, stage=Stage.AGGREGATE))
        stream = transfers.AggregateStream(
            session.stub.DownloadAggregate(request, timeout=session.transfer_timeout_s),
            round=number,
        )
        try:
            config = round_config_from_proto(
                stream.first.config, federation_id=self._config.federation_id
            )
            check_round(self._terms, config)
            # Whose sum it is: the survivor set `threshold` members signed (consistency
            # round); the integrity tags then check that the aggregate is exactly their sum.
            survivors = self._check_evidence(config, stream.first, machine)
            self._keys.fetch(config)
            # Decrypted as the chunks stream in, on the workers.
            mean_delta = exchange.reveal_mean(
                stream.chunks(),
                config,
                secret=self._keys.secret,
                integrity_key=self._keys.integrity_key,
                survivors=survivors,
                runner=self._workers,
            )
        except BaseException:
            stream.cancel()
            raise
        self._trainer.apply(mean_delta)
        adapter_dir = self._config.adapters_dir / f"round-{config.round:04d}"
        self._trainer.save(adapter_dir)
        self.mark_applied(config.round, adapter_dir)
        metrics = self._record_metrics(config.round, started, stream.received)
        session.set_state("applied")
        logs.event(
            self._log,
            "applied",
            round=config.round,
            stage=Stage.AGGREGATE.value,
            participant=self._config.name,
            bytes=metrics["bytes_down"],
            global_eval_loss=metrics.get("global_eval_loss"),
        )

    def _record_metrics(self, number: int, started: float, received: int) -> dict[str, Any]:
        """Append the round's metrics to `metrics.jsonl`, its validation gain to the ledger."""
        metrics = {
            "round": number,
            **self._uploads.metrics_of(number),
            **{f"global_{k}": v for k, v in self._trainer.evaluate().items()},
            "download_s": round(self._clock.monotonic() - started, 4),
            "bytes_down": received,
        }
        with self._config.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        ledger.after_apply(self._config, self._identity_private, number, metrics)
        return metrics

    def _check_evidence(
        self, config: RoundConfig, first: pb.AggregateChunk, machine: ParticipantRound | None
    ) -> tuple[str, ...]:
        """Whose uploads the aggregate sums: `threshold` members must have signed the set.

        Raises:
            IntegrityError, Malformed, BadSignature: the aggregate comes without a survivor
                set signed by `threshold` survivors, or with a forged one.
        """
        if not config.profile.is_secure:
            return ()
        if not first.HasField("evidence"):
            raise errors.IntegrityError(
                f"the aggregate of round {config.round} came without its signed survivor set"
            )
        evidence = evidence_from_proto(first.evidence)
        self._session.know(config.selected, what=f"round {config.round}")
        own = machine.receipt if machine is not None and machine.config == config else None
        consistency.verify_evidence(config, evidence, self._session.identities, own_receipt=own)
        return evidence.survivors

    def catch_up(self, through: int, *, machine: ParticipantRound | None) -> None:
        """Apply the aggregates of closed rounds this participant missed, up to `through`.

        A member not selected, dropped, or restarted during a round has no part in its
        aggregate but must apply it all the same, or its global adapter drifts from the
        federation's. The coordinator keeps the last `keep_aggregates` aggregates; an
        aborted round has none (nothing to apply). A round whose aggregate is gone, or
        was made under a CKKS key this participant never held, stops the daemon with
        `Expired` naming the round: it never takes part with a diverged adapter.
        """
        while self.round_applied < through and not self._session.stopped.is_set():
            number = self.round_applied + 1
            try:
                self.download(number, machine=machine)
                logs.event(self._log, "caught_up", round=number, stage=Stage.AGGREGATE.value)
                continue
            except RoundAborted as error:
                logs.event(self._log, "round_aborted", round=number, reason=str(error))
            except (errors.Expired, ProtocolError, errors.IntegrityError) as error:
                # IntegrityError: the aggregate is not the signed survivors' sum; not applied.
                if isinstance(error, errors.OutOfStage):
                    return  # not closed yet: the next task asks again
                # Carrying on would train on an adapter that diverged from the federation's
                # for good (issue 12, finding 6): stop, saying why and what would fix it.
                reason = f"{type(error).__name__}: {error}"
                logs.event(
                    self._log, "adapter_diverged", round=number, reason=reason, level=logging.ERROR
                )
                self._session.set_state("diverged")
                raise errors.Expired(
                    f"round {number}'s aggregate cannot be applied ({reason}); this member's "
                    "adapter would diverge from the federation's, so it takes part in no more "
                    "rounds (a late member needs the current global adapter; docs/protocol.md)"
                ) from None
            except grpc.RpcError as error:
                logs.event(
                    self._log,
                    "catch_up_failed",
                    round=number,
                    code=error.code().name,
                    level=logging.WARNING,
                )
                return  # the coordinator is away: the next task asks again
            self.mark_applied(number, None)

    def mark_applied(self, number: int, adapter_dir: Path | None) -> None:
        """Record that round `number` is taken into account (None: no new adapter)."""
        write_applied(self._config.state_dir, number, adapter_dir)
        self.round_applied = number
