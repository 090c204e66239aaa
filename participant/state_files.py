"""The daemon's files outside the round: its keys, and what it keeps between restarts.

The state folder holds `state.json` (the last applied round and adapter), `upload.json`
(the last round trained and uploaded for) and, without a kit, `ceremony.key`. Each JSON
file is written aside and renamed over the old one (`write_json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from accord.crypto import agreement, identity
from accord.errors import ConfigError
from accord.participant.config import ParticipantConfig
from accord.participant.kit.startup_kit import Kit

STATE_FILE = "state.json"
"""In the state folder: the last applied round and, relative to the folder, its adapter."""


def load_identity(config: ParticipantConfig, kit: Kit | None) -> bytes:
    """This participant's raw Ed25519 identity key: the kit's, else `identity_key`'s file.

    Raises:
        ConfigError: no kit and the key file is missing or malformed.
    """
    if kit is not None:
        return kit.identity_key
    path = config.identity_key
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"[participant] identity_key = {str(path)!r}: no such file (with mTLS, set kit = "
            "KIT_DIR instead; `accord demo --insecure-plaintext` writes one)"
        ) from None
    return identity.load_private(data, what=f"identity key {path}")


def local_ceremony_key(path: Path) -> bytes:
    """Load, or make once (0600), the ceremony key of a participant without a kit."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    private = agreement.generate_keypair().private
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    return private


def read_round_uploaded(path: Path) -> int:
    """The round in `upload.json`, 0 when there is none (nothing uploaded yet)."""
    if not path.exists():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8"))["round_uploaded"])


def read_applied(state_dir: Path) -> tuple[int, Path | None] | None:
    """`state.json`'s last applied round and adapter folder (None: nothing applied yet).

    Makes the state folder when it is missing.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / STATE_FILE
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text(encoding="utf-8"))
    adapter = state_dir / state["adapter"] if state.get("adapter") else None
    return int(state["round_applied"]), adapter


def write_applied(state_dir: Path, number: int, adapter_dir: Path | None) -> None:
    """Record in `state.json` that round `number` is applied (None: the adapter is unchanged)."""
    state_file = state_dir / STATE_FILE
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists() else {}
    if adapter_dir is not None:
        state["adapter"] = str(adapter_dir.relative_to(state_dir))
    state["round_applied"] = number
    write_json(state_file, state)


def write_json(path: Path, value: object) -> None:
    """Replace `path` with `value` as indented JSON (written aside, then renamed)."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
