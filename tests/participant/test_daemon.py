"""The daemon's edges: refusals come back as Accord errors, settings are checked first."""

from __future__ import annotations

import grpc
import pytest

from accord import configfile
from accord.errors import ConfigError, NotAllowed
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon, _with_last, accord_error


class Refusal(grpc.RpcError):
    def __init__(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details


def test_a_refusal_names_its_accord_error() -> None:
    error = accord_error(Refusal("NotAllowed: 'mallory' is not a participant"))
    assert isinstance(error, NotAllowed)
    assert str(error) == "'mallory' is not a participant"
    other = Refusal("Socket closed")
    assert accord_error(other) is other


def test_the_last_chunk_is_flagged() -> None:
    assert list(_with_last(iter([b"a", b"b", b"c"]))) == [
        (b"a", False),
        (b"b", False),
        (b"c", True),
    ]
    assert list(_with_last(iter([]))) == []


def test_plaintext_needs_the_flag_and_a_key_is_required(tmp_path) -> None:
    def settings(**extra: object) -> ParticipantConfig:
        table = {"name": "energy", "state_dir": str(tmp_path), **extra}
        return configfile.validate(table, ParticipantConfig, "participant", base_dir=tmp_path)

    with pytest.raises(ConfigError, match="kit: required unless insecure_plaintext = true"):
        ParticipantDaemon(settings(), log=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"identity_key = .*: no such file"):
        ParticipantDaemon(settings(insecure_plaintext=True), log=None)  # type: ignore[arg-type]
