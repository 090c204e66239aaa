"""The member's side of the key ceremony, without the network (`accord.crypto.ceremony`).

    maker      `ceremony_post`: make the federation secret (the CKKS key in the CKKS
               profiles, and the integrity key), seal it to each member's certified
               ceremony key, and frame it as the `PostCeremony` request
    recipient  `open_bundle`: check a `FetchCeremony` answer (ready, of the round's key
               epoch) and open this member's envelope with its ceremony key

The daemon owns the calls, the roster checks (`_know`, the CA's certified keys) and
where the opened secret is kept.
"""

from __future__ import annotations

from collections.abc import Mapping

from accord.crypto import ceremony
from accord.crypto.ceremony import CeremonyKey, FederationSecret
from accord.crypto.messages import RoundConfig
from accord.errors import ProtocolError
from accord.participant.config import ParticipantConfig
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.ceremony import ceremony_post_to_proto


def ceremony_post(
    keys: Mapping[str, CeremonyKey],
    identities: Mapping[str, bytes],
    *,
    config: ParticipantConfig,
    key_epoch: int,
    identity_private: bytes,
    with_ckks: bool,
    header: pb.RequestHeader,
) -> pb.CeremonyPost:
    """Make and seal the federation secret of `key_epoch` to every key in `keys`."""
    made = ceremony.make(
        keys,
        identities,
        federation_id=config.federation_id,
        key_epoch=key_epoch,
        maker=config.name,
        maker_identity_private=identity_private,
        with_ckks=with_ckks,
    )
    return ceremony_post_to_proto(made, header=header)


def open_bundle(
    bundle: pb.CeremonyBundle,
    round_config: RoundConfig,
    *,
    config: ParticipantConfig,
    ceremony_private: bytes,
    maker_identity_public: bytes,
) -> FederationSecret:
    """Open this member's envelope of the round's key epoch.

    Raises:
        ProtocolError: the bundle holds no envelope of the round's key epoch, or no
            CKKS key where the profile needs one.
        BadSignature, IntegrityError: the envelope is not the maker's, or not ours.
    """
    opened = ceremony.open_secret(
        bundle.sealed_secret,
        ceremony_private,
        federation_id=config.federation_id,
        key_epoch=bundle.key_epoch,
        recipient=config.name,
        public=bundle.public_context,
        signature=bundle.signature,
        maker=bundle.maker_id,
        maker_identity_public=maker_identity_public,
    )
    if round_config.profile.uses_ckks and opened.ckks is None:
        raise ProtocolError(f"the key of epoch {bundle.key_epoch} holds no CKKS key")
    return opened


def check_bundle(bundle: pb.CeremonyBundle, round_config: RoundConfig, name: str) -> None:
    """Refuse a `FetchCeremony` answer that is not ready or of another key epoch.

    Raises:
        ProtocolError: the coordinator has no envelope of the round's key epoch for `name`.
    """
    if not bundle.ready or bundle.key_epoch != round_config.key_epoch or not bundle.sealed_secret:
        raise ProtocolError(f"no CKKS key of epoch {round_config.key_epoch} for {name}")
