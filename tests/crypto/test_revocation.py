"""The CA-signed revocation list: signature, monotonic number, and refusal by name."""

from __future__ import annotations

import pytest

from accord.crypto import revocation
from accord.crypto.revocation import RevocationList
from accord.errors import BadSignature, Malformed, NotAllowed, Replayed

from .test_terms import _ca


def test_a_signed_list_verifies_only_against_its_ca_and_federation() -> None:
    key, cert = _ca()
    _, other = _ca()
    listed = RevocationList(federation_id="fed", number=2, revoked=("urban",))
    signed = revocation.sign_revocations(listed, key)
    assert revocation.verify_revocations(signed, cert, "fed") == listed
    with pytest.raises(BadSignature):
        revocation.verify_revocations(signed, other, "fed")
    with pytest.raises(BadSignature):
        revocation.verify_revocations(signed.replace(b'"urban"', b'"water"'), cert, "fed")
    with pytest.raises(Malformed, match="federation 'fed'"):
        revocation.verify_revocations(signed, cert, "other")


def test_an_older_list_is_a_rollback() -> None:
    first = RevocationList(federation_id="fed", number=1, revoked=("urban",))
    second = RevocationList(federation_id="fed", number=2, revoked=())
    assert revocation.newer(None, first) == first
    assert revocation.newer(first, second) == second
    with pytest.raises(Replayed, match="#1 is older than #2"):
        revocation.newer(second, first)


def test_a_round_with_a_revoked_member_is_refused_naming_it() -> None:
    listed = RevocationList(federation_id="fed", number=3, revoked=("urban",))
    revocation.check_not_revoked(listed, ("energy", "residential"), what="round 4")
    revocation.check_not_revoked(None, ("urban",), what="round 4")
    with pytest.raises(
        NotAllowed, match=r"^round 4 includes revoked member urban \(revocation list #3\)"
    ):
        revocation.check_not_revoked(listed, ("energy", "urban"), what="round 4")
