"""The key ceremony on the wire: ceremony keys, the maker's post, each member's bundle.

A member's signed X25519 ceremony key travels at enrolment
(`enrolment_ceremony_key_from_proto`) and, listed in a KEY_CEREMONY task, to the maker
(`ceremony_key_*`). The maker posts the CKKS key sealed to each member
(`ceremony_post_to_proto`, read as `sealed_keys_from_proto`); each member fetches its
envelope with the public parts (`ceremony_bundle_to_proto`).
"""

from __future__ import annotations

from dataclasses import dataclass

from accord.crypto.ceremony import Ceremony, CeremonyKey
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb


@dataclass(frozen=True)
class SealedKey:
    """The CKKS key sealed to one participant, with the maker's signature over it."""

    envelope: bytes
    signature: bytes


def ceremony_key_to_proto(key: CeremonyKey) -> pb.RosterEntry:
    """A member's signed ceremony key, as a KEY_CEREMONY task lists it."""
    return pb.RosterEntry(
        participant_id=key.participant,
        ceremony_public_key=key.ceremony_public,
        ceremony_key_signature=key.signature,
    )


def ceremony_key_from_proto(entry: pb.RosterEntry) -> CeremonyKey:
    """A member's signed ceremony key (the signature is checked by the caller)."""
    return CeremonyKey(
        participant=entry.participant_id,
        ceremony_public=entry.ceremony_public_key,
        signature=entry.ceremony_key_signature,
    )


def enrolment_ceremony_key_from_proto(
    request: pb.EnrollRequest, participant: str
) -> CeremonyKey | None:
    """The signed ceremony key sent at enrolment, if any."""
    if not request.ceremony_public_key:
        return None
    return CeremonyKey(
        participant=participant,
        ceremony_public=request.ceremony_public_key,
        signature=request.ceremony_key_signature,
    )


def ceremony_post_to_proto(made: Ceremony, *, header: pb.RequestHeader) -> pb.CeremonyPost:
    """What the maker hands the coordinator: the public parts and one envelope per member."""
    return pb.CeremonyPost(
        header=header,
        key_epoch=made.key_epoch,
        public_context=made.public,
        secrets=[
            pb.SealedSecret(recipient_id=name, envelope=envelope, signature=made.signatures[name])
            for name, envelope in sorted(made.sealed.items())
        ],
    )


def sealed_keys_from_proto(request: pb.CeremonyPost) -> dict[str, SealedKey]:
    """The maker's envelopes, by recipient.

    Raises:
        Malformed: two envelopes for one recipient.
    """
    sealed = {
        s.recipient_id: SealedKey(envelope=s.envelope, signature=s.signature)
        for s in request.secrets
    }
    if len(sealed) != len(request.secrets):
        raise Malformed("key ceremony: two envelopes for one recipient")
    return sealed


def ceremony_bundle_to_proto(
    *, key_epoch: int, maker: str, public: bytes, sealed: SealedKey | None
) -> pb.CeremonyBundle:
    """The current key's public parts, and the caller's envelope when it has one.

    The participant reads the bundle's fields as they are (`FetchCeremony`): no typed
    value stands between them.
    """
    bundle = pb.CeremonyBundle(
        key_epoch=key_epoch, maker_id=maker, public_context=public, ready=key_epoch > 0
    )
    if sealed is not None:
        bundle.sealed_secret = sealed.envelope
        bundle.signature = sealed.signature
    return bundle
