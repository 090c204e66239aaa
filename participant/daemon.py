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

The round's protocol decisions are `accord.crypto.participant_round.ParticipantRound`'s;
this daemon owns the network, the clock, the trainer and the state folder. After a
restart it resumes from `state.json` and the last saved adapter, and from
`upload.json`, the last round it trained and uploaded for: it never trains or uploads
twice for one round. A survivor that lost its round machine (this process restarted,
or a download broke off while the coordinator restarted) still downloads and applies
the round's aggregate, which holds its update.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc

from accord import __version__, errors
from accord.core import logs, transport
from accord.crypto import agreement, ceremony, consistency, member_tasks
from accord.crypto.ckks import SecretContext
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
from accord.errors import BudgetExhausted, ConfigError, ProtocolError, RoundAborted
from accord.participant import ceremony_keys, exchange, transfers
from accord.participant import privacy_ledger as ledger
from accord.participant.clock import SYSTEM_CLOCK, Clock
from accord.participant.config import ParticipantConfig
from accord.participant.federation_head import keep_federation_head
from accord.participant.kit.certificates import CertifiedRoster, certify_roster, load_certificate
from accord.participant.kit.startup_kit import Kit, secure_channel
from accord.participant.revocations import RevocationKeeper
from accord.participant.rpc_errors import RETRY_CODES, accord_error, refusal, retryable
from accord.participant.state_files import (
    load_identity,
    local_ceremony_key,
    read_applied,
    read_round_uploaded,
    write_applied,
    write_json,
)
from accord.participant.terms import check_own_settings, check_round, load_kit_terms
from accord.participant.training.protocol import LocalUpdate, Trainer, make_trainer
from accord.participant.workers import ChunkWorkers
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from accord.wire import tasks
from accord.wire.enrol import roster_from_proto
from accord.wire.evidence import confirm_survivors_to_proto, evidence_from_proto
from accord.wire.headers import Header, header_to_proto
from accord.wire.keys import advertise_to_proto, share_keys_to_proto, unmask_to_proto
from accord.wire.round_config import round_config_from_proto
from accord.wire.stages import profile_from_proto, stage_from_proto

T = TypeVar("T")


UPLOAD_STATE = "upload.json"
"""In the state folder: the last round this participant trained and uploaded for."""


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
        self._kit = _load_kit(config)
        self.config = config
        self._log = log
        self._identity_private = load_identity(config, self._kit)
        self._trainer = trainer if trainer is not None else make_trainer(config)
        self._terms = (
            load_kit_terms(self._kit.paths.root, self._kit.ca_pem)
            if self._kit is not None
            else None
        )
        if self._terms is not None:
            check_own_settings(
                self._terms,
                name=config.name,
                base_model_hash=self._trainer.base_model_hash,
                adapter_parameters=self._trainer.parameter_count,
            )
        self._state = "starting"
        self._stop = threading.Event()
        self._state_changed = threading.Event()
        self._identities: dict[str, bytes] = {}
        self._certified: CertifiedRoster | None = None
        self._round: ParticipantRound | None = None
        self._secret: SecretContext | None = None
        self._integrity_key: bytes | None = None
        self._uses_ckks = True  # the federation's profile, from Enroll
        # Processes start on first use.
        self._workers = workers if workers is not None else ChunkWorkers(config.workers)
        self._key_epoch = 0
        self._pending_metrics: dict[str, float] = {}
        self._transfer_timeout_s = 120.0
        self._round_applied = self._resume()
        self._revocations = (
            RevocationKeeper(config.state_dir, self._kit.ca_pem, config.federation_id)
            if self._kit is not None
            else None
        )
        self._round_uploaded = read_round_uploaded(self.config.state_dir / UPLOAD_STATE)
        self._channel = _dial(config, self._kit)
        self._stub = pb_grpc.CoordinatorStub(self._channel)

    # ---- lifecycle ----

    def run(self) -> None:
        """Take part until the federation finishes.

        Raises:
            ConfigError: the coordinator does not answer, or refuses this participant's
                settings.
        """
        heartbeat: threading.Thread | None = None
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
            self._workers.close()
            self._channel.close()  # cancels a heartbeat in flight
            if heartbeat is not None:
                # A daemon thread still inside a gRPC call when the interpreter exits is
                # unwound through C++ frames and aborts the process ("terminate called
                # without an active exception", exit status -6): let it finish first.
                heartbeat.join(timeout=10.0)

    def stop(self) -> None:
        """Ask `run` to return after the current call."""
        self._stop.set()
        self._state_changed.set()

    def _connect(self) -> None:
        """Wait until the coordinator answers; stop at once if it refuses this kit.

        Raises:
            ConfigError: no answer within `connect_timeout_s`, or a refusal no retry can
                fix (a failed TLS handshake, an unknown or revoked certificate).
        """
        deadline = self._clock.monotonic() + self.config.connect_timeout_s
        delays = transport.retry_delays()
        while True:
            try:
                self._stub.GetStatus(pb.StatusRequest(), timeout=5.0)
                return
            except grpc.RpcError as error:
                stop = refusal(error, kit=self.config.kit)
                if stop is not None:
                    raise stop from None
                if self._clock.monotonic() > deadline:
                    raise ConfigError(
                        f"[participant] coordinator = {self.config.coordinator!r}: no answer "
                        f"within {self.config.connect_timeout_s:g} s (is the coordinator running "
                        "there? Or does it refuse this kit's certificate? `accord kit check KIT` "
                        "tells)"
                    ) from None
                self._clock.sleep(next(delays))

    def _enroll(self) -> float:
        ceremony_public = agreement.public_key(self._ceremony_private())
        request = pb.EnrollRequest(
            header=self._header(),
            base_model_hash=self._trainer.base_model_hash,
            software_version=__version__,
            adapter_parameters=self._trainer.parameter_count,
            ceremony_public_key=ceremony_public,
            ceremony_key_signature=ceremony.sign_ceremony_key(
                self._identity_private,
                federation_id=self.config.federation_id,
                participant=self.config.name,
                ceremony_public=ceremony_public,
            ),
        )
        try:
            response = self._stub.Enroll(request, timeout=30.0)
        except grpc.RpcError as error:
            raise (refusal(error, kit=self.config.kit) or accord_error(error)) from None
        self._accept_roster(response.roster)
        self._uses_ckks = profile_from_proto(response.profile).uses_ckks
        self._set_state("enrolled")
        logs.event(
            self._log,
            "enrolled",
            participant=self.config.name,
            round=response.current_round,
            adapter_parameters=self._trainer.parameter_count,
        )
        return response.heartbeat_interval_s or 2.0

    def _accept_roster(self, entries: Iterable[pb.RosterEntry]) -> None:
        """Take the members' identity keys from an Enroll response.

        With a kit, only the keys its pinned CA certified (DESIGN.md guarantee 2): an
        entry that fails is refused and logged, and a round or key ceremony that needs
        that member is refused (`_know`). Without a kit (`insecure_plaintext`, loopback
        debugging) there is no CA to ask, and the coordinator is trusted.
        """
        if self._kit is None or self.config.insecure_plaintext:
            self._identities = roster_from_proto(entries)
            return
        ca = load_certificate(self._kit.ca_pem, str(self._kit.paths.ca_cert))
        roster = certify_roster(entries, ca, now=self._clock.now())
        for name, reason in sorted(roster.refused.items()):
            logs.event(
                self._log, "member_refused", participant=name, reason=reason, level=logging.WARNING
            )
        self._certified = roster
        self._identities = roster.identities

    def _know(self, names: Iterable[str], *, what: str) -> None:
        """Hold a (certified) identity key of each of `names`; enrol again to learn newcomers.

        A member approved while the federation runs is unknown to those that enrolled
        before it: enrolling again (the coordinator takes it as a repeat) fetches the
        current roster.

        Raises:
            ProtocolError: a member still without a key; the message names it and why.
        """
        names = sorted(set(names))
        if all(name in self._identities for name in names):
            return
        self._enroll()
        if self._certified is not None:
            self._certified.require(names, what=what)
        for name in names:
            if name not in self._identities:
                raise ProtocolError(
                    f"{what} refused: the coordinator's roster does not list {name}"
                )

    def _heartbeat(self, interval_s: float) -> None:
        """Report liveness every `interval_s`, and at once when the state changes."""
        while not self._stop.is_set():
            self._state_changed.wait(interval_s)
            self._state_changed.clear()
            if self._stop.is_set():
                return  # `run` is closing the channel
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
                self._state = "finished"
                self._send_heartbeat(timeout_s=5.0)
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
                self._set_state("waiting")
                continue
            self._transfer_timeout_s = max(30.0, 2 * task.config.stage_deadline_s)
            config = round_config_from_proto(task.config, federation_id=self.config.federation_id)
            try:
                self._on_task(stage, config, task)
                if stage is Stage.AGGREGATE and self._round_applied >= config.round:
                    # How the coordinator learns that the aggregate arrived and was applied,
                    # not just sent.
                    applied = tasks.aggregate_applied_to_proto(
                        federation_id=self.config.federation_id,
                        participant=self.config.name,
                        round=config.round,
                    )
                    self._call(self._stub.ConfirmApplied, applied)
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
        self._make_key(task)

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
                round_applied=self._round_applied,
                machine=current.stage if current is not None else None,
            )
        )
        if plan.forget:
            logs.event(self._log, "round_aborted", round=config.round, reason=task.message)
            self._round = None
            self._set_state("waiting")
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
            self._know(config.selected, what=f"round {config.round}")
            refused = ledger.before_round(self.config, self._identity_private, config.round)
            if refused is not None:
                self._stop_contributing(config.round, refused)
            self._fetch_key(config)
            current = self._round = ParticipantRound(
                config, me, self._identity_private, self._identities
            )
            self._send(current.start(), config)
        elif current is None:
            raise errors.InternalError(f"{step.value}: no round machine for round {config.round}")
        elif step is Step.SEND_SHARES:
            self._send(current.receive(tasks.neighbour_keys_from_proto(task, me)), config)
        elif step is Step.TAKE_SHARES:
            current.receive(tasks.relayed_shares_from_proto(task, me))
        elif step is Step.UPLOAD:
            self._upload(current)
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
        for message in messages:
            if isinstance(message, AdvertiseKeys):
                self._call(self._stub.AdvertiseKeys, advertise_to_proto(message, config))
            elif isinstance(message, ShareKeys):
                self._call(self._stub.ShareKeys, share_keys_to_proto(message, config))
            elif isinstance(message, ConfirmSurvivors):
                self._call(self._stub.ConfirmSurvivors, confirm_survivors_to_proto(message, config))
            elif isinstance(message, UnmaskShares):
                self._call(self._stub.SubmitUnmaskShares, unmask_to_proto(message, config))
            else:  # pragma: no cover - UploadDone travels inside the upload stream
                raise ProtocolError(f"{type(message).__name__} has no RPC of its own")
            self._set_state(f"{message.stage.value} sent")

    # ---- the CKKS key ----

    def _make_key(self, task: pb.Task) -> None:
        """Run the key ceremony as its maker: make the CKKS key, seal it to everyone, post it."""
        self._set_state("making the CKKS key")
        keys = tasks.ceremony_keys_from_proto(task)
        # Seal the key only to keys the CA certified, never to one the coordinator made up.
        self._know(keys, what="the key ceremony")
        if self._certified is not None:
            self._certified.check_ceremony_keys(
                {name: key.ceremony_public for name, key in keys.items()}
            )
        post = ceremony_keys.ceremony_post(
            keys,
            self._identities,
            config=self.config,
            key_epoch=task.key_epoch,
            identity_private=self._identity_private,
            with_ckks=self._uses_ckks,
            header=self._header(),
        )
        self._call(self._stub.PostCeremony, post)
        logs.event(self._log, "key_ceremony_posted", key_epoch=post.key_epoch)

    def _fetch_key(self, config: RoundConfig) -> None:
        """Make sure this participant holds the federation secret the round uses.

        That is the integrity key in every secure profile, and the CKKS key too in the
        CKKS profiles.

        Raises:
            ProtocolError: the coordinator has no envelope for this key epoch.
            BadSignature, IntegrityError: the envelope is not the maker's, or not ours.
        """
        if not config.profile.is_secure:
            return
        if self._integrity_key is not None and self._key_epoch == config.key_epoch:
            return
        bundle = self._call(self._stub.FetchCeremony, pb.CeremonyRequest(header=self._header()))
        ceremony_keys.check_bundle(bundle, config, self.config.name)
        self._know([bundle.maker_id], what=f"the CKKS key of epoch {bundle.key_epoch}")
        opened = ceremony_keys.open_bundle(
            bundle,
            config,
            config=self.config,
            ceremony_private=self._ceremony_private(),
            maker_identity_public=self._identities[bundle.maker_id],
        )
        self._secret, self._integrity_key = opened.ckks, opened.integrity_key
        self._key_epoch = bundle.key_epoch
        logs.event(
            self._log, "key_received", key_epoch=bundle.key_epoch, participant=bundle.maker_id
        )

    def _ceremony_private(self) -> bytes:
        """The X25519 key the CKKS key is sealed to: the kit's, else one kept in state_dir."""
        kit = getattr(self, "_kit", None)
        if kit is not None:
            return bytes(kit.ceremony_key)
        return local_ceremony_key(self.config.state_dir / "ceremony.key")

    # ---- one round ----

    def _upload(self, current: ParticipantRound) -> None:
        config = current.config
        if config.round <= self._round_uploaded:
            # Trained and sent (or began to) before a restart: never twice for one round.
            logs.event(self._log, "upload_skipped", round=config.round, stage=Stage.UPLOAD.value)
            self._round = None
            return
        self._round_uploaded = config.round
        write_json(self.config.state_dir / UPLOAD_STATE, {"round_uploaded": config.round})
        started = self._clock.monotonic()
        update = self._train(config.round)
        train_s = self._clock.monotonic() - started
        self._set_state("uploading")
        started = self._clock.monotonic()
        # Protection is validated here and runs lazily, chunk by chunk, as the stream asks.
        chunks = exchange.protect_update(
            update,
            config,
            current.mask_terms(),
            secret=self._secret,
            integrity_key=self._integrity_key,
            participant=self.config.name,
            runner=self._workers,
        )
        # The privacy ledger records the round before its first chunk leaves (guarantee 4),
        # and the upload's digest after its last chunk is made, before the receipt leaves.
        over_budget = ledger.before_upload(self.config, self._identity_private, config, update)
        if over_budget is not None:
            self._stop_contributing(config.round, over_budget)
        stream = transfers.UploadStream(
            chunks,
            header=lambda: self._header(round=config.round, stage=Stage.UPLOAD),
            before_receipt=lambda digest, count, size: ledger.upload_sent(
                self.config, self._identity_private, config.round, digest, count, size
            ),
            receipt=current.upload_done,
        )
        transfers.send_upload(
            self._stub, stream, round=config.round, timeout_s=self._transfer_timeout_s
        )
        self._pending_metrics = {
            **update.metrics,
            "sample_count": update.sample_count,
            "train_s": round(train_s, 4),
            "upload_s": round(self._clock.monotonic() - started, 4),
            "bytes_up": stream.sent,
        }
        self._set_state("uploaded")
        logs.event(
            self._log,
            "uploaded",
            round=config.round,
            stage=Stage.UPLOAD.value,
            participant=self.config.name,
            bytes=stream.sent,
            chunks=stream.count,
        )

    def _train(self, round: int) -> LocalUpdate:
        """Train `round`; a trainer out of its own budget (e.g. target_epsilon's planned steps)
        is a refusal like max_epsilon's, recorded before the daemon stops."""
        self._set_state("training")
        try:
            return self._trainer.train_round(round)
        except BudgetExhausted as error:
            refused = ledger.trainer_refused(self.config, self._identity_private, round, str(error))
            self._stop_contributing(round, refused)

    def _stop_contributing(self, round: int, reason: str) -> NoReturn:
        """End the daemon: the privacy budget forbids this round (the ledger recorded why)."""
        logs.event(
            self._log, "privacy_budget_refused", round=round, reason=reason, level=logging.WARNING
        )
        self._set_state("budget exhausted")
        raise BudgetExhausted(f"privacy budget: {reason}")

    def _download(self, number: int) -> None:
        """Download round `number`'s aggregate (its config comes first), check, apply, save.

        `survivors` (the AggregateReady task's) are whose uploads the aggregate must sum;
        a catch-up download, which has none, takes those the download names.

        Raises:
            RoundAborted, Expired, OutOfStage: the coordinator has no aggregate to give.
            ProtocolError: this participant lacks the round's CKKS key.
        """
        self._set_state("downloading")
        started = self._clock.monotonic()
        request = pb.AggregateRequest(header=self._header(round=number, stage=Stage.AGGREGATE))
        stream = transfers.AggregateStream(
            self._stub.DownloadAggregate(request, timeout=self._transfer_timeout_s), round=number
        )
        try:
            config = round_config_from_proto(
                stream.first.config, federation_id=self.config.federation_id
            )
            check_round(self._terms, config)
            # Whose sum it is: the survivor set `threshold` members signed (consistency
            # round); the integrity tags then check that the aggregate is exactly their sum.
            survivors = self._check_evidence(config, stream.first)
            self._fetch_key(config)
            # Decrypted as the chunks stream in, on the workers.
            mean_delta = exchange.reveal_mean(
                stream.chunks(),
                config,
                secret=self._secret,
                integrity_key=self._integrity_key,
                survivors=survivors,
                runner=self._workers,
            )
        except BaseException:
            stream.cancel()
            raise
        self._trainer.apply(mean_delta)
        adapter_dir = self.config.adapters_dir / f"round-{config.round:04d}"
        self._trainer.save(adapter_dir)
        self._mark_applied(config.round, adapter_dir)
        metrics = self._record_metrics(config.round, started, stream.received)
        if self._round is not None and self._round.config.round <= number:
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

    def _record_metrics(self, number: int, started: float, received: int) -> dict[str, Any]:
        """Append the round's metrics to `metrics.jsonl`, its validation gain to the ledger."""
        pending = self._pending_metrics if self._round_uploaded == number else {}
        metrics = {
            "round": number,
            **pending,
            **{f"global_{k}": v for k, v in self._trainer.evaluate().items()},
            "download_s": round(self._clock.monotonic() - started, 4),
            "bytes_down": received,
        }
        with self.config.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")
        ledger.after_apply(self.config, self._identity_private, number, metrics)
        return metrics

    def _check_evidence(self, config: RoundConfig, first: pb.AggregateChunk) -> tuple[str, ...]:
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
        self._know(config.selected, what=f"round {config.round}")
        current = self._round
        own = current.receipt if current is not None and current.config == config else None
        consistency.verify_evidence(config, evidence, self._identities, own_receipt=own)
        return evidence.survivors

    def _catch_up(self, through: int) -> None:
        """Apply the aggregates of closed rounds this participant missed, up to `through`.

        A member not selected, dropped, or restarted during a round has no part in its
        aggregate but must apply it all the same, or its global adapter drifts from the
        federation's. The coordinator keeps the last `keep_aggregates` aggregates; an
        aborted round has none (nothing to apply). A round whose aggregate is gone, or
        was made under a CKKS key this participant never held, stops the daemon with
        `Expired` naming the round: it never takes part with a diverged adapter.
        """
        while self._round_applied < through and not self._stop.is_set():
            number = self._round_applied + 1
            try:
                self._download(number)
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
                self._set_state("diverged")
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
            self._mark_applied(number, None)

    def _mark_applied(self, number: int, adapter_dir: Path | None) -> None:
        """Record that round `number` is taken into account (None: no new adapter)."""
        write_applied(self.config.state_dir, number, adapter_dir)
        self._round_applied = number

    # ---- helpers ----

    def _resume(self) -> int:
        """Load the last applied adapter from the state folder; return its round (0: none)."""
        applied = read_applied(self.config.state_dir)
        if applied is None:
            return 0
        number, adapter_dir = applied
        if adapter_dir is not None:
            self._trainer.load(adapter_dir)
        logs.event(self._log, "resumed", round=number)
        return number

    def _header(self, *, round: int = 0, stage: Stage | None = None) -> pb.RequestHeader:
        return header_to_proto(Header(self.config.federation_id, round, stage, self.config.name))

    def _set_state(self, state: str) -> None:
        self._state = state
        self._state_changed.set()

    def _call(self, method: Callable[..., T], request: object, *, timeout: float = 30.0) -> T:
        """Call an idempotent RPC, retrying with backoff while the coordinator is unreachable."""
        deadline = self._clock.monotonic() + self.config.connect_timeout_s
        delays = transport.retry_delays()
        while True:
            try:
                return method(request, timeout=timeout)
            except grpc.RpcError as error:
                if not retryable(error) or self._clock.monotonic() > deadline:
                    raise accord_error(error) from None
                delay = next(delays)
                logs.event(
                    self._log,
                    "retrying",
                    code=error.code().name,
                    delay_s=round(delay, 3),
                    level=logging.WARNING,
                )
                self._clock.sleep(delay)


def _dial(config: ParticipantConfig, kit: Kit | None) -> grpc.Channel:
    """The channel to the coordinator: mTLS with the kit, else plaintext (loopback debugging)."""
    options = transport.client_options(config.max_message_bytes)
    if kit is None or config.insecure_plaintext:
        return grpc.insecure_channel(config.coordinator, options=options)
    # mTLS, trusting only the kit's pinned CA; the config may override its address, not CA.
    dial = dataclasses.replace(kit, coordinator=config.coordinator)
    return secure_channel(dial, options=options)


def _load_kit(config: ParticipantConfig) -> Kit | None:
    """The kit `config.kit` names (None: plaintext debugging); ConfigError if unusable."""
    if config.kit is None and not config.insecure_plaintext:
        raise ConfigError(
            "[participant] kit: required unless insecure_plaintext = true (run `accord "
            'provision federation.toml --out DIR` and set kit = "DIR/kits/<name>")'
        )
    kit = Kit.load(config.kit) if config.kit is not None else None
    if kit is not None and kit.coordinator_ledger_key is None:
        raise ConfigError(
            f"[participant] kit = {str(config.kit)!r}: the kit pins no coordinator ledger "
            "key (packaged before kits did); ask the operator to run `accord provision "
            "ledger-key` and approve your request again, then `accord kit package` anew"
        )
    return kit
