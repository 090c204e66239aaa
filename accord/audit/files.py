"""The files an audited folder holds: their names, and a participant's kept head."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.core.ledger_store import read_lines
from accord.crypto import ledger_chain as chain
from accord.errors import IntegrityError, UsageError

LEDGER_FILE = "ledger.jsonl"
HEAD_FILE = "federation_head.json"
ROSTER_FILE = "roster.json"
PINNED_KEY_FILE = "coordinator_ledger.pub"
"""In a startup kit: the coordinator's ledger key, certified by the CA at provisioning."""
KIT_FILE = "kit.toml"
"""In a startup kit: the coordinator ledger key and the CA's signature over it."""
CA_FILE = "ca.pem"
ROSTER_SOURCE = "roster (certified by the CA)"
UNAUTHENTICATED_FIX = (
    "pin the federation's CA: --ca CA.pem (or a kit folder), or --ca-fingerprint SHA256 "
    "for a ca.pem under the audited folder; --unauthenticated checks consistency only"
)


@dataclass
class KeptHead:
    """A participant's `federation_head.json`."""

    path: Path
    holder: str
    public_key: bytes | None
    head: chain.SignedHead | None
    anomalies: list[str]


def find(roots: Iterable[Path], name: str) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            if root.name == name or (name == LEDGER_FILE and root.suffix == ".jsonl"):
                found.append(root)
            elif (root.parent / name).is_file():
                found.append(root.parent / name)
        elif root.is_dir():
            found.extend(sorted(root.rglob(name)))
        elif name == LEDGER_FILE:
            raise UsageError(f"{root}: no such file or folder")
    unique: list[Path] = []
    for path in found:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def opening_entry(lines: Sequence[str]) -> dict[str, Any]:
    for line in lines:
        if line.strip():
            try:
                entry = chain.Entry.from_line(line)
            except IntegrityError:
                return {}
            return dict(entry.body) if entry.kind == chain.OPEN else {}
    return {}


def kept_head(path: Path) -> KeptHead:
    from accord.participant.federation_head import read_federation_head

    holder = path.parent.name
    ledger_path = path.parent / LEDGER_FILE
    if ledger_path.exists():
        holder = str(opening_entry(read_lines(ledger_path)).get("participant", holder))
    try:
        key, head, anomalies = read_federation_head(path)
    except IntegrityError as error:
        return KeptHead(path, holder, None, None, [f"unreadable: {error}"])
    return KeptHead(path, holder, key, head, anomalies)
