"""The consistency round: every member signs one survivor set before any share is revealed.

Theory of operation. Bonawitz et al. 2017, section 4, round 3 ("ConsistencyCheck"), and
the reason for it: a coordinator that tells some members "A survived" (they reveal A's
self-mask shares b_A) and others "A dropped" (they reveal shares of A's masking key
s_A^SK) collects both secrets of A and unmasks A's update. Each member's unmask call
would look consistent on its own; only comparing notes across members exposes the lie.

So, after the upload stage and before unmasking, the coordinator sends every survivor the
same *survivor set*: who uploaded, who dropped, and each survivor's signed upload receipt
(its commitment: SHA-256 over the chunks it sent, signed with its identity key, so the
coordinator can neither invent nor swap one). Each member checks the set and signs the
*statement* `statement_digest(config, survivor_set)`, which binds the federation, the
round, the whole round config (threshold, selection, graph, modulus, key epoch...) and
the set. It signs one statement per round, at most once. The coordinator relays the
signatures; a member reveals shares only when at least `threshold` distinct survivors'
signatures verify over the very statement it signed itself (`check_unmask_signatures`).

The same signatures travel with the aggregate (`SurvivorEvidence`): a member, or a member
catching up on a round it missed, accepts an aggregate only as the sum of a survivor set
that `threshold` survivors signed (`verify_evidence`); the integrity tags inside the
protected vector (`crypto/integrity.py`) then check that the sum is really theirs.

Invariants: with the threshold rule of the signed federation terms (t > n/2 of the
selected cohort), two different statements cannot both collect t signatures of honest
members, each of whom signs once; everything here is a pure check that raises and never
mutates.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from accord.crypto.agreement import encode_fields
from accord.crypto.messages import (
    ConfirmSurvivors,
    RoundConfig,
    SurvivorEvidence,
    SurvivorSet,
    UploadDone,
    verify,
)
from accord.errors import IntegrityError, Malformed

__all__ = [
    "check_survivor_set",
    "check_unmask_signatures",
    "round_config_digest",
    "statement_digest",
    "verify_evidence",
]

_CONFIG_DOMAIN = b"accord/v1/round-config"
_STATEMENT_DOMAIN = b"accord/v1/survivor-set"


def _float(value: float | None) -> bytes:
    return b"" if value is None else struct.pack(">d", float(value))


def _optional(value: int | None) -> bytes:
    return b"" if value is None else encode_fields(value)


def round_config_digest(config: RoundConfig) -> bytes:
    """SHA-256 over a canonical encoding of every field of `config`."""
    quant = config.quant
    packing = config.packing
    noise = config.client_noise
    fields = encode_fields(
        config.federation_id,
        config.round,
        config.profile.value,
        encode_fields(*config.selected),
        config.threshold,
        encode_fields(
            quant.modulus_bits,
            quant.max_participants,
            _float(quant.clip_norm),
            _float(quant.value_bound),
            _optional(quant.weight_cap),
        ),
        config.element_count,
        b""
        if packing is None
        else encode_fields(
            packing.modulus_bits,
            packing.max_participants,
            packing.fields_per_real,
            packing.field_bits,
            packing.scale_bits,
            packing.poly_modulus_degree,
        ),
        config.neighbour_degree,
        config.graph_seed,
        config.key_epoch,
        b""
        if noise is None
        else encode_fields(
            _float(noise.noise_multiplier), _float(noise.honest_fraction), _float(noise.delta)
        ),
    )
    return hashlib.sha256(_CONFIG_DOMAIN + fields).digest()


def statement_digest(config: RoundConfig, survivor_set: SurvivorSet) -> bytes:
    """The 32 bytes every member signs (`ConfirmSurvivors.statement`)."""
    commitments = [
        encode_fields(c.sender, c.digest, c.chunk_count, c.sequence, c.signature)
        for c in survivor_set.commitments
    ]
    body = encode_fields(
        round_config_digest(config),
        encode_fields(*survivor_set.survivors),
        encode_fields(*survivor_set.dropped),
        encode_fields(*commitments),
    )
    return hashlib.sha256(_STATEMENT_DOMAIN + body).digest()


def check_survivor_set(
    config: RoundConfig,
    survivor_set: SurvivorSet,
    identities: Mapping[str, bytes],
    *,
    own_receipt: UploadDone | None = None,
) -> bytes:
    """Check a survivor set before signing or trusting it; return its statement digest.

    Args:
        config: the round (already checked against the federation's signed terms).
        survivor_set: as the coordinator sent it.
        identities: Ed25519 identity keys of the selected participants (CA-certified).
        own_receipt: the checking member's own upload receipt: it must be in the set,
            unchanged (a member whose upload the coordinator left out or swapped refuses).

    Raises:
        Malformed: the sets are not sorted, unique, disjoint and within the selection, or
            a commitment is missing, repeated or names someone else.
        IntegrityError: fewer survivors than the threshold, or the member's own receipt
            differs from the one in the set.
        BadSignature: a commitment is not signed by its survivor.
    """
    survivors, dropped = survivor_set.survivors, survivor_set.dropped
    for label, names in (("survivors", survivors), ("dropped", dropped)):
        if tuple(sorted(set(names))) != tuple(names):
            raise Malformed(f"survivor set of round {config.round}: {label} not sorted and unique")
    if set(survivors) & set(dropped):
        both = ", ".join(sorted(set(survivors) & set(dropped)))
        raise Malformed(
            f"survivor set of round {config.round} names {both} both as survivor and as dropped"
        )
    if not set(survivors) | set(dropped) <= set(config.selected):
        raise Malformed(f"survivor set of round {config.round} names participants outside it")
    if len(survivors) < config.threshold:
        raise IntegrityError(
            f"survivor set of round {config.round}: {len(survivors)} survivors, below the "
            f"threshold of {config.threshold}"
        )
    senders = tuple(c.sender for c in survivor_set.commitments)
    if senders != survivors:
        raise Malformed(
            f"survivor set of round {config.round}: one signed upload receipt per survivor, "
            "in order"
        )
    for commitment in survivor_set.commitments:
        if len(commitment.digest) != 32 or commitment.chunk_count < 1:
            raise Malformed(f"upload receipt of {commitment.sender}: bad digest or chunk count")
        verify(commitment, config, identities)
    if own_receipt is not None:
        mine = [c for c in survivor_set.commitments if c.sender == own_receipt.sender]
        if not mine or (mine[0].digest, mine[0].chunk_count) != (
            own_receipt.digest,
            own_receipt.chunk_count,
        ):
            raise IntegrityError(
                f"survivor set of round {config.round} leaves out or alters the upload of "
                f"{own_receipt.sender}"
            )
    return statement_digest(config, survivor_set)


def _count_signatures(
    config: RoundConfig,
    statement: bytes,
    survivors: tuple[str, ...],
    signatures: tuple[ConfirmSurvivors, ...],
    identities: Mapping[str, bytes],
) -> int:
    signers = [s.sender for s in signatures]
    if len(set(signers)) != len(signers):
        raise Malformed(f"round {config.round}: two survivor-set signatures from one member")
    for signature in signatures:
        if signature.sender not in survivors:
            raise Malformed(
                f"round {config.round}: a survivor-set signature from {signature.sender}, "
                "who is not a survivor"
            )
        if signature.statement != statement:
            raise IntegrityError(
                f"round {config.round}: {signature.sender} signed another survivor set"
            )
        verify(signature, config, identities)
    return len(signatures)


def check_unmask_signatures(
    config: RoundConfig,
    statement: bytes,
    survivors: tuple[str, ...],
    signatures: tuple[ConfirmSurvivors, ...],
    identities: Mapping[str, bytes],
) -> None:
    """Raise unless `threshold` survivors signed `statement` (checked before any reveal).

    Raises:
        IntegrityError: fewer than `threshold` valid signatures over this statement, or
            one over another statement.
        Malformed, BadSignature: a signature is repeated, from a non-survivor, or forged.
    """
    count = _count_signatures(config, statement, survivors, signatures, identities)
    if count < config.threshold:
        raise IntegrityError(
            f"round {config.round}: only {count} of the {config.threshold} needed members "
            "signed the survivor set; refusing to reveal any share"
        )


def verify_evidence(
    config: RoundConfig,
    evidence: SurvivorEvidence,
    identities: Mapping[str, bytes],
    *,
    own_receipt: UploadDone | None = None,
) -> bytes:
    """Check that `threshold` survivors signed the aggregate's survivor set; return its statement.

    Raises:
        IntegrityError, Malformed, BadSignature: as `check_survivor_set` and
            `check_unmask_signatures`.
    """
    statement = check_survivor_set(
        config, evidence.survivor_set, identities, own_receipt=own_receipt
    )
    check_unmask_signatures(
        config, statement, evidence.survivor_set.survivors, evidence.signatures, identities
    )
    return statement
