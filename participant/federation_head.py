"""The federation ledger's head a participant was shown: `state_dir/federation_head.json`.

Every task carries the coordinator's signed federation ledger head. The daemon keeps the
latest that verifies and moves forward (`keep_federation_head`), so that `accord audit
verify` can later prove the federation ledger was not cut back or forked; with a kit, a
head the kit's pinned key did not sign stops the daemon. `read_federation_head` reads
what was kept, with the anomalies noted on the way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accord.crypto import ledger_chain as chain
from accord.errors import BadSignature, IntegrityError
from accord.participant.state_files import write_json

FEDERATION_HEAD_FILE = "federation_head.json"
"""In `state_dir`: the federation ledger's latest signed head this participant was shown."""

HEAD_FILE_VERSION = 1


def keep_federation_head(
    state_dir: Path, head: bytes, public_key: bytes, *, pinned: bytes | None = None
) -> None:
    """Keep the federation ledger's signed head, if it verifies and moves forward.

    With a startup kit, `pinned` is the coordinator's ledger key the kit pins (certified
    by the CA at provisioning): a head that is missing, signed by another key or not
    verifying under it is refused with `IntegrityError`, and the daemon stops, since its
    coordinator is not the one it was provisioned for. Without a kit (insecure
    plaintext only) the first key seen is kept (trust on first use). Either way a head
    behind the kept one (the coordinator's ledger lost entries) is never kept; it is
    noted under `anomalies` for `accord audit verify`, as are, without a pin, a head that
    does not verify and a changed key.

    Raises:
        IntegrityError: `pinned` is given and the head is not signed by it.
    """
    if pinned is not None:
        _check_pinned(head, public_key, pinned)
    if not head:
        return
    path = state_dir / FEDERATION_HEAD_FILE
    try:
        kept = _read_head_file(path)
    except IntegrityError:
        return  # a damaged file is evidence too: `accord audit verify` reports it
    anomalies: list[str] = list(kept.get("anomalies", []))
    trusted = kept.get("public_key")
    if pinned is not None and trusted is not None and trusted != pinned.hex():
        # Kept on first use before the kit pinned the key: the pin wins, the old key is noted.
        anomalies.append(
            f"the kept head was signed by {trusted[:16]}..., not by the coordinator ledger key "
            f"the kit pins ({pinned.hex()[:16]}...); replaced"
        )
        kept = {"anomalies": anomalies}
        trusted = None
    verdict = _judge(head, public_key, trusted, kept.get("head"))
    if verdict is _UNCHANGED:
        return
    if isinstance(verdict, chain.SignedHead):
        _write(path, public_key=public_key.hex(), head=verdict.to_json(), anomalies=anomalies)
    elif verdict not in anomalies:
        anomalies.append(verdict)
        _write(path, **{**kept, "anomalies": anomalies})


_UNCHANGED = "unchanged"


def _judge(
    head: bytes, public_key: bytes, trusted: str | None, previous: Any
) -> chain.SignedHead | str:
    """The head to keep, `_UNCHANGED` (it is the kept one), or the anomaly to note."""
    try:
        signed = chain.SignedHead.from_bytes(head)
        chain.verify_head(signed, public_key)
    except (IntegrityError, BadSignature) as error:
        return f"a head that does not verify was shown ({type(error).__name__})"
    if trusted is not None and trusted != public_key.hex():
        return (
            f"the coordinator's ledger key changed from {trusted[:16]}... to "
            f"{public_key.hex()[:16]}...; the new head was not kept"
        )
    if previous is not None:
        old = chain.SignedHead.from_json(previous)
        if signed.count < old.count or (
            signed.count == old.count and signed.head_hash != old.head_hash
        ):
            return (
                f"a head of {signed.count} entries was shown after one of {old.count}: the "
                "federation ledger went back or forked"
            )
        if signed.count == old.count:
            return _UNCHANGED
    return signed


def _write(path: Path, **fields: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**fields, "version": HEAD_FILE_VERSION})


def _check_pinned(head: bytes, public_key: bytes, pinned: bytes) -> None:
    """Refuse a federation ledger head that the kit's pinned key did not sign."""
    fix = (
        "this is not the ledger of the coordinator the kit was provisioned for; check the "
        "coordinator address, or re-package the kit if the federation was provisioned anew"
    )
    if not head:
        raise IntegrityError(
            "the coordinator's task carries no signed federation ledger head, but the kit pins "
            f"its ledger key ({pinned.hex()[:16]}...): {fix}"
        )
    if public_key != pinned:
        raise IntegrityError(
            f"the federation ledger head is signed by key {public_key.hex()[:16]}..., not by the "
            f"coordinator ledger key the kit pins ({pinned.hex()[:16]}...): {fix}"
        )
    try:
        chain.verify_head(chain.SignedHead.from_bytes(head), pinned)
    except (IntegrityError, BadSignature):
        raise IntegrityError(
            "the federation ledger head does not verify under the coordinator ledger key the "
            f"kit pins ({pinned.hex()[:16]}...): {fix}"
        ) from None


def read_federation_head(path: Path) -> tuple[bytes | None, chain.SignedHead | None, list[str]]:
    """The kept key, head and anomalies of a `federation_head.json`.

    Raises:
        IntegrityError: the file is not a kept head.
    """
    kept = _read_head_file(path)
    key = kept.get("public_key")
    head = kept.get("head")
    return (
        bytes.fromhex(key) if isinstance(key, str) else None,
        chain.SignedHead.from_json(head) if head is not None else None,
        [str(a) for a in kept.get("anomalies", [])],
    )


def _read_head_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"{path}: not a kept federation head") from None
    if not isinstance(data, dict) or data.get("version") != HEAD_FILE_VERSION:
        raise IntegrityError(f"{path}: not a kept federation head (format version)")
    return data
