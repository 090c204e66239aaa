"""The federation ledger: `state_dir/ledger.jsonl`, one signed entry per finished round.

The orchestrator calls `note_upload` when an upload's receipt verified and
`round_finished` when a round is done or aborted, and `round_aborted` for a round
that a restart found in flight and aborted (`persistence.FederationRecords.resume`);
every task it hands out carries the ledger's latest signed head and public key
(`stamp`), which each participant keeps (`federation_head.json`) so that `accord audit
verify` can tell if this ledger's tail was cut off later.

The key. With mTLS it is the coordinator's Ed25519 ledger key made at provisioning,
`tls_dir/ledger.key` (`accord.crypto.ledger_key`: the CA certifies its public key, and every
startup kit pins it, so participants refuse heads signed by any other key); the
coordinator never makes one of its own then. Only with `insecure_plaintext` (no kits,
nothing to pin) is it `state_dir/coordinator_identity.key` (PKCS#8 PEM, 0600), made on
first start, and participants trust it on first use.

Entries (floats as exact decimal strings, see `accord.crypto.ledger_chain`):

    open    ledger_id "<federation>/coordinator", public_key, role, federation_id
    round   round, outcome ("done" | "aborted"), reason, profile, federation_size,
            selected, survivors, quorum (the round's threshold), participation_rate
            (selected / federation_size), update_clip_norm, modulus_bits,
            client_dp (see below), uploads {participant: SHA-256 over its chunks},
            uploads_known (False for a round resumed after a restart, whose receipts
            were not kept), aggregate_sha256 (over the aggregate's chunks, in order;
            None when aborted)

`client_dp` is {mechanism "none"} without client-level noise; otherwise the round's
configuration and what the aggregate is guaranteed to carry (`crypto/client_dp.py`):
{mechanism "skellam", noise_multiplier (configured z), honest_fraction, delta,
honest_participants (h = ceil(f n)), share_mu and share_std_levels (each participant's
share, in quantized levels), sigma_levels, level (one quantized level in update units)},
and for a done round also survivors, noise_std_levels (sqrt(max(0, s - (n - h)) 2 mu)),
sensitivity_levels (C / step + sqrt(d)) and guaranteed_noise_multiplier (their ratio:
what `accord audit budget` accounts, with participation_rate).

Nothing here reveals an update: the digests are of ciphertexts or masked vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.core import ledger_store
from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import write_public
from accord.core.private_files import read_private
from accord.crypto import client_dp, identity, integrity, ledger_key
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_book import LedgerBook
from accord.crypto.ledger_encoding import decimal
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.round import CoordinatorRound
from accord.errors import ConfigError, IntegrityError, UsageError
from accord.wire.tasks import Assignment

if TYPE_CHECKING:
    from accord.coordinator.operator.ca import CertificateAuthority

LEDGER_FILE = "ledger.jsonl"
KEY_FILE = "coordinator_identity.key"
"""In `state_dir`, without TLS only: the ledger key made on first start."""
PROVISIONED_KEY_FILE = "ledger.key"
"""In the coordinator's provisioned folder (`tls_dir`): the ledger key kits pin."""
CERTIFIED_KEY_FILE = "ledger_key.json"
"""In the CA folder: the ledger key's public half and the CA's certification of it."""
CERTIFIED_KEY_FORMAT = "accord/ledger-key"
CERTIFIED_KEY_VERSION = 1
ROUND = "round"


def ledger_id(federation_id: str) -> str:
    """The id of a federation's ledger."""
    return f"{federation_id}/coordinator"


class FederationLedger:
    """The coordinator's ledger (see the module docstring); not thread-safe on its own.

    Args:
        state_dir: the coordinator's state folder.
        federation_id: the federation.
        key_file: the provisioned ledger key (`tls_dir/ledger.key`); None only without
            TLS, where `state_dir/coordinator_identity.key` is made on first start.

    Raises:
        IntegrityError: an existing ledger does not verify with the coordinator's key.
        ConfigError: the key file is missing, unreadable or readable by others.
    """

    def __init__(
        self, state_dir: Path, federation_id: str, *, key_file: Path | None = None
    ) -> None:
        if key_file is None:
            own_key = state_dir / KEY_FILE
            private = load_key(own_key) if own_key.exists() else _make_key(own_key)
        else:
            if not key_file.exists():
                raise ConfigError(
                    f"{key_file}: no ledger key; the participants' kits pin the one made at "
                    "provisioning (`accord provision ledger-key --ca CA_DIR --coordinator-dir "
                    f"{key_file.parent}` makes one for a federation provisioned before)"
                )
            private = load_key(key_file)
            _check_started_with(state_dir / LEDGER_FILE, private, key_file)
        self._path = state_dir / LEDGER_FILE
        lines, torn = ledger_store.read_for_append(self._path)
        self._book, new = LedgerBook.open(
            lines,
            ledger_id(federation_id),
            private,
            open_body={"role": "coordinator", "federation_id": federation_id},
            torn_tail=torn,
            where=str(self._path),
        )
        ledger_store.append_lines(self._path, new)
        self._head = self._book.signed_head().to_bytes()
        self._uploads: dict[int, dict[str, str]] = {}

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 key that signs this ledger."""
        return self._book.public_key

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
        survivors = list(current.outcome.survivors) if done else []
        self._append_round(
            config,
            outcome="done" if done else "aborted",
            reason="" if done else current.abort_reason,
            federation_size=federation_size,
            survivors=survivors,
            uploads=uploads,
            uploads_known=uploads is not None or not done,
            aggregate_sha256=digest.hexdigest() if done and aggregate else None,
        )

    def round_aborted(self, config: RoundConfig, reason: str, *, federation_size: int) -> None:
        """Record a round aborted outside the round machine (a restart found it in flight).

        Idempotent: a round the ledger already records is left alone, so a crash between
        this entry and the store's own record cannot write it twice.
        """
        if config.round in self.recorded_rounds():
            return
        self._uploads.pop(config.round, None)
        self._append_round(
            config,
            outcome="aborted",
            reason=reason,
            federation_size=federation_size,
            survivors=[],
            uploads=None,
            uploads_known=True,
            aggregate_sha256=None,
        )

    def recorded_rounds(self) -> set[int]:
        """The rounds this ledger has a `round` entry for."""
        return {int(e.body["round"]) for e in self._book.entries if e.kind == ROUND}

    def _append_round(
        self,
        config: RoundConfig,
        *,
        outcome: str,
        reason: str,
        federation_size: int,
        survivors: list[str],
        uploads: dict[str, str] | None,
        uploads_known: bool,
        aggregate_sha256: str | None,
    ) -> None:
        book, lines = self._book.append(
            ROUND,
            {
                "round": config.round,
                "outcome": outcome,
                "reason": reason,
                "profile": config.profile.value,
                "federation_size": federation_size,
                "selected": list(config.selected),
                "survivors": survivors,
                "quorum": config.threshold,
                "participation_rate": decimal(len(config.selected) / max(1, federation_size)),
                "update_clip_norm": decimal(config.quant.clip_norm),
                "modulus_bits": config.quant.modulus_bits,
                "client_dp": client_dp_record(
                    config, survivors=len(survivors) if outcome == "done" else None
                ),
                "uploads": dict(sorted((uploads or {}).items())),
                "uploads_known": uploads_known,
                "aggregate_sha256": aggregate_sha256,
            },
        )
        ledger_store.append_lines(self._path, lines)  # on disk before the book moves on
        self._book = book
        self._head = book.signed_head().to_bytes()


def _check_started_with(path: Path, private: bytes, key_file: Path) -> None:
    """Refuse, with the way out, a ledger begun under another key (before kits pinned one)."""
    if not path.exists():
        return
    first = next((line for line in ledger_store.read_lines(path) if line.strip()), "")
    try:
        started = str(chain.Entry.from_line(first).body.get("public_key", ""))
    except IntegrityError:
        return  # `LedgerBook.open` names what is wrong with it
    ours = identity.public_from_private(private).hex()
    if started and started != ours:
        raise ConfigError(
            f"{path} was begun with ledger key {started[:16]}..., not with {key_file} "
            f"({ours[:16]}...), which the kits pin: move the ledger aside (keep it as "
            "evidence) to start a new one; or, if it is the key this coordinator made itself "
            f"({KEY_FILE} in its state folder), make that the provisioned key: remove "
            f"{key_file} and CA_DIR/{CERTIFIED_KEY_FILE}, copy it to {key_file}, run `accord "
            "provision ledger-key`, and approve the participants' requests again"
        )


def load_key(path: Path) -> bytes:
    """The raw Ed25519 ledger key in `path` (PKCS#8 PEM), refused if others may read it.

    Raises:
        ConfigError: the file is missing, holds no Ed25519 key, or others may read it.
    """
    pem = read_private(path, "the ledger key", missing="no such ledger key")
    return identity.load_private(pem, what=f"ledger key {path}")


def save_key(path: Path, private: bytes) -> None:
    """Write a new ledger key file (PKCS#8 PEM, mode 0600), fsynced; never overwrites one.

    Raises:
        FileExistsError: `path` exists.
    """
    ledger_store.write_key(path, identity.dump_private(private))


def _make_key(path: Path) -> bytes:
    private = identity.generate_identity().private
    save_key(path, private)
    return private


def client_dp_record(config: RoundConfig, *, survivors: int | None) -> dict[str, Any]:
    """The round's client-level noise for the ledger (see the module docstring).

    Args:
        config: the round.
        survivors: how many uploads the aggregate sums; None for a round without one.
    """
    noise = config.client_noise
    if noise is None:
        return {"mechanism": "none"}
    selected = len(config.selected)
    mu = noise.share_mu(config.quant, selected)
    record: dict[str, Any] = {
        "mechanism": client_dp.MECHANISM,
        "noise_multiplier": decimal(noise.noise_multiplier),
        "honest_fraction": decimal(noise.honest_fraction),
        "delta": decimal(noise.delta),
        "honest_participants": client_dp.honest_participants(noise.honest_fraction, selected),
        "share_mu": decimal(mu),
        "share_std_levels": decimal(math.sqrt(2.0 * mu)),
        "sigma_levels": decimal(noise.sigma_levels(config.quant)),
        "level": decimal(config.quant.step),
    }
    if survivors is not None:
        sure = client_dp.guarantee(
            noise,
            config.quant,
            selected=selected,
            survivors=survivors,
            parameters=integrity.adapter_parameters(config.element_count, config.profile),
        )
        record.update(
            survivors=survivors,
            noise_std_levels=decimal(sure.noise_std_levels),
            sensitivity_levels=decimal(sure.sensitivity_levels),
            guaranteed_noise_multiplier=decimal(sure.noise_multiplier),
        )
    return record


# ---- provisioning: the key kits pin ----


@dataclass(frozen=True)
class CertifiedKey:
    """The coordinator's ledger public key and the CA's signature on it (`crypto.ledger_key`)."""

    federation_id: str
    public_key: bytes
    signature: bytes

    def response_fields(self) -> dict[str, str]:
        """The fields `approve` adds to a participant's response."""
        return {
            "coordinator_ledger_key": self.public_key.hex(),
            "coordinator_ledger_key_signature": self.signature.hex(),
        }


def provision_key(authority: CertificateAuthority, coordinator_dir: Path) -> CertifiedKey:
    """Make the coordinator's ledger key in its folder and have the CA certify it.

    Idempotent and never replaces a key kits may pin: with a certified key and its
    private half already in place nothing changes; a `ledger.key` the CA has not
    certified yet (a federation provisioned before kits pinned the key) is adopted.

    Args:
        authority: the federation's CA (its key signs the certification).
        coordinator_dir: the coordinator's provisioned folder; receives `ledger.key` (0600).

    Returns:
        The certified public key; the CA folder keeps it in `ledger_key.json`.

    Raises:
        UsageError: the folder holds a ledger key other than the one the CA certified.
    """
    key_path = Path(coordinator_dir) / PROVISIONED_KEY_FILE
    recorded = certified_key(authority.root)
    if key_path.exists():
        public = identity.public_from_private(load_key(key_path))
        if recorded is not None and recorded.public_key != public:
            raise UsageError(
                f"{key_path} is not the ledger key the CA certified "
                f"({recorded.public_key.hex()[:16]}...), which every kit pins; restore that "
                "key file rather than replacing it"
            )
    elif recorded is not None:
        return recorded  # its private half lives in another coordinator folder
    else:
        public = identity.public_from_private(_make_key(key_path))
    if recorded is not None:
        return recorded
    certified = CertifiedKey(
        federation_id=authority.federation_id,
        public_key=public,
        signature=ledger_key.certify(authority.private_key(), authority.federation_id, public),
    )
    write_public(
        authority.root / CERTIFIED_KEY_FILE,
        dump_versioned_json(
            {
                "federation_id": certified.federation_id,
                "public_key": certified.public_key.hex(),
                "signature": certified.signature.hex(),
            },
            document_format=CERTIFIED_KEY_FORMAT,
            version=CERTIFIED_KEY_VERSION,
        ),
    )
    return certified


def certified_key(ca_dir: Path) -> CertifiedKey | None:
    """The CA folder's certified ledger key; None if it has none yet.

    Raises:
        ConfigError: the file is malformed.
    """
    path = Path(ca_dir) / CERTIFIED_KEY_FILE
    if not path.exists():
        return None
    document = read_versioned_json(
        path,
        expected_format=CERTIFIED_KEY_FORMAT,
        what="a certified ledger key",
        max_version=CERTIFIED_KEY_VERSION,
        fix="accord provision ledger-key",
    )
    try:
        return CertifiedKey(
            federation_id=str(document["federation_id"]),
            public_key=bytes.fromhex(document["public_key"]),
            signature=bytes.fromhex(document["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: not a certified ledger key") from None
