"""The participant's key messages of a round, and the coordinator's relays of them.

ADVERTISE: a participant's two public keys, signed (`advertise_*`), relayed to its
neighbours as `SignedKeys` (`signed_keys_*`). SHARE: its Shamir shares sealed to each
neighbour (`share_keys_*`), relayed one `SealedShare` each (`sealed_share_*`). UNMASK:
a survivor's shares of self masks and of dropped members' keys (`unmask_*`). A request's
sender, sequence and signature travel in its header (`headers.signed_header`).
"""

from __future__ import annotations

from accord.crypto.messages import AdvertiseKeys, RoundConfig, SealedShare, ShareKeys, UnmaskShares
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.headers import Header, header_to_proto, signed_header


def signed_keys_to_proto(keys: AdvertiseKeys) -> pb.SignedKeys:
    """A key advertisement with its owner's signature, as sent and as relayed."""
    return pb.SignedKeys(
        participant_id=keys.sender,
        encryption_public_key=keys.encryption_public,
        masking_public_key=keys.masking_public,
        signature=keys.signature,
        sequence=keys.sequence,
    )


def signed_keys_from_proto(keys: pb.SignedKeys) -> AdvertiseKeys:
    """A neighbour's key advertisement as relayed (its signature is checked by the caller)."""
    return AdvertiseKeys(
        sender=keys.participant_id,
        encryption_public=keys.encryption_public_key,
        masking_public=keys.masking_public_key,
        sequence=keys.sequence,
        signature=keys.signature,
    )


def advertise_to_proto(message: AdvertiseKeys, config: RoundConfig) -> pb.AdvertiseKeysRequest:
    """The participant's signed key advertisement."""
    return pb.AdvertiseKeysRequest(
        header=header_to_proto(signed_header(message, config)),
        keys=signed_keys_to_proto(message),
    )


def advertise_from_proto(request: pb.AdvertiseKeysRequest, header: Header) -> AdvertiseKeys:
    """A participant's key advertisement; the header carries its signature.

    Raises:
        Malformed: the keys name another participant than the header.
    """
    if request.keys.participant_id != header.participant:
        raise Malformed("advertised keys must be the sender's own")
    return AdvertiseKeys(
        encryption_public=request.keys.encryption_public_key,
        masking_public=request.keys.masking_public_key,
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def sealed_share_to_proto(share: SealedShare) -> pb.SealedShare:
    """One Shamir share sealed to its recipient, as sent and as relayed."""
    return pb.SealedShare(
        sender_id=share.sender, recipient_id=share.recipient, envelope=share.envelope
    )


def sealed_share_from_proto(share: pb.SealedShare) -> SealedShare:
    """One sealed Shamir share (opened, and its sender checked, by the round machine)."""
    return SealedShare(
        sender=share.sender_id, recipient=share.recipient_id, envelope=share.envelope
    )


def share_keys_to_proto(message: ShareKeys, config: RoundConfig) -> pb.ShareKeysRequest:
    """The participant's sealed shares, one for each live neighbour."""
    return pb.ShareKeysRequest(
        header=header_to_proto(signed_header(message, config)),
        shares=[sealed_share_to_proto(s) for s in message.shares],
    )


def share_keys_from_proto(request: pb.ShareKeysRequest, header: Header) -> ShareKeys:
    """A participant's sealed shares, one for each live neighbour."""
    return ShareKeys(
        shares=tuple(sealed_share_from_proto(s) for s in request.shares),
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def unmask_to_proto(message: UnmaskShares, config: RoundConfig) -> pb.UnmaskRequest:
    """The participant's answer to the unmask call."""
    return pb.UnmaskRequest(
        header=header_to_proto(signed_header(message, config)),
        self_mask_shares=[pb.Share(owner_id=o, share=s) for o, s in message.self_mask_shares],
        masking_key_shares=[pb.Share(owner_id=o, share=s) for o, s in message.masking_key_shares],
    )


def unmask_from_proto(request: pb.UnmaskRequest, header: Header) -> UnmaskShares:
    """A survivor's answer to the unmask call."""
    return UnmaskShares(
        self_mask_shares=tuple((s.owner_id, s.share) for s in request.self_mask_shares),
        masking_key_shares=tuple((s.owner_id, s.share) for s in request.masking_key_shares),
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )
