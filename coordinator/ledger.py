"""The federation ledger: `state_dir/ledger.jsonl`, one signed entry per finished round.

The orchestrator calls `note_upload` when an upload's receipt verified and
`round_finished` when a round is done or aborted; every task it hands out carries the
ledger's latest signed head and public key (`stamp`), which each participant keeps
(`federation_head.json`) so that `accord audit verify` can tell if this ledger's tail
was cut off later. The key is the coordinator's own Ed25519 ledger key,
`state_dir/coordinator_identity.key` (PKCS#8 PEM, 0600), made on first start.

Entries (floats as exact decimal strings, see `accord.crypto.ledger`):

    open    ledger_id "<federation>/coordinator", public_key, role, federation_id
    round   round, outcome ("done" | "aborted"), reason, profile, federation_size,
            selected, survivors, quorum (the round's threshold), participation_rate
            (selected / federation_size), update_clip_norm, modulus_bits,
            client_dp {mechanism "none"} (client-level noise is not wired yet; when it is:
            noise_multiplier, each participant's share, honest_fraction),
            uploads {participant: SHA-256 over its chunks}, uploads_known (False for a
            round resumed after a restart, whose receipts were not kept),
            aggregate_sha256 (over the aggregate's chunks, in order; None when aborted)

Nothing here reveals an update: the digests are of ciphertexts or masked vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

from accord.coordinator.records import Assignment
from accord.crypto.ledger import decimal
from accord.crypto.messages import Stage
from accord.crypto.round import CoordinatorRound
from accord.ledgerfile import LedgerFile, load_or_create_key

LEDGER_FILE = "ledger.jsonl"
KEY_FILE = "coordinator_identity.key"
ROUND = "round"


def ledger_id(federation_id: str) -> str:
    """The id of a federation's ledger."""
    return f"{federation_id}/coordinator"


class FederationLedger:
    """The coordinator's ledger (see the module docstring); not thread-safe on its own.

    Args:
        state_dir: the coordinator's state folder.
        federation_id: the federation.

    Raises:
        IntegrityError: an existing ledger does not verify with the coordinator's key.
        ConfigError: the key file is unreadable or readable by others.
    """

    def __init__(self, state_dir: Path, federation_id: str) -> None:
        private = load_or_create_key(state_dir / KEY_FILE)
        self._file = LedgerFile.open(
            state_dir / LEDGER_FILE,
            ledger_id(federation_id),
            private,
            open_body={"role": "coordinator", "federation_id": federation_id},
        )
        self._head = self._file.signed_head().to_bytes()
        self._uploads: dict[int, dict[str, str]] = {}

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 key that signs this ledger."""
        return self._file.public_key

    @property
    def signed_head(self) -> bytes:
        """The latest checkpoint's signed head, as a `Task` carries it."""
        return self._head

    def stamp(self, task: Assignment) -> Assignment:
        """`task` with the ledger's latest signed head and public key."""
        return dataclasses.replace(task, ledger_head=self._head, ledger_public_key=self.public_key)

    def note_upload(self, round: int, participant: str, digest: bytes) -> None:
        """Remember a verified upload's digest until its round is recorded."""
        self._uploads.setdefault(round, {})[participant] = digest.hex()

    def round_finished(
        self, current: CoordinatorRound, aggregate: Sequence[bytes], *, federation_size: int
    ) -> None:
        """Record a finished round (done or aborted), then forget its uploads."""
        config = current.config
        done = current.stage is Stage.DONE
        digest = hashlib.sha256()
        for chunk in aggregate:
            digest.update(chunk)
        uploads = self._uploads.pop(config.round, None)
        self._file.append(
            ROUND,
            {
                "round": config.round,
                "outcome": "done" if done else "aborted",
                "reason": "" if done else current.abort_reason,
                "profile": config.profile.value,
                "federation_size": federation_size,
                "selected": list(config.selected),
                "survivors": list(current.outcome.survivors) if done else [],
                "quorum": config.threshold,
                "participation_rate": decimal(len(config.selected) / max(1, federation_size)),
                "update_clip_norm": decimal(config.quant.clip_norm),
                "modulus_bits": config.quant.modulus_bits,
                "client_dp": {"mechanism": "none"},
                "uploads": dict(sorted((uploads or {}).items())),
                "uploads_known": uploads is not None or not done,
                "aggregate_sha256": digest.hexdigest() if done and aggregate else None,
            },
        )
        self._head = self._file.signed_head().to_bytes()
