"""A participant's side of one secure-aggregation round, as a pure state machine.

Theory of operation. Bonawitz et al. 2017, section 4 (figure 4), the client's rounds:

    start()                      -> AdvertiseKeys (c_u^PK, s_u^PK), signed
    NeighbourKeys   (ADVERTISE)  -> ShareKeys: s_u^SK and b_u split t-of-|N(u)|+1 with
                                    Shamir, each neighbour's pair sealed to its c_v^PK
    RelayedShares   (SHARE)      -> (nothing) pairwise seeds s_uv for the neighbours that
                                    shared, so the driver can mask: mask_terms()
    upload_done()   (UPLOAD)     -> UploadDone, signed (the upload's commitment)
    ConsistencyCall (CONSISTENCY)-> ConfirmSurvivors: the signed survivor statement, after
                                    checking the set and that it holds our own receipt
    UnmaskCall      (UNMASK)     -> UnmaskShares: b_v shares of survivors, s_v^SK shares
                                    of the dropped, only with `threshold` signatures over
                                    the statement we signed
    AggregateReady  (AGGREGATE)  -> DONE, once its evidence (the signed survivor set) verifies

Invariants:
  * Every key advertisement relayed by the coordinator must carry its owner's valid
    signature, so a coordinator cannot substitute keys of its own (BadSignature).
  * The machine signs one survivor set per round and answers one unmask call, for the
    set it signed and only with `threshold` members' signatures over it, so honest
    members never reveal both secrets of one participant (Bonawitz et al.'s
    consistency round, `crypto/consistency.py`). The shares it holds live in memory
    only: a restarted participant has nothing left to reveal, so it cannot be talked
    into the other secret either.
  * Nothing changes when a message is refused. Randomness comes from `random_bytes`, so
    tests replay a round byte for byte.
The profiles `ckks` and `none` have no masks: the machine starts in UPLOAD (`ckks` still
signs the survivor set; `none` has no consistency stage).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable, Mapping
from typing import Any

from accord.crypto import agreement, consistency, envelope, masks, shamir
from accord.crypto.agreement import encode_fields
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
    SealedShare,
    ShareKeys,
    Stage,
    UnmaskCall,
    UnmaskShares,
    UploadDone,
    sign,
    verify,
)
from accord.crypto.unmasking import (
    SELF_MASK_SEED_BYTES,
    round_neighbours,
    share_holders,
)
from accord.errors import ConfigError, IntegrityError, Malformed, OutOfStage, ProtocolError

_SHARE_PAIR_VERSION = 1


def share_aad(config: RoundConfig, sender: str, recipient: str) -> bytes:
    """Associated data binding a sealed share pair to its federation, round and parties."""
    return b"accord/v1/share" + encode_fields(config.federation_id, config.round, sender, recipient)


def _pack_pair(masking_key_share: shamir.Share, self_mask_share: shamir.Share) -> bytes:
    first, second = masking_key_share.to_bytes(), self_mask_share.to_bytes()
    return struct.pack(">BH", _SHARE_PAIR_VERSION, len(first)) + first + second


def _unpack_pair(data: bytes, what: str) -> tuple[shamir.Share, shamir.Share]:
    if len(data) < 3 or data[0] != _SHARE_PAIR_VERSION:
        raise Malformed(f"{what}: unknown share format")
    (length,) = struct.unpack(">H", data[1:3])
    return shamir.Share.from_bytes(data[3 : 3 + length]), shamir.Share.from_bytes(
        data[3 + length :]
    )


class ParticipantRound:
    """One round, seen from participant `me`.

    Args:
        config: the round's parameters, as announced by the coordinator.
        me: this participant's id.
        identity_private: its Ed25519 identity key (raw 32 bytes).
        identities: every selected participant's identity public key.
        random_bytes: source of secret randomness (os.urandom unless testing).
    """

    def __init__(
        self,
        config: RoundConfig,
        me: str,
        identity_private: bytes,
        identities: Mapping[str, bytes],
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if me not in config.selected:
            raise ConfigError(f"participant {me} is not selected for round {config.round}")
        self.config = config
        self.me = me
        self._identity_private = identity_private
        self._identities = dict(identities)
        self._random_bytes = random_bytes
        self._neighbours = round_neighbours(config)
        self._stage = config.first_stage
        self._sequence = 0
        self._encryption: agreement.KeyPair | None = None
        self._masking: agreement.KeyPair | None = None
        self._self_mask_seed = b""
        self._neighbour_keys: dict[str, AdvertiseKeys] = {}
        self._held: dict[str, tuple[shamir.Share, shamir.Share]] = {}
        self._pairwise_seeds: dict[str, bytes] = {}
        self._receipt: UploadDone | None = None
        self._statement = b""
        self._signed_survivors: tuple[str, ...] = ()
        self._signed_dropped: tuple[str, ...] = ()
        self._aggregate_survivors: tuple[str, ...] = ()
        self._abort_reason = ""
        self._table: dict[tuple[Stage, type], Callable[[Any], list[ParticipantMessage]]] = {
            (Stage.ADVERTISE, NeighbourKeys): self._on_keys,
            (Stage.SHARE, RelayedShares): self._on_shares,
            (Stage.CONSISTENCY, ConsistencyCall): self._on_consistency,
            # A survivor that missed the consistency or unmask call is still in the sum.
            (Stage.CONSISTENCY, AggregateReady): self._on_aggregate,
            (Stage.UNMASK, UnmaskCall): self._on_unmask,
            (Stage.UNMASK, AggregateReady): self._on_aggregate,
            (Stage.AGGREGATE, AggregateReady): self._on_aggregate,
        }

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def abort_reason(self) -> str:
        return self._abort_reason

    @property
    def receipt(self) -> UploadDone | None:
        """This participant's signed upload receipt, once `upload_done` made it."""
        return self._receipt

    @property
    def aggregate_survivors(self) -> tuple[str, ...]:
        """Whose uploads the aggregate sums, as the verified evidence says (from DONE on)."""
        return self._aggregate_survivors

    def start(self) -> list[ParticipantMessage]:
        """Open the round: advertise fresh keys (masking profiles) or nothing."""
        if not self.config.profile.uses_masks:
            return []
        if self._masking is not None:
            raise OutOfStage(f"round {self.config.round} already started")
        self._encryption = agreement.generate_keypair(self._random_bytes)
        self._masking = agreement.generate_keypair(self._random_bytes)
        self._self_mask_seed = self._random_bytes(SELF_MASK_SEED_BYTES)
        return [
            self._signed(
                AdvertiseKeys(
                    sender=self.me,
                    encryption_public=self._encryption.public,
                    masking_public=self._masking.public,
                )
            )
        ]

    def receive(self, message: CoordinatorMessage) -> list[ParticipantMessage]:
        """Take one message from the coordinator; return what to send back.

        Raises:
            OutOfStage: the message does not belong to the current stage.
            BadSignature: a relayed key advertisement is not its owner's.
            Malformed, IntegrityError: the content is wrong; nothing changed.
        """
        if isinstance(message, Aborted):
            self._stage = Stage.ABORTED
            self._abort_reason = message.reason
            return []
        if message.recipient != self.me:
            raise Malformed(f"a {type(message).__name__} for {message.recipient} reached {self.me}")
        handler = self._table.get((self._stage, type(message)))
        if handler is None:
            raise OutOfStage(
                f"{type(message).__name__} refused: {self.me} is in {self._stage.value}"
            )
        return handler(message)

    def mask_terms(self) -> list[masks.MaskTerm]:
        """The masks to add to this participant's update (none without masks)."""
        if self._stage is not Stage.UPLOAD:
            raise OutOfStage(f"masks are ready in the upload stage, not {self._stage.value}")
        if not self.config.profile.uses_masks:
            return []
        return masks.participant_terms(self.me, self._self_mask_seed, self._pairwise_seeds)

    def upload_done(self, digest: bytes, chunk_count: int) -> UploadDone:
        """Record that the upload was sent; return the signed receipt for the coordinator."""
        if self._stage is not Stage.UPLOAD:
            raise OutOfStage(f"upload refused: {self.me} is in {self._stage.value}")
        receipt = self._signed(UploadDone(sender=self.me, digest=digest, chunk_count=chunk_count))
        self._receipt = receipt
        self._stage = Stage.CONSISTENCY if self.config.profile.is_secure else Stage.AGGREGATE
        return receipt

    # ---- handlers: check everything, then mutate ----

    def _on_keys(self, message: NeighbourKeys) -> list[ParticipantMessage]:
        assert self._masking is not None and self._encryption is not None
        mine = set(self._neighbours[self.me])
        senders = [k.sender for k in message.keys]
        if len(set(senders)) != len(senders) or not set(senders) <= mine:
            raise Malformed(f"neighbour keys for {self.me}: unknown or repeated neighbour")
        for keys in message.keys:
            verify(keys, self.config, self._identities)
        if len(senders) + 1 < self.config.threshold:
            return self._abort(f"only {len(senders)} neighbours advertised keys")
        holders = share_holders(self.me, self._neighbours)
        key_shares = shamir.split(
            self._masking.private,
            self.config.threshold,
            len(holders),
            random_bytes=self._random_bytes,
        )
        seed_shares = shamir.split(
            self._self_mask_seed,
            self.config.threshold,
            len(holders),
            random_bytes=self._random_bytes,
        )
        sealed = []
        for keys in message.keys:
            position = holders.index(keys.sender)
            sealed.append(
                SealedShare(
                    sender=self.me,
                    recipient=keys.sender,
                    envelope=envelope.seal(
                        _pack_pair(key_shares[position], seed_shares[position]),
                        keys.encryption_public,
                        aad=share_aad(self.config, self.me, keys.sender),
                        random_bytes=self._random_bytes,
                    ),
                )
            )
        own = holders.index(self.me)
        self._held[self.me] = (key_shares[own], seed_shares[own])
        self._neighbour_keys = {k.sender: k for k in message.keys}
        self._stage = Stage.SHARE
        return [self._signed(ShareKeys(sender=self.me, shares=tuple(sealed)))]

    def _on_shares(self, message: RelayedShares) -> list[ParticipantMessage]:
        assert self._encryption is not None and self._masking is not None
        opened: dict[str, tuple[shamir.Share, shamir.Share]] = {}
        for share in message.shares:
            if share.recipient != self.me or share.sender not in self._neighbour_keys:
                raise Malformed(f"a relayed share from {share.sender} is not for {self.me}")
            if share.sender in opened:
                raise Malformed(f"two relayed shares from {share.sender}")
            what = f"the share envelope from {share.sender}"
            plain = envelope.open(
                share.envelope,
                self._encryption.private,
                aad=share_aad(self.config, share.sender, self.me),
                what=what,
            )
            opened[share.sender] = _unpack_pair(plain, what)
        if len(opened) + 1 < self.config.threshold:
            return self._abort(f"only {len(opened)} neighbours shared keys")
        seeds = {
            v: agreement.pairwise_seed(
                self._masking.private,
                self._neighbour_keys[v].masking_public,
                federation_id=self.config.federation_id,
                round=self.config.round,
                u=self.me,
                v=v,
            )
            for v in opened
        }
        self._held.update(opened)
        self._pairwise_seeds = seeds
        self._stage = Stage.UPLOAD
        return []

    def _on_consistency(self, message: ConsistencyCall) -> list[ParticipantMessage]:
        survivor_set = message.survivor_set
        if self.me not in survivor_set.survivors:
            raise Malformed(f"survivor set sent to {self.me} does not list it as a survivor")
        statement = consistency.check_survivor_set(
            self.config, survivor_set, self._identities, own_receipt=self._receipt
        )
        self._statement = statement
        self._signed_survivors = survivor_set.survivors
        self._signed_dropped = survivor_set.dropped
        self._stage = Stage.UNMASK if self.config.profile.uses_masks else Stage.AGGREGATE
        return [self._signed(ConfirmSurvivors(sender=self.me, statement=statement))]

    def _on_unmask(self, message: UnmaskCall) -> list[ParticipantMessage]:
        survivors, dropped = set(message.survivors), set(message.dropped)
        if survivors & dropped:
            raise ProtocolError(
                f"unmask call names {', '.join(sorted(survivors & dropped))} both as survivor "
                "and as dropped; refusing to reveal both secrets"
            )
        if (message.survivors, message.dropped) != (self._signed_survivors, self._signed_dropped):
            raise ProtocolError(
                f"unmask call to {self.me} names another survivor set than the one it signed; "
                "refusing to reveal any share"
            )
        consistency.check_unmask_signatures(
            self.config,
            self._statement,
            message.survivors,
            message.signatures,
            self._identities,
        )
        self_mask_shares = tuple(
            (owner, pair[1].to_bytes())
            for owner, pair in sorted(self._held.items())
            if owner in survivors
        )
        masking_key_shares = tuple(
            (owner, pair[0].to_bytes())
            for owner, pair in sorted(self._held.items())
            if owner in dropped
        )
        self._stage = Stage.AGGREGATE
        return [
            self._signed(
                UnmaskShares(
                    sender=self.me,
                    self_mask_shares=self_mask_shares,
                    masking_key_shares=masking_key_shares,
                )
            )
        ]

    def _on_aggregate(self, message: AggregateReady) -> list[ParticipantMessage]:
        if self.me not in message.survivors:
            raise Malformed(f"aggregate notice to {self.me} does not list it as a survivor")
        if self.config.profile.is_secure:
            if message.evidence is None or message.evidence.survivors != message.survivors:
                raise IntegrityError(
                    f"the aggregate notice of round {self.config.round} carries no signed "
                    "survivor set"
                )
            statement = consistency.verify_evidence(
                self.config, message.evidence, self._identities, own_receipt=self._receipt
            )
            if self._statement and statement != self._statement:
                raise IntegrityError(
                    f"the aggregate of round {self.config.round} is for another survivor set "
                    f"than the one {self.me} signed"
                )
        self._aggregate_survivors = message.survivors
        self._stage = Stage.DONE
        return []

    def _abort(self, reason: str) -> list[ParticipantMessage]:
        self._stage = Stage.ABORTED
        self._abort_reason = reason
        return []

    def _signed(self, message: Any) -> Any:
        self._sequence += 1
        return sign(
            dataclasses.replace(message, sequence=self._sequence),
            self.config,
            self._identity_private,
        )
