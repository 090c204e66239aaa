"""The participant daemon: enrol, then do what the coordinator asks until it is finished.

    enrol -> heartbeat thread (separate from training)
          -> loop: long-poll NextTask
                UPLOAD     train locally, record the round in the privacy ledger
                           (privacy_ledger.py), then protect the update
                           (accord.crypto.pipeline) while it streams (transfers.py); the
                           upload is recorded too before the last chunk carries the
                           signed receipt
                CONSISTENCY check the survivor set (our own receipt in it) and sign it
                UNMASK     reveal shares, only with `threshold` signatures over that set
                AGGREGATE  stream the aggregate down, check whose sum it is (the signed
                           survivor set), reveal it as it arrives, apply the mean change,
                           checkpoint the global adapter (PEFT format) and metrics, then
                           ConfirmApplied: the coordinator's receipt that it applied
                ABORTED    forget the round
                FEDERATION_FINISHED  the federation finished: exit

The round's protocol decisions are `accord.crypto.participant_round.ParticipantRound`'s,
and what a task means to this member is `accord.crypto.member_tasks.plan`'s; this daemon
drives them, with a few collaborators that own the effects: `session.py` (the
connection, enrolment, roster and heartbeat), `ceremony_keys.py` (the key ceremony and
the federation secret), `uploading.py` (training, the privacy ledger, the upload) and
`applying.py` (the aggregates). The daemon holds the round machine and hands each
collaborator what it needs explicitly.

After a restart the daemon resumes from `state.json` and the last saved adapter, and
from `upload.json`, the last round it trained and uploaded for: it never trains or
uploads twice for one round. A survivor that lost its round machine (this process restarted,
or a download broke off while the coordinator restarted) still downloads and applies
the round's aggregate, which holds its update.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from accord import errors
from accord.core import logs
from accord.crypto import member_tasks
from accord.crypto.member_tasks import Step
from accord.crypto.messages import (
    AdvertiseKeys,
    ConfirmSurvivors,
    ParticipantMessage,
    RoundConfig,
    ShareKeys,
    Stage,
    UnmaskShares,
)
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.terms import FederationTerms
from accord.errors import ProtocolError
from accord.participant import applying
from accord.participant.applying import AggregateApplier
from accord.participant.ceremony_keys import CeremonyKeys
from accord.participant.clock import SYSTEM_CLOCK, Clock
from accord.participant.config import ParticipantConfig
from accord.participant.federation_head import keep_federation_head
from accord.participant.kit.startup_kit import Kit
from accord.participant.revocations import RevocationKeeper
from accord.participant.rpc_errors import RETRY_CODES, accord_error
from accord.participant.session import Session, load_kit
from accord.participant.state_files import load_identity
from accord.participant.terms import (
    check_clip_norm,
    check_own_settings,
    check_round,
    load_kit_terms,
)
from accord.participant.training.protocol import Trainer, make_trainer
from accord.participant.uploading import Uploader
from accord.participant.workers import ChunkWorkers
from accord.proto.v1 import federation_pb2 as pb
from accord.wire import tasks
from accord.wire.evidence import confirm_survivors_to_proto
from accord.wire.keys import advertise_to_proto, share_keys_to_proto, unmask_to_proto
from accord.wire.round_config import round_config_from_proto
from accord.wire.stages import stage_from_proto


class ParticipantDaemon:
    """One participant's process.

    Args:
        config: its settings.
        trainer: local training; None builds the one `config.trainer` names
            (`make_trainer`).
        log: structured logger.
        workers: where chunks are protected and revealed; None starts `config.workers`
            processes on first use. Closed when `run` returns.
        clock: where the daemon reads time (deadlines, retry sleeps, certificate dates).
        before_stage: called with each stage and round of this participant's rounds just
            before the daemon acts on it (a fault to inject: the demo's `--drop` ends the
            process there, `accord.demo.dropout`); None in production.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        *,
        log: logging.Logger,
        trainer: Trainer | None = None,
        workers: ChunkWorkers | None = None,
        clock: Clock = SYSTEM_CLOCK,
        before_stage: Callable[[Stage, int], None] | None = None,
    ) -> None:
        self._clock = clock
        self._before_stage = before_stage
        kit = self._kit = load_kit(config)
        self.config = config
        self._log = log
        identity = self._identity_private = load_identity(config, kit)
        self._trainer = trainer if trainer is not None else make_trainer(config)
        self._terms = _own_terms(config, kit, self._trainer)
        self._round: ParticipantRound | None = None
        # Processes start on first use.
        self._workers = workers if workers is not None else ChunkWorkers(config.workers)
        round_applied = applying.resume(config, self._trainer, log)
        self._revocations = (
            RevocationKeeper(config.state_dir, kit.ca_pem, config.federation_id)
            if kit is not None
            else None
        )
        session = self._session = Session(
            config,
            kit,
            identity_private=identity,
            base_model_hash=self._trainer.base_model_hash,
            adapter_parameters=self._trainer.parameter_count,
            clock=clock,
            log=log,
        )
        self._keys = CeremonyKeys(config, kit, session=session, identity_private=identity, log=log)
        self._uploader = Uploader(
            config,
            session=session,
            keys=self._keys,
            trainer=self._trainer,
            workers=self._workers,
            identity_private=identity,
            clock=clock,
            log=log,
        )
        self._applier = AggregateApplier(
            config,
            round_applied=round_applied,
            session=session,
            keys=self._keys,
            uploads=self._uploader,
            trainer=self._trainer,
            terms=self._terms,
            workers=self._workers,
            identity_private=identity,
            clock=clock,
            log=log,
        )

    # ---- lifecycle ----

    def run(self) -> None:
        """Take part until the federation finishes.

        Raises:
            ConfigError: the coordinator does not answer, or refuses this participant's
                settings.
        """
        try:
            self._session.open()
            self._work()
        finally:
            self.stop()
            self._workers.close()
            self._session.close()

    def stop(self) -> None:
        """Ask `run` to return after the current call."""
        self._session.stop()

    def _work(self) -> None:
        """Long-poll the next task and do it, until the federation finishes or `stop`."""
        session = self._session
        seen_round, seen_stage = 0, pb.STAGE_UNSPECIFIED
        while not session.stopped.is_set():
            header = session.header(round=seen_round)
            header.stage = seen_stage
            request = pb.TaskRequest(header=header, wait_s=self.config.poll_s)
            task = session.call(session.stub.NextTask, request, timeout=self.config.poll_s + 30)
            # Every task carries the federation ledger's signed head: kept, and with a kit
            # refused (IntegrityError, the daemon stops) unless its pinned key signed it.
            keep_federation_head(
                self.config.state_dir,
                task.ledger_head,
                task.ledger_public_key,
                pinned=self._kit.coordinator_ledger_key if self._kit is not None else None,
            )
            # A forged or rolled-back revocation list stops the daemon (an active attack).
            if self._revocations is not None:
                self._revocations.offer(task.revocation_list)
            if task.stage == pb.FEDERATION_FINISHED:
                self._catch_up(task.config.round)
                session.state = "finished"
                session.send_heartbeat(timeout_s=5.0)
                logs.event(self._log, "finished", message=task.message)
                return
            seen_round, seen_stage = task.config.round, task.stage
            if task.stage != pb.KEY_CEREMONY:
                self._catch_up(task.config.round - 1)  # earlier rounds are all closed
            if task.stage == pb.KEY_CEREMONY:
                self._ceremony_task(task)
                continue
            stage = stage_from_proto(task.stage)
            if stage is None:
                session.set_state("waiting")
                continue
            session.transfer_timeout_s = max(30.0, 2 * task.config.stage_deadline_s)
            config = round_config_from_proto(task.config, federation_id=self.config.federation_id)
            try:
                self._on_task(stage, config, task)
                if stage is Stage.AGGREGATE and self._applier.round_applied >= config.round:
                    # How the coordinator learns that the aggregate arrived and was applied,
                    # not just sent.
                    applied = tasks.aggregate_applied_to_proto(
                        federation_id=self.config.federation_id,
                        participant=self.config.name,
                        round=config.round,
                    )
                    session.call(session.stub.ConfirmApplied, applied)
            except (ProtocolError, errors.IntegrityError, grpc.RpcError) as error:
                if self._step_refused(error, config.round, stage):
                    seen_round, seen_stage = 0, pb.STAGE_UNSPECIFIED  # ask anew once it is back
                    self._clock.sleep(1.0)

    def _ceremony_task(self, task: pb.Task) -> None:
        """Make the key, unless a recipient is revoked (then refused and logged)."""
        if self._revocations is not None:
            recipients = tuple(sorted(e.participant_id for e in task.ceremony_keys))
            try:
                self._revocations.check(recipients, what="the key ceremony")
            except ProtocolError as error:
                logs.event(self._log, "ceremony_refused", reason=str(error), level=logging.ERROR)
                return
        self._keys.make(task)

    def _step_refused(self, error: Exception, round: int, stage: Stage) -> bool:
        """Log a step the round moved on without (an error where the coordinator deviated:
        IntegrityError, nothing revealed or applied); True when a stream broke off (the
        coordinator restarts) and the caller should ask for the task anew."""
        what = accord_error(error) if isinstance(error, grpc.RpcError) else error
        if isinstance(what, grpc.RpcError):
            reason = f"{what.code().name}: {what.details()}"
        else:
            reason = f"{type(what).__name__}: {what}"
        logs.event(
            self._log,
            "round_step_refused",
            round=round,
            stage=stage.value,
            reason=reason,
            level=logging.ERROR if isinstance(what, errors.IntegrityError) else logging.WARNING,
        )
        self._round = None
        return isinstance(error, grpc.RpcError) and error.code() in RETRY_CODES

    def _on_task(self, stage: Stage, config: RoundConfig, task: pb.Task) -> None:
        """Perform what the task means for this member (`crypto.member_tasks.plan`).

        Raises:
            TermsDeparted: the round departs from the signed federation terms.
            NotAllowed: the round includes a revoked member.
        """
        check_round(self._terms, config)
        if self._revocations is not None:
            label = f"round {config.round} from the coordinator"
            self._revocations.check(config.selected, what=label)
        current = self._round if self._round and self._round.config.round == config.round else None
        plan = member_tasks.plan(
            member_tasks.TaskFacts(
                stage=stage,
                round=config.round,
                first_stage=config.first_stage,
                survivor=self.config.name in task.survivors,
                round_applied=self._applier.round_applied,
                machine=current.stage if current is not None else None,
            )
        )
        if plan.forget:
            logs.event(self._log, "round_aborted", round=config.round, reason=task.message)
            self._round = None
            self._session.set_state("waiting")
            return
        if not plan.live:
            return  # applied before a restart; never train or spend budget twice
        if self._before_stage is not None:
            self._before_stage(stage, config.round)
        for move in plan.moves:
            if (current.stage if current is not None else None) is not move.machine:
                return  # the machine did not move on as planned (it refused, or aborted)
            current = self._perform(move.step, current, config, task)

    def _perform(
        self, step: Step, current: ParticipantRound | None, config: RoundConfig, task: pb.Task
    ) -> ParticipantRound | None:
        """Do one move of a task's plan; return the round machine after it."""
        me = self.config.name
        if step is Step.REJOIN:
            # The aggregate holds this participant's update, but its round machine is gone
            # (this process restarted, or its download broke off while the coordinator
            # restarted): the key and the aggregate are all it needs to stay in step.
            self._download(config.round)
        elif step is Step.START:
            self._session.know(config.selected, what=f"round {config.round}")
            self._uploader.before_round(config.round)
            self._keys.fetch(config)
            current = self._round = ParticipantRound(
                config, me, self._identity_private, self._session.identities
            )
            self._send(current.start(), config)
        elif current is None:
            raise errors.InternalError(f"{step.value}: no round machine for round {config.round}")
        elif step is Step.SEND_SHARES:
            self._send(current.receive(tasks.neighbour_keys_from_proto(task, me)), config)
        elif step is Step.TAKE_SHARES:
            current.receive(tasks.relayed_shares_from_proto(task, me))
        elif step is Step.UPLOAD:
            if not self._uploader.upload(current):
                self._round = None  # uploaded before a restart: this round is done
        elif step is Step.CONFIRM:
            self._send(current.receive(tasks.consistency_call_from_proto(task, me)), config)
        elif step is Step.UNMASK:
            self._send(current.receive(tasks.unmask_call_from_proto(task, me)), config)
        else:  # Step.APPLY
            current.receive(tasks.aggregate_ready_from_proto(task, me))
            self._download(config.round)
        return current

    def _send(self, messages: list[ParticipantMessage], config: RoundConfig) -> None:
        """Send the round machine's signed messages, each with its RPC."""
        call, stub = self._session.call, self._session.stub
        for message in messages:
            if isinstance(message, AdvertiseKeys):
                call(stub.AdvertiseKeys, advertise_to_proto(message, config))
            elif isinstance(message, ShareKeys):
                call(stub.ShareKeys, share_keys_to_proto(message, config))
            elif isinstance(message, ConfirmSurvivors):
                call(stub.ConfirmSurvivors, confirm_survivors_to_proto(message, config))
            elif isinstance(message, UnmaskShares):
                call(stub.SubmitUnmaskShares, unmask_to_proto(message, config))
            else:  # pragma: no cover - UploadDone travels inside the upload stream
                raise ProtocolError(f"{type(message).__name__} has no RPC of its own")
            self._session.set_state(f"{message.stage.value} sent")

    # ---- the aggregates ----

    def _download(self, number: int) -> None:
        """Download and apply round `number`'s aggregate (`AggregateApplier.download`)."""
        self._applier.download(number, machine=self._round)
        self._forget_applied_round()

    def _catch_up(self, through: int) -> None:
        """Apply the missed aggregates of closed rounds up to `through` (`catch_up`)."""
        self._applier.catch_up(through, machine=self._round)
        self._forget_applied_round()

    def _forget_applied_round(self) -> None:
        """Drop the round machine of a round now applied: it has nothing left to do."""
        if self._round is not None and self._round.config.round <= self._applier.round_applied:
            self._round = None


def _own_terms(
    config: ParticipantConfig, kit: Kit | None, trainer: Trainer
) -> FederationTerms | None:
    """The kit's signed federation terms (None: none), checked against this member's own
    settings (its name, base model and adapter size, and that its updates fit the clip)
    before it connects.

    Raises:
        ConfigError: the terms do not verify, or this member's settings depart from them.
    """
    terms = load_kit_terms(kit.paths.root, kit.ca_pem) if kit is not None else None
    if terms is not None:
        check_own_settings(
            terms,
            name=config.name,
            base_model_hash=trainer.base_model_hash,
            adapter_parameters=trainer.parameter_count,
        )
        check_clip_norm(trainer, terms.clip_norm)
    return terms
