"""The member's side of the key ceremony (`accord.crypto.ceremony`).

    maker      `ceremony_post`: make the federation secret (the CKKS key in the CKKS
               profiles, and the integrity key), seal it to each member's certified
               ceremony key, and frame it as the `PostCeremony` request
    recipient  `open_bundle`: check a `FetchCeremony` answer (ready, of the round's key
               epoch) and open this member's envelope with its ceremony key
               (`ceremony_private`: the kit's, else one kept in the state folder)

Those steps need no network. `CeremonyKeys` performs them for the daemon: it makes the
calls and the roster checks through the `Session` (the CA's certified keys, `know`) and
holds the opened secret of the current key epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from accord.core import logs
from accord.crypto import ceremony
from accord.crypto.ceremony import CeremonyKey, FederationSecret
from accord.crypto.ckks import SecretContext
from accord.crypto.messages import RoundConfig
from accord.errors import ProtocolError
from accord.participant.config import ParticipantConfig
from accord.participant.kit.startup_kit import Kit
from accord.participant.state_files import local_ceremony_key
from accord.proto.v1 import federation_pb2 as pb
from accord.wire import tasks
from accord.wire.ceremony import ceremony_post_to_proto

if TYPE_CHECKING:  # the session imports `ceremony_private` from here
    from accord.participant.session import Session


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


def ceremony_private(config: ParticipantConfig, kit: Kit | None) -> bytes:
    """The X25519 key the CKKS key is sealed to: the kit's, else one kept in state_dir."""
    if kit is not None:
        return bytes(kit.ceremony_key)
    return local_ceremony_key(config.state_dir / "ceremony.key")


class CeremonyKeys:
    """This member's part in the key ceremony, and the federation secret it holds.

    Args:
        config: the member's settings.
        kit: its startup kit (None: plaintext debugging).
        session: the connection to the coordinator, and the members' identity keys.
        identity_private: its raw Ed25519 identity key (signs what it seals as maker).
        log: structured logger.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        kit: Kit | None,
        *,
        session: Session,
        identity_private: bytes,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self._kit = kit
        self._session = session
        self._identity_private = identity_private
        self._log = log
        self.secret: SecretContext | None = None
        """The CKKS key of `key_epoch` (None: not fetched yet, or a profile without CKKS)."""
        self.integrity_key: bytes | None = None
        """The integrity key of `key_epoch` (None: not fetched yet)."""
        self.key_epoch = 0

    def make(self, task: pb.Task) -> None:
        """Run the key ceremony as its maker: make the CKKS key, seal it to everyone, post it."""
        session = self._session
        session.set_state("making the CKKS key")
        keys = tasks.ceremony_keys_from_proto(task)
        # Seal the key only to keys the CA certified, never to one the coordinator made up.
        session.know(keys, what="the key ceremony")
        if session.certified is not None:
            session.certified.check_ceremony_keys(
                {name: key.ceremony_public for name, key in keys.items()}
            )
        post = ceremony_post(
            keys,
            session.identities,
            config=self._config,
            key_epoch=task.key_epoch,
            identity_private=self._identity_private,
            with_ckks=session.uses_ckks,
            header=session.header(),
        )
        session.call(session.stub.PostCeremony, post)
        logs.event(self._log, "key_ceremony_posted", key_epoch=post.key_epoch)

    def fetch(self, config: RoundConfig) -> None:
        """Make sure this participant holds the federation secret the round uses.

        That is the integrity key in every secure profile, and the CKKS key too in the
        CKKS profiles.

        Raises:
            ProtocolError: the coordinator has no envelope for this key epoch.
            BadSignature, IntegrityError: the envelope is not the maker's, or not ours.
        """
        if not config.profile.is_secure:
            return
        if self.integrity_key is not None and self.key_epoch == config.key_epoch:
            return
        session = self._session
        request = pb.CeremonyRequest(header=session.header())
        bundle = session.call(session.stub.FetchCeremony, request)
        check_bundle(bundle, config, self._config.name)
        session.know([bundle.maker_id], what=f"the CKKS key of epoch {bundle.key_epoch}")
        opened = open_bundle(
            bundle,
            config,
            config=self._config,
            ceremony_private=ceremony_private(self._config, self._kit),
            maker_identity_public=session.identities[bundle.maker_id],
        )
        self.secret, self.integrity_key = opened.ckks, opened.integrity_key
        self.key_epoch = bundle.key_epoch
        logs.event(
            self._log, "key_received", key_epoch=bundle.key_epoch, participant=bundle.maker_id
        )
