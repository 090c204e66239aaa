"""`accord audit`: verify the ledgers, report the privacy budgets spent and the contributions.

    accord audit verify PATH ...           every chain, signature and checkpoint; each
                                           participant's kept head of the federation
                                           ledger; each upload the federation ledger
                                           records against the participant's own ledger.
                                           Exit status 0 only when everything verifies.
    accord audit budget [--ledger PATH ...] [--accountant rdp|pld|prv|gdp] [--delta D]
                        [--json] [--plot FILE.png]
                                           epsilon per participant, recomputed from the
                                           released runs; the federation's record-level
                                           budget (maximum and composition) and its
                                           client-level budget
    accord audit contributions [--ledger PATH ...] [--json]
                                           per participant and round: samples, the
                                           validation gain it measured, flagged share

A PATH is a `ledger.jsonl` file or a folder searched for them (an `accord demo` workdir
holds `coordinator/ledger.jsonl` and `participants/<name>/ledger.jsonl`), along with
the `federation_head.json` files the participants kept, a `roster.json` and the
startup kits' `kit.toml`.

Trust (issue 12, finding 7): nothing found in the audited folder is trusted on its own,
since whoever could edit a ledger could also plant a roster or a key next to it. The
auditor pins the federation's CA (`--ca FILE.pem | FOLDER`, or `--ca-fingerprint
SHA256` to pin a `ca.pem` found under PATH). Then a participant's ledger is checked
with the identity key the CA certified in its roster entry's client certificate
(`--roster`, else a `roster.json` found), and the federation ledger with the
coordinator ledger key the CA certified in a kit's `kit.toml` (or the key the auditor
names with `--coordinator-key KIT_DIR | FILE.pub | HEX`). A key that does not chain to
the CA is not used: the ledger is checked with the key it names itself (or, for the
federation ledger, the key the participants kept), which proves it consistent, not who
wrote it, and the output says "not authenticated". `verify` exits 1 then, unless
`--unauthenticated` asks for the consistency check only.

A member the federation ledger names (an upload or a survivor) whose own ledger is
missing, or empty, is a failure of `verify` and is listed, never dropped, by `budget`
and `contributions`.

Nothing here reads or prints an update: the ledgers hold parameters, counts, scalars
the participants measured, and digests of protected uploads.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord.audit import accounting
from accord.core.commands import ReportingGroup
from accord.core.ledger_store import read_lines
from accord.crypto import ledger_chain as chain
from accord.errors import ConfigError, IntegrityError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib

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

audit_app = typer.Typer(
    cls=ReportingGroup,
    help="Verify the privacy ledgers and report the budgets spent and the contributions.",
    no_args_is_help=True,
)


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
        report: what `crypto.ledger.verify_chain` found.
        extra: findings from the cross-checks between ledgers.
        authenticated: the verifying key chains to the pinned CA (or the auditor named it).
    """

    path: Path
    role: str
    name: str
    federation_id: str
    key_source: str
    report: chain.Report
    extra: list[chain.Finding] = field(default_factory=list)
    authenticated: bool = False

    @property
    def findings(self) -> list[chain.Finding]:
        return [*self.report.findings, *self.extra]

    @property
    def ok(self) -> bool:
        return not self.findings

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of its entries of one kind, in order."""
        return [dict(entry.body) for entry in self.report.entries if entry.kind == kind]


@dataclass
class KeptHead:
    """A participant's `federation_head.json`."""

    path: Path
    holder: str
    public_key: bytes | None
    head: chain.SignedHead | None
    anomalies: list[str]


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
    files = _find(roots, LEDGER_FILE)
    if not files:
        where = ", ".join(str(p) for p in roots)
        raise UsageError(
            f"no {LEDGER_FILE} under {where}; name a ledger file or a folder holding them "
            "(e.g. an `accord demo` workdir)"
        )
    notes: list[str] = []
    pinned_ca = _pinned_ca(ca, ca_fingerprint, roots)
    certificate = pinned_ca[0] if pinned_ca is not None else None
    keys = _roster_keys(roster, roots, notes, certificate)
    pinned = _pinned_key(coordinator_key, roots, notes, certificate)
    heads = [_kept_head(path) for path in _find(roots, HEAD_FILE)]
    ledgers: list[Ledger] = []
    for path in files:
        lines = read_lines(path)
        opening = _opening(lines)
        role = str(opening.get("role", "?"))
        federation_id = str(opening.get("federation_id", "?"))
        if role == "coordinator":
            name = "coordinator"
            key, source, kept = _coordinator_key(opening, heads, notes, pinned)
            report = chain.verify_chain(lines, key, heads=kept)
            authenticated = pinned is not None and key == pinned[0]
        else:
            name = str(opening.get("participant", path.parent.name))
            key = keys.get(name)
            source = ROSTER_SOURCE if key is not None else "the ledger itself"
            report = chain.verify_chain(lines, key)
            authenticated = key is not None
        ledgers.append(
            Ledger(path, role, name, federation_id, source, report, authenticated=authenticated)
        )
    audit = Audit(ledgers, heads, notes, ca_source=pinned_ca[1] if pinned_ca else None)
    if pinned_ca is None:
        notes.append("no CA pinned: no key found under the audited folder was trusted")
    _cross_check(audit)
    return audit


def _find(roots: Iterable[Path], name: str) -> list[Path]:
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


def _opening(lines: Sequence[str]) -> dict[str, Any]:
    for line in lines:
        if line.strip():
            try:
                entry = chain.Entry.from_line(line)
            except IntegrityError:
                return {}
            return dict(entry.body) if entry.kind == chain.OPEN else {}
    return {}


def _pinned_ca(
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
    for path in _find([r for r in roots if r.is_dir()], CA_FILE):
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


def _roster_keys(
    roster: Path | None, roots: Sequence[Path], notes: list[str], ca: Any | None
) -> dict[str, bytes]:
    """The identity keys of the roster's entries whose certificates the pinned CA signed."""
    from accord.coordinator.roster import RosterSnapshot
    from accord.errors import BadSignature

    candidates = (
        [roster] if roster is not None else _find([r for r in roots if r.is_dir()], ROSTER_FILE)
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
                certified = chain.certified_identity(
                    ca, entry.certificate_der, entry.participant_id
                )
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


def _kept_head(path: Path) -> KeptHead:
    from accord.participant.privacy_ledger import read_federation_head

    holder = path.parent.name
    ledger_path = path.parent / LEDGER_FILE
    if ledger_path.exists():
        holder = str(_opening(read_lines(ledger_path)).get("participant", holder))
    try:
        key, head, anomalies = read_federation_head(path)
    except IntegrityError as error:
        return KeptHead(path, holder, None, None, [f"unreadable: {error}"])
    return KeptHead(path, holder, key, head, anomalies)


def _pinned_key(
    given: str | None, roots: Sequence[Path], notes: list[str], ca: Any | None
) -> tuple[bytes, str] | None:
    """The coordinator ledger key: `--coordinator-key`, else a kit's the pinned CA certified."""
    from accord.crypto import ledger_key

    if given is not None:
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
    folders = [r for r in roots if r.is_dir()]
    if ca is None:
        if _find(folders, PINNED_KEY_FILE):
            notes.append(
                f"the kits' {PINNED_KEY_FILE} under the audited folder were not used: no CA "
                "pinned to check them"
            )
        return None
    found: dict[bytes, Path] = {}
    for path in _find(folders, KIT_FILE):
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


def _coordinator_key(
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


def _cross_check(audit: Audit) -> None:
    """Each member and upload the federation ledger records must be in a participant's ledger."""
    by_name = {x.name: x for x in audit.participants}
    unreadable = {
        x.name: x.path for x in audit.ledgers if x.role not in ("participant", "coordinator")
    }
    for coordinator in audit.coordinators:
        missing = chain.missing_members(coordinator.bodies("round"), list(by_name))
        for participant, rounds in missing.items():
            if participant not in {m.participant for m in audit.missing}:
                found = unreadable.get(participant)
                audit.missing.append(Missing(participant, tuple(rounds), found))
        for head in audit.heads:
            for anomaly in head.anomalies:
                coordinator.extra.append(
                    chain.Finding(chain.Problem.BAD_HEAD, f"{head.holder} noted: {anomaly}")
                )
        for body in coordinator.bodies("round"):
            for name, digest in sorted(dict(body.get("uploads", {})).items()):
                participant = by_name.get(name)
                if participant is None or participant.federation_id != coordinator.federation_id:
                    continue
                finding = _upload_finding(participant, int(body["round"]), str(digest))
                if finding is not None:
                    participant.extra.append(finding)


def _upload_finding(participant: Ledger, round: int, digest: str) -> chain.Finding | None:
    rounds = [
        (entry.seq, dict(entry.body))
        for entry in participant.report.entries
        if entry.kind == "round"
    ]
    matching = [(seq, body) for seq, body in rounds if body.get("round") == round]
    if any(dict(body.get("upload", {})).get("sha256") == digest for _, body in matching):
        return None
    if matching:
        return chain.Finding(
            chain.Problem.EDITED,
            f"its round {round} upload digest differs from the one the federation ledger received",
            matching[0][0],
        )
    last_round = max((int(body.get("round", 0)) for _, body in rounds), default=0)
    if last_round < round:
        return chain.Finding(
            chain.Problem.TRUNCATED,
            f"the federation ledger received its round {round} upload; this ledger ends at "
            f"round {last_round}: its tail was cut off",
        )
    return chain.Finding(
        chain.Problem.MISSING,
        f"the federation ledger received its round {round} upload; this ledger has no entry for it",
    )


# ---- budgets ----


def budget_summary(
    audit: Audit, *, accountant: str = accounting.DEFAULT_ACCOUNTANT, delta: float | None = None
) -> dict[str, Any]:
    """Epsilon per participant and for the federation, as `accord audit budget --json` prints."""
    participants: list[dict[str, Any]] = []
    all_runs: list[accounting.Run] = []
    unbounded = False
    deltas: list[float] = []
    for ledger in audit.participants:
        rounds = ledger.bodies("round")
        dp_rounds = [b["sample_dp"] for b in rounds if b["sample_dp"].get("mechanism") == "dp-sgd"]
        own_delta = delta if delta is not None else _last_delta(dp_rounds)
        deltas.append(own_delta)
        # Side trainings (local-only baseline, personal model) trained on the same records
        # and kept or reported: they compose with the released updates, round by round.
        schedule = [
            (int(b["round"]), _run(dp))
            for b in rounds
            for dp in [b["sample_dp"], *(b.get("side_dp") or [])]
        ]
        curve = list(dict(accounting.epsilon_over_rounds(schedule, own_delta, accountant)).items())
        runs = [run for _, run in schedule if run is not None]
        released = [r for r in (_run(b["sample_dp"]) for b in rounds) if r is not None]
        side_steps: dict[str, int] = {}
        for b in rounds:
            for dp in b.get("side_dp") or []:
                purpose = str(dp.get("purpose", "side"))
                side_steps[purpose] = side_steps.get(purpose, 0) + int(dp.get("steps", 0))
        without_dp = any(run is None for _, run in schedule)
        unbounded = unbounded or without_dp
        all_runs.extend(runs)
        value = curve[-1][1] if curve else 0.0
        last = dp_rounds[-1] if dp_rounds else {}
        participants.append(
            {
                "participant": ledger.name,
                "ledger": str(ledger.path),
                "missing": False,
                "verified": ledger.ok,
                "rounds": len(rounds),
                "refusals": len(ledger.bodies("refusal")),
                "mechanism": "dp-sgd"
                if dp_rounds and not without_dp
                else ("none" if rounds else "no rounds"),
                "steps": sum(run[2] for run in runs),
                "noise_multipliers": sorted({run[0] for run in runs}),
                "sample_rates": sorted({run[1] for run in runs}),
                "max_grad_norm": _number(last.get("max_grad_norm")),
                "delta": own_delta,
                "epsilon": _finite(value),
                "epsilon_released_updates": _finite(
                    math.inf
                    if any(_run(b["sample_dp"]) is None for b in rounds)
                    else accounting.epsilon(released, own_delta, accountant)
                ),
                "side_trainings": side_steps,
                "epsilon_recorded": _number(last.get("epsilon")),
                "accountant_recorded": last.get("accountant"),
                "epsilon_by_round": [[r, _finite(e)] for r, e in curve],
            }
        )
    for missing in audit.missing:
        # Its runs are unknown, so no epsilon of its, nor the federation's, can be bounded.
        unbounded = True
        participants.append(
            {
                "participant": missing.participant,
                "ledger": None,
                "missing": True,
                "verified": False,
                "rounds": len(missing.rounds),
                "refusals": None,
                "mechanism": "unknown (no ledger)",
                "steps": None,
                "noise_multipliers": [],
                "sample_rates": [],
                "max_grad_norm": None,
                "delta": delta,
                "epsilon": None,
                "epsilon_released_updates": None,
                "side_trainings": {},
                "epsilon_recorded": None,
                "accountant_recorded": None,
                "epsilon_by_round": [],
            }
        )
    federation_delta = delta if delta is not None else max(deltas, default=1e-5)
    epsilons = [p["epsilon"] for p in participants]
    record_max = None if any(e is None for e in epsilons) else max(epsilons, default=0.0)
    composed = (
        None if unbounded else _finite(accounting.epsilon(all_runs, federation_delta, accountant))
    )
    return {
        "accountant": accountant,
        "accountant_may_understate": accountant in accounting.UNDERSTATES,
        "participants": participants,
        "federation": {
            "delta": federation_delta,
            "record_level": {
                "max": record_max,
                "composed": composed,
                "max_assumes": "each person's records sit at one enterprise: the federation's "
                "record-level epsilon is the largest participant's",
                "composed_assumes": "a person's records may sit at every enterprise: all "
                "participants' DP-SGD runs compose",
            },
            "client_level": _client_level(audit, delta, accountant),
        },
        "verified": audit.ok,
        "authenticated": audit.authenticated,
        "missing": [m.to_json() for m in audit.missing],
    }


def _client_level(audit: Audit, delta: float | None, accountant: str) -> dict[str, Any]:
    """The federation's client-level epsilon, recomputed from the federation ledger.

    One run per released (done) round: (the noise multiplier the aggregate is guaranteed
    to carry, the participation rate, 1 step). The guaranteed multiplier is the
    ledger's `guaranteed_noise_multiplier`: the noise of the honest survivors over one
    participant's worst-case effect (`crypto/client_dp.py`). Aborted rounds released
    nothing. A released round without client-level noise makes epsilon unbounded.
    """
    if not audit.coordinators:
        return {"status": "no federation ledger given", "epsilon": None}
    rounds = [
        b for c in audit.coordinators for b in c.bodies("round") if b.get("outcome") == "done"
    ]
    noised = [b for b in rounds if dict(b.get("client_dp", {})).get("mechanism", "none") != "none"]
    if not noised:
        return {
            "status": "off",
            "epsilon": None,
            "delta": delta,
            "rounds": len(rounds),
            "note": "client-level noise is off: the aggregate carries no client-level DP guarantee",
        }
    runs: list[accounting.Run] = []
    curve: list[tuple[int, accounting.Run | None]] = []
    configured: set[float] = set()
    honest: set[float] = set()
    deltas: list[float] = []
    for body in rounds:
        client = dict(body.get("client_dp", {}))
        if client.get("mechanism", "none") == "none":
            curve.append((int(body["round"]), None))
            continue
        # Ledgers before the guarantee was recorded carry the configured multiplier only.
        multiplier = float(
            client["guaranteed_noise_multiplier"]
            if "guaranteed_noise_multiplier" in client
            else client.get("noise_multiplier", 0)
        )
        run = (multiplier, float(body["participation_rate"]), 1)
        runs.append(run)
        curve.append((int(body["round"]), run))
        configured.add(float(client["noise_multiplier"]))
        honest.add(float(client.get("honest_fraction", 1)))
        if client.get("delta") is not None:
            deltas.append(float(client["delta"]))
    own_delta = delta if delta is not None else (min(deltas) if deltas else 1e-5)
    by_round = accounting.epsilon_over_rounds(curve, own_delta, accountant)
    value = by_round[-1][1] if by_round else math.inf
    unnoised = len(rounds) - len(noised)
    note = (
        "assumes at least the honest fraction of each round's participants added their "
        "noise share, and that participants are selected at random at the recorded "
        "participation rate; the Skellam noise is accounted as the Gaussian of the same "
        "variance"
    )
    if unnoised:
        note = f"{unnoised} released round(s) without client-level noise: unbounded; " + note
    return {
        "status": "on",
        "epsilon": _finite(value),
        "delta": own_delta,
        "rounds": len(rounds),
        "noise_multipliers": sorted(configured),
        "guaranteed_noise_multipliers": sorted({run[0] for run in runs}),
        "participation_rates": sorted({run[1] for run in runs}),
        "honest_fraction": sorted(honest),
        "epsilon_by_round": [[r, _finite(e)] for r, e in by_round],
        "note": note,
    }


def _run(dp: dict[str, Any]) -> accounting.Run | None:
    if dp.get("mechanism") != "dp-sgd":
        return None
    return (float(dp["noise_multiplier"]), float(dp["sample_rate"]), int(dp["steps"]))


def _last_delta(dp_rounds: Sequence[dict[str, Any]]) -> float:
    for dp in reversed(dp_rounds):
        if dp.get("delta") is not None:
            return float(dp["delta"])
    return 1e-5


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---- contributions ----


def contribution_rows(audit: Audit) -> list[dict[str, Any]]:
    """Per participant and released round: samples, validation gain, flagged share."""
    rows: list[dict[str, Any]] = []
    for ledger in audit.participants:
        applied = {int(b["round"]): dict(b["validation"]) for b in ledger.bodies("applied")}
        for body in ledger.bodies("round"):
            round = int(body["round"])
            quality = dict(body.get("data_quality", {}))
            samples = int(body.get("samples", 0))
            flagged = int(quality.get("flagged", 0))
            excluded = int(quality.get("excluded", 0))
            ran = quality.get("filter", "not run") != "not run"
            validation = applied.get(round, {})
            rows.append(
                {
                    "participant": ledger.name,
                    "round": round,
                    "samples": samples,
                    "flagged": flagged if ran else None,
                    "flagged_share": flagged / max(1, samples + excluded) if ran else None,
                    "metric": validation.get("metric"),
                    "before": _number(validation.get("before")),
                    "after": _number(validation.get("after")),
                    "gain": _number(validation.get("gain")),
                    "verified": ledger.ok,
                    "missing": False,
                }
            )
    for missing in audit.missing:
        for round in missing.rounds:
            rows.append(
                {
                    "participant": missing.participant,
                    "round": round,
                    "samples": None,
                    "flagged": None,
                    "flagged_share": None,
                    "metric": None,
                    "before": None,
                    "after": None,
                    "gain": None,
                    "verified": False,
                    "missing": True,
                }
            )
    return rows


# ---- commands ----

CA_HELP = (
    "The federation's CA certificate (ca.pem, or a kit folder holding it): only keys it "
    "certified are trusted."
)
CA_FINGERPRINT_HELP = (
    "SHA-256 of the federation's CA certificate: pins --ca, or a ca.pem found under the "
    "audited folders."
)


@audit_app.command()
def verify(
    paths: list[Path] = typer.Argument(
        ..., help="Ledger files, or folders searched for ledger.jsonl (e.g. a demo workdir)."
    ),
    roster: Path | None = typer.Option(
        None,
        "--roster",
        help="roster.json with the participants' identity keys (found in "
        "the folders when not given).",
    ),
    coordinator_key: str | None = typer.Option(
        None,
        "--coordinator-key",
        help="The coordinator ledger key the kits pin: a kit folder, its "
        "coordinator_ledger.pub, or 64 hex digits (found in kits under the folders when not "
        "given).",
    ),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    unauthenticated: bool = typer.Option(
        False,
        "--unauthenticated",
        help="Without a pinned CA, check consistency only (exit 0 though no key is authenticated).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Check every chain and signature; name each broken entry and how.

    Exit status 0 only when every ledger, kept head and recorded upload verifies, no
    member the federation ledger names lacks its ledger, and every key chains to the
    pinned CA (unless --unauthenticated).
    """
    audit = load(
        paths, roster, coordinator_key=coordinator_key, ca=ca, ca_fingerprint=ca_fingerprint
    )
    if json_output:
        typer.echo(json.dumps(_verify_json(audit), indent=2))
    else:
        _print_verify(audit)
    if not audit.ok or not (audit.authenticated or unauthenticated):
        raise typer.Exit(1)


@audit_app.command()
def budget(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    accountant: str = typer.Option(
        accounting.DEFAULT_ACCOUNTANT,
        "--accountant",
        help="rdp (default) or pld (dp-accounting), prv (needs opacus), or gdp (an "
        "approximation that may understate epsilon).",
    ),
    delta: float | None = typer.Option(
        None, "--delta", help="Report epsilon at this delta (default: each ledger's own)."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    coordinator_key: str | None = typer.Option(
        None, "--coordinator-key", help="The pinned coordinator ledger key (see `verify`)."
    ),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write epsilon over rounds per participant to this PNG file."
    ),
) -> None:
    """Epsilon per participant and for the federation, recomputed from the ledgers.

    Exit status 1 when a ledger does not verify (its numbers are shown but untrusted) or
    a member's ledger is missing (listed, with no epsilon).
    """
    if accountant not in accounting.ACCOUNTANTS:
        raise UsageError(f"--accountant {accountant}: one of {', '.join(accounting.ACCOUNTANTS)}")
    audit = load(
        ledger, roster, coordinator_key=coordinator_key, ca=ca, ca_fingerprint=ca_fingerprint
    )
    summary = budget_summary(audit, accountant=accountant, delta=delta)
    if plot is not None:
        write_plot(summary, plot)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_budget(summary, audit, plot)
    if not audit.ok:
        raise typer.Exit(1)


@audit_app.command()
def contributions(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    ca: Path | None = typer.Option(None, "--ca", help=CA_HELP),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help=CA_FINGERPRINT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Per participant and round: samples, validation gain, flagged share (no update is shown).

    Exit status 1 when a ledger does not verify or a member's ledger is missing (its
    rounds are listed as missing).
    """
    audit = load(ledger, roster, ca=ca, ca_fingerprint=ca_fingerprint)
    rows = contribution_rows(audit)
    if json_output:
        document = {
            "rows": rows,
            "verified": audit.ok,
            "authenticated": audit.authenticated,
            "missing": [m.to_json() for m in audit.missing],
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_contributions(rows, audit)
    if not audit.ok:
        raise typer.Exit(1)


# ---- output ----


def write_plot(summary: dict[str, Any], path: Path) -> None:
    """Epsilon over rounds, one line per participant (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for participant in summary["participants"]:
        points = [(r, e) for r, e in participant["epsilon_by_round"] if e is not None]
        if points:
            rounds, values = zip(*points, strict=True)
            axes.plot(rounds, values, marker="o", label=participant["participant"])
    axes.set_xlabel("round")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    delta = summary["federation"]["delta"]
    axes.set_ylabel(f"epsilon ({summary['accountant']}, delta {delta:g})")
    axes.set_title("Sample-level privacy budget spent")
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    axes.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    pyplot.close(figure)


def _verify_json(audit: Audit) -> dict[str, Any]:
    return {
        "ok": audit.ok,
        "authenticated": audit.authenticated,
        "ca": audit.ca_source,
        "notes": audit.notes,
        "missing": [m.to_json() for m in audit.missing],
        "ledgers": [
            {
                "path": str(x.path),
                "ledger_id": x.report.ledger_id,
                "role": x.role,
                "name": x.name,
                "entries": x.report.count,
                "key_source": x.key_source,
                "authenticated": x.authenticated,
                "ok": x.ok,
                "findings": [
                    {
                        "problem": f.problem.value,
                        "seq": f.seq,
                        "line": f.line,
                        "detail": f.detail,
                        "message": str(f),
                    }
                    for f in x.findings
                ],
            }
            for x in audit.ledgers
        ],
    }


def _print_verify(audit: Audit) -> None:
    console = Console()
    for ledger in audit.ledgers:
        if ledger.ok:
            head = ledger.report.entries[-1].hash.hex()[:16] if ledger.report.entries else "-"
            console.print(
                f"[green]OK[/green]   {ledger.report.ledger_id}  {ledger.report.count} entries, "
                f"head {head}..., key from {ledger.key_source}  ({ledger.path})"
            )
        else:
            name = ledger.report.ledger_id or f"{ledger.name} (unreadable)"
            console.print(f"[red]FAIL[/red] {name}  ({ledger.path})", soft_wrap=True)
            for finding in ledger.findings:
                console.print(f"     {finding}", markup=False)
    for missing in audit.missing:
        what = "no ledger" if missing.unreadable is None else "empty or unreadable ledger"
        console.print(f"[red]FAIL[/red] {missing.participant}: {what}", highlight=False)
        console.print(f"     missing: {missing.detail}", markup=False, soft_wrap=True)
    for note in audit.notes:
        console.print(f"note: {note}", markup=False)
    if not audit.authenticated:
        unauthenticated = ", ".join(x.name for x in audit.ledgers if not x.authenticated)
        console.print(
            f"[yellow]not authenticated:[/yellow] {unauthenticated}: checked with keys that do "
            "not chain to a pinned CA, which shows each ledger consistent, not who wrote it; "
            f"{UNAUTHENTICATED_FIX}",
            highlight=False,
        )


def _print_budget(summary: dict[str, Any], audit: Audit, plot: Path | None) -> None:
    console = Console()
    accountant = summary["accountant"]
    table = Table(title=f"Sample-level DP per participant ({accountant})")
    for column in (
        "participant",
        "rounds",
        "mechanism",
        "steps",
        "epsilon",
        "updates only",
        "delta",
        "recorded",
        "refusals",
        "verified",
    ):
        table.add_column(
            column, justify="left" if column in ("participant", "mechanism") else "right"
        )
    for p in summary["participants"]:
        mechanism = p["mechanism"]
        if mechanism == "dp-sgd":
            mechanism = (
                f"DP-SGD sigma {_values(p['noise_multipliers'])}, q {_values(p['sample_rates'])}, "
                f"C {_show(p['max_grad_norm'])}"
            )
        if p["side_trainings"]:
            mechanism += "; with " + ", ".join(
                f"{purpose} ({steps} steps)" for purpose, steps in p["side_trainings"].items()
            )
        recorded = p["epsilon_recorded"]
        table.add_row(
            p["participant"],
            str(p["rounds"]),
            mechanism,
            "-" if p["steps"] is None else str(p["steps"]),
            "unknown (no ledger)" if p["missing"] else _epsilon(p["epsilon"], p["rounds"]),
            "-" if p["missing"] else _epsilon(p["epsilon_released_updates"], p["rounds"]),
            "-" if p["delta"] is None else f"{p['delta']:g}",
            "-" if recorded is None else f"{recorded:.3f} ({p['accountant_recorded']})",
            "-" if p["refusals"] is None else str(p["refusals"]),
            "yes" if p["verified"] else "NO",
        )
    console.print(table)
    federation = summary["federation"]
    record = federation["record_level"]
    client = federation["client_level"]
    rows = Table(title=f"Federation (delta {federation['delta']:g})")
    rows.add_column("budget")
    rows.add_column("epsilon", justify="right")
    rows.add_column("assumes")
    rows.add_row("record-level, max", _epsilon(record["max"], 1), record["max_assumes"])
    rows.add_row(
        "record-level, composed", _epsilon(record["composed"], 1), record["composed_assumes"]
    )
    client_label = "client-level"
    if client["status"] == "on":
        client_label = (
            f"client-level (z {_values(client['noise_multipliers'])}, guaranteed "
            f"{_values([round(z, 4) for z in client['guaranteed_noise_multipliers']])}, "
            f"delta {client['delta']:g})"
        )
    rows.add_row(
        client_label,
        "-" if client["status"] != "on" else _epsilon(client["epsilon"], 1),
        client.get("note", client["status"]),
    )
    console.print(rows)
    if summary["accountant_may_understate"]:
        console.print(
            "[yellow]warning:[/yellow] GDP is a central-limit approximation that may understate "
            "epsilon; use --accountant rdp or prv for a bound"
        )
    _print_missing(audit, console)
    if not audit.ok:
        console.print(
            "[red]warning:[/red] a ledger does not verify; its numbers cannot be trusted (run "
            "`accord audit verify`)"
        )
    if plot is not None:
        console.print(f"plot: {plot}")


def _print_contributions(rows: list[dict[str, Any]], audit: Audit) -> None:
    console = Console()
    table = Table(title="Contributions (basis for incentives; no update is shown)")
    for column in ("participant", "round", "samples", "flagged share", "validation", "gain"):
        table.add_column(column, justify="left" if column == "participant" else "right")
    for row in rows:
        validation = "-"
        if row["metric"] is not None:
            validation = f"{row['metric']} {row['before']:.4f} -> {row['after']:.4f}"
        table.add_row(
            row["participant"],
            str(row["round"]),
            "no ledger" if row["missing"] else str(row["samples"]),
            "-" if row["flagged_share"] is None else f"{row['flagged_share']:.1%}",
            validation,
            "-" if row["gain"] is None else f"{row['gain']:+.4f}",
        )
    console.print(table)
    _print_missing(audit, console)
    if not audit.ok:
        console.print("[red]warning:[/red] a ledger does not verify (run `accord audit verify`)")


def _print_missing(audit: Audit, console: Console) -> None:
    for missing in audit.missing:
        console.print(
            f"[red]missing:[/red] {missing.participant}: {missing.detail}",
            highlight=False,
            soft_wrap=True,
        )
    if not audit.authenticated:
        console.print(f"note: not authenticated; {UNAUTHENTICATED_FIX}", highlight=False)


def _epsilon(value: float | None, rounds: int) -> str:
    if value is None:
        return "inf (no DP)" if rounds else "-"
    return f"{value:.3f}"


def _values(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{min(values):g}-{max(values):g}"


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
