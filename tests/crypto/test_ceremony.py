"""The key ceremony hands the CKKS secret to participants only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from accord.crypto import agreement, ceremony, identity
from accord.crypto.ckks import PublicContext
from accord.crypto.packing import choose_packing, pack
from accord.errors import BadSignature, IntegrityError

from .harness import seeded_bytes

NAMES = ("energy", "residential", "urban")


def _members() -> tuple[dict, dict, dict]:
    ids = {p: identity.generate_identity(seeded_bytes(f"id/{p}")) for p in NAMES}
    boxes = {p: agreement.generate_keypair(seeded_bytes(f"box/{p}")) for p in NAMES}
    keys = {
        p: ceremony.CeremonyKey(
            participant=p,
            ceremony_public=boxes[p].public,
            signature=ceremony.sign_ceremony_key(
                ids[p].private, federation_id="fed", participant=p, ceremony_public=boxes[p].public
            ),
        )
        for p in NAMES
    }
    return ids, boxes, keys


def _make(ids: dict, keys: dict, *, with_ckks: bool = True) -> ceremony.Ceremony:
    return ceremony.make(
        keys,
        {p: k.public for p, k in ids.items()},
        federation_id="fed",
        key_epoch=1,
        maker="energy",
        maker_identity_private=ids["energy"].private,
        with_ckks=with_ckks,
    )


def _open(made: ceremony.Ceremony, ids: dict, box: bytes, **overrides: object) -> object:
    arguments: dict = {
        "federation_id": "fed",
        "key_epoch": 1,
        "recipient": "urban",
        "public": made.public,
        "signature": made.signatures["urban"],
        "maker": "energy",
        "maker_identity_public": ids["energy"].public,
        **overrides,
    }
    return ceremony.open_secret(made.sealed["urban"], box, **arguments)


def test_every_participant_opens_the_same_secret_and_the_coordinator_only_gets_public() -> None:
    ids, boxes, keys = _members()
    made = _make(ids, keys)
    assert set(made.sealed) == set(NAMES)
    spec = choose_packing(16, 3)
    values = np.arange(100, dtype=np.uint32)
    ciphertext = made.secret.encrypt(pack(values, spec), spec)
    for p in NAMES:
        opened = ceremony.open_secret(
            made.sealed[p],
            boxes[p].private,
            federation_id="fed",
            key_epoch=1,
            recipient=p,
            public=made.public,
            signature=made.signatures[p],
            maker="energy",
            maker_identity_public=ids["energy"].public,
        )
        assert opened.ckks is not None
        np.testing.assert_array_equal(opened.ckks.decrypt_packed(ciphertext, spec, 100), values)
        assert opened.integrity_key == made.integrity_key
    public = PublicContext.from_bytes(made.public)
    assert not hasattr(public, "decrypt_packed")
    assert made.secret.to_bytes() not in made.public
    assert made.integrity_key not in made.public
    assert len(made.public) < len(made.secret.to_bytes())


def test_a_ceremony_key_swapped_by_the_coordinator_is_refused() -> None:
    ids, _, keys = _members()
    evil = agreement.generate_keypair(seeded_bytes("evil"))
    swapped = {**keys, "urban": dataclasses.replace(keys["urban"], ceremony_public=evil.public)}
    with pytest.raises(BadSignature, match="ceremony key of urban"):
        _make(ids, swapped)


@pytest.mark.parametrize(
    ("federation_id", "key_epoch", "recipient"),
    [("other", 1, "urban"), ("fed", 2, "urban"), ("fed", 1, "residential")],
)
def test_an_envelope_opens_only_for_its_federation_epoch_and_recipient(
    federation_id: str, key_epoch: int, recipient: str
) -> None:
    ids, boxes, keys = _members()
    made = _make(ids, keys)
    with pytest.raises((IntegrityError, BadSignature)):
        _open(
            made,
            ids,
            boxes["urban"].private,
            federation_id=federation_id,
            key_epoch=key_epoch,
            recipient=recipient,
        )
    assert _open(made, ids, boxes["urban"].private) is not None


def test_a_key_made_by_the_coordinator_is_refused_even_when_sealed_correctly() -> None:
    ids, boxes, keys = _members()
    made = _make(ids, keys)
    # The coordinator knows every ceremony public key, so it can seal a key of its own...
    from accord.crypto import envelope
    from accord.crypto.ckks import SecretContext

    own = SecretContext.generate()
    forged = envelope.seal(
        own.to_bytes(), keys["urban"].ceremony_public, aad=b"accord/v1/ceremony" + b"x"
    )
    with pytest.raises(BadSignature):
        ceremony.open_secret(
            forged,
            boxes["urban"].private,
            federation_id="fed",
            key_epoch=1,
            recipient="urban",
            public=own.public().to_bytes(),
            signature=made.signatures["urban"],
            maker="energy",
            maker_identity_public=ids["energy"].public,
        )


def test_the_masks_ceremony_seals_an_integrity_key_and_no_ckks_key() -> None:
    ids, boxes, keys = _members()
    made = _make(ids, keys, with_ckks=False)
    assert made.secret is None and made.public == b""
    opened = _open(made, ids, boxes["urban"].private)
    assert isinstance(opened, ceremony.FederationSecret)
    assert opened.ckks is None
    assert opened.integrity_key == made.integrity_key and len(opened.integrity_key) == 32
    assert _make(ids, keys, with_ckks=False).integrity_key != made.integrity_key


def test_a_container_of_an_unknown_version_is_refused() -> None:
    data = ceremony.FederationSecret(bytes(32), None).to_bytes()
    assert ceremony.FederationSecret.from_bytes(data).integrity_key == bytes(32)
    with pytest.raises(IntegrityError, match="version 02"):
        ceremony.FederationSecret.from_bytes(b"\x02" + data[1:])
    with pytest.raises(IntegrityError):
        ceremony.FederationSecret.from_bytes(data[:20])
