"""The key ceremony: one participant makes the federation's secret and seals it to the rest.

Theory of operation (DESIGN.md section 3, step 3). The maker generates a CKKS secret
context and seals its bytes to every participant's (its own included) long-term X25519
ceremony key with `envelope.seal` (HKDF-SHA256 + AES-256-GCM). The associated data
binds the federation id, the key epoch and the recipient, so an envelope cannot be
replayed into another federation, epoch or mailbox.

The sealed plaintext is a versioned container, the `FederationSecret`: a version byte
(1), the 32-byte integrity key of `integrity.py` (the aggregate's MAC key, which the
coordinator never holds), then the CKKS secret context's bytes, absent for the `masks`
profile (whose public context is then empty too). The coordinator relays the
envelopes and keeps only the public context, which carries no key at all.

Each ceremony key must be signed by its owner's Ed25519 identity key (issued at
provisioning): the maker refuses an unsigned or mis-signed one, so a coordinator that
swaps in a key of its own learns nothing (BadSignature), the same rule as for the keys
advertised in a round. In the other direction the maker signs every envelope together
with the public context, so a coordinator cannot hand participants a key of its own
making (which it could then decrypt with): `open_secret` checks that signature first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from accord.crypto import envelope, identity, integrity
from accord.crypto.agreement import encode_fields
from accord.crypto.ckks import SecretContext
from accord.errors import IntegrityError

_KEY_DOMAIN = b"accord/v1/ceremony-key"
_AAD_DOMAIN = b"accord/v1/ceremony"
_SEALED_DOMAIN = b"accord/v1/ceremony-sealed"
_CONTAINER_VERSION = 1


@dataclass(frozen=True)
class FederationSecret:
    """What the ceremony seals to every member: the integrity key and, for CKKS, the key."""

    integrity_key: bytes
    ckks: SecretContext | None

    def to_bytes(self) -> bytes:
        """The sealed container: version byte, integrity key, CKKS secret bytes (or none)."""
        ckks = self.ckks.to_bytes() if self.ckks is not None else b""
        return bytes([_CONTAINER_VERSION]) + self.integrity_key + ckks

    @classmethod
    def from_bytes(cls, data: bytes) -> FederationSecret:
        """Load a container.

        Raises:
            IntegrityError: unknown version or too short (the maker signed it, so this is
                a maker bug or a newer release, never a coordinator's doing).
        """
        head = 1 + integrity.KEY_BYTES
        if len(data) < head or data[0] != _CONTAINER_VERSION:
            raise IntegrityError(
                f"the sealed federation secret has version {data[:1].hex() or 'none'}, "
                f"this release reads version {_CONTAINER_VERSION}"
            )
        rest = data[head:]
        return cls(
            integrity_key=bytes(data[1:head]),
            ckks=SecretContext.from_bytes(rest) if rest else None,
        )


def ceremony_key_statement(
    *, federation_id: str, participant: str, ceremony_public: bytes
) -> bytes:
    """The bytes a participant's identity key signs to vouch for its ceremony key."""
    return _KEY_DOMAIN + encode_fields(federation_id, participant, ceremony_public)


def sign_ceremony_key(
    identity_private: bytes, *, federation_id: str, participant: str, ceremony_public: bytes
) -> bytes:
    """Sign `ceremony_public` as `participant`'s key for receiving the CKKS secret."""
    statement = ceremony_key_statement(
        federation_id=federation_id, participant=participant, ceremony_public=ceremony_public
    )
    return identity.sign(identity_private, statement)


@dataclass(frozen=True)
class CeremonyKey:
    """A participant's X25519 ceremony key and the identity signature that vouches for it."""

    participant: str
    ceremony_public: bytes
    signature: bytes


@dataclass(frozen=True)
class Ceremony:
    """What the maker keeps (`secret`, `integrity_key`) and hands the coordinator.

    `public` is the CKKS public context (empty without CKKS); `signatures[p]` is the
    maker's identity signature over `p`'s envelope and `public`.
    """

    key_epoch: int
    secret: SecretContext | None
    public: bytes
    sealed: dict[str, bytes]
    signatures: dict[str, bytes]
    integrity_key: bytes = b""


def sealed_statement(
    *, federation_id: str, key_epoch: int, recipient: str, sealed: bytes, public: bytes
) -> bytes:
    """The bytes the maker signs for one recipient's envelope."""
    return _SEALED_DOMAIN + encode_fields(
        federation_id,
        key_epoch,
        recipient,
        hashlib.sha256(sealed).digest(),
        hashlib.sha256(public).digest(),
    )


def _aad(federation_id: str, key_epoch: int, recipient: str) -> bytes:
    return _AAD_DOMAIN + encode_fields(federation_id, key_epoch, recipient)


def make(
    keys: Mapping[str, CeremonyKey],
    identities: Mapping[str, bytes],
    *,
    federation_id: str,
    key_epoch: int,
    maker: str,
    maker_identity_private: bytes,
    poly_modulus_degree: int = 4096,
    random_bytes: Callable[[int], bytes] = os.urandom,
    with_ckks: bool = True,
) -> Ceremony:
    """Generate the federation secret and seal it to every participant, the maker included.

    The secret is a fresh integrity key and, when `with_ckks` (the CKKS profiles), a
    CKKS secret context.

    The maker seals a copy to itself too, so that it recovers the key after a restart
    the same way everyone else does.

    Args:
        keys: each recipient's ceremony key, as relayed by the coordinator.
        identities: every participant's Ed25519 identity public key (from the roster).
        federation_id, key_epoch: bound into each envelope.
        maker: the participant running the ceremony (it keeps the secret itself).
        maker_identity_private: the maker's Ed25519 key, to sign each envelope.

    Returns:
        The ceremony: the secret to keep, the public context and the envelopes.

    Raises:
        BadSignature: a ceremony key is not signed by its owner's identity key.
    """
    _verify_keys(keys, identities, federation_id)
    secret = SecretContext.generate(poly_modulus_degree) if with_ckks else None
    integrity_key = random_bytes(integrity.KEY_BYTES)
    secret_bytes = FederationSecret(integrity_key, secret).to_bytes()
    sealed = {
        participant: envelope.seal(
            secret_bytes,
            key.ceremony_public,
            aad=_aad(federation_id, key_epoch, participant),
            random_bytes=random_bytes,
        )
        for participant, key in keys.items()
    }
    public = secret.public().to_bytes() if secret is not None else b""
    signatures = _sign_sealed(maker_identity_private, federation_id, key_epoch, sealed, public)
    return Ceremony(
        key_epoch=key_epoch,
        secret=secret,
        public=public,
        sealed=sealed,
        signatures=signatures,
        integrity_key=integrity_key,
    )


def _verify_keys(
    keys: Mapping[str, CeremonyKey], identities: Mapping[str, bytes], federation_id: str
) -> None:
    """Raise ``BadSignature`` unless each ceremony key is signed by its owner's identity key."""
    for participant, key in keys.items():
        statement = ceremony_key_statement(
            federation_id=federation_id,
            participant=participant,
            ceremony_public=key.ceremony_public,
        )
        identity.verify(
            identities[participant],
            statement,
            key.signature,
            what=f"the ceremony key of {participant}",
        )


def _sign_sealed(
    maker_identity_private: bytes,
    federation_id: str,
    key_epoch: int,
    sealed: Mapping[str, bytes],
    public: bytes,
) -> dict[str, bytes]:
    """The maker's signature over each recipient's envelope and the public context."""
    return {
        participant: identity.sign(
            maker_identity_private,
            sealed_statement(
                federation_id=federation_id,
                key_epoch=key_epoch,
                recipient=participant,
                sealed=envelope_bytes,
                public=public,
            ),
        )
        for participant, envelope_bytes in sealed.items()
    }


def open_secret(
    sealed: bytes,
    ceremony_private: bytes,
    *,
    federation_id: str,
    key_epoch: int,
    recipient: str,
    public: bytes,
    signature: bytes,
    maker: str,
    maker_identity_public: bytes,
) -> FederationSecret:
    """Check the maker's signature, open the envelope and load the federation secret.

    Raises:
        BadSignature: the envelope or the public context is not the maker's.
        IntegrityError: the envelope is not for this federation, epoch or recipient, or
            was altered.
    """
    statement = sealed_statement(
        federation_id=federation_id,
        key_epoch=key_epoch,
        recipient=recipient,
        sealed=sealed,
        public=public,
    )
    identity.verify(
        maker_identity_public, statement, signature, what=f"the CKKS key envelope from {maker}"
    )
    data = envelope.open(
        sealed,
        ceremony_private,
        aad=_aad(federation_id, key_epoch, recipient),
        what=f"the CKKS key envelope for {recipient}",
    )
    return FederationSecret.from_bytes(data)
