"""The coordinator's side of one secure-aggregation round, as a pure state machine.

Theory of operation. Bonawitz et al. 2017, section 4 (figure 4), with SecAgg+'s sparse
neighbour graph (Bell et al. 2020, section 3). The coordinator only routes: it never
holds a secret that would unmask a single participant. Sets, as in the paper:

    selected  participants chosen for the round
    U1        advertised keys                      (ADVERTISE)
    U2        shared keys, subset of U1            (SHARE)
    U3        uploaded, subset of U2               (UPLOAD)
    U4        signed the survivor set, subset of U3 (CONSISTENCY)
    U5        answered the unmask call, subset of U4 (UNMASK)

The consistency stage (`crypto/consistency.py`) runs in every secure profile: after the
uploads, each survivor signs one statement naming the round config, U3, the dropped and
every survivor's signed upload receipt; the unmask call and the aggregate carry those
signatures, and members act only on `threshold` of them over the statement they signed.

Invariants the machine keeps:
  * A message is checked in full (stage, sender, replay, signature, shape) before any
    state changes; a refused message leaves the machine exactly as it was.
  * Each participant contributes at most one message per stage; a second one is
    `Replayed`, whatever its sequence number.
  * Once UNMASK starts, U3 is frozen: a participant declared dropped cannot upload late,
    so its self mask b_u is never reconstructed (it is asked for s_u^SK instead).
  * A round aborts as soon as fewer than `threshold` participants remain, or a secret
    that must be rebuilt has fewer than `threshold` shares; an abort is a transition.

The machine never reads a clock: the driver calls `close_stage()` when the deadline it
measured has passed. A stage also closes by itself once everyone expected has answered.
The profile `ckks` skips the masking stages (UPLOAD -> CONSISTENCY -> AGGREGATE); the
plaintext `none` skips the consistency stage too (UPLOAD -> AGGREGATE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from accord.crypto import consistency, masks
from accord.crypto.messages import (
    Aborted,
    AdvertiseKeys,
    AggregateReady,
    ConfirmSurvivors,
    ConsistencyCall,
    CoordinatorMessage,
    NeighbourKeys,
    ParticipantMessage,
    RelayedShares,
    RoundConfig,
    ShareKeys,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskCall,
    UnmaskShares,
    UploadDone,
    verify,
)
from accord.crypto.unmasking import check_unmask_shares, mask_correction, round_neighbours
from accord.errors import (
    ConfigError,
    IntegrityError,
    Malformed,
    NotAllowed,
    OutOfStage,
    Replayed,
    RoundAborted,
)


@dataclass(frozen=True)
class RoundOutcome:
    """What the coordinator needs to finish the aggregate of a completed round.

    `correction` holds the mask terms whose expansion, added to the sum of the
    survivors' uploads, removes every remaining mask (empty without masks). `evidence`
    is the signed survivor set members check the aggregate against (None for `none`).
    """

    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    correction: tuple[masks.MaskTerm, ...]
    evidence: SurvivorEvidence | None = None


class CoordinatorRound:
    """One round, seen from the coordinator.

    Args:
        config: the round's parameters, as announced to the participants.
        identities: Ed25519 identity public key of every selected participant.
    """

    def __init__(self, config: RoundConfig, identities: Mapping[str, bytes]) -> None:
        missing = [p for p in config.selected if p not in identities]
        if missing:
            raise ConfigError(
                f"selected: no identity key for {', '.join(missing)} (enrol them first)"
            )
        self.config = config
        self._identities = dict(identities)
        self._neighbours = round_neighbours(config)
        self._stage = config.first_stage
        self._advertised: dict[str, AdvertiseKeys] = {}
        self._shared: dict[str, ShareKeys] = {}
        self._uploaded: dict[str, UploadDone] = {}
        self._confirmed: dict[str, ConfirmSurvivors] = {}
        self._survivor_set: SurvivorSet | None = None
        self._statement = b""
        self._unmasked: dict[str, UnmaskShares] = {}
        self._applied: set[str] = set()
        self._live: frozenset[str] = frozenset(config.selected)
        self._outcome: RoundOutcome | None = None
        self._abort_reason = ""
        self._table: dict[
            tuple[Stage, type], tuple[Callable[[Any], None], Callable[[Any], None]]
        ] = {
            (Stage.ADVERTISE, AdvertiseKeys): (self._check_advertise, self._apply_advertise),
            (Stage.SHARE, ShareKeys): (self._check_share, self._apply_share),
            (Stage.UPLOAD, UploadDone): (self._check_upload, self._apply_upload),
            (Stage.CONSISTENCY, ConfirmSurvivors): (self._check_confirm, self._apply_confirm),
            (Stage.UNMASK, UnmaskShares): (self._check_unmask, self._apply_unmask),
        }

    @classmethod
    def resume_aggregate(
        cls, config: RoundConfig, identities: Mapping[str, bytes], outcome: RoundOutcome
    ) -> CoordinatorRound:
        """A round whose aggregate was stored before a coordinator restart, back in AGGREGATE.

        Only the aggregate stage survives a restart: its outcome (survivors, dropped) is all
        it needs, and serving the stored aggregate again is idempotent. Rounds that were in
        an earlier stage are aborted by the driver instead.
        """
        machine = cls(config, identities)
        machine._stage = Stage.AGGREGATE
        machine._live = frozenset(outcome.survivors)
        machine._outcome = RoundOutcome(
            outcome.survivors, outcome.dropped, correction=(), evidence=outcome.evidence
        )
        return machine

    # ---- what the driver reads ----

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def abort_reason(self) -> str:
        return self._abort_reason

    @property
    def outcome(self) -> RoundOutcome:
        """The survivors and mask correction; available from AGGREGATE on."""
        if self._outcome is None:
            raise OutOfStage(
                f"round {self.config.round} has no outcome in stage {self._stage.value}"
            )
        return self._outcome

    @property
    def applied_by(self) -> frozenset[str]:
        """Survivors that said they applied the aggregate (AGGREGATE only)."""
        return frozenset(self._applied)

    def expected(self) -> frozenset[str]:
        """Participants the current stage still waits for."""
        waiting: dict[Stage, Mapping[str, object]] = {
            Stage.ADVERTISE: self._advertised,
            Stage.SHARE: self._shared,
            Stage.UPLOAD: self._uploaded,
            Stage.CONSISTENCY: self._confirmed,
            Stage.UNMASK: self._unmasked,
        }
        if (received := waiting.get(self._stage)) is None:
            return frozenset()
        return frozenset(p for p in self._live if p not in received)

    def may_upload(self, sender: str) -> None:
        """Raise unless `sender` may stream its upload now (checked before any chunk is kept)."""
        self._check_sender(sender)
        if self._stage is not Stage.UPLOAD:
            raise OutOfStage(
                f"upload from {sender} refused: round {self.config.round} is in {self._stage.value}"
            )
        if sender not in self._live:
            raise NotAllowed(f"upload from {sender} refused: it left round {self.config.round}")
        if sender in self._uploaded:
            raise Replayed(f"{sender} already uploaded in round {self.config.round}")

    # ---- transitions ----

    def receive(self, message: ParticipantMessage) -> list[CoordinatorMessage]:
        """Take one participant message; return what to send.

        Raises:
            NotAllowed: the sender is not selected, or has left the round.
            OutOfStage: the message is legal in another stage only.
            Replayed: the sender already sent this stage's message.
            BadSignature: the signature does not verify.
            Malformed: the payload has the wrong shape.
        """
        self._check_sender(message.sender)
        entry = self._table.get((self._stage, type(message)))
        if entry is None:
            raise OutOfStage(
                f"{type(message).__name__} from {message.sender} refused: "
                f"round {self.config.round} is in {self._stage.value}"
            )
        check, apply = entry
        if message.sender not in self._live:
            raise NotAllowed(
                f"{message.sender} left round {self.config.round} and may not rejoin it"
            )
        check(message)
        verify(message, self.config, self._identities)
        apply(message)
        if not self.expected():
            return self.close_stage()
        return []

    def applied(self, sender: str) -> list[CoordinatorMessage]:
        """Note that survivor `sender` applied the aggregate; the last one closes the round.

        The aggregate stage ends (DONE) once every survivor said so, or at the driver's
        deadline (`close_stage`); until then a restarted coordinator serves it again.

        Raises:
            NotAllowed: the sender is not selected, or not a survivor.
            OutOfStage: the round is not in its aggregate stage.
            Replayed: the sender said so before.
        """
        self._check_sender(sender)
        if self._stage is not Stage.AGGREGATE:
            raise OutOfStage(
                f"{sender} applied an aggregate: round {self.config.round} is in "
                f"{self._stage.value}"
            )
        survivors = self.outcome.survivors
        if sender not in survivors:
            raise NotAllowed(f"{sender} is not a survivor of round {self.config.round}")
        if sender in self._applied:
            raise Replayed(f"{sender} already applied the aggregate of round {self.config.round}")
        self._applied.add(sender)
        if self._applied >= set(survivors):
            return self.close_stage()
        return []

    def close_stage(self) -> list[CoordinatorMessage]:
        """End the current stage with whoever answered (the driver's deadline passed)."""
        closers: dict[Stage, Callable[[], list[CoordinatorMessage]]] = {
            Stage.ADVERTISE: self._close_advertise,
            Stage.SHARE: self._close_share,
            Stage.UPLOAD: self._close_upload,
            Stage.CONSISTENCY: self._close_consistency,
            Stage.UNMASK: self._close_unmask,
            Stage.AGGREGATE: self._close_aggregate,
        }
        closer = closers.get(self._stage)
        if closer is None:
            raise OutOfStage(f"round {self.config.round} is already {self._stage.value}")
        return closer()

    def abort(self, reason: str) -> list[CoordinatorMessage]:
        """End the round without an aggregate (also used by the driver, e.g. on shutdown)."""
        self._stage = Stage.ABORTED
        self._abort_reason = reason
        return [Aborted(recipient=p, reason=reason) for p in self.config.selected]

    # ---- checks (never mutate) ----

    def _check_sender(self, sender: str) -> None:
        if sender not in self._identities or sender not in self.config.selected:
            raise NotAllowed(f"{sender} is not selected for round {self.config.round}")

    def _check_first(self, received: Mapping[str, object], message: ParticipantMessage) -> None:
        if message.sender in received:
            raise Replayed(
                f"{message.sender} already sent its {message.stage.value} message in round "
                f"{self.config.round}"
            )

    def _check_advertise(self, message: AdvertiseKeys) -> None:
        self._check_first(self._advertised, message)
        if len(message.encryption_public) != 32 or len(message.masking_public) != 32:
            raise Malformed(f"advertised keys from {message.sender}: X25519 keys are 32 bytes")

    def _check_share(self, message: ShareKeys) -> None:
        self._check_first(self._shared, message)
        expected = {v for v in self._neighbours[message.sender] if v in self._live}
        recipients = [s.recipient for s in message.shares]
        if len(set(recipients)) != len(recipients) or set(recipients) != expected:
            raise Malformed(f"shares from {message.sender}: exactly one for each live neighbour")
        if any(s.sender != message.sender for s in message.shares):
            raise Malformed(f"shares from {message.sender}: a share names another sender")

    def _check_upload(self, message: UploadDone) -> None:
        self.may_upload(message.sender)
        if len(message.digest) != 32 or message.chunk_count < 1:
            raise Malformed(f"upload receipt from {message.sender}: bad digest or chunk count")

    def _check_confirm(self, message: ConfirmSurvivors) -> None:
        self._check_first(self._confirmed, message)
        if message.statement != self._statement:
            raise Malformed(
                f"{message.sender} signed another survivor set than round {self.config.round}'s"
            )

    def _check_unmask(self, message: UnmaskShares) -> None:
        self._check_first(self._unmasked, message)
        survivors, dropped = self._survivors_and_dropped()
        check_unmask_shares(message, survivors, dropped, self._neighbours)

    # ---- applies (only after the checks passed) ----

    def _apply_advertise(self, message: AdvertiseKeys) -> None:
        self._advertised[message.sender] = message

    def _apply_share(self, message: ShareKeys) -> None:
        self._shared[message.sender] = message

    def _apply_upload(self, message: UploadDone) -> None:
        self._uploaded[message.sender] = message

    def _apply_confirm(self, message: ConfirmSurvivors) -> None:
        self._confirmed[message.sender] = message

    def _apply_unmask(self, message: UnmaskShares) -> None:
        self._unmasked[message.sender] = message

    # ---- stage ends ----

    def _shrink(self, live: set[str], stage: str) -> list[CoordinatorMessage] | None:
        """Keep `live`; abort (returning the notices) when fewer than t remain."""
        self._live = frozenset(live)
        if len(live) < self.config.threshold:
            return self.abort(
                f"only {len(live)} of {self.config.threshold} needed participants finished {stage}"
            )
        return None

    def _close_advertise(self) -> list[CoordinatorMessage]:
        live = set(self._advertised)
        # A participant with fewer than t-1 live neighbours cannot hide its secrets.
        live = {
            u for u in live if len(set(self._neighbours[u]) & live) + 1 >= self.config.threshold
        }
        aborted = self._shrink(live, "advertising keys")
        if aborted is not None:
            return aborted
        self._stage = Stage.SHARE
        return [
            NeighbourKeys(
                recipient=u,
                keys=tuple(self._advertised[v] for v in self._neighbours[u] if v in live),
            )
            for u in sorted(live)
        ]

    def _close_share(self) -> list[CoordinatorMessage]:
        aborted = self._shrink(set(self._shared), "sharing keys")
        if aborted is not None:
            return aborted
        self._stage = Stage.UPLOAD
        inbox: dict[str, list] = {v: [] for v in self._live}
        for u in sorted(self._live):
            for share in self._shared[u].shares:
                if share.recipient in inbox:
                    inbox[share.recipient].append(share)
        return [RelayedShares(recipient=v, shares=tuple(inbox[v])) for v in sorted(self._live)]

    def _close_upload(self) -> list[CoordinatorMessage]:
        aborted = self._shrink(set(self._uploaded), "uploading")
        if aborted is not None:
            return aborted
        if not self.config.profile.is_secure:
            self._outcome = RoundOutcome(
                survivors=tuple(sorted(self._live)), dropped=(), correction=()
            )
            return self._aggregate_ready()
        survivors, dropped = self._survivors_and_dropped()
        self._survivor_set = SurvivorSet(
            survivors=survivors,
            dropped=dropped,
            commitments=tuple(self._uploaded[u] for u in survivors),
        )
        self._statement = consistency.statement_digest(self.config, self._survivor_set)
        self._stage = Stage.CONSISTENCY
        return [ConsistencyCall(recipient=u, survivor_set=self._survivor_set) for u in survivors]

    def _close_consistency(self) -> list[CoordinatorMessage]:
        aborted = self._shrink(set(self._confirmed), "signing the survivor set")
        if aborted is not None:
            return aborted
        evidence = self._evidence()
        survivors, dropped = evidence.survivor_set.survivors, evidence.survivor_set.dropped
        if not self.config.profile.uses_masks:
            self._outcome = RoundOutcome(survivors, dropped, correction=(), evidence=evidence)
            return self._aggregate_ready()
        self._stage = Stage.UNMASK
        signatures = evidence.signatures
        return [
            UnmaskCall(recipient=u, survivors=survivors, dropped=dropped, signatures=signatures)
            for u in sorted(self._live)
        ]

    def _evidence(self) -> SurvivorEvidence:
        """The survivor set with every signature over it, in signer order."""
        assert self._survivor_set is not None
        signatures = tuple(self._confirmed[u] for u in sorted(self._confirmed))
        return SurvivorEvidence(self._survivor_set, signatures)

    def _aggregate_ready(self) -> list[CoordinatorMessage]:
        """Enter AGGREGATE: tell every survivor, with the evidence of whose sum it is."""
        assert self._outcome is not None
        self._stage = Stage.AGGREGATE
        return [
            AggregateReady(
                recipient=u, survivors=self._outcome.survivors, evidence=self._outcome.evidence
            )
            for u in self._outcome.survivors
        ]

    def _survivors_and_dropped(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        dropped = tuple(sorted(set(self._shared) - set(self._uploaded)))
        return tuple(sorted(self._uploaded)), dropped

    def _close_unmask(self) -> list[CoordinatorMessage]:
        survivors, dropped = self._survivors_and_dropped()
        if len(self._unmasked) < self.config.threshold:
            return self.abort(
                f"only {len(self._unmasked)} of {self.config.threshold} needed participants "
                "answered the unmask call"
            )
        try:
            correction = mask_correction(
                self.config, self._neighbours, self._advertised, self._unmasked, survivors, dropped
            )
        except (RoundAborted, IntegrityError) as error:
            return self.abort(f"unmasking failed: {error}")
        self._outcome = RoundOutcome(survivors, dropped, correction, evidence=self._evidence())
        return self._aggregate_ready()

    def _close_aggregate(self) -> list[CoordinatorMessage]:
        self._stage = Stage.DONE
        return []
