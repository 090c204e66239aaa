"""A small plaintext (`none`) federation for coordinator tests: config, keys and uploads."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile
from accord.crypto import identity
from accord.crypto.messages import RoundConfig
from accord.crypto.participant_round import ParticipantRound
from accord.participant.exchange import protect_update
from accord.participant.training.protocol import LocalUpdate

NAMES = ("energy", "residential", "urban")
MODEL_HASH = "ab" * 32
ADAPTER_PARAMETERS = 10


def make_keys(names: Sequence[str] = NAMES) -> dict[str, identity.KeyPair]:
    """Deterministic identity keys, one per participant."""
    return {
        name: identity.generate_identity(
            lambda n, name=name: hashlib.sha256(name.encode()).digest()[:n]
        )
        for name in names
    }


def make_config(
    tmp_path: Path, keys: dict[str, identity.KeyPair], **settings: object
) -> CoordinatorConfig:
    """A coordinator config for the `none` profile over `keys`' participants."""
    table = {
        "participants": list(keys),
        "identity_keys": {name: pair.public.hex() for name, pair in keys.items()},
        "profile": "none",
        "insecure_plaintext": True,
        "state_dir": str(tmp_path / "coordinator"),
        "rounds": 2,
        **settings,
    }
    return configfile.validate(table, CoordinatorConfig, "coordinator")


def upload_chunks(
    config: RoundConfig, name: str, keys: dict[str, identity.KeyPair], delta: np.ndarray
) -> tuple[list[bytes], int, bytes]:
    """`name`'s protected upload of `delta`: the chunks and the signed receipt's fields."""
    machine = ParticipantRound(
        config, name, keys[name].private, {n: k.public for n, k in keys.items()}
    )
    machine.start()
    update = LocalUpdate(delta=delta.astype(np.float32), sample_count=4, metrics={})
    chunks = list(protect_update(update, config, machine.mask_terms()))
    digest = hashlib.sha256(b"".join(chunks)).digest()
    receipt = machine.upload_done(digest, len(chunks))
    return chunks, receipt.sequence, receipt.signature


def json_logger(tmp_path: Path) -> logging.Logger:
    """A logger writing JSON lines to `tmp_path/coordinator.log`."""
    from accord.core import logs

    return logs.configure("coordinator", tmp_path / "coordinator.log")
