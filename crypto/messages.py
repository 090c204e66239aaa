"""The messages of one secure-aggregation round, as typed values shared by both sides.

Theory of operation. A round of Accord follows Bonawitz et al. 2017 (Practical Secure
Aggregation, section 4, rounds 0-4) with the sparse neighbour graph of SecAgg+ (Bell et
al. 2020): participants advertise two X25519 public keys, share their masking secrets
with Shamir among their neighbours, upload a masked (and, in the CKKS profiles,
encrypted) update, then help the coordinator remove the masks. The wire encoding of
these values lives in `accord.wire`, one module per message family, both directions;
here they are frozen dataclasses, so both sides and the tests speak the same types.

Every message a participant originates is signed with its Ed25519 identity key over
`identity.message_digest(federation, round, stage, sender, sequence, payload_digest)`.
`payload_digest` is SHA-256 over a length-prefixed encoding of the message's fields,
so two different messages never share a digest. Messages from the coordinator are not
signed: they only relay material that carries its owners' signatures.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from accord.crypto import identity
from accord.crypto.agreement import encode_fields
from accord.crypto.client_dp import ClientNoise
from accord.crypto.packing import PackingSpec
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import ConfigError


class Stage(enum.Enum):
    """The stages of one round, in protocol order."""

    ADVERTISE = "advertise"
    SHARE = "share"
    UPLOAD = "upload"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"
    AGGREGATE = "aggregate"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class RoundConfig:
    """Everything both sides must agree on before a round starts.

    `element_count` counts the protected vector: adapter parameters plus the weight slot.
    `client_noise` is the federation's client-level DP setting (None: no client-level
    noise); each participant adds its share before masking (`crypto/client_dp.py`).
    """

    federation_id: str
    round: int
    profile: Profile
    selected: tuple[str, ...]
    threshold: int
    quant: QuantSpec
    element_count: int
    packing: PackingSpec | None = None
    neighbour_degree: int = 0
    graph_seed: bytes = b""
    key_epoch: int = 0
    client_noise: ClientNoise | None = None

    def __post_init__(self) -> None:
        if tuple(sorted(set(self.selected))) != self.selected:
            raise ConfigError("selected: participant ids must be unique and sorted")
        if not 1 <= self.threshold <= len(self.selected):
            raise ConfigError(
                f"threshold = {self.threshold}: must be between 1 and the {len(self.selected)} "
                "selected participants (least number whose inputs are summed)"
            )
        if self.profile.uses_masks and self.threshold < 2:
            raise ConfigError(
                f"threshold = {self.threshold}: must be >= 2 with masks (a lone survivor's "
                "update would be the aggregate)"
            )
        if len(self.selected) > self.quant.max_participants:
            raise ConfigError(
                f"max_participants = {self.quant.max_participants}: below the "
                f"{len(self.selected)} selected participants (raise it, or select fewer)"
            )
        if self.profile.uses_ckks != (self.packing is not None):
            raise ConfigError(
                f"packing: needed exactly when the profile uses CKKS ({self.profile})"
            )
        if self.element_count < 1:
            raise ConfigError(f"element_count = {self.element_count}: must be >= 1")
        if self.profile.uses_masks and len(self.graph_seed) != 32:
            raise ConfigError("graph_seed: must be 32 bytes when the profile uses masks")
        if self.client_noise is not None:
            if self.profile is Profile.NONE:
                raise ConfigError(
                    "[coordinator.client_dp]: client-level noise needs a secure profile (its "
                    "shares are exact integers added before masking); profile none sends "
                    "updates in clear"
                )
            self.client_noise.check_room(self.quant, len(self.selected))

    @property
    def first_stage(self) -> Stage:
        return Stage.ADVERTISE if self.profile.uses_masks else Stage.UPLOAD


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class AdvertiseKeys:
    """Round 0: a participant's fresh encryption key c_u^PK and masking key s_u^PK."""

    stage: ClassVar[Stage] = Stage.ADVERTISE
    sender: str
    encryption_public: bytes
    masking_public: bytes
    sequence: int = 0
    signature: bytes = b""

    def payload_digest(self) -> bytes:
        return _sha256(encode_fields(b"advertise", self.encryption_public, self.masking_public))


@dataclass(frozen=True)
class SealedShare:
    """Shares of the sender's masking key and self-mask seed, sealed to the recipient."""

    sender: str
    recipient: str
    envelope: bytes


@dataclass(frozen=True)
class ShareKeys:
    """Round 1: one sealed share pair for each live neighbour."""

    stage: ClassVar[Stage] = Stage.SHARE
    sender: str
    shares: tuple[SealedShare, ...]
    sequence: int = 0
    signature: bytes = b""

    def payload_digest(self) -> bytes:
        rows = [encode_fields(s.sender, s.recipient, s.envelope) for s in self.shares]
        return _sha256(encode_fields(b"share", *rows))


@dataclass(frozen=True)
class UploadDone:
    """Round 2: the participant's whole upload arrived; digest is SHA-256 over its chunks."""

    stage: ClassVar[Stage] = Stage.UPLOAD
    sender: str
    digest: bytes
    chunk_count: int
    sequence: int = 0
    signature: bytes = b""

    def payload_digest(self) -> bytes:
        return _sha256(encode_fields(b"upload", self.digest, self.chunk_count))


@dataclass(frozen=True)
class ConfirmSurvivors:
    """Consistency round: the sender's signature over the round's survivor statement.

    `statement` is `consistency.statement_digest(config, survivor_set)`: the round config,
    who survived, who dropped and each survivor's signed upload receipt. A member reveals
    shares only after it holds `threshold` of these over the very statement it signed.
    """

    stage: ClassVar[Stage] = Stage.CONSISTENCY
    sender: str
    statement: bytes
    sequence: int = 0
    signature: bytes = b""

    def payload_digest(self) -> bytes:
        return _sha256(encode_fields(b"consistency", self.statement))


@dataclass(frozen=True)
class UnmaskShares:
    """Round 3: shares of b_u for survivors, of s_v^SK for the dropped; never both for one id."""

    stage: ClassVar[Stage] = Stage.UNMASK
    sender: str
    self_mask_shares: tuple[tuple[str, bytes], ...]
    masking_key_shares: tuple[tuple[str, bytes], ...]
    sequence: int = 0
    signature: bytes = b""

    def payload_digest(self) -> bytes:
        survivors = [encode_fields(owner, share) for owner, share in self.self_mask_shares]
        dropped = [encode_fields(owner, share) for owner, share in self.masking_key_shares]
        return _sha256(encode_fields(b"unmask", encode_fields(*survivors), encode_fields(*dropped)))


ParticipantMessage = AdvertiseKeys | ShareKeys | UploadDone | ConfirmSurvivors | UnmaskShares


@dataclass(frozen=True)
class NeighbourKeys:
    """To a participant: the signed key advertisements of its live neighbours."""

    recipient: str
    keys: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True)
class RelayedShares:
    """To a participant: the sealed shares its neighbours addressed to it."""

    recipient: str
    shares: tuple[SealedShare, ...]


@dataclass(frozen=True)
class SurvivorSet:
    """Who is in a round's aggregate: the statement every member signs before unmasking.

    `commitments` holds each survivor's signed upload receipt (SHA-256 over its chunks),
    sorted by sender: the aggregate must be the sum of exactly these uploads.
    """

    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    commitments: tuple[UploadDone, ...]


@dataclass(frozen=True)
class SurvivorEvidence:
    """A survivor set and the members' signatures over it (`ConfirmSurvivors`)."""

    survivor_set: SurvivorSet
    signatures: tuple[ConfirmSurvivors, ...]

    @property
    def survivors(self) -> tuple[str, ...]:
        return self.survivor_set.survivors


@dataclass(frozen=True)
class ConsistencyCall:
    """To a survivor: the survivor set to check and sign (Bonawitz et al.'s round 3)."""

    recipient: str
    survivor_set: SurvivorSet


@dataclass(frozen=True)
class UnmaskCall:
    """To a survivor: who uploaded (send b_u shares) and who dropped (send s_v^SK shares).

    `signatures` are the members' `ConfirmSurvivors` over the same survivor set: a member
    reveals nothing unless `threshold` of them verify over the statement it signed itself.
    """

    recipient: str
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    signatures: tuple[ConfirmSurvivors, ...] = ()


@dataclass(frozen=True)
class AggregateReady:
    """To a survivor: the aggregate can be downloaded; `evidence` says whose sum it is.

    `evidence` is None only in the plaintext profile `none`.
    """

    recipient: str
    survivors: tuple[str, ...]
    evidence: SurvivorEvidence | None = None


@dataclass(frozen=True)
class Aborted:
    """To a participant: the round ended without an aggregate, and why."""

    recipient: str
    reason: str


CoordinatorMessage = (
    NeighbourKeys | RelayedShares | ConsistencyCall | UnmaskCall | AggregateReady | Aborted
)

M = TypeVar("M", AdvertiseKeys, ShareKeys, UploadDone, ConfirmSurvivors, UnmaskShares)


def signed_digest(message: ParticipantMessage, config: RoundConfig) -> bytes:
    """The bytes a participant's identity key signs for `message` in this round."""
    return identity.message_digest(
        federation_id=config.federation_id,
        round=config.round,
        stage=message.stage.value,
        participant=message.sender,
        sequence=message.sequence,
        payload_digest=message.payload_digest(),
    )


def sign(message: M, config: RoundConfig, identity_private: bytes) -> M:
    """Return `message` with its signature filled in."""
    signature = identity.sign(identity_private, signed_digest(message, config))
    return dataclasses.replace(message, signature=signature)


def verify(
    message: ParticipantMessage, config: RoundConfig, identities: Mapping[str, bytes]
) -> None:
    """Check `message`'s signature against its sender's identity key.

    Raises:
        BadSignature: the signature is missing, malformed or wrong.
    """
    what = f"the {message.stage.value} message from {message.sender}"
    identity.verify(
        identities[message.sender], signed_digest(message, config), message.signature, what=what
    )
