"""Fixtures of the coordinator's tests: the members' identity keys of `plaintext_federation`."""

from __future__ import annotations

import pytest

from accord.crypto.identity import KeyPair

from .plaintext_federation import make_keys


@pytest.fixture
def keys() -> dict[str, KeyPair]:
    """Each participant's identity key pair, by name (`plaintext_federation.NAMES`)."""
    return make_keys()
