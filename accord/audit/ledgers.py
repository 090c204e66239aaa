"""The ledgers an audit reads: found under the given paths, verified, cross-checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.audit.files import (
    HEAD_FILE,
    LEDGER_FILE,
    ROSTER_SOURCE,
    KeptHead,
    find,
    kept_head,
    opening_entry,
)
from accord.audit.trust import federation_ledger_key, load_pinned_ca, pinned_key, roster_keys
from accord.core.ledger_store import read_lines
from accord.crypto.ledger_report import Finding, Problem, Report
from accord.crypto.ledger_trust import missing_members
from accord.crypto.ledger_verify import verify_chain
from accord.errors import UsageError

# ---- loading ----


@dataclass
class Ledger:
    """One ledger file, verified.

    Attributes:
        path: the file.
        role: "participant" or "coordinator" (from its open entry; "?" if unreadable).
        name: the participant's id, or "coordinator".
        federation_id: the federation it belongs to.
        key_source: where the verifying key came from ("roster", "--coordinator-key ...",
            "the kits (...)" that pin the coordinator's key, "kept heads", "the ledger
            itself").
        report: what `crypto.ledger_verify.verify_chain` found.
        extra: findings from the cross-checks between ledgers.
        authenticated: the verifying key chains to the pinned CA (or the auditor named it).
    """

    path: Path
    role: str
    name: str
    federation_id: str
    key_source: str
    report: Report
    extra: list[Finding] = field(default_factory=list)
    authenticated: bool = False

    @property
    def findings(self) -> list[Finding]:
        return [*self.report.findings, *self.extra]

    @property
    def ok(self) -> bool:
        return not self.findings

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of its entries of one kind, in order."""
        return [dict(entry.body) for entry in self.report.entries if entry.kind == kind]


@dataclass(frozen=True)
class Missing:
    """A member the federation ledger names whose own ledger the auditor was not given.

    Attributes:
        participant: the member's id.
        rounds: the rounds of the federation ledger that name it (upload or survivor).
        unreadable: its ledger file, when one was found that holds no readable entry
            (emptied, or its open entry destroyed); None when there is no file at all.
    """

    participant: str
    rounds: tuple[int, ...]
    unreadable: Path | None = None

    @property
    def detail(self) -> str:
        rounds = ", ".join(str(r) for r in self.rounds)
        named = f"the federation ledger names {self.participant} (rounds {rounds}), but "
        if self.unreadable is not None:
            return named + f"its ledger {self.unreadable} is empty or unreadable"
        return named + f"no ledger of {self.participant} was found"

    def to_json(self) -> dict[str, Any]:
        return {
            "participant": self.participant,
            "rounds": list(self.rounds),
            "ledger": None if self.unreadable is None else str(self.unreadable),
            "detail": self.detail,
        }


@dataclass
class Audit:
    """Every ledger found, verified and cross-checked.

    Attributes:
        ledgers: each ledger file found.
        heads: the federation heads the participants kept.
        notes: what the auditor should know (key sources, files not trusted).
        missing: members the federation ledger names with no ledger found.
        ca_source: where the pinned CA came from (None: none was pinned).
    """

    ledgers: list[Ledger]
    heads: list[KeptHead]
    notes: list[str]
    missing: list[Missing] = field(default_factory=list)
    ca_source: str | None = None

    @property
    def participants(self) -> list[Ledger]:
        return sorted((x for x in self.ledgers if x.role == "participant"), key=lambda x: x.name)

    @property
    def coordinators(self) -> list[Ledger]:
        return [x for x in self.ledgers if x.role == "coordinator"]

    @property
    def ok(self) -> bool:
        """Every ledger verifies and no member's ledger is missing."""
        return all(x.ok for x in self.ledgers) and not self.missing

    @property
    def authenticated(self) -> bool:
        """Every ledger was checked with a key that chains to the pinned CA."""
        return all(x.authenticated for x in self.ledgers)


def load(
    paths: Sequence[Path],
    roster: Path | None = None,
    *,
    coordinator_key: str | None = None,
    ca: Path | None = None,
    ca_fingerprint: str | None = None,
) -> Audit:
    """Find, verify and cross-check every ledger under `paths` (the working folder if none).

    Args:
        paths: ledger files or folders.
        roster: the roster with the participants' identity keys (else one found); its
            entries are used only where the pinned CA certified them.
        coordinator_key: the coordinator ledger key the auditor names: a kit folder, a
            PEM file or 64 hex digits (else one a kit's `kit.toml` under `paths` holds,
            certified by the pinned CA).
        ca: the federation's CA certificate (PEM), or a folder holding `ca.pem`.
        ca_fingerprint: its SHA-256; pins `ca`, or else a `ca.pem` found under `paths`.

    Raises:
        UsageError: no ledger was found.
        ConfigError: the roster, the CA or the coordinator key cannot be read, or no CA
            has the pinned fingerprint.
    """
    roots = list(paths) or [Path.cwd()]
    files = find(roots, LEDGER_FILE)
    if not files:
        where = ", ".join(str(p) for p in roots)
        raise UsageError(
            f"no {LEDGER_FILE} under {where}; name a ledger file or a folder holding them "
            "(e.g. an `accord demo` workdir)"
        )
    notes: list[str] = []
    pinned_ca = load_pinned_ca(ca, ca_fingerprint, roots)
    certificate = pinned_ca[0] if pinned_ca is not None else None
    keys = roster_keys(roster, roots, notes, certificate)
    pinned = pinned_key(coordinator_key, roots, notes, certificate)
    heads = [kept_head(path) for path in find(roots, HEAD_FILE)]
    ledgers = [_verified(path, keys, heads, notes, pinned) for path in files]
    audit = Audit(ledgers, heads, notes, ca_source=pinned_ca[1] if pinned_ca else None)
    if pinned_ca is None:
        notes.append("no CA pinned: no key found under the audited folder was trusted")
    _cross_check(audit)
    return audit


def _verified(
    path: Path,
    keys: dict[str, bytes],
    heads: list[KeptHead],
    notes: list[str],
    pinned: tuple[bytes, str] | None,
) -> Ledger:
    """One ledger file, verified with the key its role calls for."""
    lines = read_lines(path)
    opening = opening_entry(lines)
    role = str(opening.get("role", "?"))
    federation_id = str(opening.get("federation_id", "?"))
    if role == "coordinator":
        name = "coordinator"
        key, source, kept = federation_ledger_key(opening, heads, notes, pinned)
        report = verify_chain(lines, key, heads=kept)
        authenticated = pinned is not None and key == pinned[0]
    else:
        name = str(opening.get("participant", path.parent.name))
        key = keys.get(name)
        source = ROSTER_SOURCE if key is not None else "the ledger itself"
        report = verify_chain(lines, key)
        authenticated = key is not None
    return Ledger(path, role, name, federation_id, source, report, authenticated=authenticated)


def _cross_check(audit: Audit) -> None:
    """Each member and upload the federation ledger records must be in a participant's ledger."""
    by_name = {x.name: x for x in audit.participants}
    unreadable = {
        x.name: x.path for x in audit.ledgers if x.role not in ("participant", "coordinator")
    }
    for coordinator in audit.coordinators:
        missing = missing_members(coordinator.bodies("round"), list(by_name))
        for participant, rounds in missing.items():
            if participant not in {m.participant for m in audit.missing}:
                found = unreadable.get(participant)
                audit.missing.append(Missing(participant, tuple(rounds), found))
        for head in audit.heads:
            for anomaly in head.anomalies:
                coordinator.extra.append(
                    Finding(Problem.BAD_HEAD, f"{head.holder} noted: {anomaly}")
                )
        for body in coordinator.bodies("round"):
            for name, digest in sorted(dict(body.get("uploads", {})).items()):
                member = by_name.get(name)
                if member is None or member.federation_id != coordinator.federation_id:
                    continue
                finding = _upload_finding(member, int(body["round"]), str(digest))
                if finding is not None:
                    member.extra.append(finding)


def _upload_finding(participant: Ledger, round: int, digest: str) -> Finding | None:
    # The digest is an `upload` entry's; in ledgers from before uploads were streamed as
    # they were protected, the `round` entry's.
    rounds = [
        (entry.seq, dict(entry.body))
        for entry in participant.report.entries
        if entry.kind in ("round", "upload")
    ]
    matching = [
        (seq, body) for seq, body in rounds if body.get("round") == round and "upload" in body
    ]
    if any(dict(body.get("upload", {})).get("sha256") == digest for _, body in matching):
        return None
    if matching:
        return Finding(
            Problem.EDITED,
            f"its round {round} upload digest differs from the one the federation ledger received",
            matching[0][0],
        )
    last_round = max((int(body.get("round", 0)) for _, body in rounds), default=0)
    if last_round < round:
        return Finding(
            Problem.TRUNCATED,
            f"the federation ledger received its round {round} upload; this ledger ends at "
            f"round {last_round}: its tail was cut off",
        )
    return Finding(
        Problem.MISSING,
        f"the federation ledger received its round {round} upload; this ledger has no entry for it",
    )
