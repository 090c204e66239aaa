"""What the audit trusts: keys and rosters only as far as they chain to the pinned CA."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_trust import certified_identity
from accord.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib


from accord.audit.files import CA_FILE, KIT_FILE, PINNED_KEY_FILE, ROSTER_FILE, KeptHead, find


def load_pinned_ca(
    given: Path | None, fingerprint: str | None, roots: Sequence[Path]
) -> tuple[Any, str] | None:
    """The CA the auditor pins: `--ca`, else a `ca.pem` under `roots` with `--ca-fingerprint`."""
    from cryptography import x509

    from accord.core.pki import fingerprint as sha256_of
    from accord.core.pki import normalize_fingerprint

    wanted = None
    if fingerprint is not None:
        try:
            wanted = normalize_fingerprint(fingerprint, what="--ca-fingerprint")
        except (ConfigError, UsageError):
            raise ConfigError(
                f"--ca-fingerprint {fingerprint}: must be the CA certificate's SHA-256, 64 hex "
                "digits (as `accord provision` printed it)"
            ) from None
    if given is not None:
        path = given / CA_FILE if given.is_dir() else given
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            raise ConfigError(
                f"--ca {given}: not a PEM CA certificate (name the federation's ca.pem, or a "
                "kit folder holding one)"
            ) from None
        if wanted is not None and sha256_of(certificate) != wanted:
            raise ConfigError(
                f"--ca {path}: its SHA-256 is {sha256_of(certificate)}, not the pinned "
                f"--ca-fingerprint {wanted}: confirm the fingerprint with the operator"
            )
        return certificate, f"--ca {path}"
    if wanted is None:
        return None
    for path in find([r for r in roots if r.is_dir()], CA_FILE):
        try:
            certificate = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        if sha256_of(certificate) == wanted:
            return certificate, f"{path} (pinned by --ca-fingerprint)"
    where = ", ".join(str(r) for r in roots)
    raise ConfigError(
        f"--ca-fingerprint {wanted}: no {CA_FILE} under {where} has this SHA-256; pass the "
        "federation's CA certificate with --ca, or confirm the fingerprint with the operator"
    )


def roster_keys(
    roster: Path | None, roots: Sequence[Path], notes: list[str], ca: Any | None
) -> dict[str, bytes]:
    """The identity keys of the roster's entries whose certificates the pinned CA signed."""
    from accord.coordinator.roster import RosterSnapshot
    from accord.errors import BadSignature

    candidates = (
        [roster] if roster is not None else find([r for r in roots if r.is_dir()], ROSTER_FILE)
    )
    for path in candidates:
        try:
            snapshot = RosterSnapshot.from_bytes(path.read_bytes(), source=str(path))
        except (ConfigError, OSError):
            if roster is not None:
                raise ConfigError(f"--roster {path}: not a readable roster") from None
            continue
        if ca is None:
            notes.append(f"the roster {path} was not used: no CA pinned to check its entries")
            return {}
        keys: dict[str, bytes] = {}
        for entry in snapshot.entries:
            where = f"the roster entry of {entry.participant_id} in {path}"
            try:
                certified = certified_identity(ca, entry.certificate_der, entry.participant_id)
            except (BadSignature, ValueError) as error:
                notes.append(f"{where} is not trusted: {error}")
                continue
            if certified != entry.identity_public_key:
                notes.append(
                    f"{where} is not trusted: its identity key is not the one its certificate "
                    "certifies"
                )
                continue
            keys[entry.participant_id] = certified
        notes.append(f"participants' identity keys from the roster {path}, certified by the CA")
        return keys
    return {}


def pinned_key(
    given: str | None, roots: Sequence[Path], notes: list[str], ca: Any | None
) -> tuple[bytes, str] | None:
    """The coordinator ledger key: `--coordinator-key`, else a kit's the pinned CA certified."""
    if given is not None:
        return _given_key(given, ca)
    folders = [r for r in roots if r.is_dir()]
    if ca is None:
        if find(folders, PINNED_KEY_FILE):
            notes.append(
                f"the kits' {PINNED_KEY_FILE} under the audited folder were not used: no CA "
                "pinned to check them"
            )
        return None
    found: dict[bytes, Path] = {}
    for path in find(folders, KIT_FILE):
        certified = _certified_kit_key(path, ca)
        if certified is None:
            notes.append(
                f"{path}: its coordinator_ledger_key is missing or not certified by the CA; "
                "not trusted"
            )
            continue
        found.setdefault(certified, path)
    if len(found) == 1:
        key, path = next(iter(found.items()))
        return key, f"a kit certified by the CA ({path})"
    if len(found) > 1:
        notes.append(
            "the kits found pin different CA-certified coordinator ledger keys; pass "
            "--coordinator-key"
        )
    return None


def _given_key(given: str, ca: Any | None) -> tuple[bytes, str]:
    """The key `--coordinator-key` names: a kit folder, a PEM file or 64 hex digits."""
    from accord.crypto import ledger_key

    path = Path(given)
    kit_file = path / KIT_FILE if path.is_dir() else None
    if path.is_dir():
        path = path / PINNED_KEY_FILE
    if path.is_file():
        key = ledger_key.from_pem(path.read_bytes(), what=str(path))
        # A kit folder carries the CA's certification: with a pinned CA, it must hold.
        if (
            ca is not None
            and kit_file is not None
            and kit_file.is_file()
            and _certified_kit_key(kit_file, ca) != key
        ):
            raise ConfigError(
                f"--coordinator-key {given}: the pinned CA did not certify its "
                f"{PINNED_KEY_FILE} ({kit_file}); name a kit the operator packaged, or "
                "the key itself (64 hex digits) as the operator gave it"
            )
        return key, f"--coordinator-key {path}"
    try:
        raw = bytes.fromhex(given)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"--coordinator-key {given}: not a kit folder, a {PINNED_KEY_FILE} file, or 64 "
            "hex digits"
        )
    return raw, "--coordinator-key"


def _certified_kit_key(path: Path, ca: Any) -> bytes | None:
    """The coordinator ledger key a `kit.toml` holds, if the CA certified it (else None)."""
    from accord.crypto import ledger_key
    from accord.errors import BadSignature

    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
        key = bytes.fromhex(str(manifest["coordinator_ledger_key"]))
        signature = bytes.fromhex(str(manifest["coordinator_ledger_key_signature"]))
        ledger_key.check(ca, str(manifest["federation_id"]), key, signature)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, ValueError):
        return None
    except (BadSignature, ConfigError):
        return None
    return key


def federation_ledger_key(
    opening: dict[str, Any],
    heads: Sequence[KeptHead],
    notes: list[str],
    pinned_by_kit: tuple[bytes, str] | None = None,
) -> tuple[bytes | None, str, list[tuple[str, chain.SignedHead]]]:
    ledger_id = opening.get("ledger_id")
    mine = [h for h in heads if h.head is not None and h.head.ledger_id == ledger_id]
    kept = [(h.holder, h.head) for h in mine if h.head is not None]
    if pinned_by_kit is not None:
        return pinned_by_kit[0], pinned_by_kit[1], kept
    pinned = {h.public_key for h in mine if h.public_key is not None}
    if len(pinned) == 1:
        return pinned.pop(), "kept heads", kept
    if len(pinned) > 1:
        notes.append(
            "the participants pinned different coordinator ledger keys; checked with the key "
            "the ledger names itself"
        )
    return None, "the ledger itself", kept
